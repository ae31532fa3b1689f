// Small helpers shared by the engine tests: fresh temp dirs and running the
// venv's Python (LEMO_PYTHON, set by CTest) for interop checks.
//
//   std::string dir = MakeTempDir("ckpt");
//   RunResult r = RunPython("tests/worker/engine/x.py check " + dir);
//   EXPECT_EQ(r.exit_code, 0) << r.output;
#ifndef LEMO_TESTS_WORKER_ENGINE_ENGINE_TEST_UTIL_H_
#define LEMO_TESTS_WORKER_ENGINE_ENGINE_TEST_UTIL_H_

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <string>

#include "gtest/gtest.h"

namespace lemo::engine::testing {

inline std::string MakeTempDir(const std::string& tag) {
  std::string tmpl = ::testing::TempDir() + "lemo_" + tag + "_XXXXXX";
  return mkdtemp(tmpl.data());
}

// Empty when the test runs outside CTest.
inline std::string PythonPath() {
  const char* p = getenv("LEMO_PYTHON");
  return p == nullptr ? "" : p;
}

inline std::string SourceDir() {
  const char* p = getenv("LEMO_SOURCE_DIR");
  return p == nullptr ? "." : p;
}

struct RunResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs `$LEMO_PYTHON <args>` from the source dir; paths in `args` may be
// relative to it.
inline RunResult RunPython(const std::string& args) {
  RunResult r;
  const std::string cmd =
      "cd '" + SourceDir() + "' && '" + PythonPath() + "' " + args + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) r.output.append(buf, n);
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace lemo::engine::testing

#define LEMO_SKIP_WITHOUT_PYTHON()                                   \
  if (::lemo::engine::testing::PythonPath().empty())                 \
  GTEST_SKIP() << "LEMO_PYTHON is unset (run through ctest for the " \
                  "Python interop checks)"

#endif  // LEMO_TESTS_WORKER_ENGINE_ENGINE_TEST_UTIL_H_
