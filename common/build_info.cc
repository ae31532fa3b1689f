#include "common/build_info.h"

#include "absl/strings/str_cat.h"

namespace lemo {

std::string VersionLine(absl::string_view program) {
  return absl::StrCat(program, " ", BuildVersion(), " (commit ",
                      BuildRevision(), ")");
}

}  // namespace lemo
