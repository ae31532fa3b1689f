#include "worker/engine/data/token_file.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

#include "common/status_macros.h"
#include "worker/engine/data/data_file.h"

namespace lemo::engine {
namespace {

int Width(DataFormat format) { return format == DataFormat::kU16 ? 2 : 4; }

absl::StatusOr<std::string> ReadBytes(const std::string& path) {
  LEMO_ASSIGN_OR_RETURN(std::ifstream in, OpenDataFile(path));
  std::ostringstream bytes;
  bytes << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("reading ", path));
  return bytes.str();
}

}  // namespace

absl::StatusOr<DataFormat> ParseDataFormat(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  if (lower == "auto" || lower.empty()) return DataFormat::kAuto;
  if (lower == "jsonl") return DataFormat::kJsonl;
  if (lower == "u16") return DataFormat::kU16;
  if (lower == "u32") return DataFormat::kU32;
  if (lower == "instruction") return DataFormat::kInstruction;
  if (lower == "chat") return DataFormat::kChat;
  if (lower == "tokens_jsonl") return DataFormat::kTokensJsonl;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown data format \"", name,
                   "\": use auto, jsonl, u16, u32, instruction, chat or "
                   "tokens_jsonl"));
}

absl::string_view DataFormatName(DataFormat format) {
  switch (format) {
    case DataFormat::kAuto:
      return "auto";
    case DataFormat::kJsonl:
      return "jsonl";
    case DataFormat::kU16:
      return "u16";
    case DataFormat::kU32:
      return "u32";
    case DataFormat::kInstruction:
      return "instruction";
    case DataFormat::kChat:
      return "chat";
    case DataFormat::kTokensJsonl:
      return "tokens_jsonl";
  }
  return "?";
}

bool IsExampleFormat(DataFormat format) {
  return format == DataFormat::kInstruction || format == DataFormat::kChat ||
         format == DataFormat::kTokensJsonl;
}

absl::StatusOr<DataFormat> ResolveDataFormat(const std::string& path,
                                             DataFormat requested) {
  if (requested != DataFormat::kAuto) return requested;
  const std::string lower = absl::AsciiStrToLower(path);
  if (absl::EndsWith(lower, ".jsonl")) return DataFormat::kJsonl;
  if (absl::EndsWith(lower, ".u16")) return DataFormat::kU16;
  if (absl::EndsWith(lower, ".u32")) return DataFormat::kU32;
  if (absl::EndsWith(lower, ".bin")) {
    return absl::InvalidArgumentError(
        absl::StrCat("data file ", path,
                     ": a .bin token file does not say its id width; set "
                     "format u16 or u32"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("data file ", path,
                   ": cannot tell the format from the extension (.jsonl, .u16, "
                   ".u32); set format "
                   "jsonl, u16 or u32"));
}

absl::StatusOr<std::vector<int32_t>> ReadTokenFile(const std::string& path,
                                                   DataFormat format,
                                                   int64_t vocab_size) {
  if (format != DataFormat::kU16 && format != DataFormat::kU32) {
    return absl::InvalidArgumentError(
        absl::StrCat("token file ", path, ": format ", DataFormatName(format),
                     " is not a token format (u16 or u32)"));
  }
  // Ids are held as int32 (what the tokenizers produce); no real vocabulary
  // comes near 2^31.
  if (vocab_size <= 0 || vocab_size > (int64_t{1} << 31)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "token file ", path, ": vocab_size ", vocab_size, " is out of range"));
  }
  absl::StatusOr<std::string> bytes = ReadBytes(path);
  if (!bytes.ok()) return bytes.status();
  const int width = Width(format);
  if (bytes->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("token file ", path, " is empty"));
  }
  if (bytes->size() % width != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "token file ", path, ": size ", bytes->size(),
        " bytes is not a multiple of ", width, " (format ",
        DataFormatName(format), "); wrong format, or a truncated file?"));
  }
  const size_t n = bytes->size() / width;
  const auto* p = reinterpret_cast<const unsigned char*>(bytes->data());
  std::vector<int32_t> ids(n);
  for (size_t i = 0; i < n; ++i) {
    // Assembled byte by byte, so the file reads the same on any host byte
    // order.
    uint64_t v = 0;
    for (int b = width - 1; b >= 0; --b) v = (v << 8) | p[i * width + b];
    if (static_cast<int64_t>(v) >= vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("token file ", path, ": token ", i, " has id ", v,
                       ", outside the vocabulary [0, ", vocab_size, ")"));
    }
    ids[i] = static_cast<int32_t>(v);
  }
  return ids;
}

absl::Status WriteTokenFile(const std::string& path,
                            absl::Span<const int32_t> ids, DataFormat format) {
  if (format != DataFormat::kU16 && format != DataFormat::kU32) {
    return absl::InvalidArgumentError(
        absl::StrCat("token file ", path, ": format ", DataFormatName(format),
                     " is not a token format (u16 or u32)"));
  }
  const int width = Width(format);
  const int64_t limit =
      format == DataFormat::kU16 ? (int64_t{1} << 16) : (int64_t{1} << 32);
  std::string bytes(ids.size() * width, '\0');
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= limit) {
      return absl::InvalidArgumentError(
          absl::StrCat("token file ", path, ": id ", ids[i], " at ", i,
                       " does not fit ", DataFormatName(format)));
    }
    uint64_t v = static_cast<uint64_t>(ids[i]);
    for (int b = 0; b < width; ++b, v >>= 8)
      bytes[i * width + b] = static_cast<char>(v & 0xff);
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out)
    return absl::InternalError(absl::StrCat("writing token file ", path));
  return absl::OkStatus();
}

}  // namespace lemo::engine
