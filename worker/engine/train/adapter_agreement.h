// Data-parallel ranks must hold the same adapter weights after every step
// (they apply the same all-reduced gradients); a silent divergence (a flipped
// bit, a rank that resumed from another checkpoint) would train a model no
// single rank's checkpoint describes. This check hashes each rank's weights
// and compares them with rank 0's, on every rank, so all ranks fail together
// with the same reason.
//
//   LEMO_RETURN_IF_ERROR(VerifyAdaptersAgree(*group, model.LoraParameters(),
//                                            step));
#ifndef LEMO_WORKER_ENGINE_TRAIN_ADAPTER_AGREEMENT_H_
#define LEMO_WORKER_ENGINE_TRAIN_ADAPTER_AGREEMENT_H_

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/comm/process_group.h"

namespace lemo::engine {

// Hex sha256 over the adapters' names, shapes, dtypes and bytes, in order.
absl::StatusOr<std::string> AdapterDigest(
    const std::vector<std::pair<std::string, torch::Tensor>>& named);

// OK when every rank's AdapterDigest equals rank 0's; otherwise
// FAILED_PRECONDITION on every rank, naming the step and how many ranks
// differ. A collective failure is returned as the group reports it.
absl::Status VerifyAdaptersAgree(
    comm::ProcessGroup& group,
    const std::vector<std::pair<std::string, torch::Tensor>>& named,
    int64_t step);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_TRAIN_ADAPTER_AGREEMENT_H_
