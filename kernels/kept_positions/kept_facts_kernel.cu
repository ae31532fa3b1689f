// One CTA reduces the kept indices (a few hundred to a few thousand int64) to
// the four facts of kept_facts_kernel.h: a tree reduction in shared memory.
#include <cstdint>

#include "kernels/kept_positions/kept_facts_kernel.h"

namespace lemo::kernels::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    KeptFactsKernel(const int64_t* kept, int64_t batch, int64_t k, int64_t nb,
                    int64_t* facts) {
  __shared__ int64_t lo_s[kThreads], hi_s[kThreads], bad_s[kThreads],
      last_s[kThreads];
  const int tid = threadIdx.x;
  int64_t lo = INT64_MAX, hi = INT64_MIN, bad = 0, last = 0;
  const int64_t total = batch * k;
  for (int64_t i = tid; i < total; i += kThreads) {
    const int64_t v = kept[i];
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
    const int64_t col = i % k;
    if (col > 0 && v <= kept[i - 1]) ++bad;
    if (col == k - 1 && v == nb - 1) ++last;
  }
  lo_s[tid] = lo;
  hi_s[tid] = hi;
  bad_s[tid] = bad;
  last_s[tid] = last;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (tid < s) {
      lo_s[tid] = lo_s[tid + s] < lo_s[tid] ? lo_s[tid + s] : lo_s[tid];
      hi_s[tid] = hi_s[tid + s] > hi_s[tid] ? hi_s[tid + s] : hi_s[tid];
      bad_s[tid] += bad_s[tid + s];
      last_s[tid] += last_s[tid + s];
    }
    __syncthreads();
  }
  if (tid == 0) {
    facts[0] = lo_s[0];
    facts[1] = hi_s[0];
    facts[2] = bad_s[0] == 0 ? 1 : 0;
    facts[3] = last_s[0];
  }
}

}  // namespace

cudaError_t LaunchKeptFacts(const int64_t* kept, int64_t batch, int64_t k,
                            int64_t nb, int64_t* facts, cudaStream_t stream) {
  if (kept == nullptr || facts == nullptr || batch <= 0 || k <= 0) {
    return cudaErrorInvalidValue;
  }
  KeptFactsKernel<<<1, kThreads, 0, stream>>>(kept, batch, k, nb, facts);
  return cudaGetLastError();
}

}  // namespace lemo::kernels::cuda
