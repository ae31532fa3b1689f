// config: lemoctl's contexts (client/client_config.h), like `kubectl config`.
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/client_config.h"
#include "client/lemoctl/commands.h"
#include "client/lemoctl/exit_codes.h"
#include "client/table.h"
#include "client/yaml_json.h"
#include "nlohmann/json.hpp"

namespace lemo::client {
namespace {

std::string ConfigPath(const std::string& path) {
  return path.empty() ? DefaultClientConfigPath() : path;
}

std::string TlsName(const NamedContext& c) {
  if (!c.tls.has_value()) return "auto";
  return *c.tls ? "true" : "false";
}

}  // namespace

int RunConfigGetContexts(const Context& ctx, const std::string& config_path,
                         bool names_only) {
  auto config = LoadClientConfig(ConfigPath(config_path));
  if (!config.ok()) return Fail(ctx, config.status());
  if (names_only) {
    for (const NamedContext& c : config->contexts) {
      std::fprintf(ctx.out, "%s\n", c.name.c_str());
    }
    return kExitOk;
  }
  if (ctx.format == OutputFormat::kTable) {
    Table t({"CURRENT", "NAME", "SERVER", "TLS", "CA-FILE", "TOKEN-FILE"});
    for (const NamedContext& c : config->contexts) {
      t.AddRow({c.name == config->current_context ? "*" : "", c.name, c.server,
                TlsName(c), c.ca_file, c.token_file});
    }
    std::fputs(t.Render().c_str(), ctx.out);
    return kExitOk;
  }
  nlohmann::json doc = {{"currentContext", config->current_context},
                        {"contexts", nlohmann::json::array()}};
  for (const NamedContext& c : config->contexts) {
    nlohmann::json entry = {{"name", c.name},
                            {"server", c.server},
                            {"caFile", c.ca_file},
                            {"tokenFile", c.token_file}};
    entry["tls"] = c.tls.has_value() ? nlohmann::json(*c.tls) : nullptr;
    doc["contexts"].push_back(entry);
  }
  std::fputs(ctx.format == OutputFormat::kJson ? (doc.dump(2) + "\n").c_str()
                                               : JsonToYaml(doc).c_str(),
             ctx.out);
  return kExitOk;
}

int RunConfigCurrentContext(const Context& ctx,
                            const std::string& config_path) {
  const std::string path = ConfigPath(config_path);
  auto config = LoadClientConfig(path);
  if (!config.ok()) return Fail(ctx, config.status());
  if (config->current_context.empty()) {
    return Fail(ctx, absl::NotFoundError(
                         absl::StrCat("current-context is not set in ", path)));
  }
  std::fprintf(ctx.out, "%s\n", config->current_context.c_str());
  return kExitOk;
}

int RunConfigUseContext(const Context& ctx, const std::string& config_path,
                        const std::string& name) {
  const std::string path = ConfigPath(config_path);
  auto config = LoadClientConfig(path);
  if (!config.ok()) return Fail(ctx, config.status());
  if (config->Find(name) == nullptr) {
    return Fail(ctx, absl::NotFoundError(absl::StrCat(
                         "no context named \"", name, "\" in ", path,
                         " (add one with `lemoctl config set-context ", name,
                         " --server HOST:PORT`)")));
  }
  config->current_context = name;
  if (absl::Status s = SaveClientConfig(*config); !s.ok()) return Fail(ctx, s);
  std::fprintf(ctx.out, "Switched to context \"%s\".\n", name.c_str());
  return kExitOk;
}

int RunConfigSetContext(const Context& ctx, const std::string& config_path,
                        const std::string& name, const SetContextFlags& flags) {
  const std::string path = ConfigPath(config_path);
  if (path.empty()) {
    return Fail(ctx, absl::InvalidArgumentError(
                         "no config file: set $LEMOCONFIG or $HOME"));
  }
  auto config = LoadClientConfig(path);
  if (!config.ok()) return Fail(ctx, config.status());
  NamedContext* c = nullptr;
  for (NamedContext& existing : config->contexts) {
    if (existing.name == name) c = &existing;
  }
  const bool created = c == nullptr;
  if (created) {
    config->contexts.push_back(NamedContext{});
    c = &config->contexts.back();
    c->name = name;
  }
  // Paths as typed are relative to the working directory; the file stores
  // them absolute so that they mean the same from anywhere.
  auto absolute = [](const std::string& p) {
    return std::filesystem::absolute(p).lexically_normal().string();
  };
  if (!flags.server.empty()) c->server = flags.server;
  if (!flags.ca_file.empty()) c->ca_file = absolute(flags.ca_file);
  if (!flags.token_file.empty()) c->token_file = absolute(flags.token_file);
  if (flags.tls == "true") c->tls = true;
  if (flags.tls == "false") c->tls = false;
  if (flags.tls == "auto") c->tls.reset();
  if (absl::Status s = SaveClientConfig(*config); !s.ok()) return Fail(ctx, s);
  std::fprintf(ctx.out, "Context \"%s\" %s in %s.\n", name.c_str(),
               created ? "created" : "modified", path.c_str());
  return kExitOk;
}

}  // namespace lemo::client
