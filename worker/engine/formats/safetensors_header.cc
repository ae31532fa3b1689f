#include "worker/engine/formats/safetensors_header.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace lemo::engine {
namespace {

using Json = nlohmann::json;

// The Rust reference implementation refuses headers above 100 MB; a larger one
// is corruption (or an attempt to make us allocate), never a real checkpoint.
constexpr uint64_t kMaxHeaderBytes = 100u << 20;

struct DTypeInfo {
  DType dtype;
  const char* name;
  uint64_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::kBF16, "BF16", 2}, {DType::kF16, "F16", 2}, {DType::kF32, "F32", 4},
    {DType::kF64, "F64", 8},   {DType::kI64, "I64", 8}, {DType::kI32, "I32", 4},
    {DType::kI16, "I16", 2},   {DType::kI8, "I8", 1},   {DType::kU8, "U8", 1},
    {DType::kBool, "BOOL", 1},
};

const DTypeInfo& Info(DType dtype) {
  for (const DTypeInfo& info : kDTypes) {
    if (info.dtype == dtype) return info;
  }
  return kDTypes[0];  // unreachable: every enumerator is listed
}

absl::Status Bad(absl::string_view file, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("safetensors file ", file, ": ", what));
}
absl::Status BadTensor(absl::string_view file, absl::string_view tensor,
                       absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(
      "safetensors file ", file, ": tensor '", tensor, "': ", what));
}

// A JSON integer that fits int64 and is >= 0, or nullopt-like failure via `ok`.
bool NonNegativeInt(const Json& j, uint64_t* out) {
  if (j.is_number_unsigned()) {
    *out = j.get<uint64_t>();
    return *out <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  }
  if (j.is_number_integer() && j.get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(j.get<int64_t>());
    return true;
  }
  return false;
}

absl::StatusOr<TensorEntry> ParseEntry(absl::string_view file,
                                       const std::string& name, const Json& j) {
  if (!j.is_object())
    return BadTensor(file, name, "entry is not a JSON object");
  TensorEntry entry;
  entry.name = name;
  auto dtype_it = j.find("dtype");
  if (dtype_it == j.end() || !dtype_it->is_string()) {
    return BadTensor(file, name, "missing string field 'dtype'");
  }
  absl::StatusOr<DType> dtype =
      DTypeFromName(dtype_it->get_ref<const std::string&>());
  if (!dtype.ok()) return BadTensor(file, name, dtype.status().message());
  entry.dtype = *dtype;

  auto shape_it = j.find("shape");
  if (shape_it == j.end() || !shape_it->is_array()) {
    return BadTensor(file, name, "missing array field 'shape'");
  }
  uint64_t numel = 1;
  for (const Json& dim : *shape_it) {
    uint64_t d = 0;
    if (!NonNegativeInt(dim, &d)) {
      return BadTensor(file, name,
                       absl::StrCat("shape has a negative or non-integer dim ",
                                    dim.dump(), " in ", shape_it->dump()));
    }
    if (d != 0 && numel > std::numeric_limits<uint64_t>::max() / 8 / d) {
      return BadTensor(
          file, name,
          absl::StrCat("shape ", shape_it->dump(), " is too large"));
    }
    numel *= d;
    entry.shape.push_back(static_cast<int64_t>(d));
  }

  auto off_it = j.find("data_offsets");
  if (off_it == j.end() || !off_it->is_array() || off_it->size() != 2 ||
      !NonNegativeInt((*off_it)[0], &entry.begin) ||
      !NonNegativeInt((*off_it)[1], &entry.end)) {
    return BadTensor(
        file, name,
        "'data_offsets' must be [begin, end] with non-negative integers");
  }
  if (entry.end < entry.begin) {
    return BadTensor(file, name,
                     absl::StrCat("data_offsets [", entry.begin, ", ",
                                  entry.end, "] end before begin"));
  }
  const uint64_t elem = DTypeSize(entry.dtype);
  if (numel * elem != entry.end - entry.begin) {
    return BadTensor(
        file, name,
        absl::StrCat("shape ", shape_it->dump(), " x ", DTypeName(entry.dtype),
                     " is ", numel * elem, " bytes but data_offsets span ",
                     entry.end - entry.begin));
  }
  if (entry.begin % elem != 0) {
    return BadTensor(
        file, name,
        absl::StrCat("offset ", entry.begin, " is not aligned to the ", elem,
                     "-byte element size"));
  }
  return entry;
}

absl::Status ParseMetadata(absl::string_view file, const Json& j,
                           std::map<std::string, std::string>* out) {
  if (j.is_null()) return absl::OkStatus();
  if (!j.is_object()) return Bad(file, "'__metadata__' is not a JSON object");
  for (const auto& [key, value] : j.items()) {
    if (!value.is_string()) {
      return Bad(file, absl::StrCat("'__metadata__' value for '", key,
                                    "' is not a string"));
    }
    (*out)[key] = value.get<std::string>();
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view DTypeName(DType dtype) { return Info(dtype).name; }

uint64_t DTypeSize(DType dtype) { return Info(dtype).size; }

absl::StatusOr<DType> DTypeFromName(absl::string_view name) {
  for (const DTypeInfo& info : kDTypes) {
    if (name == info.name) return info.dtype;
  }
  std::vector<std::string> known;
  for (const DTypeInfo& info : kDTypes) known.push_back(info.name);
  return absl::InvalidArgumentError(
      absl::StrCat("unknown dtype '", name,
                   "' (supported: ", absl::StrJoin(known, ", "), ")"));
}

int64_t TensorEntry::NumElements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

const TensorEntry* SafetensorsHeader::Find(absl::string_view name) const {
  for (const TensorEntry& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(
    absl::string_view file_bytes, absl::string_view file_name) {
  if (file_bytes.size() < 8) {
    return Bad(file_name,
               absl::StrCat("file is ", file_bytes.size(),
                            " bytes, shorter than the 8-byte header length"));
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) {
    header_len = (header_len << 8) | static_cast<unsigned char>(file_bytes[i]);
  }
  if (header_len > kMaxHeaderBytes) {
    return Bad(file_name,
               absl::StrCat("header length ", header_len, " exceeds the ",
                            kMaxHeaderBytes, "-byte limit"));
  }
  if (header_len > file_bytes.size() - 8) {
    return Bad(file_name, absl::StrCat("header length ", header_len,
                                       " runs past the end of the ",
                                       file_bytes.size(), "-byte file"));
  }
  SafetensorsHeader header;
  header.data_offset = 8 + header_len;
  const uint64_t data_size = file_bytes.size() - header.data_offset;

  // nlohmann keeps the last of duplicate keys silently; a duplicated tensor
  // name means two writers disagreed, so catch it while parsing.
  std::set<std::string> seen;
  std::string duplicate;
  auto on_event = [&](int depth, Json::parse_event_t event, Json& parsed) {
    if (depth == 1 && event == Json::parse_event_t::key && parsed.is_string()) {
      if (!seen.insert(parsed.get<std::string>()).second)
        duplicate = parsed.get<std::string>();
    }
    return true;
  };
  const absl::string_view text = file_bytes.substr(8, header_len);
  Json root = Json::parse(text.begin(), text.end(), on_event,
                          /*allow_exceptions=*/false);
  if (root.is_discarded()) return Bad(file_name, "header is not valid JSON");
  if (!root.is_object()) return Bad(file_name, "header is not a JSON object");
  if (!duplicate.empty())
    return BadTensor(file_name, duplicate, "name appears twice");

  for (const auto& [name, value] : root.items()) {
    if (name == "__metadata__") {
      if (absl::Status s = ParseMetadata(file_name, value, &header.metadata);
          !s.ok())
        return s;
      continue;
    }
    absl::StatusOr<TensorEntry> entry = ParseEntry(file_name, name, value);
    if (!entry.ok()) return entry.status();
    if (entry->end > data_size) {
      return BadTensor(
          file_name, name,
          absl::StrCat("data_offsets [", entry->begin, ", ", entry->end,
                       "] run past the ", data_size, "-byte data section"));
    }
    header.tensors.push_back(*std::move(entry));
  }

  std::sort(header.tensors.begin(), header.tensors.end(),
            [](const TensorEntry& a, const TensorEntry& b) {
              return std::tie(a.begin, a.end, a.name) <
                     std::tie(b.begin, b.end, b.name);
            });
  for (size_t i = 1; i < header.tensors.size(); ++i) {
    const TensorEntry& prev = header.tensors[i - 1];
    const TensorEntry& cur = header.tensors[i];
    if (cur.begin < prev.end) {
      return BadTensor(file_name, cur.name,
                       absl::StrCat("data_offsets [", cur.begin, ", ", cur.end,
                                    "] overlap tensor '", prev.name, "' [",
                                    prev.begin, ", ", prev.end, "]"));
    }
  }
  return header;
}

std::vector<TensorEntry> PlanSafetensorsLayout(
    std::vector<TensorEntry> entries) {
  std::stable_sort(entries.begin(), entries.end(),
                   [](const TensorEntry& a, const TensorEntry& b) {
                     const uint64_t sa = DTypeSize(a.dtype),
                                    sb = DTypeSize(b.dtype);
                     return sa != sb ? sa > sb : a.name < b.name;
                   });
  uint64_t offset = 0;
  for (TensorEntry& e : entries) {
    e.begin = offset;
    e.end = offset + e.NumBytes();
    offset = e.end;
  }
  return entries;
}

std::string EncodeSafetensorsHeader(
    const std::vector<TensorEntry>& tensors,
    const std::map<std::string, std::string>& metadata) {
  Json root = Json::object();
  if (!metadata.empty()) root["__metadata__"] = metadata;
  for (const TensorEntry& t : tensors) {
    root[t.name] = {{"dtype", std::string(DTypeName(t.dtype))},
                    {"shape", t.shape},
                    {"data_offsets", {t.begin, t.end}}};
  }
  // Names come from our own code; `replace` keeps a stray invalid UTF-8 byte
  // from throwing.
  std::string json = root.dump(-1, ' ', false, Json::error_handler_t::replace);
  json.append((8 - json.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + json;
}

}  // namespace lemo::engine
