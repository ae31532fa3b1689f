// Runs a shell command in a test and keeps what it printed: the CLI tests
// drive the real lemoctl binary this way.
//
//   ProcessResult r = RunCommand(LEMO_TEST_BIN_DIR "/lemoctl version");
//   EXPECT_EQ(r.exit_code, 0) << r.output;
#ifndef LEMO_TESTS_TESTING_RUN_COMMAND_H_
#define LEMO_TESTS_TESTING_RUN_COMMAND_H_

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace lemo::testing {

struct ProcessResult {
  // The exit status; -1 when the command could not start or was killed by a
  // signal.
  int exit_code = -1;
  // stdout and stderr, interleaved as they came.
  std::string output;
};

// Runs `command` through /bin/sh, stderr joined to stdout.
inline ProcessResult RunCommand(const std::string& command) {
  const std::string cmd = command + " 2>&1";
  ProcessResult result;
  std::FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) {
    result.output.append(buf.data(), n);
  }
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

}  // namespace lemo::testing

#endif  // LEMO_TESTS_TESTING_RUN_COMMAND_H_
