// The data/ wing owns what turns users' files into token batches: tokenizers,
// JSONL and token-file readers, packing and the seeded, resumable dataset
// below. It needs no model.
//
// Training batches from a corpus: every document is tokenized and framed as <s>
// doc </s>, the documents are concatenated into one stream, and the stream is
// cut into samples of seq_len tokens (the ragged tail is dropped). Samples come
// in a seeded shuffled order that changes each epoch; the cursor makes a
// resumed run see exactly the batches it would have seen.
//
// Example formats (instruction, chat, tokens_jsonl: examples.h) carry a loss
// mask. Their examples are packed whole, in file order, into samples of
// seq_len tokens: an example that does not fit the rest of a sample starts the
// next one, and the rest is padding (eos, or id 0) without loss. No example is
// cut, and the first token of each example has no loss, so nothing is learnt
// from one example's end to the next one's start. Examples in one sample still
// attend to the ones before them (no per-example attention mask).
//
//   DataOptions opts;
//   opts.path = "bench/data/corpus.jsonl";
//   opts.seq_len = 2048;
//   LEMO_ASSIGN_OR_RETURN(auto data, PackedDataset::Create(opts,
//   config.vocab_size)); LEMO_ASSIGN_OR_RETURN(torch::Tensor ids,
//   data->Next());  // [1, 2048] int64, labels = ids nlohmann::json cursor =
//   data->Cursor();                   // saved with the checkpoint
//   LEMO_RETURN_IF_ERROR(data->Seek(cursor));                 // on resume
#ifndef LEMO_WORKER_ENGINE_DATA_DATASET_H_
#define LEMO_WORKER_ENGINE_DATA_DATASET_H_

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/engine/data/examples.h"
#include "worker/engine/data/token_file.h"

namespace lemo::engine {

struct DataOptions {
  // A JSONL corpus with a "text" field, or a flat token file (.u16, .u32, or
  // .bin with format).
  std::string path;
  // kAuto takes the format from the extension of `path`.
  DataFormat format = DataFormat::kAuto;
  // LoadTokenizer spec ("byte", a tokenizer.json or tokenizer.model path, or a
  // directory holding one); used for JSONL, instruction and chat. Empty means
  // the model's own: the trainer, evaluation and calibration fill it in with
  // ResolveTokenizerSpec (tokenizer.h) before building the dataset, which
  // itself has no model directory and refuses an empty one.
  std::string tokenizer;
  // Chat: "llama3", "chatml" or "mistral"; empty detects it from the
  // tokenizer's chat template.
  std::string chat_template;
  // Example formats: what an example without trained tokens, longer than
  // seq_len, or with an unknown role does.
  BadSamplePolicy on_bad_sample = BadSamplePolicy::kError;
  // Tokens per sample (the model's sequence length).
  int64_t seq_len = 0;
  // Samples per batch.
  int64_t batch_size = 1;
  // Seeds the per-epoch sample order; the same seed gives the same batches on
  // every platform.
  uint64_t seed = 0;
};

// Inputs and labels of a batch, both [batch, seq_len] int64: labels are the
// inputs, with kIgnoreIndex (-100) where the loss mask is 0 (the model shifts).
struct DataBatch {
  torch::Tensor ids;
  torch::Tensor labels;
};

class PackedDataset {
 public:
  // Reads and tokenizes the whole corpus. Every token id must be < vocab_size
  // (the model's).
  static absl::StatusOr<std::unique_ptr<PackedDataset>> Create(
      const DataOptions& options, int64_t vocab_size);
  // Over an already-built token stream (benchmarks, tests); `options.path` is
  // only a label.
  static absl::StatusOr<std::unique_ptr<PackedDataset>> FromTokens(
      std::vector<int32_t> tokens, const DataOptions& options,
      int64_t vocab_size);
  // Packs masked examples as Create does for the example formats; `pad_id` is
  // the padding token. `stats` is reported by example_stats().
  static absl::StatusOr<std::unique_ptr<PackedDataset>> FromExamples(
      std::vector<MaskedTokens> examples, int32_t pad_id,
      const DataOptions& options, int64_t vocab_size, ExampleStats stats = {});

  // The next [batch_size, seq_len] int64 CPU batch. Input ids and labels alike
  // (the model shifts). Runs on across epochs for ever; a batch may span the
  // end of an epoch.
  absl::StatusOr<torch::Tensor> Next();
  // Next() with its labels (advances the same cursor).
  absl::StatusOr<DataBatch> NextBatch();

  // Samples [first, first + count) in stream order (no shuffle), as a
  // [count, seq_len] int64 CPU tensor: a deterministic held-out range for
  // evaluation. OUT_OF_RANGE past num_samples().
  absl::StatusOr<torch::Tensor> Samples(int64_t first, int64_t count) const;
  // Samples() with its labels.
  absl::StatusOr<DataBatch> SampleBatch(int64_t first, int64_t count) const;

  // {"epoch", "index" (next position in the epoch's order), "seed",
  // "num_samples", "seq_len"}.
  nlohmann::json Cursor() const;
  // Restores a Cursor() (including its seed). FAILED_PRECONDITION when it was
  // taken on a dataset of another size or seq_len; INVALID_ARGUMENT when it is
  // malformed.
  absl::Status Seek(const nlohmann::json& cursor);

  int64_t num_samples() const { return num_samples_; }
  // Tokens in the stream, before the ragged tail is dropped.
  int64_t num_tokens() const { return static_cast<int64_t>(tokens_.size()); }
  int64_t seq_len() const { return seq_len_; }
  int64_t batch_size() const { return batch_size_; }
  int64_t epoch() const { return epoch_; }
  // True when some token has no loss (example formats).
  bool masked() const { return !trained_.empty(); }
  // Example formats: examples kept and skipped; zeros otherwise.
  const ExampleStats& example_stats() const { return stats_; }

  // The order in which epoch `epoch` visits samples 0..num_samples-1: a
  // Fisher-Yates shuffle driven by std::mt19937_64, whose output the C++
  // standard fixes, so it is portable.
  static std::vector<int64_t> EpochOrder(uint64_t seed, int64_t epoch,
                                         int64_t num_samples);

 private:
  PackedDataset(std::vector<int32_t> tokens, std::vector<uint8_t> trained,
                const DataOptions& options);
  void Fill(int64_t sample, int64_t* ids, int64_t* labels) const;

  std::vector<int32_t> tokens_;
  std::vector<uint8_t> trained_;  // per token, 1 = loss; empty = all
  ExampleStats stats_;
  int64_t seq_len_;
  int64_t batch_size_;
  uint64_t seed_;
  int64_t num_samples_;
  int64_t epoch_ = 0;
  int64_t index_ = 0;
  std::vector<int64_t> order_;  // EpochOrder(seed_, epoch_, num_samples_)
};

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_DATA_DATASET_H_
