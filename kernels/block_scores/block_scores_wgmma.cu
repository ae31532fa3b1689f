// Fused block scoring on Hopper warpgroup MMA (kBlockScoresWgmma; see
// block_scores_kernel.h for the semantics and block_scores_wgmma.h for the
// entry).
//
// CTA = 2 warpgroups (256 threads) over 128 rows x 256 columns of one batch
// row: warpgroup g owns rows 64 g .. 64 g + 63 and all 256 columns, as two
// 128-column halves. Per head and half, S = Q K^T (64 x 128, fp32) is one
// chain of D / 16 wgmma.mma_async m64n128k16 with both operands read from
// shared memory through matrix descriptors; the warpgroup then adds ReLU(S)
// into its head sum (2 x 64 fp32 per thread; the positive scale is applied to
// the tile max), so registers hold 64 (S) + 128 (head sum). Per head a CTA
// moves 32 KB of Q and 64 KB of K (d = 128) for 8.4 MFLOP: 87 FLOP/B of L2
// traffic, against 64 for the 128x128 mma.sync kernel.
//
// Shared memory: kStages ring stages of Q (128 x D) and of K (256 x D), filled
// by cp.async from all threads (prefetch distance kStages - 1 heads). K is
// loaded only for the first head of each KV group (GQA), into the stage of its
// KV head. Tiles use the 128-byte swizzle the descriptors declare (layout type
// 1): a tile is D / 64 panels of rows x 64 elements (128 bytes per row), each
// panel 1024-byte aligned; 16-byte chunk c of row r sits at chunk c ^ (r % 8).
// Descriptors: start address >> 4 in bits 0-13, leading byte offset (unused
// by swizzled K-major layouts; 1) in 16-29, stride byte offset 1024 >> 4 (the
// distance between 8-row groups) in 32-45, base offset 0 in 49-51, layout
// type in 62-63. Stepping K by 16 elements inside a panel adds 32 bytes to the
// start address (the swizzle is applied to the final address bits).
//
// Rows and columns past N are zero-filled (cp.async with 0 source bytes), so
// they score ReLU(0) = 0, which never changes a max of non-negative scores;
// the causal mask keeps column <= row. Only sm_90a has wgmma: other targets
// compile the kernel to a trap.
#include "kernels/block_scores/block_scores_wgmma.h"

#include <cmath>

#include "kernels/block_scores/block_scores_sm90.cuh"
#include "kernels/common/device_utils.cuh"
#include "kernels/common/sm90.cuh"

namespace lemo::kernels::cuda {
namespace {

constexpr int kThreads = 256;

#ifdef LEMO_SM90_AVAILABLE
constexpr int kRows = sm90::kCtaRows;
constexpr int kCols = sm90::kCtaCols;
using sm90::AddRelu;
using sm90::FenceProxyAsync;
using sm90::IssueScoreHalf;
using sm90::kHalf;
using sm90::kPanelBytes;
using sm90::KTileBytes;
using sm90::QTileBytes;
using sm90::StoreCtaTileMaxes;
using sm90::SwizzledOffset;
using sm90::WaitScores;
using sm90::WarpTileMaxes;

// CTA t of a batch row: row pair P (rows 256 P ..) has 2 (P + 1) CTAs, so t =
// P (P + 1) + j, j < 2 P + 2; row block I = 2 P + j / (P + 1), column block J
// = j % (P + 1), and J * 256 <= I * 128 + 127 holds for all of them.
__device__ __forceinline__ void CtaCoords(int t, int& big_i, int& big_j) {
  int pair = static_cast<int>(
      (sqrtf(4.0f * static_cast<float>(t) + 1.0f) - 1.0f) * 0.5f);
  while (pair > 0 && pair * (pair + 1) > t) --pair;
  while ((pair + 1) * (pair + 2) <= t) ++pair;
  const int j = t - pair * (pair + 1);
  big_i = 2 * pair + j / (pair + 1);
  big_j = j % (pair + 1);
}

#endif  // LEMO_SM90_AVAILABLE

template <typename T, int D>
__global__ void __launch_bounds__(kThreads, 1)
    BlockScoresWgmmaKernel(const BlockScoresParams p) {
#ifdef LEMO_SM90_AVAILABLE
  constexpr int kStages = sm90::RingStages<D>();
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  constexpr int kQBytes = QTileBytes<T, D>();
  constexpr int kKBytes = KTileBytes<T, D>();
  extern __shared__ unsigned char smem_raw[];
  __shared__ float warp_max[kThreads / 32][4];
  // 1024-byte alignment of every panel (the swizzle is a function of the
  // address bits 4-9).
  const uint32_t raw = SmemAddr(smem_raw);
  const uint32_t base = (raw + 1023) & ~1023u;
  unsigned char* smem = smem_raw + (base - raw);
  const uint32_t q_ring = base;
  const uint32_t k_ring = base + kStages * kQBytes;

  const int b = blockIdx.y;
  int big_i = 0, big_j = 0;
  CtaCoords(static_cast<int>(blockIdx.x), big_i, big_j);
  const int row0 = big_i * kRows;
  const int col0 = big_j * kCols;
  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int wg = tid >> 7;          // warpgroup: rows 64 wg ..
  const int warp = (tid >> 5) & 3;  // warp in the warpgroup: 16 rows
  const int group = p.hq / p.hkv;
  const T* q = static_cast<const T*>(p.q) + b * p.q_stride_b;
  const T* k = static_cast<const T*>(p.k) + b * p.k_stride_b;

  auto load_head = [&](int h) {
    const int stage = h % kStages;
    unsigned char* qs = smem + stage * kQBytes;
    const T* qh = q + h * p.q_stride_h;
#pragma unroll 1
    for (int idx = tid; idx < kRows * kChunks; idx += kThreads) {
      const int r = idx / kChunks;
      const int c = idx % kChunks;
      const int qr = row0 + r;
      CpAsync16(
          qs + SwizzledOffset(kRows, r, c),
          qh + static_cast<int64_t>(min(qr, p.n - 1)) * p.q_stride_n + c * 8,
          qr < p.n ? 16 : 0);
    }
    if (h % group != 0) return;
    const int kv = h / group;
    unsigned char* ks = smem + kStages * kQBytes + (kv % kStages) * kKBytes;
    const T* kh = k + kv * p.k_stride_h;
#pragma unroll 1
    for (int idx = tid; idx < kCols * kChunks; idx += kThreads) {
      const int r = idx / kChunks;
      const int c = idx % kChunks;
      const int kr = col0 + r;
      CpAsync16(
          ks + SwizzledOffset(kCols, r, c),
          kh + static_cast<int64_t>(min(kr, p.n - 1)) * p.k_stride_n + c * 8,
          kr < p.n ? 16 : 0);
    }
  };

  // A warpgroup half whose rows all precede its columns (or lie past N) only
  // ever sees masked or zero scores: it skips the math (uniform per
  // warpgroup, as wgmma requires) but keeps the barriers.
  const int wg_row0 = row0 + wg * 64;
  bool active[2];
#pragma unroll
  for (int hf = 0; hf < 2; ++hf) {
    active[hf] = wg_row0 < p.n && wg_row0 + 63 >= col0 + hf * kHalf;
  }

  float acc[2][64];
#pragma unroll
  for (int hf = 0; hf < 2; ++hf)
#pragma unroll
    for (int i = 0; i < 64; ++i) acc[hf][i] = 0.0f;
  float s[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) s[i] = 0.0f;

#pragma unroll 1
  for (int h = 0; h < kStages - 1 && h < p.hq; ++h) {
    load_head(h);
    CpAsyncCommit();
  }
  // Pad the prologue to kStages - 1 groups, so that "all but the newest
  // kStages - 1 groups" always means "head h has landed".
#pragma unroll 1
  for (int h = p.hq; h < kStages - 1; ++h) CpAsyncCommit();

#pragma unroll 1
  for (int h = 0; h < p.hq; ++h) {
    // Every warpgroup is done with head h - 1 (its wgmmas waited), whose
    // stages the next load reuses.
    __syncthreads();
    if (h + kStages - 1 < p.hq) load_head(h + kStages - 1);
    CpAsyncCommit();  // possibly empty: keeps the group count regular
    CpAsyncWait<kStages - 1>();
    FenceProxyAsync();
    __syncthreads();
    const uint32_t qs =
        q_ring + (h % kStages) * kQBytes + wg * 64 * kPanelBytes;
    const uint32_t ks = k_ring + ((h / group) % kStages) * kKBytes;
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      if (!active[hf]) continue;
      IssueScoreHalf<T, D>(s, qs, kRows, ks, kCols, hf);
      WaitScores(s);
      AddRelu(acc[hf], s);
    }
  }

  float m[4];
  WarpTileMaxes(acc, wg_row0, col0, warp, lane, m);
  if (lane == 0) {
#pragma unroll
    for (int c = 0; c < 4; ++c) warp_max[tid >> 5][c] = m[c];
  }
  __syncthreads();
  StoreCtaTileMaxes(warp_max, tid, b, big_i, big_j, p);
#else
  __trap();
#endif
}

template <typename T, int D>
cudaError_t Launch(const BlockScoresParams& p, cudaStream_t stream) {
  return sm90::LaunchOverCtaPairs<T, D>(BlockScoresWgmmaKernel<T, D>, kThreads,
                                        p, stream, p);
}

}  // namespace

cudaError_t LaunchBlockScoresWgmma(const BlockScoresParams& p,
                                   cudaStream_t stream) {
  return sm90::DispatchWgmma(p,
                             {Launch<__nv_bfloat16, 64>, Launch<__half, 64>,
                              Launch<__nv_bfloat16, 128>, Launch<__half, 128>},
                             stream);
}

}  // namespace lemo::kernels::cuda
