#include "client/spec_loader.h"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/proto_json_check.h"
#include "client/yaml_json.h"
#include "google/protobuf/util/json_util.h"

namespace lemo::client {
namespace {

// A job spec is a few KiB; anything this large is the wrong file.
constexpr size_t kMaxSpecBytes = 4 << 20;

absl::StatusOr<std::string> ReadSpecFile(const std::string& path) {
  std::string text;
  if (path == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), {});
  } else {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      return absl::NotFoundError(
          absl::StrCat(path, ": cannot open job spec: ", strerror(errno)));
    }
    std::ostringstream buf;
    buf << in.rdbuf();
    text = buf.str();
  }
  if (text.size() > kMaxSpecBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": job spec larger than ", kMaxSpecBytes, " bytes"));
  }
  return text;
}

// YAML and JSON are Unicode text, and protobuf's JSON mapping (through
// nlohmann::json::dump, which throws on it) takes UTF-8 only: a stray byte,
// e.g. from a Latin-1 editor, is refused here with its position rather than
// deep inside the conversion.
absl::Status CheckUtf8(absl::string_view text, absl::string_view source) {
  int line = 1;
  int column = 1;
  size_t i = 0;
  while (i < text.size()) {
    const auto byte = [&](size_t k) {
      return static_cast<unsigned char>(text[k]);
    };
    const unsigned char lead = byte(i);
    size_t len = 1;
    uint32_t min = 0;
    uint32_t code = lead;
    if (lead >= 0xF0 && lead <= 0xF4) {
      len = 4, min = 0x10000, code = lead & 0x07;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      len = 3, min = 0x800, code = lead & 0x0F;
    } else if (lead >= 0xC2 && lead <= 0xDF) {
      len = 2, min = 0x80, code = lead & 0x1F;
    } else if (lead >= 0x80 || lead == 0) {
      // A continuation byte without a lead, 0xC0/0xC1 or 0xF5..; or NUL,
      // which no spec holds but UTF-16/32 text does (yaml-cpp would decode
      // that, and turn code points past U+10FFFF into bytes that are not
      // UTF-8).
      len = 0;
    }
    bool ok = len != 0 && i + len <= text.size();
    for (size_t k = 1; ok && k < len; ++k) {
      ok = (byte(i + k) & 0xC0) == 0x80;
      code = (code << 6) | (byte(i + k) & 0x3F);
    }
    // Overlong forms, UTF-16 surrogates and code points past U+10FFFF.
    if (ok && len > 1) {
      ok = code >= min && code <= 0x10FFFF && (code < 0xD800 || code > 0xDFFF);
    }
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s:%d:%d: not UTF-8 text (byte 0x%02X); save the job spec as UTF-8",
          source, line, column, lead));
    }
    if (lead == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
    i += len;
  }
  return absl::OkStatus();
}

absl::StatusOr<nlohmann::json> ParseTree(absl::string_view text,
                                         SpecFormat format,
                                         absl::string_view source,
                                         SourceMarks* marks) {
  if (format == SpecFormat::kJson) {
    try {
      return nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": not valid JSON: ", e.what()));
    }
  }
  YAML::Node doc;
  try {
    doc = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ":", e.mark.line + 1, ":", e.mark.column + 1,
                     ": not valid YAML: ", e.msg));
  }
  auto json = YamlToJson(doc, marks);
  if (!json.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": ", json.status().message()));
  }
  return json;
}

}  // namespace

absl::StatusOr<v1::JobSpec> ParseJobSpec(absl::string_view text,
                                         SpecFormat format,
                                         absl::string_view source_name) {
  if (absl::Status utf8 = CheckUtf8(text, source_name); !utf8.ok()) {
    return utf8;
  }
  SourceMarks marks;
  auto tree = ParseTree(text, format, source_name, &marks);
  if (!tree.ok()) return tree.status();
  if (tree->is_null()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source_name, ": empty job spec"));
  }
  std::string bad_path;
  auto checked =
      CheckJsonForMessage(*tree, *v1::JobSpec::descriptor(), &bad_path);
  if (!checked.ok()) {
    std::string where(source_name);
    if (auto it = marks.find(bad_path); it != marks.end()) {
      absl::StrAppend(&where, ":", it->second.line, ":", it->second.column);
    }
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": ", checked.status().message()));
  }
  // The text is UTF-8 (CheckUtf8) and yaml-cpp refuses escapes of surrogates;
  // should a string still not be UTF-8, this is an error, not a throw.
  std::string json_text;
  try {
    json_text = checked->dump();
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        source_name,
        ": a string is not valid UTF-8 after its escapes: ", e.what()));
  }
  v1::JobSpec spec;
  // The check above leaves little for protobuf to reject (e.g. a malformed
  // well-known type); its message carries the field path in that case.
  auto status = google::protobuf::util::JsonStringToMessage(json_text, &spec);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source_name, ": ", status.message().ToString()));
  }
  return spec;
}

absl::StatusOr<v1::JobSpec> LoadJobSpec(const std::string& path) {
  auto text = ReadSpecFile(path);
  if (!text.ok()) return text.status();
  const SpecFormat format = absl::EndsWithIgnoreCase(path, ".json")
                                ? SpecFormat::kJson
                                : SpecFormat::kYaml;
  return ParseJobSpec(*text, format, path == "-" ? "<stdin>" : path);
}

}  // namespace lemo::client
