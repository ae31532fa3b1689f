// Which fused attention kernel torch's scaled_dot_product_attention prefers
// on CUDA, process-wide (issue 15: the speed of long steps is mostly
// attention's). torch ranks flash attention first; on Hopper, cuDNN's fused
// attention is reported 1.7-2.3x faster for training shapes
// (huggingface/transformers#48163), so the engine lets a run put cuDNN first
// and the benchmark measure both. The engine's checkpoint replay
// (model/attention_stash.h) follows whichever kernel sdpa chooses.
//
//   LEMO_ASSIGN_OR_RETURN(AttentionKernel k, ParseAttentionKernel("cudnn"));
//   LEMO_RETURN_IF_ERROR(PreferAttentionKernel(k, torch::Device("cuda:0")));
#ifndef LEMO_WORKER_ENGINE_RUNTIME_ATTENTION_KERNEL_H_
#define LEMO_WORKER_ENGINE_RUNTIME_ATTENTION_KERNEL_H_

#include <torch/types.h>

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace lemo::engine {

enum class AttentionKernel {
  // torch's own ranking: flash attention first.
  kFlash,
  // cuDNN's fused attention first, then torch's ranking (a shape cuDNN
  // cannot serve falls back as before).
  kCudnn,
};

// "flash" | "cudnn"; INVALID_ARGUMENT naming the accepted values otherwise.
absl::StatusOr<AttentionKernel> ParseAttentionKernel(std::string_view name);

// "flash" | "cudnn".
std::string AttentionKernelName(AttentionKernel kernel);

// Sets torch's sdpa priority order for the process. kCudnn needs a CUDA
// `device` (FAILED_PRECONDITION otherwise: on the CPU sdpa has one fused
// kernel and the choice would be silently ignored).
absl::Status PreferAttentionKernel(AttentionKernel kernel,
                                   const torch::Device& device);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_RUNTIME_ATTENTION_KERNEL_H_
