// lemo-tokenizer-bench: times LoadTokenizer(spec)->Encode over every "text" of
// a JSONL corpus on one thread, as PackedDataset tokenizes training data.
//
//   lemo-tokenizer-bench --tokenizer /models/llama3 --corpus
//   bench/data/corpus.jsonl \
//       --repeats 5 [--ids-out ids.json]
//
// Prints one JSON line: bytes, tokens, the best and median seconds of the
// repeats, MB/s and tokens/s of the best. The first repeat starts with a cold
// word cache; the best is warm, as a long training corpus is. --ids-out
// writes the ids (a list per document) so compare.py can check them against
// Python's.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "worker/engine/data/jsonl_reader.h"
#include "worker/engine/data/tokenizer.h"

namespace {

int Run(const std::string& spec, const std::string& corpus, int repeats,
        const std::string& ids_out) {
  auto tok = lemo::engine::LoadTokenizer(spec);
  if (!tok.ok()) {
    std::cerr << tok.status() << "\n";
    return 1;
  }
  std::vector<std::string> docs;
  auto read = lemo::engine::ForEachJsonlText(
      corpus, [&](absl::string_view text) -> absl::Status {
        docs.emplace_back(text);
        return absl::OkStatus();
      });
  if (!read.ok()) {
    std::cerr << read.status() << "\n";
    return 1;
  }
  size_t bytes = 0;
  for (const std::string& d : docs) bytes += d.size();
  std::vector<double> seconds;
  size_t tokens = 0;
  std::vector<std::vector<int32_t>> all_ids(docs.size());
  for (int r = 0; r < repeats; ++r) {
    tokens = 0;
    const auto start = std::chrono::steady_clock::now();
    for (size_t i = 0; i < docs.size(); ++i) {
      auto ids = (*tok)->Encode(docs[i]);
      if (!ids.ok()) {
        std::cerr << ids.status() << "\n";
        return 1;
      }
      tokens += ids->size();
      if (r == 0) all_ids[i] = std::move(*ids);
    }
    seconds.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count());
  }
  std::vector<double> sorted = seconds;
  std::sort(sorted.begin(), sorted.end());
  const double best = sorted.front();
  nlohmann::json out = {{"system", "lemo"},
                        {"tokenizer", (*tok)->name()},
                        {"docs", docs.size()},
                        {"bytes", bytes},
                        {"tokens", tokens},
                        {"seconds", seconds},
                        {"best_s", best},
                        {"median_s", sorted[sorted.size() / 2]},
                        {"mb_per_s", bytes / best / 1e6},
                        {"tokens_per_s", tokens / best}};
  std::cout << out.dump() << std::endl;
  if (!ids_out.empty())
    std::ofstream(ids_out) << nlohmann::json(all_ids).dump();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Times tokenizer encoding over a JSONL corpus on one thread"};
  std::string spec, corpus, ids_out;
  int repeats = 5;
  app.add_option(
         "--tokenizer", spec,
         "byte, a tokenizer.json / tokenizer.model, or a model directory")
      ->required();
  app.add_option("--corpus", corpus, "JSONL with a \"text\" field")->required();
  app.add_option("--repeats", repeats, "timed passes over the corpus")
      ->check(CLI::PositiveNumber);
  app.add_option("--ids-out", ids_out,
                 "write the first pass's ids here (JSON)");
  CLI11_PARSE(app, argc, argv);
  return Run(spec, corpus, repeats, ids_out);
}
