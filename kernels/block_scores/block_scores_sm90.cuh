// The pieces both wgmma block-scoring kernels share (kBlockScoresWgmma in
// block_scores_wgmma.cu, kBlockScoresCluster in block_scores_cluster.cu),
// built on the PTX wrappers of kernels/common/sm90.cuh: the 128 x 256 CTA and
// its shared-memory rings, the launch over pairs of row blocks, the dtype /
// head-dim dispatch, and the score chain, ReLU head sum and causal tile-max
// epilogue. Device-only; include from .cu files.
//
//   cudaError_t LaunchBlockScoresWgmma(const BlockScoresParams& p,
//                                      cudaStream_t stream) {
//     return sm90::DispatchWgmma(p, {Launch<__nv_bfloat16, 64>, ...}, stream);
//   }
#ifndef LEMO_KERNELS_BLOCK_SCORES_BLOCK_SCORES_SM90_CUH_
#define LEMO_KERNELS_BLOCK_SCORES_BLOCK_SCORES_SM90_CUH_

#include <cstdint>

#include "kernels/block_scores/block_scores_kernel.h"
#include "kernels/common/device_utils.cuh"
#include "kernels/common/sm90.cuh"

namespace lemo::kernels::cuda::sm90 {

// The CTA of both wgmma kernels: 2 warpgroups x 64 rows, 2 halves x 128
// columns, with rings of head stages (Q and K tiles) in shared memory.
constexpr int kCtaRows = 2 * kBlockScoresTile;
constexpr int kCtaCols = 4 * kBlockScoresTile;

template <int D>
constexpr int RingStages() {
  return D == 64 ? 3 : 2;
}
// Bytes of shared memory for one Q tile and one K tile.
template <typename T, int D>
constexpr int QTileBytes() {
  return kCtaRows * D * static_cast<int>(sizeof(T));
}
template <typename T, int D>
constexpr int KTileBytes() {
  return kCtaCols * D * static_cast<int>(sizeof(T));
}
// Dynamic shared memory: the rings plus 1 KB to align them to 1024 bytes.
template <typename T, int D>
constexpr int RingSmemBytes() {
  return RingStages<D>() * (QTileBytes<T, D>() + KTileBytes<T, D>()) + 1024;
}

// Launches `kernel` (either wgmma kernel, with its ring in dynamic shared
// memory) over the CTAs of one batch row per grid row: pairs (pairs + 1) CTAs
// for the pairs of 128-row blocks, which both kernels enumerate in their own
// order.
template <typename T, int D, typename... Params, typename... Args>
cudaError_t LaunchOverCtaPairs(void (*kernel)(Params...), int threads,
                               const BlockScoresParams& p, cudaStream_t stream,
                               const Args&... args) {
  const int pairs = (p.n + 2 * kCtaRows - 1) / (2 * kCtaRows);
  const dim3 grid(pairs * (pairs + 1), p.batch);
  constexpr int kSmem = RingSmemBytes<T, D>();
  const cudaError_t err = cudaFuncSetAttribute(
      kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  if (err != cudaSuccess) return err;
  kernel<<<grid, threads, kSmem, stream>>>(args...);
  return cudaGetLastError();
}

// One instantiation of a wgmma kernel's launcher per (dtype, head dim).
using WgmmaLauncher = cudaError_t (*)(const BlockScoresParams&, cudaStream_t);
struct WgmmaLaunchers {
  WgmmaLauncher bf16_d64, f16_d64, bf16_d128, f16_d128;
};
// The checks and dispatch both wgmma kernels' entries share: bf16 or fp16, d
// = 64 or 128, and scale > 0 (the kernels apply it after the ReLU and the
// tile max); anything else is cudaErrorInvalidValue.
inline cudaError_t DispatchWgmma(const BlockScoresParams& p,
                                 const WgmmaLaunchers& launchers,
                                 cudaStream_t stream) {
  if (p.dtype == DType::kFloat32 || (p.d != 64 && p.d != 128) ||
      !(p.scale > 0.0f)) {
    return cudaErrorInvalidValue;
  }
  const bool bf16 = p.dtype == DType::kBFloat16;
  if (p.d == 64) {
    return (bf16 ? launchers.bf16_d64 : launchers.f16_d64)(p, stream);
  }
  return (bf16 ? launchers.bf16_d128 : launchers.f16_d128)(p, stream);
}

#ifdef LEMO_SM90_AVAILABLE
// Issues (without waiting) the wgmma chain S = Q K^T for one warpgroup's 64
// rows and one 128-column half `hf`: `q` is the warpgroup's first row in a
// swizzled Q tile of `q_rows` rows, `k` a swizzled K tile of `k_rows` rows.
template <typename T, int D>
__device__ __forceinline__ void IssueScoreHalf(float (&s)[64], uint32_t q,
                                               int q_rows, uint32_t k,
                                               int k_rows, int hf) {
  FenceOperands(s);
  WgmmaFence();
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    // Panel kk / 4, then 32 bytes per 16-element K step inside it.
    const uint32_t koff = (kk & 3) << 5;
    const uint64_t da = SmemDesc(q + (kk >> 2) * q_rows * kPanelBytes + koff);
    const uint64_t db = SmemDesc(k + (kk >> 2) * k_rows * kPanelBytes +
                                 hf * kHalf * kPanelBytes + koff);
    WgmmaM64N128K16<T>(s, da, db, kk > 0 ? 1 : 0);
  }
  WgmmaCommit();
}

// Waits for the chain above; S may be read after this.
__device__ __forceinline__ void WaitScores(float (&s)[64]) {
  WgmmaWaitAll();
  FenceOperands(s);
}

// Adds ReLU(S) into the head sum. ReLU(s * scale) = scale * ReLU(s) for
// scale > 0, and the tile max commutes with it: the scale is applied once per
// tile at the end, saving one of three FP ops per score (a rounding-level
// difference from the reference's order).
__device__ __forceinline__ void AddRelu(float (&acc)[64],
                                        const float (&s)[64]) {
#pragma unroll
  for (int i = 0; i < 64; ++i) acc[i] += fmaxf(s[i], 0.0f);
}

// The causal max of each of this warp's four 64-column tiles of a
// warpgroup's 64 x 256 head sum (m[2 hf + c]: half hf, tile c), reduced over
// the warp. Accumulator layout of m64nNk16 (fp32): register i of lane l in
// warp w of the warpgroup is row 16 w + l / 4 + 8 ((i % 4) / 2), column
// 8 (i / 4) + 2 (l % 4) + i % 2.
__device__ __forceinline__ void WarpTileMaxes(const float (&acc)[2][64],
                                              int wg_row0, int col0, int warp,
                                              int lane, float (&m)[4]) {
#pragma unroll
  for (int c = 0; c < 4; ++c) m[c] = 0.0f;
#pragma unroll
  for (int hf = 0; hf < 2; ++hf)
#pragma unroll
    for (int i = 0; i < 64; ++i) {
      const int gr = wg_row0 + warp * 16 + (lane >> 2) + ((i & 3) >> 1) * 8;
      const int gc =
          col0 + hf * kHalf + (i >> 2) * 8 + (lane & 3) * 2 + (i & 1);
      if (gc <= gr)
        m[hf * 2 + (i >> 5)] = fmaxf(m[hf * 2 + (i >> 5)], acc[hf][i]);
    }
#pragma unroll
  for (int c = 0; c < 4; ++c) m[c] = WarpMax(m[c]);
}

// The last step of a 128 x 256 CTA (batch row b, row block pair big_i, column
// block quad big_j): `warp_max` holds each of
// the 8 consumer warps' WarpTileMaxes; threads 0-7 reduce a tile each over
// its warpgroup's 4 warps, scale it and store it if it is on or below the
// diagonal and inside the map.
__device__ __forceinline__ void StoreCtaTileMaxes(const float (&warp_max)[8][4],
                                                  int tid, int b, int big_i,
                                                  int big_j,
                                                  const BlockScoresParams& p) {
  if (tid >= 8) return;
  const int tr = tid >> 2;  // tile row in the CTA = warpgroup
  const int tc = tid & 3;   // tile column in the CTA
  float v = 0.0f;
#pragma unroll
  for (int w = 0; w < 4; ++w) v = fmaxf(v, warp_max[tr * 4 + w][tc]);
  v *= p.scale;
  const int nb = (p.n + kBlockScoresTile - 1) / kBlockScoresTile;
  const int gi = big_i * 2 + tr;
  const int gj = big_j * 4 + tc;
  if (gi < nb && gj <= gi) {
    p.out[(static_cast<int64_t>(b) * nb + gi) * nb + gj] = v;
  }
}
#endif  // LEMO_SM90_AVAILABLE

}  // namespace lemo::kernels::cuda::sm90

#endif  // LEMO_KERNELS_BLOCK_SCORES_BLOCK_SCORES_SM90_CUH_
