#include "worker/engine/runtime/allocator_config.h"

#include <cstdlib>

namespace lemo::engine {

bool PreferExpandableCudaSegments() {
  if (std::getenv("PYTORCH_ALLOC_CONF") != nullptr ||
      std::getenv("PYTORCH_CUDA_ALLOC_CONF") != nullptr) {
    return false;
  }
  return setenv("PYTORCH_CUDA_ALLOC_CONF", kDefaultCudaAllocConf,
                /*overwrite=*/0) == 0;
}

}  // namespace lemo::engine
