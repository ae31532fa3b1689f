// Element types of the LeMo CUDA kernels' params structs. Kernel headers know
// nothing of torch, so bindings map at::ScalarType onto this enum.
//
//   BlockScoresParams p;
//   p.dtype = lemo::kernels::cuda::DType::kBFloat16;
#ifndef LEMO_KERNELS_COMMON_DTYPE_H_
#define LEMO_KERNELS_COMMON_DTYPE_H_

#include <cstdint>

namespace lemo::kernels::cuda {

enum class DType : int32_t { kFloat32 = 0, kBFloat16 = 1, kFloat16 = 2 };

inline int DTypeBytes(DType t) { return t == DType::kFloat32 ? 4 : 2; }

}  // namespace lemo::kernels::cuda

#endif  // LEMO_KERNELS_COMMON_DTYPE_H_
