// Block gather (+ RoPE); see gather_blocks.h. One thread per vector of a row:
// the grid's x covers (token, vector) of one (batch, head) row given by y and
// z, so the kept-block lookup is one L1-cached int64 load per vector.
#include <algorithm>
#include <cstdint>

#include "kernels/cuda/device_utils.cuh"
#include "kernels/cuda/gather_blocks.h"

namespace lemo::kernels::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ int64_t SourceToken(const int64_t* kept_row,
                                               int64_t t, int64_t block) {
  return kept_row[t / block] * block + t % block;
}

// Word = the unit moved per access (uint4 = 16 bytes when rows allow it).
template <typename Word>
__global__ void __launch_bounds__(kThreads)
    GatherKernel(const GatherBlocksParams p, int64_t words_per_row,
                 int64_t word_elems) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x;
  if (idx >= p.out_tokens * words_per_row) return;
  const int64_t b = blockIdx.z;
  const int64_t h = blockIdx.y;
  const int64_t t = idx / words_per_row;
  const int64_t w = idx % words_per_row;
  const int64_t src_t = SourceToken(p.kept + b * p.kept_count, t, p.block);
  const char* src = static_cast<const char*>(p.src) +
                    (b * p.src_stride_b + h * p.src_stride_h +
                     src_t * p.src_stride_n + w * word_elems) *
                        p.elem_bytes;
  char* dst =
      static_cast<char*>(p.dst) +
      (((b * p.heads + h) * p.out_tokens + t) * p.width + w * word_elems) *
          p.elem_bytes;
  *reinterpret_cast<Word*>(dst) = *reinterpret_cast<const Word*>(src);
}

// Block-CTA gather (p.block_ctas): CTA x copies rows [r0, r0 + rows_per_cta)
// of output block i = x / chunks, which come from input block kept[b][i].
// The kept lookup and all 64-bit offsets are per CTA; per vector there is one
// 32-bit divide. Each thread issues kUnroll loads before its stores, so that
// enough bytes are in flight per SM to cover DRAM latency.
constexpr int kUnroll = 4;
// Vectors per CTA the host aims for (8 per thread).
constexpr int64_t kWordsPerCta = 8 * kThreads;

template <typename Word>
__global__ void __launch_bounds__(kThreads)
    GatherBlockCtasKernel(const GatherBlocksParams p, int32_t words,
                          int32_t rows_per_cta, int32_t chunks) {
  const int64_t b = blockIdx.z;
  const int64_t h = blockIdx.y;
  const BlockCtaRows cta =
      BlockCtaRowsOf(p.block, p.out_tokens, rows_per_cta, chunks);
  if (cta.rows == 0) return;
  const int32_t i = cta.block_index;
  const int32_t r0 = cta.first_row;
  const int64_t t0 = cta.token;
  const int32_t total = cta.rows * words;
  const int64_t s0 = p.kept[b * p.kept_count + i] * p.block + r0;
  const char* src =
      static_cast<const char*>(p.src) +
      (b * p.src_stride_b + h * p.src_stride_h + s0 * p.src_stride_n) *
          p.elem_bytes;
  char* dst = static_cast<char*>(p.dst) +
              ((b * p.heads + h) * p.out_tokens + t0) * p.width * p.elem_bytes;
  const int64_t src_row = p.src_stride_n * p.elem_bytes;
  const int64_t dst_row = p.width * p.elem_bytes;
  constexpr int64_t kWord = sizeof(Word);
  for (int32_t base = threadIdx.x; base < total; base += kUnroll * kThreads) {
    Word v[kUnroll] = {};
    int32_t r[kUnroll], w[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int32_t idx = base + u * kThreads;
      r[u] = idx / words;
      w[u] = idx - r[u] * words;
      if (idx < total) {
        v[u] =
            *reinterpret_cast<const Word*>(src + r[u] * src_row + w[u] * kWord);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if (base + u * kThreads < total) {
        *reinterpret_cast<Word*>(dst + r[u] * dst_row + w[u] * kWord) = v[u];
      }
    }
  }
}

// Rotates the kVec pairs (j, j + d/2) of row x with tables c, s into row y:
// y_j = x_j c_j - x_{j+h} s_j and y_{j+h} = x_{j+h} c_{j+h} + x_j s_{j+h},
// each product and the sum rounded to T (ATen's bf16 ops round every op);
// __fmul_rn/__fadd_rn forbid FMA contraction so fp32 is bit-equal too.
template <typename T, int kVec>
__device__ __forceinline__ void RotateRow(const T* x, const T* c, const T* s,
                                          T* y, int64_t j, int64_t half) {
  using V = Vec<T, kVec>;
  const V x1 = *reinterpret_cast<const V*>(x + j);
  const V x2 = *reinterpret_cast<const V*>(x + j + half);
  const V c1 = *reinterpret_cast<const V*>(c + j);
  const V c2 = *reinterpret_cast<const V*>(c + j + half);
  const V s1 = *reinterpret_cast<const V*>(s + j);
  const V s2 = *reinterpret_cast<const V*>(s + j + half);
  V y1, y2;
#pragma unroll
  for (int e = 0; e < kVec; ++e) {
    const float a1 = ToFloat(x1.v[e]), a2 = ToFloat(x2.v[e]);
    // rotate_half(x) = (-x2, x1); -x2 is exact in any dtype.
    const float p1 = ToFloat(FromFloat<T>(__fmul_rn(a1, ToFloat(c1.v[e]))));
    const float q1 = ToFloat(FromFloat<T>(__fmul_rn(-a2, ToFloat(s1.v[e]))));
    const float p2 = ToFloat(FromFloat<T>(__fmul_rn(a2, ToFloat(c2.v[e]))));
    const float q2 = ToFloat(FromFloat<T>(__fmul_rn(a1, ToFloat(s2.v[e]))));
    y1.v[e] = FromFloat<T>(__fadd_rn(p1, q1));
    y2.v[e] = FromFloat<T>(__fadd_rn(p2, q2));
  }
  *reinterpret_cast<V*>(y + j) = y1;
  *reinterpret_cast<V*>(y + j + half) = y2;
}

// Each thread rotates kVec pairs of one output row (RotateRow), found from
// its flat index with 64-bit math.
template <typename T, int kVec>
__global__ void __launch_bounds__(kThreads)
    GatherRopeKernel(const GatherBlocksRopeParams rp) {
  const GatherBlocksParams& p = rp.gather;
  const int64_t half = p.width / 2;
  const int64_t vecs = half / kVec;
  const int64_t idx = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x;
  if (idx >= p.out_tokens * vecs) return;
  const int64_t b = blockIdx.z;
  const int64_t h = blockIdx.y;
  const int64_t t = idx / vecs;
  const int64_t j = (idx % vecs) * kVec;
  const int64_t src_t = SourceToken(p.kept + b * p.kept_count, t, p.block);
  const T* x = static_cast<const T*>(p.src) + b * p.src_stride_b +
               h * p.src_stride_h + src_t * p.src_stride_n;
  const int64_t row = src_t * rp.table_stride_n + b * rp.table_stride_b;
  const T* c = static_cast<const T*>(rp.cos) + row;
  const T* s = static_cast<const T*>(rp.sin) + row;
  T* y =
      static_cast<T*>(p.dst) + ((b * p.heads + h) * p.out_tokens + t) * p.width;
  RotateRow<T, kVec>(x, c, s, y, j, half);
}

// Block-CTA RoPE gather (p.block_ctas): CTA x rotates rows [r0, r0 +
// rows_per_cta) of output block i = x / chunks, which come from input block
// kept[b][i]; as GatherBlockCtasKernel, the lookups and 64-bit offsets are per
// CTA and each item costs one 32-bit divide.
template <typename T, int kVec>
__global__ void __launch_bounds__(kThreads)
    GatherRopeBlockCtasKernel(const GatherBlocksRopeParams rp, int32_t vecs,
                              int32_t rows_per_cta, int32_t chunks) {
  const GatherBlocksParams& p = rp.gather;
  const int64_t b = blockIdx.z;
  const int64_t h = blockIdx.y;
  const BlockCtaRows cta =
      BlockCtaRowsOf(p.block, p.out_tokens, rows_per_cta, chunks);
  if (cta.rows == 0) return;
  const int32_t i = cta.block_index;
  const int32_t r0 = cta.first_row;
  const int64_t t0 = cta.token;
  const int32_t total = cta.rows * vecs;
  const int64_t s0 = p.kept[b * p.kept_count + i] * p.block + r0;
  const int64_t half = p.width / 2;
  const T* x = static_cast<const T*>(p.src) + b * p.src_stride_b +
               h * p.src_stride_h + s0 * p.src_stride_n;
  const int64_t row = s0 * rp.table_stride_n + b * rp.table_stride_b;
  const T* c = static_cast<const T*>(rp.cos) + row;
  const T* s = static_cast<const T*>(rp.sin) + row;
  T* y = static_cast<T*>(p.dst) +
         ((b * p.heads + h) * p.out_tokens + t0) * p.width;
  for (int32_t idx = threadIdx.x; idx < total; idx += kThreads) {
    const int32_t r = idx / vecs;
    const int64_t j = static_cast<int64_t>(idx - r * vecs) * kVec;
    RotateRow<T, kVec>(x + r * p.src_stride_n, c + r * rp.table_stride_n,
                       s + r * rp.table_stride_n, y + r * p.width, j, half);
  }
}

bool Divides(int64_t unit, const void* ptr) {
  return reinterpret_cast<uintptr_t>(ptr) % unit == 0;
}

bool Divides(int64_t unit, int64_t bytes) { return bytes % unit == 0; }

// Largest access (16, 8, 4 or 2 bytes, never less than one element) that
// every row start and the row length are aligned to.
int64_t WordBytes(const GatherBlocksParams& p) {
  const int64_t e = p.elem_bytes;
  for (int64_t w : {16, 8, 4, 2}) {
    if (w < e) break;
    if (Divides(w, p.src) && Divides(w, p.dst) && Divides(w, p.width * e) &&
        Divides(w, p.src_stride_b * e) && Divides(w, p.src_stride_h * e) &&
        Divides(w, p.src_stride_n * e)) {
      return w;
    }
  }
  return e;
}

bool ValidGrid(const GatherBlocksParams& p) {
  const int64_t e = p.elem_bytes;
  return (e == 1 || e == 2 || e == 4 || e == 8) && p.batch > 0 &&
         p.batch <= 65535 && p.heads > 0 && p.heads <= 65535 &&
         p.out_tokens > 0 && p.width > 0 && p.block > 0 && p.kept_count > 0;
}

template <typename Word>
cudaError_t Gather(const GatherBlocksParams& p, cudaStream_t stream) {
  const int64_t word_elems = sizeof(Word) / p.elem_bytes;
  const int64_t words = p.width / word_elems;
  if (p.block_ctas) {
    const int64_t rows = std::min(
        p.block,
        std::max(int64_t{1}, kWordsPerCta / std::max(words, int64_t{1})));
    const int64_t chunks = (p.block + rows - 1) / rows;
    // 32-bit index math in the kernel: a CTA's vectors, and the grid.
    if (rows * words + kUnroll * kThreads < (int64_t{1} << 31) &&
        p.kept_count * chunks < (int64_t{1} << 31)) {
      const dim3 grid(static_cast<uint32_t>(p.kept_count * chunks), p.heads,
                      p.batch);
      GatherBlockCtasKernel<Word><<<grid, kThreads, 0, stream>>>(
          p, static_cast<int32_t>(words), static_cast<int32_t>(rows),
          static_cast<int32_t>(chunks));
      return cudaGetLastError();
    }
  }
  const int64_t total = p.out_tokens * words;
  const dim3 grid((total + kThreads - 1) / kThreads, p.heads, p.batch);
  GatherKernel<Word><<<grid, kThreads, 0, stream>>>(p, words, word_elems);
  return cudaGetLastError();
}

template <typename T>
cudaError_t GatherRope(const GatherBlocksRopeParams& rp, cudaStream_t stream) {
  const GatherBlocksParams& p = rp.gather;
  constexpr int kVec = 16 / sizeof(T);
  const int64_t half = p.width / 2;
  const int64_t e = sizeof(T);
  const bool vec =
      half % kVec == 0 && Divides(16, p.src) && Divides(16, p.dst) &&
      Divides(16, rp.cos) && Divides(16, rp.sin) &&
      Divides(16, p.src_stride_b * e) && Divides(16, p.src_stride_h * e) &&
      Divides(16, p.src_stride_n * e) && Divides(16, rp.table_stride_b * e) &&
      Divides(16, rp.table_stride_n * e);
  const int64_t vecs = vec ? half / kVec : half;
  if (p.block_ctas) {
    const int64_t rows =
        std::min(p.block, std::max(int64_t{1}, kWordsPerCta / vecs));
    const int64_t chunks = (p.block + rows - 1) / rows;
    if (rows * vecs + kThreads < (int64_t{1} << 31) &&
        p.kept_count * chunks < (int64_t{1} << 31)) {
      const dim3 grid(static_cast<uint32_t>(p.kept_count * chunks), p.heads,
                      p.batch);
      const auto v32 = static_cast<int32_t>(vecs);
      const auto r32 = static_cast<int32_t>(rows);
      const auto c32 = static_cast<int32_t>(chunks);
      if (vec) {
        GatherRopeBlockCtasKernel<T, kVec>
            <<<grid, kThreads, 0, stream>>>(rp, v32, r32, c32);
      } else {
        GatherRopeBlockCtasKernel<T, 1>
            <<<grid, kThreads, 0, stream>>>(rp, v32, r32, c32);
      }
      return cudaGetLastError();
    }
  }
  const int64_t total = p.out_tokens * vecs;
  const dim3 grid((total + kThreads - 1) / kThreads, p.heads, p.batch);
  if (vec) {
    GatherRopeKernel<T, kVec><<<grid, kThreads, 0, stream>>>(rp);
  } else {
    GatherRopeKernel<T, 1><<<grid, kThreads, 0, stream>>>(rp);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchGatherBlocks(const GatherBlocksParams& p,
                               cudaStream_t stream) {
  if (!ValidGrid(p)) return cudaErrorInvalidValue;
  switch (WordBytes(p)) {
    case 16:
      return Gather<uint4>(p, stream);
    case 8:
      return Gather<uint2>(p, stream);
    case 4:
      return Gather<uint32_t>(p, stream);
    case 2:
      return Gather<uint16_t>(p, stream);
    default:
      return Gather<uint8_t>(p, stream);
  }
}

cudaError_t LaunchGatherBlocksRope(const GatherBlocksRopeParams& rp,
                                   cudaStream_t stream) {
  const GatherBlocksParams& p = rp.gather;
  if (!ValidGrid(p) || p.width % 2 != 0 ||
      p.elem_bytes != DTypeBytes(rp.dtype)) {
    return cudaErrorInvalidValue;
  }
  switch (rp.dtype) {
    case DType::kFloat32:
      return GatherRope<float>(rp, stream);
    case DType::kBFloat16:
      return GatherRope<__nv_bfloat16>(rp, stream);
    case DType::kFloat16:
      return GatherRope<__half>(rp, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace lemo::kernels::cuda
