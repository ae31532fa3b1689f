// Block gather; see gather_blocks_kernel.h. One thread per vector of a row:
// the grid's x covers (token, vector) of one (batch, head) row given by y and
// z, so the kept-block lookup is one L1-cached int64 load per vector.
#include <algorithm>
#include <cstdint>

#include "kernels/common/device_utils.cuh"
#include "kernels/gather_blocks/gather_blocks_kernel.h"

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

}  // namespace lemo::kernels::cuda
