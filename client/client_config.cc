#include "client/client_config.h"

#include <cstdlib>
#include <filesystem>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/atomic_file.h"
#include "common/status_macros.h"
#include "yaml-cpp/yaml.h"

namespace lemo::client {
namespace {

namespace fs = std::filesystem;

// A config file holds a few contexts; anything bigger is not one.
constexpr uintmax_t kMaxConfigBytes = 1 << 20;

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

absl::Status Bad(const std::string& file, const YAML::Node& node,
                 const std::string& key, const std::string& what) {
  const YAML::Mark mark = node.Mark();
  std::string where = file;
  if (!mark.is_null()) {
    absl::StrAppend(&where, ":", mark.line + 1, ":", mark.column + 1);
  }
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", key, ": ", what));
}

absl::StatusOr<std::string> String(const std::string& file,
                                   const YAML::Node& node,
                                   const std::string& key) {
  if (!node.IsScalar()) return Bad(file, node, key, "expected a string");
  return node.Scalar();
}

// "~/x" is under $HOME; a relative path is relative to the config's directory
// (as kubeconfig's are), so the file means the same from any working
// directory.
std::string ResolvePath(const std::string& config_path,
                        const std::string& value) {
  if (value.empty()) return value;
  if (absl::StartsWith(value, "~/") && !Env("HOME").empty()) {
    return absl::StrCat(Env("HOME"), value.substr(1));
  }
  fs::path p(value);
  if (p.is_absolute()) return value;
  return (fs::absolute(config_path).parent_path() / p).lexically_normal();
}

absl::StatusOr<NamedContext> ParseContext(const std::string& file,
                                          const YAML::Node& node,
                                          const std::string& key) {
  if (!node.IsMap()) return Bad(file, node, key, "expected a mapping");
  NamedContext c;
  for (const auto& entry : node) {
    const std::string name = entry.first.Scalar();
    const std::string field = absl::StrCat(key, ".", name);
    const YAML::Node& value = entry.second;
    if (name == "name") {
      LEMO_ASSIGN_OR_RETURN(c.name, String(file, value, field));
    } else if (name == "server") {
      LEMO_ASSIGN_OR_RETURN(c.server, String(file, value, field));
    } else if (name == "ca_file") {
      LEMO_ASSIGN_OR_RETURN(c.ca_file, String(file, value, field));
      c.ca_file = ResolvePath(file, c.ca_file);
    } else if (name == "token_file") {
      LEMO_ASSIGN_OR_RETURN(c.token_file, String(file, value, field));
      c.token_file = ResolvePath(file, c.token_file);
    } else if (name == "tls") {
      bool tls;
      if (!value.IsScalar() || !YAML::convert<bool>::decode(value, tls)) {
        return Bad(file, value, field, "expected true or false");
      }
      c.tls = tls;
    } else if (name == "token") {
      return Bad(file, entry.first, field,
                 "tokens are never stored in the config; put the token in a "
                 "file and name it with token_file");
    } else {
      return Bad(file, entry.first, field,
                 "unknown key (name, server, ca_file, token_file, tls)");
    }
  }
  if (c.name.empty()) return Bad(file, node, key + ".name", "is required");
  return c;
}

}  // namespace

const NamedContext* ClientConfig::Find(const std::string& name) const {
  for (const NamedContext& c : contexts) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

std::string DefaultClientConfigPath() {
  if (!Env("LEMOCONFIG").empty()) return Env("LEMOCONFIG");
  if (Env("HOME").empty()) return "";
  return absl::StrCat(Env("HOME"), "/.config/lemo/config.yaml");
}

absl::StatusOr<ClientConfig> LoadClientConfig(const std::string& path) {
  ClientConfig config;
  config.path = path;
  std::error_code ec;
  if (path.empty() || !fs::exists(path, ec)) return config;
  if (!fs::is_regular_file(path, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a regular file"));
  }
  if (fs::file_size(path, ec) > kMaxConfigBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": larger than 1 MiB"));
  }
  LEMO_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ":", e.mark.line + 1, ":", e.mark.column + 1, ": ", e.msg));
  }
  if (root.IsNull()) return config;  // An empty file.
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path,
                     ": expected a mapping with current-context and "
                     "contexts"));
  }
  std::set<std::string> names;
  for (const auto& entry : root) {
    const std::string key = entry.first.Scalar();
    const YAML::Node& value = entry.second;
    if (key == "current-context") {
      if (value.IsNull()) continue;
      LEMO_ASSIGN_OR_RETURN(config.current_context, String(path, value, key));
    } else if (key == "contexts") {
      if (value.IsNull()) continue;
      if (!value.IsSequence()) {
        return Bad(path, value, key, "expected a list of contexts");
      }
      for (size_t i = 0; i < value.size(); ++i) {
        const std::string item = absl::StrCat("contexts[", i, "]");
        LEMO_ASSIGN_OR_RETURN(NamedContext c,
                              ParseContext(path, value[i], item));
        if (!names.insert(c.name).second) {
          return Bad(path, value[i], item + ".name",
                     absl::StrCat("\"", c.name, "\" is defined twice"));
        }
        config.contexts.push_back(std::move(c));
      }
    } else {
      return Bad(path, entry.first, key,
                 "unknown key (current-context, contexts)");
    }
  }
  return config;
}

absl::Status SaveClientConfig(const ClientConfig& config) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "current-context" << YAML::Value
      << config.current_context;
  out << YAML::Key << "contexts" << YAML::Value << YAML::BeginSeq;
  for (const NamedContext& c : config.contexts) {
    out << YAML::BeginMap << YAML::Key << "name" << YAML::Value << c.name;
    if (!c.server.empty())
      out << YAML::Key << "server" << YAML::Value << c.server;
    if (!c.ca_file.empty()) {
      out << YAML::Key << "ca_file" << YAML::Value << c.ca_file;
    }
    if (!c.token_file.empty()) {
      out << YAML::Key << "token_file" << YAML::Value << c.token_file;
    }
    if (c.tls.has_value()) out << YAML::Key << "tls" << YAML::Value << *c.tls;
    out << YAML::EndMap;
  }
  out << YAML::EndSeq << YAML::EndMap;
  std::error_code ec;
  const fs::path parent = fs::absolute(config.path).parent_path();
  fs::create_directories(parent, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("creating ", parent.string(), ": ", ec.message()));
  }
  return WriteFileAtomically(config.path, absl::StrCat(out.c_str(), "\n"));
}

}  // namespace lemo::client
