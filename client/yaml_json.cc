#include "client/yaml_json.h"

#include <cerrno>
#include <cstdlib>
#include <regex>

#include "absl/strings/str_cat.h"

namespace lemo::client {
namespace {

// YAML 1.2 core schema (the one JSON is a subset of), so `steps: 10` is a
// number and `tokenizer: byte` a string.
const std::regex& IntRegex() {
  static const std::regex r("[-+]?[0-9]+");
  return r;
}
const std::regex& FloatRegex() {
  static const std::regex r(
      "[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?");
  return r;
}

bool IsNullWord(const std::string& s) {
  return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

// The JSON value a plain (unquoted) YAML scalar reads as.
nlohmann::json PlainScalar(const std::string& s) {
  if (IsNullWord(s)) return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  if (std::regex_match(s, IntRegex())) {
    errno = 0;
    if (s[0] == '-') {
      long long v = std::strtoll(s.c_str(), nullptr, 10);
      if (errno == 0) return v;
    } else {
      unsigned long long v = std::strtoull(s.c_str(), nullptr, 10);
      if (errno == 0) return v;
    }
    return s;  // Out of 64-bit range: let the schema check name the field.
  }
  if (std::regex_match(s, FloatRegex())) return std::strtod(s.c_str(), nullptr);
  // protobuf's JSON mapping spells non-finite doubles as these strings.
  if (s == ".inf" || s == "+.inf" || s == ".Inf" || s == ".INF")
    return "Infinity";
  if (s == "-.inf" || s == "-.Inf" || s == "-.INF") return "-Infinity";
  if (s == ".nan" || s == ".NaN" || s == ".NAN") return "NaN";
  return s;
}

absl::StatusOr<nlohmann::json> Convert(const YAML::Node& node,
                                       const std::string& path,
                                       SourceMarks* marks) {
  if (marks != nullptr && !node.Mark().is_null()) {
    (*marks)[path] = {node.Mark().line + 1, node.Mark().column + 1};
  }
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      return nullptr;
    case YAML::NodeType::Scalar:
      // yaml-cpp tags quoted scalars "!" and plain ones "?".
      if (node.Tag() == "!") return node.Scalar();
      return PlainScalar(node.Scalar());
    case YAML::NodeType::Sequence: {
      nlohmann::json out = nlohmann::json::array();
      for (size_t i = 0; i < node.size(); ++i) {
        auto item = Convert(node[i], IndexPath(path, i), marks);
        if (!item.ok()) return item.status();
        out.push_back(*std::move(item));
      }
      return out;
    }
    case YAML::NodeType::Map: {
      nlohmann::json out = nlohmann::json::object();
      for (const auto& kv : node) {
        if (!kv.first.IsScalar()) {
          return absl::InvalidArgumentError(absl::StrCat(
              path.empty() ? "top level" : path, ": keys must be plain names"));
        }
        const std::string key = kv.first.Scalar();
        const std::string child = FieldPath(path, key);
        if (out.contains(key)) {
          return absl::InvalidArgumentError(
              absl::StrCat(child, ": duplicate key"));
        }
        auto value = Convert(kv.second, child, marks);
        if (!value.ok()) return value.status();
        out[key] = *std::move(value);
      }
      return out;
    }
  }
  return nullptr;
}

void Emit(const nlohmann::json& j, YAML::Emitter& out) {
  switch (j.type()) {
    case nlohmann::json::value_t::object:
      if (j.empty()) {
        out << YAML::Flow << YAML::BeginMap << YAML::EndMap;
        return;
      }
      out << YAML::BeginMap;
      for (const auto& [key, value] : j.items()) {
        out << YAML::Key << key << YAML::Value;
        Emit(value, out);
      }
      out << YAML::EndMap;
      return;
    case nlohmann::json::value_t::array:
      if (j.empty()) {
        out << YAML::Flow << YAML::BeginSeq << YAML::EndSeq;
        return;
      }
      out << YAML::BeginSeq;
      for (const auto& value : j) Emit(value, out);
      out << YAML::EndSeq;
      return;
    case nlohmann::json::value_t::string: {
      const std::string& s = j.get_ref<const std::string&>();
      // A string that would read back as a number, bool or null keeps its
      // quotes.
      if (!PlainScalar(s).is_string()) {
        out << YAML::DoubleQuoted << s;
      } else {
        out << s;
      }
      return;
    }
    case nlohmann::json::value_t::null:
      out << YAML::Null;
      return;
    default:  // numbers and booleans print as JSON spells them, which YAML
              // reads back.
      out << j.dump();
      return;
  }
}

}  // namespace

std::string FieldPath(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : absl::StrCat(parent, ".", key);
}

std::string IndexPath(const std::string& parent, size_t index) {
  return absl::StrCat(parent, "[", index, "]");
}

absl::StatusOr<nlohmann::json> YamlToJson(const YAML::Node& node,
                                          SourceMarks* marks) {
  return Convert(node, "", marks);
}

std::string JsonToYaml(const nlohmann::json& json) {
  YAML::Emitter out;
  Emit(json, out);
  std::string text = out.c_str();
  if (text.empty() || text.back() != '\n') text.push_back('\n');
  return text;
}

}  // namespace lemo::client
