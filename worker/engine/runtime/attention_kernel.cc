#include "worker/engine/runtime/attention_kernel.h"

#include <ATen/Context.h>
#include <ATen/ops/_fused_sdp_choice.h>
#include <torch/cuda.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"

namespace lemo::engine {
namespace {

// torch decides its CUDA order at the first sdpa backend selection
// (sdp::priority_order in ATen's sdp_utils.cpp) and overwrites whatever was
// set before; asking it to choose for a tiny causal attention makes it decide
// now. Idempotent: torch decides once per process.
void LetTorchDecideItsOrder(const torch::Device& device) {
  if (!device.is_cuda() || !torch::cuda::is_available()) return;
  const auto options =
      torch::TensorOptions().dtype(torch::kBFloat16).device(device);
  const torch::Tensor q = torch::zeros({1, 1, 16, 64}, options);
  (void)at::_fused_sdp_choice(q, q, q, /*attn_mask=*/std::nullopt,
                              /*dropout_p=*/0.0, /*is_causal=*/true);
}

// torch's order as it was before this process changed it (after its own lazy
// decision where CUDA is available), so kAuto restores it.
const std::array<at::SDPBackend, at::num_sdp_backends>& TorchOrder() {
  static const std::array<at::SDPBackend, at::num_sdp_backends> order =
      at::globalContext().sDPPriorityOrder();
  return order;
}

}  // namespace

absl::StatusOr<AttentionKernel> ParseAttentionKernel(std::string_view name) {
  if (name == "auto") return AttentionKernel::kAuto;
  if (name == "flash") return AttentionKernel::kFlash;
  if (name == "cudnn") return AttentionKernel::kCudnn;
  return absl::InvalidArgumentError(
      absl::StrCat("attention kernel must be auto, flash or cudnn, got \"",
                   std::string(name), "\""));
}

std::string AttentionKernelName(AttentionKernel kernel) {
  switch (kernel) {
    case AttentionKernel::kFlash:
      return "flash";
    case AttentionKernel::kCudnn:
      return "cudnn";
    case AttentionKernel::kAuto:
      break;
  }
  return "auto";
}

absl::Status PreferAttentionKernel(AttentionKernel kernel,
                                   const torch::Device& device) {
  if (kernel != AttentionKernel::kAuto && !device.is_cuda()) {
    return absl::FailedPreconditionError(
        absl::StrCat("attention kernel ", AttentionKernelName(kernel),
                     " needs a CUDA device, got ", device.str()));
  }
  LetTorchDecideItsOrder(device);
  const auto& torch_order = TorchOrder();
  std::vector<int64_t> order;
  if (kernel == AttentionKernel::kFlash) {
    order.push_back(static_cast<int64_t>(at::SDPBackend::flash_attention));
  } else if (kernel == AttentionKernel::kCudnn) {
    order.push_back(static_cast<int64_t>(at::SDPBackend::cudnn_attention));
  }
  for (at::SDPBackend b : torch_order) {
    const auto id = static_cast<int64_t>(b);
    if (std::find(order.begin(), order.end(), id) == order.end()) {
      order.push_back(id);
    }
  }
  at::globalContext().setSDPPriorityOrder(order);
  return absl::OkStatus();
}

std::string FirstAttentionBackend() {
  switch (at::globalContext().sDPPriorityOrder()[0]) {
    case at::SDPBackend::flash_attention:
      return "flash";
    case at::SDPBackend::cudnn_attention:
      return "cudnn";
    case at::SDPBackend::efficient_attention:
      return "efficient";
    case at::SDPBackend::math:
      return "math";
    default:
      break;
  }
  return "overrideable";
}

}  // namespace lemo::engine
