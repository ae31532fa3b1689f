// Safetensors in LibTorch: mmapped, zero-copy reads (single files and HF
// sharded checkpoints) and crash-safe writes, compatible with Python's
// `safetensors` package both ways.
//
//   LEMO_ASSIGN_OR_RETURN(auto weights, ModelWeights::Open(model_dir));
//   LEMO_ASSIGN_OR_RETURN(torch::Tensor w,
//                         weights->Get("model.embed_tokens.weight"));
//   // `w` views the mapping and keeps it alive after `weights` is gone.
//
//   LEMO_RETURN_IF_ERROR(WriteSafetensors(path, {{"a", a}, {"b", b}}));
#ifndef LEMO_WORKER_ENGINE_MODEL_SAFETENSORS_H_
#define LEMO_WORKER_ENGINE_MODEL_SAFETENSORS_H_

#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/atomic_file.h"
#include "worker/engine/formats/safetensors_header.h"

namespace lemo::engine {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

absl::StatusOr<DType> DTypeFromTorch(torch::ScalarType type);
torch::ScalarType TorchFromDType(DType dtype);

// One mmapped .safetensors file. The mapping is private and copy-on-write, so
// an in-place op on a returned tensor changes only this process's copy of the
// pages, never the file. (Only where the kernel refuses to commit that much
// memory, vm.overcommit_memory=2, are the pages read-only instead.)
class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(
      const std::string& path);

  const std::string& path() const { return path_; }
  const SafetensorsHeader& header() const { return header_; }
  bool Has(absl::string_view name) const;
  // A CPU tensor viewing the mapping (a copy only when the file's layout
  // leaves it misaligned for its dtype). NOT_FOUND names file and tensor.
  absl::StatusOr<torch::Tensor> Tensor(absl::string_view name) const;

 private:
  struct Mapping;
  SafetensorsFile(std::string path, std::shared_ptr<Mapping> mapping,
                  SafetensorsHeader header);
  std::string path_;
  std::shared_ptr<Mapping> mapping_;
  SafetensorsHeader header_;
  std::map<std::string, size_t, std::less<>> index_;  // name -> header_.tensors
};

// A Hugging Face model directory's weights: model.safetensors, or the shards
// listed by model.safetensors.index.json (every shard is opened and checked
// against the index up front, so a missing shard or tensor fails at Open).
class ModelWeights {
 public:
  static absl::StatusOr<std::unique_ptr<ModelWeights>> Open(
      const std::string& model_dir);

  bool Has(absl::string_view name) const;
  absl::StatusOr<torch::Tensor> Get(absl::string_view name) const;
  // Every tensor name, sorted.
  std::vector<std::string> Names() const;
  // Number of files opened (1 for an unsharded checkpoint).
  size_t num_files() const { return files_.size(); }

 private:
  explicit ModelWeights(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t, std::less<>> where_;  // name -> files_
};

// Streams a safetensors file to disk without holding it in memory: the header
// is written first from the declared names/dtypes/shapes, then each tensor's
// bytes arrive in layout() order, in as many pieces as the caller likes.
// Commit() renames it into place atomically.
class SafetensorsWriter {
 public:
  // Offsets in `tensors` are ignored; names must be unique and non-empty.
  static absl::StatusOr<std::unique_ptr<SafetensorsWriter>> Create(
      const std::string& path, std::vector<TensorEntry> tensors,
      const std::map<std::string, std::string>& metadata = {});

  // The order in which tensor bytes must be appended.
  const std::vector<TensorEntry>& layout() const { return layout_; }
  // Appends the next bytes of the current tensor: `piece` must have its
  // dtype and must not run past its end (any shape; it is flattened).
  absl::Status Append(const torch::Tensor& piece);
  // Fails unless every tensor's bytes were appended.
  absl::Status Commit();

 private:
  SafetensorsWriter() = default;
  absl::Status SkipEmpty();
  std::string path_;
  std::unique_ptr<AtomicFileWriter> file_;
  std::vector<TensorEntry> layout_;
  size_t current_ = 0;          // index into layout_
  uint64_t current_bytes_ = 0;  // bytes of layout_[current_] written so far
};

// Writes `tensors` (any device; copied to CPU) atomically to `path`.
absl::Status WriteSafetensors(
    const std::string& path, const NamedTensors& tensors,
    const std::map<std::string, std::string>& metadata = {});

// Reads every tensor of `path` as an owned copy, in file order.
absl::StatusOr<NamedTensors> ReadSafetensors(const std::string& path);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_MODEL_SAFETENSORS_H_
