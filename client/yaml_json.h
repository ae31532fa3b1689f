// YAML <-> JSON trees, so YAML job specs go through protobuf's JSON mapping
// (one schema) and lemoctl's `-o yaml` is the JSON output re-emitted as YAML.
//
//   YAML::Node doc = YAML::Load(text);
//   SourceMarks marks;
//   LEMO_ASSIGN_OR_RETURN(nlohmann::json json, YamlToJson(doc, &marks));
//   marks.at("lora.r")  // {line, column} of `r:`'s value, 1-based, for error
//   messages std::string yaml = JsonToYaml(json);
#ifndef LEMO_CLIENT_YAML_JSON_H_
#define LEMO_CLIENT_YAML_JSON_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "yaml-cpp/yaml.h"

namespace lemo::client {

// Where a value sits in its source file (1-based).
struct SourceMark {
  int line = 0;
  int column = 0;
};

// Keyed by value path as FieldPath builds it: "lora.targetModules[2]",
// "labels.team".
using SourceMarks = std::map<std::string, SourceMark>;

// "a" + "b" -> "a.b"; the root is "".
std::string FieldPath(const std::string& parent, const std::string& key);
std::string IndexPath(const std::string& parent, size_t index);

// Plain scalars become JSON numbers, booleans (true/false) or null (~, null,
// empty) when they read as such; quoted scalars always stay strings.
// Anchors/aliases are resolved by yaml-cpp. Keys must be scalars. Fills `marks`
// (may be null) with the position of every value.
absl::StatusOr<nlohmann::json> YamlToJson(const YAML::Node& node,
                                          SourceMarks* marks);

// Block-style YAML of a JSON tree; strings that would read back as another type
// are quoted.
std::string JsonToYaml(const nlohmann::json& json);

}  // namespace lemo::client

#endif  // LEMO_CLIENT_YAML_JSON_H_
