#include "client/client_options.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "client/client_config.h"
#include "common/status_macros.h"

namespace lemo::client {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

absl::StatusOr<std::string> ReadToken(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return absl::NotFoundError(absl::StrCat("cannot read token file ", path));
  std::ostringstream buf;
  buf << in.rdbuf();
  // Token files usually end with a newline; the token itself has no whitespace.
  std::string token(absl::StripAsciiWhitespace(buf.str()));
  if (token.empty())
    return absl::InvalidArgumentError(
        absl::StrCat("token file ", path, " is empty"));
  return token;
}

// The context --context names, else the config's current-context, else none
// (an empty context: every field unset).
absl::StatusOr<NamedContext> SelectContext(const ClientFlags& flags) {
  const std::string path =
      flags.config_path.empty() ? DefaultClientConfigPath() : flags.config_path;
  LEMO_ASSIGN_OR_RETURN(ClientConfig config, LoadClientConfig(path));
  std::vector<std::string> names;
  for (const NamedContext& c : config.contexts) names.push_back(c.name);
  const std::string known =
      names.empty() ? "it has none"
                    : absl::StrCat("it has ", absl::StrJoin(names, ", "));
  if (!flags.context.empty()) {
    const NamedContext* c = config.Find(flags.context);
    if (c == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--context ", flags.context, ": no such context in ",
          path.empty() ? "the config file" : path, " (", known, ")"));
    }
    return *c;
  }
  if (config.current_context.empty()) return NamedContext{};
  const NamedContext* c = config.Find(config.current_context);
  if (c == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": current-context: no context named \"",
                     config.current_context, "\" (", known, ")"));
  }
  return *c;
}

}  // namespace

absl::StatusOr<ClientOptions> ResolveClientOptions(const ClientFlags& flags) {
  LEMO_ASSIGN_OR_RETURN(NamedContext context, SelectContext(flags));
  ClientOptions options;
  options.server = !flags.server.empty() ? flags.server : Env("LEMO_SERVER");
  if (options.server.empty()) options.server = context.server;
  if (options.server.empty()) options.server = kDefaultServer;
  options.ca_file =
      !flags.ca_file.empty() ? flags.ca_file : Env("LEMO_CA_FILE");
  if (options.ca_file.empty()) options.ca_file = context.ca_file;
  options.insecure = flags.insecure || context.tls == false;
  options.require_tls = !flags.insecure && context.tls == true;
  if (flags.deadline > absl::ZeroDuration()) options.deadline = flags.deadline;

  if (!flags.token.empty()) {
    // Never echo the value: it is the secret.
    return absl::InvalidArgumentError(
        "--token: a token on the command line is visible to every user of "
        "this machine (ps, /proc) and stays in shell history; give it in a "
        "file (--token-file FILE, $LEMO_TOKEN_FILE or ~/.config/lemo/token) "
        "or in $LEMO_TOKEN");
  }
  if (!flags.token_file.empty()) {
    auto token = ReadToken(flags.token_file);
    if (!token.ok()) return token.status();
    options.token = *token;
  } else if (!Env("LEMO_TOKEN").empty()) {
    options.token = Env("LEMO_TOKEN");
  } else if (!Env("LEMO_TOKEN_FILE").empty()) {
    auto token = ReadToken(Env("LEMO_TOKEN_FILE"));
    if (!token.ok()) return token.status();
    options.token = *token;
  } else if (!context.token_file.empty()) {
    auto token = ReadToken(context.token_file);
    if (!token.ok()) return token.status();
    options.token = *token;
  } else if (!Env("HOME").empty()) {
    const std::string path = absl::StrCat(Env("HOME"), "/.config/lemo/token");
    if (std::ifstream(path).good()) {
      auto token = ReadToken(path);
      if (!token.ok()) return token.status();
      options.token = *token;
    }
  }
  return options;
}

}  // namespace lemo::client
