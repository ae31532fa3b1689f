// Scatter fused with the residual add; see scatter_add_blocks_kernel.h. One
// thread per vector of an output row; the grid's y and z are head and batch.
#include <algorithm>
#include <cstdint>

#include "kernels/common/device_utils.cuh"
#include "kernels/scatter_add_blocks/scatter_add_blocks_kernel.h"

namespace lemo::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// Position of `blk` in the ascending kept row, or -1.
__device__ __forceinline__ int64_t FindSlot(const int64_t* kept, int64_t count,
                                            int64_t blk) {
  int64_t lo = 0, hi = count;
  while (lo < hi) {
    const int64_t mid = (lo + hi) >> 1;
    const int64_t v = kept[mid];
    if (v == blk) return mid;
    if (v < blk) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return -1;
}

// Adds in fp32 and rounds once to T, as ATen's scatter_add_ does per element.
template <typename T, int kVec>
__global__ void __launch_bounds__(kThreads)
    ScatterAddKernel(const ScatterAddBlocksParams p) {
  const int64_t vecs = p.width / kVec;
  const int64_t idx = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x;
  if (idx >= p.n_tokens * vecs) return;
  const int64_t b = blockIdx.z;
  const int64_t h = blockIdx.y;
  const int64_t t = idx / vecs;
  const int64_t j = (idx % vecs) * kVec;
  using V = Vec<T, kVec>;
  V r;
  if (p.residual != nullptr) {
    r = *reinterpret_cast<const V*>(static_cast<const T*>(p.residual) +
                                    b * p.res_stride_b + h * p.res_stride_h +
                                    t * p.res_stride_n + j);
  } else {
#pragma unroll
    for (int e = 0; e < kVec; ++e) r.v[e] = FromFloat<T>(0.0f);
  }
  const int64_t slot =
      FindSlot(p.kept + b * p.kept_count, p.kept_count, t / p.block);
  if (slot >= 0) {
    const int64_t yt = slot * p.block + t % p.block;
    const V y = *reinterpret_cast<const V*>(
        static_cast<const T*>(p.y) + b * p.y_stride_b + h * p.y_stride_h +
        yt * p.y_stride_n + j);
#pragma unroll
    for (int e = 0; e < kVec; ++e) {
      r.v[e] = FromFloat<T>(__fadd_rn(ToFloat(r.v[e]), ToFloat(y.v[e])));
    }
  }
  *reinterpret_cast<V*>(static_cast<T*>(p.out) +
                        ((b * p.heads + h) * p.n_tokens + t) * p.width + j) = r;
}

// Block-CTA scatter (p.block_ctas): CTA x covers rows [r0, r0 + rows_per_cta)
// of token block blk = x / chunks; the slot search and the 64-bit offsets are
// per CTA, and each thread issues kUnroll residual (and y) loads before its
// stores.
constexpr int kUnroll = 4;
// Vectors per CTA the host aims for (8 per thread).
constexpr int64_t kVecsPerCta = 8 * kThreads;

template <typename T, int kVec>
__global__ void __launch_bounds__(kThreads)
    ScatterAddBlockCtasKernel(const ScatterAddBlocksParams p, int32_t vecs,
                              int32_t rows_per_cta, int32_t chunks) {
  const int64_t b = blockIdx.z;
  const int64_t h = blockIdx.y;
  const BlockCtaRows cta =
      BlockCtaRowsOf(p.block, p.n_tokens, rows_per_cta, chunks);
  if (cta.rows == 0) return;
  const int32_t blk = cta.block_index;
  const int32_t r0 = cta.first_row;
  const int64_t t0 = cta.token;
  const int32_t total = cta.rows * vecs;
  const int64_t slot = FindSlot(p.kept + b * p.kept_count, p.kept_count, blk);
  const T* res = p.residual == nullptr
                     ? nullptr
                     : static_cast<const T*>(p.residual) + b * p.res_stride_b +
                           h * p.res_stride_h + t0 * p.res_stride_n;
  const T* y = slot < 0 ? nullptr
                        : static_cast<const T*>(p.y) + b * p.y_stride_b +
                              h * p.y_stride_h +
                              (slot * p.block + r0) * p.y_stride_n;
  T* out =
      static_cast<T*>(p.out) + ((b * p.heads + h) * p.n_tokens + t0) * p.width;
  using V = Vec<T, kVec>;
  for (int32_t base = threadIdx.x; base < total; base += kUnroll * kThreads) {
    V rv[kUnroll], yv[kUnroll];
    int32_t r[kUnroll], j[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int32_t idx = base + u * kThreads;
      r[u] = idx / vecs;
      j[u] = (idx - r[u] * vecs) * kVec;
#pragma unroll
      for (int e = 0; e < kVec; ++e) {
        rv[u].v[e] = FromFloat<T>(0.0f);
        yv[u].v[e] = FromFloat<T>(0.0f);
      }
      if (idx < total) {
        if (res != nullptr) {
          rv[u] =
              *reinterpret_cast<const V*>(res + r[u] * p.res_stride_n + j[u]);
        }
        if (y != nullptr) {
          yv[u] = *reinterpret_cast<const V*>(y + r[u] * p.y_stride_n + j[u]);
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if (base + u * kThreads >= total) continue;
      if (y != nullptr) {
#pragma unroll
        for (int e = 0; e < kVec; ++e) {
          rv[u].v[e] =
              FromFloat<T>(__fadd_rn(ToFloat(rv[u].v[e]), ToFloat(yv[u].v[e])));
        }
      }
      *reinterpret_cast<V*>(out + r[u] * p.width + j[u]) = rv[u];
    }
  }
}

bool Aligned(const void* ptr) {
  return reinterpret_cast<uintptr_t>(ptr) % 16 == 0;
}

template <typename T>
cudaError_t Scatter(const ScatterAddBlocksParams& p, cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  const int64_t e = sizeof(T);
  const bool res_ok =
      p.residual == nullptr ||
      (Aligned(p.residual) && (p.res_stride_b * e) % 16 == 0 &&
       (p.res_stride_h * e) % 16 == 0 && (p.res_stride_n * e) % 16 == 0);
  const bool vec = p.width % kVec == 0 && res_ok && Aligned(p.y) &&
                   Aligned(p.out) && (p.y_stride_b * e) % 16 == 0 &&
                   (p.y_stride_h * e) % 16 == 0 && (p.y_stride_n * e) % 16 == 0;
  const int64_t vecs = vec ? p.width / kVec : p.width;
  if (p.block_ctas) {
    const int64_t rows =
        std::min(p.block, std::max(int64_t{1}, kVecsPerCta / vecs));
    const int64_t chunks = (p.block + rows - 1) / rows;
    const int64_t blocks = (p.n_tokens + p.block - 1) / p.block;
    // 32-bit index math in the kernel: a CTA's vectors, and the grid.
    if (rows * vecs + kUnroll * kThreads < (int64_t{1} << 31) &&
        blocks * chunks < (int64_t{1} << 31)) {
      const dim3 grid(static_cast<uint32_t>(blocks * chunks), p.heads, p.batch);
      const auto v32 = static_cast<int32_t>(vecs);
      const auto r32 = static_cast<int32_t>(rows);
      const auto c32 = static_cast<int32_t>(chunks);
      if (vec) {
        ScatterAddBlockCtasKernel<T, kVec>
            <<<grid, kThreads, 0, stream>>>(p, v32, r32, c32);
      } else {
        ScatterAddBlockCtasKernel<T, 1>
            <<<grid, kThreads, 0, stream>>>(p, v32, r32, c32);
      }
      return cudaGetLastError();
    }
  }
  const int64_t total = p.n_tokens * vecs;
  const dim3 grid((total + kThreads - 1) / kThreads, p.heads, p.batch);
  if (vec) {
    ScatterAddKernel<T, kVec><<<grid, kThreads, 0, stream>>>(p);
  } else {
    ScatterAddKernel<T, 1><<<grid, kThreads, 0, stream>>>(p);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchScatterAddBlocks(const ScatterAddBlocksParams& p,
                                   cudaStream_t stream) {
  if (p.batch <= 0 || p.batch > 65535 || p.heads <= 0 || p.heads > 65535 ||
      p.n_tokens <= 0 || p.width <= 0 || p.block <= 0 || p.kept_count <= 0) {
    return cudaErrorInvalidValue;
  }
  switch (p.dtype) {
    case DType::kFloat32:
      return Scatter<float>(p, stream);
    case DType::kBFloat16:
      return Scatter<__nv_bfloat16>(p, stream);
    case DType::kFloat16:
      return Scatter<__half>(p, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace lemo::kernels::cuda
