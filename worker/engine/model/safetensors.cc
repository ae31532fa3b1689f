#include "worker/engine/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "worker/engine/runtime/torch_status.h"

namespace lemo::engine {

struct SafetensorsFile::Mapping {
  void* addr = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (addr != nullptr) ::munmap(addr, size);
  }
};

namespace {

struct DTypePair {
  DType dtype;
  torch::ScalarType torch;
};
constexpr DTypePair kPairs[] = {
    {DType::kBF16, torch::kBFloat16}, {DType::kF16, torch::kFloat16},
    {DType::kF32, torch::kFloat32},   {DType::kF64, torch::kFloat64},
    {DType::kI64, torch::kInt64},     {DType::kI32, torch::kInt32},
    {DType::kI16, torch::kInt16},     {DType::kI8, torch::kInt8},
    {DType::kU8, torch::kUInt8},      {DType::kBool, torch::kBool},
};

bool IsFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

absl::StatusOr<DType> DTypeFromTorch(torch::ScalarType type) {
  for (const DTypePair& p : kPairs) {
    if (p.torch == type) return p.dtype;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("dtype ", c10::toString(type), " has no safetensors code"));
}

torch::ScalarType TorchFromDType(DType dtype) {
  for (const DTypePair& p : kPairs) {
    if (p.dtype == dtype) return p.torch;
  }
  return torch::kFloat32;  // unreachable: every DType is listed
}

// ---------------------------------------------------------------- reading

SafetensorsFile::SafetensorsFile(std::string path,
                                 std::shared_ptr<Mapping> mapping,
                                 SafetensorsHeader header)
    : path_(std::move(path)),
      mapping_(std::move(mapping)),
      header_(std::move(header)) {
  for (size_t i = 0; i < header_.tensors.size(); ++i) {
    index_[header_.tensors[i].name] = i;
  }
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(
    const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("opening", path);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    absl::Status s = ErrnoStatus("stat of", path);
    ::close(fd);
    return s;
  }
  auto mapping = std::make_shared<Mapping>();
  if (st.st_size > 0) {
    // Private + writable: copy-on-write pages, so callers may modify tensors
    // in place without a SIGSEGV and without touching the file.
    void* addr = ::mmap(nullptr, static_cast<size_t>(st.st_size),
                        PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    // Under strict overcommit (vm.overcommit_memory=2) a writable private
    // mapping is charged in full; fall back to read-only pages.
    if (addr == MAP_FAILED && errno == ENOMEM) {
      addr = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ,
                    MAP_PRIVATE, fd, 0);
    }
    if (addr == MAP_FAILED) {
      absl::Status s = ErrnoStatus("mmap of", path);
      ::close(fd);
      return s;
    }
    mapping->addr = addr;
    mapping->size = static_cast<size_t>(st.st_size);
  }
  ::close(fd);  // the mapping outlives the descriptor
  absl::string_view bytes(static_cast<const char*>(mapping->addr),
                          mapping->size);
  LEMO_ASSIGN_OR_RETURN(SafetensorsHeader header,
                        ParseSafetensorsHeader(bytes, path));
  return std::unique_ptr<SafetensorsFile>(
      new SafetensorsFile(path, std::move(mapping), std::move(header)));
}

bool SafetensorsFile::Has(absl::string_view name) const {
  return index_.find(name) != index_.end();
}

absl::StatusOr<torch::Tensor> SafetensorsFile::Tensor(
    absl::string_view name) const {
  auto it = index_.find(name);
  if (it == index_.end()) {
    return absl::NotFoundError(
        absl::StrCat("tensor '", name, "' not in ", path_));
  }
  const TensorEntry& e = header_.tensors[it->second];
  const auto options = torch::TensorOptions().dtype(TorchFromDType(e.dtype));
  char* data =
      static_cast<char*>(mapping_->addr) + header_.data_offset + e.begin;
  return CallTorch(absl::StrCat("tensor '", name, "' of ", path_), [&] {
    if (e.NumElements() == 0) return torch::empty(e.shape, options);
    // Offsets are aligned within the data section (the parser checks), but a
    // foreign writer may leave the data section itself unaligned.
    if (reinterpret_cast<uintptr_t>(data) % DTypeSize(e.dtype) != 0) {
      torch::Tensor copy = torch::empty(e.shape, options);
      std::memcpy(copy.data_ptr(), data, e.end - e.begin);
      return copy;
    }
    std::shared_ptr<Mapping> keep = mapping_;
    return torch::from_blob(
        data, e.shape, [keep](void*) mutable { keep.reset(); }, options);
  });
}

absl::StatusOr<std::unique_ptr<ModelWeights>> ModelWeights::Open(
    const std::string& model_dir) {
  std::unique_ptr<ModelWeights> w(new ModelWeights(model_dir));
  const std::string single = model_dir + "/model.safetensors";
  const std::string index_path = model_dir + "/model.safetensors.index.json";
  if (!IsFile(index_path)) {
    if (!IsFile(single)) {
      return absl::NotFoundError(
          absl::StrCat("no model.safetensors or model.safetensors.index.json "
                       "in ",
                       model_dir));
    }
    LEMO_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(single));
    for (const TensorEntry& t : file->header().tensors) w->where_[t.name] = 0;
    w->files_.push_back(std::move(file));
    return w;
  }

  LEMO_ASSIGN_OR_RETURN(std::string text, ReadFileToString(index_path));
  using Json = nlohmann::json;
  Json index = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  auto bad_index = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": ", what));
  };
  if (!index.is_object()) return bad_index("not a JSON object");
  auto map_it = index.find("weight_map");
  if (map_it == index.end() || !map_it->is_object()) {
    return bad_index("missing object 'weight_map'");
  }
  std::map<std::string, size_t> shard_ids;
  for (const auto& [tensor, shard_json] : map_it->items()) {
    if (!shard_json.is_string()) {
      return bad_index(absl::StrCat("shard of '", tensor, "' is not a string"));
    }
    const std::string shard = shard_json.get<std::string>();
    // Only plain file names: an index must not point outside the model dir.
    if (shard.empty() || shard.find('/') != std::string::npos || shard == "." ||
        shard == "..") {
      return bad_index(absl::StrCat("shard '", shard, "' of '", tensor,
                                    "' is not a file name"));
    }
    auto [sit, inserted] = shard_ids.emplace(shard, w->files_.size());
    if (inserted) {
      const std::string path = model_dir + "/" + shard;
      if (!IsFile(path)) {
        return absl::NotFoundError(absl::StrCat("shard ", path, " (listed in ",
                                                index_path, " for tensor '",
                                                tensor, "') is missing"));
      }
      LEMO_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(path));
      w->files_.push_back(std::move(file));
    }
    if (!w->files_[sit->second]->Has(tensor)) {
      return absl::NotFoundError(absl::StrCat("tensor '", tensor,
                                              "' listed in ", index_path,
                                              " is missing from ", shard));
    }
    w->where_[tensor] = sit->second;
  }
  // A tensor the index does not list would be silently ignored by the loader,
  // which hides a half-written or mixed-up checkpoint.
  for (const auto& file : w->files_) {
    for (const TensorEntry& t : file->header().tensors) {
      auto it = w->where_.find(t.name);
      if (it == w->where_.end() || w->files_[it->second] != file) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor '", t.name, "' in ", file->path(),
                         " is missing from the index ", index_path));
      }
    }
  }
  return w;
}

bool ModelWeights::Has(absl::string_view name) const {
  return where_.find(name) != where_.end();
}

absl::StatusOr<torch::Tensor> ModelWeights::Get(absl::string_view name) const {
  auto it = where_.find(name);
  if (it == where_.end()) {
    return absl::NotFoundError(
        absl::StrCat("tensor '", name, "' is not in the model at ", dir_));
  }
  return files_[it->second]->Tensor(name);
}

std::vector<std::string> ModelWeights::Names() const {
  std::vector<std::string> names;
  for (const auto& [name, file] : where_) names.push_back(name);
  return names;
}

// ---------------------------------------------------------------- writing

absl::StatusOr<std::unique_ptr<SafetensorsWriter>> SafetensorsWriter::Create(
    const std::string& path, std::vector<TensorEntry> tensors,
    const std::map<std::string, std::string>& metadata) {
  std::set<std::string> names;
  for (const TensorEntry& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__") {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": invalid tensor name '", t.name, "'"));
    }
    if (!names.insert(t.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor '", t.name, "' given twice"));
    }
    for (int64_t d : t.shape) {
      if (d < 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": tensor '", t.name, "' has a negative dimension"));
      }
    }
  }
  std::unique_ptr<SafetensorsWriter> w(new SafetensorsWriter());
  w->path_ = path;
  w->layout_ = PlanSafetensorsLayout(std::move(tensors));
  LEMO_ASSIGN_OR_RETURN(w->file_, AtomicFileWriter::Create(path));
  LEMO_RETURN_IF_ERROR(
      w->file_->Append(EncodeSafetensorsHeader(w->layout_, metadata)));
  LEMO_RETURN_IF_ERROR(w->SkipEmpty());
  return w;
}

absl::Status SafetensorsWriter::SkipEmpty() {
  while (current_ < layout_.size() &&
         current_bytes_ == layout_[current_].NumBytes()) {
    ++current_;
    current_bytes_ = 0;
  }
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Append(const torch::Tensor& piece) {
  if (current_ >= layout_.size()) {
    return absl::FailedPreconditionError(
        absl::StrCat(path_, ": every tensor is already complete"));
  }
  const TensorEntry& e = layout_[current_];
  LEMO_ASSIGN_OR_RETURN(DType dtype, DTypeFromTorch(piece.scalar_type()),
                        absl::StrCat(path_, ": tensor '", e.name, "'"));
  if (dtype != e.dtype) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": tensor '", e.name, "' is declared ",
                     DTypeName(e.dtype), " but got ", DTypeName(dtype)));
  }
  LEMO_ASSIGN_OR_RETURN(torch::Tensor cpu, CallTorch("copying to CPU", [&] {
                          return piece.cpu().contiguous();
                        }));
  const uint64_t n = cpu.numel() * cpu.element_size();
  if (current_bytes_ + n > e.NumBytes()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": tensor '", e.name, "' gets ", current_bytes_ + n,
                     " bytes, more than its ", e.NumBytes()));
  }
  LEMO_RETURN_IF_ERROR(file_->Append(absl::string_view(
      static_cast<const char*>(cpu.data_ptr()), static_cast<size_t>(n))));
  current_bytes_ += n;
  return SkipEmpty();
}

absl::Status SafetensorsWriter::Commit() {
  if (current_ < layout_.size()) {
    return absl::FailedPreconditionError(absl::StrCat(
        path_, ": tensor '", layout_[current_].name, "' is incomplete (",
        current_bytes_, " of ", layout_[current_].NumBytes(), " bytes)"));
  }
  return file_->Commit();
}

absl::Status WriteSafetensors(
    const std::string& path, const NamedTensors& tensors,
    const std::map<std::string, std::string>& metadata) {
  std::vector<TensorEntry> entries;
  std::map<std::string, const torch::Tensor*> by_name;
  for (const auto& [name, tensor] : tensors) {
    if (!tensor.defined()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor '", name, "' is undefined"));
    }
    LEMO_ASSIGN_OR_RETURN(DType dtype, DTypeFromTorch(tensor.scalar_type()),
                          absl::StrCat(path, ": tensor '", name, "'"));
    entries.push_back({name, dtype, tensor.sizes().vec()});
    by_name[name] = &tensor;
  }
  LEMO_ASSIGN_OR_RETURN(auto writer,
                        SafetensorsWriter::Create(path, entries, metadata));
  for (const TensorEntry& e : writer->layout()) {
    if (e.NumElements() == 0) continue;
    LEMO_RETURN_IF_ERROR(writer->Append(by_name.at(e.name)->detach()));
  }
  return writer->Commit();
}

absl::StatusOr<NamedTensors> ReadSafetensors(const std::string& path) {
  LEMO_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(path));
  NamedTensors out;
  for (const TensorEntry& e : file->header().tensors) {
    LEMO_ASSIGN_OR_RETURN(torch::Tensor view, file->Tensor(e.name));
    LEMO_ASSIGN_OR_RETURN(torch::Tensor copy,
                          CallTorch("copying", [&] { return view.clone(); }));
    out.emplace_back(e.name, std::move(copy));
  }
  return out;
}

}  // namespace lemo::engine
