// Which fused attention kernel torch's scaled_dot_product_attention tries
// first on CUDA, process-wide (issue 15: the speed of long steps is mostly
// attention's). torch 2.11 decides lazily, at the first sdpa call: on sm90
// and sm100 (H100, H200, B200) with cuDNN >= 9.9 it puts cuDNN's fused
// attention first (unless TORCH_CUDNN_SDPA_PREFERRED=0), elsewhere flash
// attention. That first call overwrites any order set before it, so a
// preference set here first makes torch take its decision, then overrides
// it. The engine's checkpoint replay (model/attention_stash.h) follows
// whichever kernel sdpa chooses.
//
//   LEMO_ASSIGN_OR_RETURN(AttentionKernel k, ParseAttentionKernel("flash"));
//   LEMO_RETURN_IF_ERROR(PreferAttentionKernel(k, torch::Device("cuda:0")));
#ifndef LEMO_WORKER_ENGINE_RUNTIME_ATTENTION_KERNEL_H_
#define LEMO_WORKER_ENGINE_RUNTIME_ATTENTION_KERNEL_H_

#include <ATen/SDPBackend.h>
#include <torch/types.h>

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace lemo::engine {

enum class AttentionKernel {
  // torch's own order (cuDNN first on Hopper and Blackwell, see above).
  kAuto,
  // flash attention first, then torch's order.
  kFlash,
  // cuDNN's fused attention first, then torch's order (a shape cuDNN cannot
  // serve falls back as before).
  kCudnn,
};

// "auto" | "flash" | "cudnn"; INVALID_ARGUMENT naming the accepted values
// otherwise.
absl::StatusOr<AttentionKernel> ParseAttentionKernel(std::string_view name);

// "auto" | "flash" | "cudnn".
std::string AttentionKernelName(AttentionKernel kernel);

// Sets torch's sdpa priority order for the process. kFlash and kCudnn need a
// CUDA `device` (FAILED_PRECONDITION otherwise: on the CPU sdpa has one fused
// kernel and the choice would be silently ignored). Where CUDA is available,
// torch's lazy decision is taken first, so that it cannot undo this one.
absl::Status PreferAttentionKernel(AttentionKernel kernel,
                                   const torch::Device& device);

// The fused kernel sdpa tries first now: "flash", "cudnn", "efficient",
// "math" or "overrideable".
std::string FirstAttentionBackend();

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_RUNTIME_ATTENTION_KERNEL_H_
