// What a binary was built from: the release version (CMake's project
// version) and the git commit, for every binary's --version, `lemoctl
// version`, the worker's Register and the lemo_build_info metric.
//
//   std::printf("%s\n", lemo::VersionLine("lemoctl").c_str());
//   // lemoctl 0.1.0 (commit 97addbc1f2e3)
//
// The commit is read when the binary is built (cmake/LemoBuildInfo.cmake):
// "-dirty" is appended when tracked files had uncommitted changes, and it is
// "unknown" outside a git checkout unless -DLEMO_GIT_REVISION=... names it.
#ifndef LEMO_COMMON_BUILD_INFO_H_
#define LEMO_COMMON_BUILD_INFO_H_

#include <string>

#include "absl/strings/string_view.h"

namespace lemo {

// "0.1.0".
const char* BuildVersion();
// A short git commit ("97addbc1f2e3", "97addbc1f2e3-dirty") or "unknown".
const char* BuildRevision();
// "<program> <version> (commit <revision>)".
std::string VersionLine(absl::string_view program);

}  // namespace lemo

#endif  // LEMO_COMMON_BUILD_INFO_H_
