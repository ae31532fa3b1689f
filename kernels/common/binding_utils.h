// Shared glue of the CUDA op bindings: dtype mapping and launch-error checks.
// Only built with LEMO_ENABLE_CUDA.
//
//   if (!SupportedDType(x.scalar_type())) return FooCpu(x);  // ATen fallback
//   CheckLaunch(cuda::LaunchFoo(params, Stream()), "foo", x);
#ifndef LEMO_KERNELS_COMMON_BINDING_UTILS_H_
#define LEMO_KERNELS_COMMON_BINDING_UTILS_H_

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <cuda_runtime_api.h>

#include "kernels/common/dtype.h"

namespace lemo::kernels {

inline bool SupportedDType(at::ScalarType t) {
  return t == at::kFloat || t == at::kBFloat16 || t == at::kHalf;
}

inline cuda::DType ToDType(at::ScalarType t) {
  switch (t) {
    case at::kBFloat16:
      return cuda::DType::kBFloat16;
    case at::kHalf:
      return cuda::DType::kFloat16;
    default:
      return cuda::DType::kFloat32;
  }
}

inline cudaStream_t CurrentStream() {
  return at::cuda::getCurrentCUDAStream().stream();
}

// STYLE.md: CUDA calls are checked, and the message names the device and the
// failing call.
inline void CheckLaunch(cudaError_t err, const char* what,
                        const at::Tensor& on) {
  TORCH_CHECK(err == cudaSuccess, what, ": CUDA kernel launch failed on ",
              on.device(), ": ", cudaGetErrorString(err));
}

// The tensor with a contiguous last dim (a copy only when it is not).
inline at::Tensor RowsContiguous(const at::Tensor& t) {
  return t.stride(-1) == 1 ? t : t.contiguous();
}

}  // namespace lemo::kernels

#endif  // LEMO_KERNELS_COMMON_BINDING_UTILS_H_
