// Scratch files for the data tests (tokenizer, JSONL, token files,
// PackedDataset).
//
//   const std::string dir = MakeTempDir();
//   WriteFile(dir + "/a.jsonl", "{\"text\": \"hi\"}\n");
#ifndef LEMO_TESTS_WORKER_ENGINE_DATA_TEST_UTIL_H_
#define LEMO_TESTS_WORKER_ENGINE_DATA_TEST_UTIL_H_

#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <system_error>

#include "gtest/gtest.h"

namespace lemo::engine::testing {

// One directory per test process, removed when the process exits.
inline const std::string& ProcessTempRoot() {
  static const struct Root {
    Root() : path(::testing::TempDir() + "lemo_data_XXXXXX") {
      if (::mkdtemp(path.data()) == nullptr)
        ADD_FAILURE() << "mkdtemp " << path;
    }
    ~Root() {
      std::error_code ignored;
      std::filesystem::remove_all(path, ignored);
    }
    std::string path;
  } root;
  return root.path;
}

// A fresh, empty directory.
inline std::string MakeTempDir() {
  std::string pattern = ProcessTempRoot() + "/XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr)
    ADD_FAILURE() << "mkdtemp " << pattern;
  return pattern;
}

inline void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  if (!out) ADD_FAILURE() << "writing " << path;
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in),
                     std::istreambuf_iterator<char>());
}

// Runs a Python reference once per distinct input. CTest runs each test in
// its own process and Python takes tens of seconds, so the output directory
// is kept under TempDir, named `prefix` + a hash of `inputs` (the scripts' and
// data's contents, the interpreter), and published whole by a rename, so
// concurrent runs never see half of it. `command(out)` is the shell command
// that fills directory `out`; its output goes to out/python.log. Returns the
// directory, or sets *error to the log when the command fails.
inline std::string CachedPythonReference(
    const std::string& prefix, const std::string& inputs,
    const std::function<std::string(const std::string& out)>& command,
    std::string* error) {
  const std::string dir = ::testing::TempDir() + prefix + "_" +
                          std::to_string(std::hash<std::string>()(inputs));
  if (std::filesystem::exists(dir + "/expected.json")) return dir;
  const std::string tmp = MakeTempDir();
  const std::string cmd = command(tmp) + " > '" + tmp + "/python.log' 2>&1";
  if (std::system(cmd.c_str()) != 0) {
    *error = "python reference failed: " + ReadFile(tmp + "/python.log");
    return dir;
  }
  std::error_code ignored;  // another process published it first
  std::filesystem::rename(tmp, dir, ignored);
  return dir;
}

}  // namespace lemo::engine::testing

#endif  // LEMO_TESTS_WORKER_ENGINE_DATA_TEST_UTIL_H_
