#include "worker/engine/train/adapter_agreement.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "worker/engine/runtime/torch_status.h"

namespace lemo::engine {

absl::StatusOr<std::string> AdapterDigest(
    const std::vector<std::pair<std::string, torch::Tensor>>& named) {
  return CallTorch("hashing the adapters", [&] {
    Sha256 h;
    for (const auto& [name, t] : named) {
      const torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
      h.Update(absl::StrCat(name, " ", c10::str(c.sizes()), " ",
                            c10::toString(c.scalar_type()), "\n"));
      h.Update(absl::string_view(static_cast<const char*>(c.data_ptr()),
                                 c.nbytes()));
    }
    return h.HexDigest();
  });
}

absl::Status VerifyAdaptersAgree(
    comm::ProcessGroup& group,
    const std::vector<std::pair<std::string, torch::Tensor>>& named,
    int64_t step) {
  LEMO_ASSIGN_OR_RETURN(const std::string mine, AdapterDigest(named));
  // Rank 0's digest to everyone (64 hex characters as bytes), then the
  // number of ranks that differ from it to everyone, so that all fail alike.
  std::vector<torch::Tensor> digest = {
      torch::zeros({static_cast<int64_t>(mine.size())}, torch::kUInt8)};
  if (group.rank() == 0) {
    std::memcpy(digest[0].data_ptr(), mine.data(), mine.size());
  }
  LEMO_RETURN_IF_ERROR(group.Broadcast(digest, /*root=*/0),
                       "broadcasting rank 0's adapter digest");
  const std::string root(static_cast<const char*>(digest[0].data_ptr()),
                         mine.size());
  std::vector<torch::Tensor> differing = {
      torch::full({1}, root == mine ? 0.0 : 1.0, torch::kFloat64)};
  LEMO_RETURN_IF_ERROR(group.AllReduceSum(differing),
                       "counting ranks whose adapters differ");
  const auto count = static_cast<int64_t>(differing[0].item<double>());
  if (count == 0) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "after step ", step, ", the adapter weights of ", count, " of ",
      group.world_size(), " ranks differ from rank 0's (this rank's sha256 ",
      mine.substr(0, 12), "..., rank 0's ", root.substr(0, 12),
      "...): the ranks no longer train one model; resume from the last "
      "checkpoint"));
}

}  // namespace lemo::engine
