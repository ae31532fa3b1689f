// Scratch files for the data tests (tokenizer, JSONL, token files,
// PackedDataset).
//
//   const std::string dir = MakeTempDir();
//   WriteFile(dir + "/a.jsonl", "{\"text\": \"hi\"}\n");
#ifndef LEMO_TESTS_WORKER_ENGINE_DATA_TEST_UTIL_H_
#define LEMO_TESTS_WORKER_ENGINE_DATA_TEST_UTIL_H_

#include <stdlib.h>

#include <filesystem>
#include <fstream>
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

}  // namespace lemo::engine::testing

#endif  // LEMO_TESTS_WORKER_ENGINE_DATA_TEST_UTIL_H_
