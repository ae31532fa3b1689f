// Fused chunk cross-entropy; see cross_entropy_chunk_kernel.h. One CTA per row:
// the rows are 32K-128K logits, enough for 256 threads to stream with 16-byte
// loads; a 2048-token chunk is 2048 CTAs, many waves on any GPU.
#include <cfloat>
#include <cstdint>

#include "kernels/common/device_utils.cuh"
#include "kernels/cross_entropy_chunk/cross_entropy_chunk_kernel.h"

namespace lemo::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// Merges two (max, sum of exp(x - max)) pairs. Maxima start at -FLT_MAX, not
// -inf, so exp(m - M) never computes inf - inf.
__device__ __forceinline__ void Merge(float& m, float& s, float m2, float s2) {
  const float mx = fmaxf(m, m2);
  s = s * __expf(m - mx) + s2 * __expf(m2 - mx);
  m = mx;
}

// The row's logsumexp in fp32, broadcast to every thread of the CTA.
template <typename T, int kVec>
__device__ float RowLogSumExp(const T* x, int64_t vocab) {
  __shared__ float red_m[kThreads / 32];
  __shared__ float red_s[kThreads / 32];
  __shared__ float result;
  float m = -FLT_MAX, s = 0.0f;
  using V = Vec<T, kVec>;
  for (int64_t j = threadIdx.x * kVec; j < vocab;
       j += static_cast<int64_t>(kThreads) * kVec) {
    const V v = *reinterpret_cast<const V*>(x + j);
    float f[kVec];
    float vm = -FLT_MAX;
#pragma unroll
    for (int e = 0; e < kVec; ++e) {
      f[e] = ToFloat(v.v[e]);
      vm = fmaxf(vm, f[e]);
    }
    const float mx = fmaxf(m, vm);
    float add = 0.0f;
#pragma unroll
    for (int e = 0; e < kVec; ++e) add += __expf(f[e] - mx);
    s = s * __expf(m - mx) + add;
    m = mx;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
    const float s2 = __shfl_xor_sync(0xffffffffu, s, o);
    Merge(m, s, m2, s2);
  }
  const int warp = threadIdx.x >> 5;
  if ((threadIdx.x & 31) == 0) {
    red_m[warp] = m;
    red_s[warp] = s;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float bm = red_m[0], bs = red_s[0];
    for (int w = 1; w < kThreads / 32; ++w) Merge(bm, bs, red_m[w], red_s[w]);
    result = bm + logf(bs);
  }
  __syncthreads();
  return result;
}

template <typename T, int kVec>
__global__ void __launch_bounds__(kThreads)
    CrossEntropyForwardKernel(const CrossEntropyChunkParams p) {
  const int64_t row = blockIdx.x;
  const T* x = static_cast<const T*>(p.logits) + row * p.row_stride;
  const float lse = RowLogSumExp<T, kVec>(x, p.vocab);
  if (threadIdx.x == 0) {
    const int64_t label = p.labels[row];
    p.loss[row] = label == p.ignore_index ? 0.0f : lse - ToFloat(x[label]);
  }
}

template <typename T, int kVec>
__global__ void __launch_bounds__(kThreads)
    CrossEntropyBackwardKernel(const CrossEntropyChunkParams p) {
  const int64_t row = blockIdx.x;
  T* x = static_cast<T*>(p.logits) + row * p.row_stride;
  const float lse = RowLogSumExp<T, kVec>(x, p.vocab);
  const int64_t label = p.labels[row];
  const float scale = label == p.ignore_index ? 0.0f : *p.grad_scale;
  using V = Vec<T, kVec>;
  for (int64_t j = threadIdx.x * kVec; j < p.vocab;
       j += static_cast<int64_t>(kThreads) * kVec) {
    V v = *reinterpret_cast<const V*>(x + j);
#pragma unroll
    for (int e = 0; e < kVec; ++e) {
      const float prob = expf(ToFloat(v.v[e]) - lse);
      const float g = (j + e == label) ? prob - 1.0f : prob;
      v.v[e] = FromFloat<T>(g * scale);
    }
    *reinterpret_cast<V*>(x + j) = v;
  }
}

template <typename T, bool kBackward>
cudaError_t Launch(const CrossEntropyChunkParams& p, cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  const bool vec = p.vocab % kVec == 0 && p.row_stride % kVec == 0 &&
                   reinterpret_cast<uintptr_t>(p.logits) % 16 == 0;
  const dim3 grid(static_cast<unsigned>(p.rows));
  if (kBackward) {
    if (vec) {
      CrossEntropyBackwardKernel<T, kVec><<<grid, kThreads, 0, stream>>>(p);
    } else {
      CrossEntropyBackwardKernel<T, 1><<<grid, kThreads, 0, stream>>>(p);
    }
  } else {
    if (vec) {
      CrossEntropyForwardKernel<T, kVec><<<grid, kThreads, 0, stream>>>(p);
    } else {
      CrossEntropyForwardKernel<T, 1><<<grid, kThreads, 0, stream>>>(p);
    }
  }
  return cudaGetLastError();
}

template <bool kBackward>
cudaError_t Dispatch(const CrossEntropyChunkParams& p, cudaStream_t stream) {
  if (p.rows <= 0 || p.rows > 0x7fffffff || p.vocab <= 0 ||
      p.logits == nullptr || p.labels == nullptr ||
      (kBackward ? p.grad_scale == nullptr : p.loss == nullptr)) {
    return cudaErrorInvalidValue;
  }
  switch (p.dtype) {
    case DType::kFloat32:
      return Launch<float, kBackward>(p, stream);
    case DType::kBFloat16:
      return Launch<__nv_bfloat16, kBackward>(p, stream);
    case DType::kFloat16:
      return Launch<__half, kBackward>(p, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace

cudaError_t LaunchCrossEntropyChunkForward(const CrossEntropyChunkParams& p,
                                           cudaStream_t stream) {
  return Dispatch<false>(p, stream);
}

cudaError_t LaunchCrossEntropyChunkBackward(const CrossEntropyChunkParams& p,
                                            cudaStream_t stream) {
  return Dispatch<true>(p, stream);
}

}  // namespace lemo::kernels::cuda
