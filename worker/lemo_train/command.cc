#include "worker/lemo_train/command.h"

#include <cstdio>
#include <string>

namespace lemo::worker::lemo_train {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
  if (absl::IsCancelled(status)) return 130;
  return absl::IsInvalidArgument(status) || absl::IsNotFound(status) ? 2 : 1;
}

}  // namespace lemo::worker::lemo_train
