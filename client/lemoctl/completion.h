// Shell completion scripts for lemoctl, generated from its CLI11 command tree
// so that a new verb or flag is completed without editing a script.
//
//   CompletionHints hints;
//   hints.option_values["--output"] = {"table", "json", "yaml"};
//   std::fputs(CompletionScript(app, "bash", hints)->c_str(), stdout);
//
// Users load it with `source <(lemoctl completion bash)` (or zsh).
#ifndef LEMO_CLIENT_LEMOCTL_COMPLETION_H_
#define LEMO_CLIENT_LEMOCTL_COMPLETION_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"

namespace lemo::client {

// What the command tree cannot say by itself.
struct CompletionHints {
  // Fixed values of an option, by any of its names ("-o" and "--output" both
  // complete to these when either is given here).
  std::map<std::string, std::vector<std::string>> option_values;
  // Options whose value is a file path ("--token-file").
  std::set<std::string> file_options;
  // Command paths ("submit", "checkpoints pull") whose positional arguments
  // are file paths.
  std::set<std::string> file_positionals;
  // Options whose values are listed, one a line, by running the program
  // itself with these arguments ("--context" -> "config get-contexts -o
  // name"): the values live in a file the script cannot know.
  std::map<std::string, std::string> option_commands;
  // The same for the positional arguments of a command path.
  std::map<std::string, std::string> positional_commands;
};

// A completion script for `shell` ("bash" or "zsh"; zsh loads the bash
// function through bashcompinit). INVALID_ARGUMENT for another shell.
absl::StatusOr<std::string> CompletionScript(const CLI::App& app,
                                             const std::string& shell,
                                             const CompletionHints& hints);

}  // namespace lemo::client

#endif  // LEMO_CLIENT_LEMOCTL_COMPLETION_H_
