#include "worker/lemo_train/tokenize_command.h"

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "worker/engine/data/tokenizer.h"
#include "worker/engine/formats/model_config.h"

namespace lemo::worker::lemo_train {
namespace {

struct TokenizeFlags {
  std::string tokenizer;  // LoadTokenizer spec; empty: --model's own
  std::string model;      // HF model directory whose tokenizer is the default
  std::string input;      // text file, tokenized whole
  std::string output = "text";  // text (ids on one line) | json (an array)
};

absl::StatusOr<std::string> TokenizerSpecOf(const TokenizeFlags& flags) {
  if (!flags.tokenizer.empty()) return flags.tokenizer;
  if (flags.model.empty()) {
    return absl::InvalidArgumentError(
        "give --tokenizer (byte, a tokenizer.json or tokenizer.model) or "
        "--model (a model directory, for its own tokenizer)");
  }
  absl::StatusOr<engine::ModelConfig> config =
      engine::LoadModelConfig(flags.model);
  if (!config.ok()) {
    return absl::Status(
        config.status().code(),
        absl::StrCat("model ", flags.model, ": ", config.status().message()));
  }
  return engine::ResolveTokenizerSpec("", flags.model, config->random_init,
                                      "--tokenizer");
}

int RunTokenize(const TokenizeFlags& flags) {
  if (flags.output != "text" && flags.output != "json") {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("-o must be text or json, got \"", flags.output, "\"")));
  }
  absl::StatusOr<std::string> spec = TokenizerSpecOf(flags);
  if (!spec.ok()) return Fail(spec.status());
  auto tokenizer = engine::LoadTokenizer(*spec);
  if (!tokenizer.ok()) return Fail(tokenizer.status());
  std::ifstream in(flags.input, std::ios::binary);
  if (!in) {
    return Fail(absl::NotFoundError(
        absl::StrCat("--input: cannot read ", flags.input)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  auto ids = (*tokenizer)->Encode(text.str());
  if (!ids.ok()) return Fail(ids.status());
  const std::string joined =
      absl::StrJoin(*ids, flags.output == "json" ? "," : " ");
  if (flags.output == "json") {
    std::printf("[%s]\n", joined.c_str());
  } else {
    std::printf("%s\n", joined.c_str());
  }
  std::fprintf(stderr, "%zu tokens (%s, %lld ids)\n", ids->size(),
               (*tokenizer)->name().c_str(),
               static_cast<long long>((*tokenizer)->vocab_size()));
  return 0;
}

}  // namespace

Command AddTokenizeCommand(CLI::App* app) {
  auto tok = std::make_shared<TokenizeFlags>();
  CLI::App* cmd = app->add_subcommand(
      "tokenize",
      "Print the token ids of a text file (no bos/eos), as training sees them");
  cmd->add_option("--tokenizer", tok->tokenizer,
                  "byte, a tokenizer.json or tokenizer.model, or a directory "
                  "holding one. Default: the --model directory's own");
  cmd->add_option("--model", tok->model,
                  "HF model directory whose tokenizer to use (as finetune "
                  "would by default)");
  cmd->add_option("--input", tok->input, "Text file, tokenized as a whole")
      ->required();
  cmd->add_option("-o,--output", tok->output,
                  "text (ids separated by spaces) | json (an array)")
      ->capture_default_str();
  return {cmd, [tok] { return RunTokenize(*tok); }};
}

}  // namespace lemo::worker::lemo_train
