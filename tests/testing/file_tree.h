// Directory trees as maps {relative path: bytes}, for tests that send, copy or
// receive whole directories (checkpoints) and compare them byte for byte.
//
//   WriteTree(dir / "src", {{"a.json", "{}"}, {"resume/state.json", "{}"}});
//   ...
//   EXPECT_EQ(ReadTree(dir / "dest"), ReadTree(dir / "src"));
#ifndef LEMO_TESTS_TESTING_FILE_TREE_H_
#define LEMO_TESTS_TESTING_FILE_TREE_H_

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>

namespace lemo::testing {

using FileTree = std::map<std::string, std::string>;

// Writes every file of `tree` under `dir`, creating subdirectories.
inline void WriteTree(const std::filesystem::path& dir, const FileTree& tree) {
  for (const auto& [name, bytes] : tree) {
    std::filesystem::create_directories((dir / name).parent_path());
    std::ofstream(dir / name, std::ios::binary) << bytes;
  }
}

// Every regular file under `dir`, by path relative to it.
inline FileTree ReadTree(const std::filesystem::path& dir) {
  FileTree tree;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    tree[std::filesystem::relative(entry.path(), dir).generic_string()] =
        std::string(std::istreambuf_iterator<char>(in), {});
  }
  return tree;
}

}  // namespace lemo::testing

#endif  // LEMO_TESTS_TESTING_FILE_TREE_H_
