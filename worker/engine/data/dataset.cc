#include "worker/engine/data/dataset.h"

#include <algorithm>
#include <limits>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/data/jsonl_reader.h"
#include "worker/engine/data/tokenizer.h"
#include "worker/engine/runtime/torch_status.h"

namespace lemo::engine {
namespace {

// The label the loss ignores: train/loss.h's kIgnoreIndex, as HF's -100 (data/
// sits below train/, so it cannot include it).
constexpr int64_t kIgnoreLabel = -100;

// splitmix64's finalizer: spreads (seed, epoch) over all 64 bits, so nearby
// seeds and epochs start mt19937_64 in unrelated states.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Uniform in [0, bound) by rejection; std::uniform_int_distribution's algorithm
// is implementation-defined, and the order must not depend on the standard
// library.
uint64_t UniformBelow(std::mt19937_64& rng, uint64_t bound) {
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  const uint64_t limit = max - max % bound;  // a multiple of bound
  uint64_t r;
  do {
    r = rng();
  } while (r >= limit);
  return r % bound;
}

absl::Status CheckOptions(const DataOptions& options, int64_t vocab_size) {
  if (options.seq_len <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("seq_len must be positive, got ", options.seq_len));
  }
  if (options.batch_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch_size must be positive, got ", options.batch_size));
  }
  if (vocab_size <= 0 || vocab_size > (int64_t{1} << 31)) {
    return absl::InvalidArgumentError(
        absl::StrCat("vocab_size ", vocab_size, " is out of range"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> TokenizeJsonl(const DataOptions& options,
                                                   int64_t vocab_size) {
  LEMO_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer,
                        LoadTokenizer(options.tokenizer), "loading tokenizer");
  LEMO_RETURN_IF_ERROR(CheckTokenizerFitsVocab(*tokenizer, vocab_size));
  const int32_t bos = tokenizer->bos_id();
  const int32_t eos = tokenizer->eos_id();
  std::vector<int32_t> tokens;
  auto add_document = [&](absl::string_view text) -> absl::Status {
    LEMO_ASSIGN_OR_RETURN(std::vector<int32_t> ids, tokenizer->Encode(text));
    // A model without bos/eos (-1) gets its documents simply concatenated.
    if (bos >= 0) tokens.push_back(bos);
    tokens.insert(tokens.end(), ids.begin(), ids.end());
    if (eos >= 0) tokens.push_back(eos);
    return absl::OkStatus();
  };
  LEMO_ASSIGN_OR_RETURN(int64_t docs,
                        ForEachJsonlText(options.path, add_document));
  if (docs == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("data file ", options.path, " has no documents"));
  }
  return tokens;
}

// Reads an integer field of a cursor; INVALID_ARGUMENT names the field when it
// is absent or not a non-negative integer.
absl::StatusOr<uint64_t> CursorField(const nlohmann::json& cursor,
                                     const char* name) {
  const auto it = cursor.find(name);
  if (it == cursor.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("data cursor has no \"", name, "\""));
  }
  if (it->is_number_unsigned()) return it->get<uint64_t>();
  if (it->is_number_integer() && it->get<int64_t>() >= 0) {
    return static_cast<uint64_t>(it->get<int64_t>());
  }
  return absl::InvalidArgumentError(
      absl::StrCat("data cursor field \"", name, "\" is ", it->dump(),
                   ", not a non-negative integer"));
}

}  // namespace

std::vector<int64_t> PackedDataset::EpochOrder(uint64_t seed, int64_t epoch,
                                               int64_t num_samples) {
  std::vector<int64_t> order(num_samples);
  for (int64_t i = 0; i < num_samples; ++i) order[i] = i;
  std::mt19937_64 rng(Mix(seed ^ Mix(static_cast<uint64_t>(epoch))));
  for (int64_t i = num_samples - 1; i > 0; --i) {
    const int64_t j =
        static_cast<int64_t>(UniformBelow(rng, static_cast<uint64_t>(i) + 1));
    std::swap(order[i], order[j]);
  }
  return order;
}

PackedDataset::PackedDataset(std::vector<int32_t> tokens,
                             std::vector<uint8_t> trained,
                             const DataOptions& options)
    : tokens_(std::move(tokens)),
      trained_(std::move(trained)),
      seq_len_(options.seq_len),
      batch_size_(options.batch_size),
      seed_(options.seed),
      num_samples_(static_cast<int64_t>(tokens_.size()) / options.seq_len),
      order_(EpochOrder(seed_, 0, num_samples_)) {}

absl::StatusOr<std::unique_ptr<PackedDataset>> PackedDataset::Create(
    const DataOptions& options, int64_t vocab_size) {
  LEMO_RETURN_IF_ERROR(CheckOptions(options, vocab_size));
  LEMO_ASSIGN_OR_RETURN(DataFormat format,
                        ResolveDataFormat(options.path, options.format));
  if (format == DataFormat::kJsonl && options.format == DataFormat::kAuto) {
    LEMO_ASSIGN_OR_RETURN(format, SniffJsonlFormat(options.path));
  }
  if (IsExampleFormat(format)) {
    ExampleOptions eo;
    eo.path = options.path;
    eo.format = format;
    eo.tokenizer = options.tokenizer;
    eo.chat_template = options.chat_template;
    eo.max_tokens = options.seq_len;
    eo.on_bad_sample = options.on_bad_sample;
    std::vector<MaskedTokens> examples;
    LEMO_ASSIGN_OR_RETURN(ExampleStats stats,
                          ForEachExample(eo, vocab_size, [&](MaskedTokens ex) {
                            examples.push_back(std::move(ex));
                            return absl::OkStatus();
                          }));
    int32_t pad_id = 0;
    if (format != DataFormat::kTokensJsonl) {
      LEMO_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer,
                            LoadTokenizer(options.tokenizer));
      pad_id = std::max(tokenizer->eos_id(), 0);
    }
    return FromExamples(std::move(examples), pad_id, options, vocab_size,
                        std::move(stats));
  }
  std::vector<int32_t> tokens;
  if (format == DataFormat::kJsonl) {
    LEMO_ASSIGN_OR_RETURN(tokens, TokenizeJsonl(options, vocab_size));
  } else {
    LEMO_ASSIGN_OR_RETURN(tokens,
                          ReadTokenFile(options.path, format, vocab_size));
  }
  return FromTokens(std::move(tokens), options, vocab_size);
}

absl::StatusOr<std::unique_ptr<PackedDataset>> PackedDataset::FromTokens(
    std::vector<int32_t> tokens, const DataOptions& options,
    int64_t vocab_size) {
  LEMO_RETURN_IF_ERROR(CheckOptions(options, vocab_size));
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "data ", options.path, ": token ", i, " has id ", tokens[i],
          ", outside the vocabulary [0, ", vocab_size, ")"));
    }
  }
  if (static_cast<int64_t>(tokens.size()) < options.seq_len) {
    return absl::InvalidArgumentError(absl::StrCat(
        "data ", options.path, " has ", tokens.size(),
        " tokens, fewer than one sample of seq_len ", options.seq_len));
  }
  return std::unique_ptr<PackedDataset>(
      new PackedDataset(std::move(tokens), {}, options));
}

absl::StatusOr<std::unique_ptr<PackedDataset>> PackedDataset::FromExamples(
    std::vector<MaskedTokens> examples, int32_t pad_id,
    const DataOptions& options, int64_t vocab_size, ExampleStats stats) {
  LEMO_RETURN_IF_ERROR(CheckOptions(options, vocab_size));
  if (pad_id < 0 || pad_id >= vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("padding id ", pad_id, " is outside the vocabulary"));
  }
  const size_t seq_len = static_cast<size_t>(options.seq_len);
  std::vector<int32_t> tokens;
  std::vector<uint8_t> trained;
  // The sample being filled is [start, tokens.size()).
  size_t start = 0;
  bool any_trained = false;  // in the sample being filled
  auto close_sample = [&] {
    if (any_trained) {
      tokens.resize(start + seq_len, pad_id);
      trained.resize(start + seq_len, 0);
    } else {
      // Nothing to learn in it (its examples' only trained tokens were
      // their first): the loss would be NaN, so it is dropped.
      tokens.resize(start);
      trained.resize(start);
    }
    start = tokens.size();
    any_trained = false;
  };
  for (size_t e = 0; e < examples.size(); ++e) {
    const MaskedTokens& ex = examples[e];
    if (ex.ids.size() != ex.loss_mask.size() || ex.ids.empty() ||
        ex.ids.size() > seq_len) {
      return absl::InvalidArgumentError(
          absl::StrCat("data ", options.path, ": example ", e, " has ",
                       ex.ids.size(), " ids and ", ex.loss_mask.size(),
                       " mask entries (1 to seq_len ", seq_len, " of each)"));
    }
    if (tokens.size() - start + ex.ids.size() > seq_len) close_sample();
    for (size_t i = 0; i < ex.ids.size(); ++i) {
      if (ex.ids[i] < 0 || ex.ids[i] >= vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat(
            "data ", options.path, ": example ", e, " token ", i, " has id ",
            ex.ids[i], ", outside the vocabulary [0, ", vocab_size, ")"));
      }
      tokens.push_back(ex.ids[i]);
      // The packing rule: the first token of an example has no loss.
      trained.push_back(i == 0 ? 0 : ex.loss_mask[i]);
      any_trained = any_trained || trained.back() != 0;
    }
  }
  if (tokens.size() > start) close_sample();
  if (tokens.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "data ", options.path, " has no example to train on",
        stats.skipped() > 0
            ? absl::StrCat(" (", stats.Summary(options.seq_len), ")")
            : ""));
  }
  auto data = std::unique_ptr<PackedDataset>(
      new PackedDataset(std::move(tokens), std::move(trained), options));
  data->stats_ = std::move(stats);
  return data;
}

void PackedDataset::Fill(int64_t sample, int64_t* ids, int64_t* labels) const {
  const int64_t begin = sample * seq_len_;
  for (int64_t t = 0; t < seq_len_; ++t) {
    const int32_t id = tokens_[begin + t];
    if (ids != nullptr) ids[t] = id;
    if (labels != nullptr) {
      labels[t] =
          trained_.empty() || trained_[begin + t] != 0 ? id : kIgnoreLabel;
    }
  }
}

absl::StatusOr<DataBatch> PackedDataset::NextBatch() {
  return CallTorch("building a data batch", [&] {
    DataBatch batch{torch::empty({batch_size_, seq_len_}, torch::kLong),
                    torch::empty({batch_size_, seq_len_}, torch::kLong)};
    int64_t* ids = batch.ids.data_ptr<int64_t>();
    int64_t* labels = batch.labels.data_ptr<int64_t>();
    for (int64_t b = 0; b < batch_size_; ++b) {
      if (index_ == num_samples_) {
        ++epoch_;
        index_ = 0;
        order_ = EpochOrder(seed_, epoch_, num_samples_);
      }
      Fill(order_[index_++], ids + b * seq_len_, labels + b * seq_len_);
    }
    return batch;
  });
}

absl::StatusOr<torch::Tensor> PackedDataset::Next() {
  LEMO_ASSIGN_OR_RETURN(DataBatch batch, NextBatch());
  return batch.ids;
}

absl::StatusOr<DataBatch> PackedDataset::SampleBatch(int64_t first,
                                                     int64_t count) const {
  if (first < 0 || count < 0 || first + count > num_samples_) {
    return absl::OutOfRangeError(absl::StrCat(
        "samples [", first, ", ", first + count, ") of a dataset of ",
        num_samples_, " samples of ", seq_len_, " tokens"));
  }
  return CallTorch("building a data batch", [&] {
    DataBatch batch{torch::empty({count, seq_len_}, torch::kLong),
                    torch::empty({count, seq_len_}, torch::kLong)};
    for (int64_t i = 0; i < count; ++i) {
      Fill(first + i, batch.ids.data_ptr<int64_t>() + i * seq_len_,
           batch.labels.data_ptr<int64_t>() + i * seq_len_);
    }
    return batch;
  });
}

absl::StatusOr<torch::Tensor> PackedDataset::Samples(int64_t first,
                                                     int64_t count) const {
  LEMO_ASSIGN_OR_RETURN(DataBatch batch, SampleBatch(first, count));
  return batch.ids;
}

nlohmann::json PackedDataset::Cursor() const {
  return {{"epoch", epoch_},
          {"index", index_},
          {"seed", seed_},
          {"num_samples", num_samples_},
          {"seq_len", seq_len_}};
}

absl::Status PackedDataset::Seek(const nlohmann::json& cursor) {
  if (!cursor.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("data cursor must be a JSON object, got ", cursor.dump()));
  }
  LEMO_ASSIGN_OR_RETURN(uint64_t num_samples,
                        CursorField(cursor, "num_samples"));
  if (num_samples != static_cast<uint64_t>(num_samples_)) {
    return absl::FailedPreconditionError(
        absl::StrCat("data cursor was taken on a dataset of ", num_samples,
                     " samples; this one has ", num_samples_,
                     " (different data, tokenizer or seq_len?)"));
  }
  // seq_len is optional so cursors written with only the four agreed fields
  // still load.
  if (cursor.contains("seq_len")) {
    LEMO_ASSIGN_OR_RETURN(uint64_t seq_len, CursorField(cursor, "seq_len"));
    if (seq_len != static_cast<uint64_t>(seq_len_)) {
      return absl::FailedPreconditionError(
          absl::StrCat("data cursor was taken with seq_len ", seq_len,
                       "; this dataset has ", seq_len_));
    }
  }
  LEMO_ASSIGN_OR_RETURN(uint64_t epoch, CursorField(cursor, "epoch"));
  LEMO_ASSIGN_OR_RETURN(uint64_t index, CursorField(cursor, "index"));
  LEMO_ASSIGN_OR_RETURN(uint64_t seed, CursorField(cursor, "seed"));
  if (index > num_samples) {
    return absl::InvalidArgumentError(absl::StrCat("data cursor index ", index,
                                                   " is past the epoch's ",
                                                   num_samples, " samples"));
  }
  if (epoch > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return absl::InvalidArgumentError(
        absl::StrCat("data cursor epoch ", epoch, " is too large"));
  }
  // The cursor's seed wins: resuming must replay the run's own order, whatever
  // the new flags say.
  seed_ = seed;
  epoch_ = static_cast<int64_t>(epoch);
  index_ = static_cast<int64_t>(index);
  order_ = EpochOrder(seed_, epoch_, num_samples_);
  return absl::OkStatus();
}

}  // namespace lemo::engine
