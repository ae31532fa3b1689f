#include "worker/lemo_train/eval_command.h"

#include <cstdio>
#include <memory>
#include <string>

#include "nlohmann/json.hpp"
#include "worker/engine/data/token_file.h"
#include "worker/engine/train/evaluate.h"
#include "worker/lemo_train/device_flags.h"

namespace lemo::worker::lemo_train {
namespace {

struct EvalFlags {
  lemo::engine::EvalOptions options;
  std::string device = "cpu";
  std::string dtype;  // empty: bf16 on CUDA, fp32 on CPU
  std::string data_format = "auto";
};

int RunEval(EvalFlags& flags) {
  auto& o = flags.options;
  auto dd = ParseDeviceAndDtype(flags.device, flags.dtype);
  if (!dd.ok()) return Fail(dd.status());
  o.device = dd->device;
  o.base_dtype = dd->dtype;
  auto format = lemo::engine::ParseDataFormat(flags.data_format);
  if (!format.ok()) return Fail(format.status());
  o.data.format = *format;
  absl::StatusOr<lemo::engine::EvalResult> r = lemo::engine::Evaluate(o);
  if (!r.ok()) return Fail(r.status());
  // Evaluate() always runs dense, whatever mode the adapter was trained in.
  const nlohmann::json out = {
      {"loss", r->loss},           {"perplexity", r->perplexity},
      {"samples", r->samples},     {"tokens", r->tokens},
      {"seq_len", o.data.seq_len}, {"skip_samples", o.skip_samples},
      {"model", o.model_dir},      {"adapter", o.adapter_dir},
      {"data", o.data.path},       {"lemo_mode", "dense"}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace

Command AddEvalCommand(CLI::App* app) {
  auto ev = std::make_shared<EvalFlags>();
  auto& eo = ev->options;
  CLI::App* cmd = app->add_subcommand(
      "eval",
      "Held-out mean loss and perplexity of a model (+ adapter) under dense "
      "evaluation, as JSON on stdout");
  cmd->add_option("--model", eo.model_dir, "HF model directory")->required();
  cmd->add_option("--adapter", eo.adapter_dir,
                  "lemo-train checkpoint or PEFT adapter directory");
  cmd->add_option("--data", eo.data.path,
                  "Held-out JSONL or token file (one the fine-tune never saw)")
      ->required();
  cmd->add_option(
         "--data-format", ev->data_format,
         "auto | jsonl | u16 | u32 | instruction | chat | tokens_jsonl")
      ->capture_default_str();
  cmd->add_option("--chat-template", eo.data.chat_template,
                  "Chat data: llama3 | chatml | mistral (default: detected)");
  cmd->add_option("--tokenizer", eo.data.tokenizer,
                  "byte, a tokenizer.json or tokenizer.model, or a directory "
                  "holding one. Default: the --model directory's own (a "
                  "random-weight init-model directory: byte)");
  cmd->add_option("--seq-len", eo.data.seq_len, "Tokens per sample")
      ->required();
  cmd->add_option("--batch-size", eo.data.batch_size)->capture_default_str();
  cmd->add_option("--batches", eo.batches,
                  "Batches to evaluate (0: every sample after the skipped)")
      ->capture_default_str();
  cmd->add_option("--skip-samples", eo.skip_samples,
                  "Samples (in file order) skipped before the evaluated range")
      ->capture_default_str();
  cmd->add_option("--device", ev->device, "cpu | cuda:N")
      ->capture_default_str();
  cmd->add_option(
      "--dtype", ev->dtype,
      "Base weights dtype: fp32 | bf16 (default: bf16 on CUDA, fp32 on CPU)");
  return {cmd, [ev] { return RunEval(*ev); }};
}

}  // namespace lemo::worker::lemo_train
