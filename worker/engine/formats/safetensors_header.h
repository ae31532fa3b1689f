// The safetensors container header, without LibTorch: parse and validate the
// 8-byte length + JSON header of a file already in memory (usually mmapped),
// and encode one for a writer. Format:
// https://github.com/huggingface/safetensors (little-endian u64 header length,
// a JSON object {name: {dtype, shape, data_offsets: [begin, end]},
// "__metadata__": {str: str}}, then the data section; offsets are relative to
// the data section).
//
//   LEMO_ASSIGN_OR_RETURN(SafetensorsHeader header,
//                         ParseSafetensorsHeader(bytes, path));
//   for (const TensorEntry& t : header.tensors)
//     Use(bytes.substr(header.data_offset + t.begin, t.end - t.begin));
//
//   std::vector<TensorEntry> entries = {{"w", DType::kBF16, {4, 8}}};
//   std::string head = EncodeSafetensorsHeader(
//       PlanSafetensorsLayout(entries), {{"format", "pt"}});
#ifndef LEMO_WORKER_ENGINE_FORMATS_SAFETENSORS_HEADER_H_
#define LEMO_WORKER_ENGINE_FORMATS_SAFETENSORS_HEADER_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lemo::engine {

enum class DType { kBF16, kF16, kF32, kF64, kI64, kI32, kI16, kI8, kU8, kBool };

// "BF16", "F32", ... as spelled in safetensors headers.
absl::string_view DTypeName(DType dtype);
absl::StatusOr<DType> DTypeFromName(absl::string_view name);
// Bytes per element.
uint64_t DTypeSize(DType dtype);

struct TensorEntry {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin =
      0;  // byte offset of the first element, relative to the data section
  uint64_t end = 0;  // one past the last byte, relative to the data section

  int64_t NumElements() const;
  uint64_t NumBytes() const { return NumElements() * DTypeSize(dtype); }
};

struct SafetensorsHeader {
  std::vector<TensorEntry> tensors;  // sorted by begin offset (file order)
  std::map<std::string, std::string> metadata;
  uint64_t data_offset =
      0;  // absolute file offset of the data section (8 + header length)

  // nullptr when absent.
  const TensorEntry* Find(absl::string_view name) const;
};

// Validates everything a reader relies on, so later pointer arithmetic is safe:
// the length prefix, JSON shape, dtypes, shape x dtype size == end - begin,
// offsets inside the data section, no overlapping ranges, offsets aligned to
// the element size, no negative dims, no duplicate names. `file_bytes` is the
// whole file; `file_name` only labels errors.
absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(
    absl::string_view file_bytes, absl::string_view file_name);

// Orders `entries` as Python's safetensors does (largest element size first,
// then by name, so every offset is aligned) and fills in begin/end back to
// back.
std::vector<TensorEntry> PlanSafetensorsLayout(
    std::vector<TensorEntry> entries);

// The 8-byte length prefix + JSON header, padded with spaces so the data
// section starts on an 8-byte boundary (mmapped readers then get aligned
// tensors). Uses the entries' offsets as given.
std::string EncodeSafetensorsHeader(
    const std::vector<TensorEntry>& tensors,
    const std::map<std::string, std::string>& metadata);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_FORMATS_SAFETENSORS_HEADER_H_
