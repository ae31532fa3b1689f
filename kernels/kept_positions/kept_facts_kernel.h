// The facts lemo's gather/scatter ops check about kept block indices, computed
// on the GPU by one kernel so that the binding needs one 32-byte device->host
// copy (one sync) instead of the ~9 ATen reductions of the reference check.
// Torch-free; kernels/kept_positions/kept_check_cuda.cc uses it.
//
//   int64_t* facts;  // device, 4 int64
//   LaunchKeptFacts(kept, batch, k, nb, facts, stream);
//   // facts = {min, max, ascending (1/0), rows whose last block is nb - 1}
#ifndef LEMO_KERNELS_KEPT_POSITIONS_KEPT_FACTS_KERNEL_H_
#define LEMO_KERNELS_KEPT_POSITIONS_KEPT_FACTS_KERNEL_H_

#include <cuda_runtime_api.h>

#include <cstdint>

namespace lemo::kernels::cuda {

// Writes {min, max, 1 if every row is strictly ascending else 0, number of
// rows whose last entry is nb - 1} of `kept` (int64 [batch, k], contiguous,
// batch * k >= 1) to the 4 int64 at device pointer `facts`.
cudaError_t LaunchKeptFacts(const int64_t* kept, int64_t batch, int64_t k,
                            int64_t nb, int64_t* facts, cudaStream_t stream);

}  // namespace lemo::kernels::cuda

#endif  // LEMO_KERNELS_KEPT_POSITIONS_KEPT_FACTS_KERNEL_H_
