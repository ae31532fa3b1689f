#include "worker/engine/runtime/attention_kernel.h"

#include <ATen/Context.h>
#include <ATen/SDPBackend.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"

namespace lemo::engine {
namespace {

// torch's ranking as it was before this process changed it, so kFlash
// restores it after a kCudnn.
const std::array<at::SDPBackend, at::num_sdp_backends>& TorchDefaultOrder() {
  static const std::array<at::SDPBackend, at::num_sdp_backends> order =
      at::globalContext().sDPPriorityOrder();
  return order;
}

}  // namespace

absl::StatusOr<AttentionKernel> ParseAttentionKernel(std::string_view name) {
  if (name == "flash") return AttentionKernel::kFlash;
  if (name == "cudnn") return AttentionKernel::kCudnn;
  return absl::InvalidArgumentError(
      absl::StrCat("attention kernel must be flash or cudnn, got \"",
                   std::string(name), "\""));
}

std::string AttentionKernelName(AttentionKernel kernel) {
  return kernel == AttentionKernel::kCudnn ? "cudnn" : "flash";
}

absl::Status PreferAttentionKernel(AttentionKernel kernel,
                                   const torch::Device& device) {
  if (kernel == AttentionKernel::kCudnn && !device.is_cuda()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "attention kernel cudnn needs a CUDA device, got ", device.str()));
  }
  const auto& defaults = TorchDefaultOrder();
  std::vector<int64_t> order;
  if (kernel == AttentionKernel::kCudnn) {
    order.push_back(static_cast<int64_t>(at::SDPBackend::cudnn_attention));
  }
  for (at::SDPBackend b : defaults) {
    const auto id = static_cast<int64_t>(b);
    if (std::find(order.begin(), order.end(), id) == order.end()) {
      order.push_back(id);
    }
  }
  at::globalContext().setSDPPriorityOrder(order);
  return absl::OkStatus();
}

}  // namespace lemo::engine
