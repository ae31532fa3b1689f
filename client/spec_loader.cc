#include "client/spec_loader.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
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
  v1::JobSpec spec;
  // The check above leaves little for protobuf to reject (e.g. a malformed
  // well-known type); its message carries the field path in that case.
  auto status =
      google::protobuf::util::JsonStringToMessage(checked->dump(), &spec);
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
