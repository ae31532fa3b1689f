// lemoctl version: the client's build. The coordinator has no RPC that reports
// its own version (JobService, health and reflection carry none), so unlike
// `kubectl version` there is no server line; its metrics endpoint has it
// (lemo_build_info).
#include <string>

#include "absl/strings/str_cat.h"
#include "client/lemoctl/commands.h"
#include "client/lemoctl/exit_codes.h"
#include "common/build_info.h"

namespace lemo::client {

std::string VersionText(OutputFormat format) {
  switch (format) {
    case OutputFormat::kJson:
      return absl::StrCat(R"({"clientVersion": {"version": ")", BuildVersion(),
                          R"(", "revision": ")", BuildRevision(), "\"}}\n");
    case OutputFormat::kYaml:
      return absl::StrCat("clientVersion:\n  version: \"", BuildVersion(),
                          "\"\n  revision: \"", BuildRevision(), "\"\n");
    case OutputFormat::kTable:
      break;
  }
  return absl::StrCat("Client Version: ", VersionLine("lemoctl"), "\n");
}

int RunVersion(const Context& ctx) {
  std::fputs(VersionText(ctx.format).c_str(), ctx.out);
  return kExitOk;
}

}  // namespace lemo::client
