// Fused block scoring on Hopper with 2-CTA clusters, TMA multicast and
// ping-ponged warpgroups (kBlockScoresCluster; see block_scores_kernel.h for
// the semantics and block_scores_cluster.h for the entry).
//
// Why (bench/kernels/NOTES.md): the wgmma kernel (block_scores_wgmma.cu) waits
// on its loads. Each CTA re-reads a 128 x D Q tile and a 256 x D K tile per
// head (96 KiB at d = 128 for 8.4 MFLOP), and the head sum must stay in
// registers, which caps the tile. Here the two CTAs of a cluster cover row
// blocks 2P and 2P + 1 against the same 256 columns: each fetches its own Q
// and half of the shared K tile, and TMA multicasts that half into both CTAs'
// shared memory. L2 traffic per CTA and head drops to 32 + 32 KiB (1.5x less).
//
// CTA = 2 consumer warpgroups (as in the wgmma kernel: warpgroup g owns rows
// 64 g .. 64 g + 63 x 256 columns, S and the head sum in registers) + one
// producer warpgroup whose first thread issues every TMA load. Stages: a ring
// of RingStages<D>() head stages, each with a `full` mbarrier (its Q, and K on
// the first head of a KV group, landed: 1 arrival + the bytes) and an `empty`
// one (both CTAs' warpgroups are done reading it: 4 arrivals, two of them
// remote), so loads run a ring's depth ahead without CTA-wide barriers.
// The warpgroups take turns issuing their wgmma chains (named barriers 1 and
// 2), so one's ReLU-add epilogue overlaps the other's MMAs (FlashAttention-3's
// ping-pong) instead of both idling the tensor cores at the same moments.
//
// TMA writes the 128-byte swizzle that the descriptors declare (sm90.cuh), and
// fills rows past N with zeros, which score ReLU(0) = 0. Only sm_90a has
// wgmma, TMA and clusters: other targets compile the kernel to a trap.
#include "kernels/block_scores/block_scores_cluster.h"

#include <cuda.h>
#include <cudaTypedefs.h>

#include <cmath>

#include "kernels/block_scores/block_scores_sm90.cuh"
#include "kernels/common/device_utils.cuh"
#include "kernels/common/sm90.cuh"

namespace lemo::kernels::cuda {
namespace {

constexpr int kRows = sm90::kCtaRows;
constexpr int kCols = sm90::kCtaCols;
constexpr int kClusterSize = 2;  // CTAs sharing one K tile: row blocks 2P, 2P+1
constexpr int kKRowsPerCta = kCols / kClusterSize;  // K rows each CTA fetches
constexpr int kBoxCols = 64;  // elements per TMA box row (128 bytes)
constexpr int kConsumerThreads = 256;
// + a producer warpgroup: ptxas budgeted a 288-thread CTA (one producer warp)
// like a 384-thread one (168 registers), so the producer is a whole warpgroup
// that gives most of its registers to the consumers.
constexpr int kThreads = kConsumerThreads + 128;

#ifdef LEMO_SM90_AVAILABLE
// Clusters run in squares of kSquare x kSquare (row pair, column block): the
// ~66 clusters in flight then share 8 Q and 8 K tiles per head in L2 instead
// of 1 Q and ~66 K tiles (a row pair at a time), many of which missed L2
// (9.1-9.2 -> 8.8 ms at N = 32K on the H100; no change at 8K-16K).
constexpr int kSquare = 8;
// Registers per thread after the hand-over: 128 x 24 + 256 x 240 = 64,512,
// the launch's 384 x 168 (the consumers need ~207).
constexpr int kProducerRegs = 24;
constexpr int kConsumerRegs = 240;
// Named barriers (0 is __syncthreads): warpgroup g waits on kTurnBarrier + g
// for its turn to issue; kEpilogueBarrier joins the consumers at the end.
constexpr int kTurnBarrier = 1;
constexpr int kEpilogueBarrier = 3;

using sm90::AddRelu;
using sm90::ClaimRegisters;
using sm90::ClusterCtaRank;
using sm90::ClusterSync;
using sm90::FenceMbarrierInit;
using sm90::IssueScoreHalf;
using sm90::kHalf;
using sm90::kPanelBytes;
using sm90::KTileBytes;
using sm90::MbarrierArriveCluster;
using sm90::MbarrierArriveExpectTx;
using sm90::MbarrierInit;
using sm90::MbarrierWait;
using sm90::NamedBarrierArrive;
using sm90::NamedBarrierSync;
using sm90::QTileBytes;
using sm90::ReleaseRegisters;
using sm90::StoreCtaTileMaxes;
using sm90::TmaLoad4d;
using sm90::TmaLoad4dMulticast;
using sm90::WaitScores;
using sm90::WarpTileMaxes;

// The row t of a triangle enumerated row by row (row t has t + 1 entries)
// that entry v falls in.
__device__ __forceinline__ int TriangleRow(int v) {
  int t = static_cast<int>((sqrtf(8.0f * static_cast<float>(v) + 1.0f) - 1.0f) *
                           0.5f);
  while (t > 0 && t * (t + 1) / 2 > v) --t;
  while ((t + 1) * (t + 2) / 2 <= v) ++t;
  return t;
}

// Cluster u of a batch row with `pairs` row pairs -> (row pair P, 256-column
// block J <= P); the CTA of cluster rank r takes row block 2P + r, and
// J * 256 <= (2P + r) * 128 + 127 holds for all of them. The triangle of
// (P, J) is cut into super-rows of kSquare pairs: super-row R holds R full
// kSquare x kSquare squares, then the triangle of its diagonal; u runs through
// super-rows, squares, and rows within a square. With `in_squares` false, u
// runs through row pairs instead (kept to measure what the squares buy).
__device__ __forceinline__ void ClusterCoords(int u, int pairs, bool in_squares,
                                              int& big_i, int& big_j,
                                              int rank) {
  int pair = 0;
  if (!in_squares) {
    pair = TriangleRow(u);
    big_j = u - pair * (pair + 1) / 2;
    big_i = 2 * pair + rank;
    return;
  }
  constexpr int w = kSquare;
  int first = 0;  // first cluster of super-row r
  int r = 0;
  int rows = min(w, pairs);  // pairs in super-row r
  for (;;) {
    const int count = r * rows * w + rows * (rows + 1) / 2;
    if (u < first + count) break;
    first += count;
    ++r;
    rows = min(w, pairs - r * w);
  }
  int v = u - first;
  if (v < r * rows * w) {  // square v / (rows w) of the super-row
    const int in_square = v % (rows * w);
    pair = r * w + in_square / w;
    big_j = (v / (rows * w)) * w + in_square % w;
  } else {  // the diagonal triangle
    v -= r * rows * w;
    const int t = TriangleRow(v);
    pair = r * w + t;
    big_j = r * w + v - t * (t + 1) / 2;
  }
  big_i = 2 * pair + rank;
}
#endif  // LEMO_SM90_AVAILABLE

#ifdef LEMO_SM90_AVAILABLE
// What both roles of a CTA know: its place in the map and its shared memory.
struct ClusterCta {
  uint32_t q_ring, k_ring;  // shared addresses of the Q and K rings
  uint32_t full0, empty0;   // shared addresses of the first barrier of each
  int b;                    // batch row
  int rank;                 // rank in the cluster: row block 2P + rank
  int big_i, big_j;         // 128-row block and 256-column block
  int row0, col0;           // first row and column
  int group;                // query heads per KV head
};
constexpr uint32_t kBarBytes = sizeof(uint64_t);

// The producer: one thread issues every head's TMA loads, a ring ahead.
template <typename T, int D>
__device__ __forceinline__ void ProduceHeads(const ClusterCta& c,
                                             const CUtensorMap* q_map,
                                             const CUtensorMap* k_map, int hq) {
  constexpr int kStages = sm90::RingStages<D>();
  constexpr int kQBytes = QTileBytes<T, D>();
  constexpr int kKBytes = KTileBytes<T, D>();
#pragma unroll 1
  for (int h = 0; h < hq; ++h) {
    const int stage = h % kStages;
    // Head h - kStages used this stage: wait until both CTAs' warpgroups
    // have released it (the multicast below writes into the peer too).
    if (h >= kStages) {
      MbarrierWait(c.empty0 + stage * kBarBytes, ((h / kStages) - 1) & 1);
    }
    const bool load_k = h % c.group == 0;
    const uint32_t bar = c.full0 + stage * kBarBytes;
    // The peer's half of K completes on this barrier too, so the bytes
    // expected are the whole K tile.
    MbarrierArriveExpectTx(bar, kQBytes + (load_k ? kKBytes : 0));
#pragma unroll
    for (int panel = 0; panel < D / kBoxCols; ++panel) {
      TmaLoad4d(c.q_ring + stage * kQBytes + panel * kRows * kPanelBytes, q_map,
                bar, panel * kBoxCols, c.row0, h, c.b);
    }
    if (!load_k) continue;
    const int kv = h / c.group;
    const uint32_t ks = c.k_ring + (kv % kStages) * kKBytes +
                        c.rank * kKRowsPerCta * kPanelBytes;
#pragma unroll
    for (int panel = 0; panel < D / kBoxCols; ++panel) {
      TmaLoad4dMulticast(ks + panel * kCols * kPanelBytes, k_map, bar,
                         panel * kBoxCols, c.col0 + c.rank * kKRowsPerCta, kv,
                         c.b, (1u << kClusterSize) - 1);
    }
  }
}

// A consumer warpgroup `wg`: per head, waits for its stage, takes its turns
// on the tensor cores for the two halves, releases the stage in both CTAs,
// and adds ReLU(S) into its head sum; then the tile maxes into warp_max.
template <typename T, int D>
__device__ __forceinline__ void ConsumeHeads(const ClusterCta& c, int wg,
                                             int tid, int hq, int n,
                                             float (&warp_max)[8][4]) {
  constexpr int kStages = sm90::RingStages<D>();
  constexpr int kQBytes = QTileBytes<T, D>();
  constexpr int kKBytes = KTileBytes<T, D>();
  const int lane = tid & 31;
  const int warp = (tid >> 5) & 3;  // warp in the warpgroup: 16 rows
  // A warpgroup half whose rows all precede its columns (or lie past N) only
  // ever sees masked or zero scores: it skips the math (uniform per
  // warpgroup, as wgmma requires) but keeps every barrier.
  const int wg_row0 = c.row0 + wg * 64;
  bool active[2];
#pragma unroll
  for (int hf = 0; hf < 2; ++hf) {
    active[hf] = wg_row0 < n && wg_row0 + 63 >= c.col0 + hf * kHalf;
  }
  float acc[2][64];
#pragma unroll
  for (int hf = 0; hf < 2; ++hf)
#pragma unroll
    for (int i = 0; i < 64; ++i) acc[hf][i] = 0.0f;
  float s[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) s[i] = 0.0f;

  // Warpgroup 0 issues first; from then on each one's arrival after issuing
  // hands the turn to the other (2 hq turns each, so warpgroup 1 skips its
  // last hand-over, which nobody would wait for).
  if (wg == 1) NamedBarrierArrive(kTurnBarrier, kConsumerThreads);
#pragma unroll 1
  for (int h = 0; h < hq; ++h) {
    const int stage = h % kStages;
    MbarrierWait(c.full0 + stage * kBarBytes, (h / kStages) & 1);
    const uint32_t qs = c.q_ring + stage * kQBytes + wg * 64 * kPanelBytes;
    const uint32_t ks = c.k_ring + ((h / c.group) % kStages) * kKBytes;
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      NamedBarrierSync(kTurnBarrier + wg, kConsumerThreads);
      // Issue and wait under one branch: a path from an issue to a read of s
      // that skips the wait makes ptxas serialise the wgmmas (C7514).
      const bool hand_over = wg == 0 || h + 1 < hq || hf == 0;
      if (active[hf]) {
        IssueScoreHalf<T, D>(s, qs, kRows, ks, kCols, hf);
        if (hand_over) {
          NamedBarrierArrive(kTurnBarrier + (wg ^ 1), kConsumerThreads);
        }
        WaitScores(s);
      } else if (hand_over) {
        NamedBarrierArrive(kTurnBarrier + (wg ^ 1), kConsumerThreads);
      }
      if (hf == 1) {
        // This warpgroup has read the stage: lane 0 of warp r releases it in
        // cluster CTA r (every CTA's producer multicasts into it).
        const int warp_in_wg = (tid & 127) >> 5;
        if (lane == 0 && warp_in_wg < kClusterSize) {
          MbarrierArriveCluster(c.empty0 + stage * kBarBytes, warp_in_wg);
        }
      }
      if (active[hf]) AddRelu(acc[hf], s);
    }
  }
  float m[4];
  WarpTileMaxes(acc, wg_row0, c.col0, warp, lane, m);
  if (lane == 0) {
#pragma unroll
    for (int t = 0; t < 4; ++t) warp_max[tid >> 5][t] = m[t];
  }
}
#endif  // LEMO_SM90_AVAILABLE

// q_map / k_map: 4D tensor maps (d, n, head, batch) with 64 x 128 boxes
// (EncodeMap below).
template <typename T, int D>
__global__ void __cluster_dims__(kClusterSize, 1, 1)
    __launch_bounds__(kThreads, 1)
        BlockScoresClusterKernel(const __grid_constant__ CUtensorMap q_map,
                                 const __grid_constant__ CUtensorMap k_map,
                                 const BlockScoresParams p) {
#ifdef LEMO_SM90_AVAILABLE
  constexpr int kStages = sm90::RingStages<D>();
  extern __shared__ unsigned char smem_raw[];
  __shared__ uint64_t full[kStages];   // a head's Q (and K) landed
  __shared__ uint64_t empty[kStages];  // both CTAs released the stage
  __shared__ float warp_max[kConsumerThreads / 32][4];
  // 1024-byte alignment of every panel (the swizzle is a function of the
  // address bits 4-9); the layout is the same in both CTAs, as multicast
  // needs (it writes the same offsets in each).
  const uint32_t raw = SmemAddr(smem_raw);
  ClusterCta c;
  c.q_ring = (raw + 1023) & ~1023u;
  c.k_ring = c.q_ring + kStages * QTileBytes<T, D>();
  c.full0 = SmemAddr(&full[0]);
  c.empty0 = SmemAddr(&empty[0]);
  c.b = blockIdx.y;
  c.rank = static_cast<int>(ClusterCtaRank());
  ClusterCoords(static_cast<int>(blockIdx.x) / kClusterSize,
                (p.n + 2 * kRows - 1) / (2 * kRows),
                p.variant != kBlockScoresClusterRowOrder, c.big_i, c.big_j,
                c.rank);
  c.row0 = c.big_i * kRows;
  c.col0 = c.big_j * kCols;
  c.group = p.hq / p.hkv;
  const int tid = threadIdx.x;
  // The warpgroup index, from a shuffle so that the compiler knows it is
  // warp-uniform: under a branch it cannot prove uniform, ptxas serialises
  // every wgmma (C7518).
  const int wg = __shfl_sync(0xffffffffu, tid / 128, 0);

  if (tid == 0) {
#pragma unroll
    for (int st = 0; st < kStages; ++st) {
      MbarrierInit(c.full0 + st * kBarBytes, 1);
      MbarrierInit(c.empty0 + st * kBarBytes, 2 * kClusterSize);
    }
    FenceMbarrierInit();
  }
  // Both CTAs' barriers exist before either multicasts into the other.
  ClusterSync();

  // Consumers first, and no early return from the producer: with either,
  // ptxas kept the consumers at the launch's 168 registers and spilled.
  if (wg < kConsumerThreads / 128) {
    ClaimRegisters<kConsumerRegs>();
    ConsumeHeads<T, D>(c, wg, tid, p.hq, p.n, warp_max);
    NamedBarrierSync(kEpilogueBarrier, kConsumerThreads);
    StoreCtaTileMaxes(warp_max, tid, c.b, c.big_i, c.big_j, p);
  } else {
    ReleaseRegisters<kProducerRegs>();
    if (tid == kConsumerThreads) {
      ProduceHeads<T, D>(c, &q_map, &k_map, p.hq);
    }
  }
  // No CTA exits while its peer may still arrive on its barriers.
  ClusterSync();
#else
  __trap();
#endif
}

// cuTensorMapEncodeTiled, from the driver the runtime already loaded (no
// link-time dependency on libcuda); null if the driver lacks it.
PFN_cuTensorMapEncodeTiled_v12000 TensorMapEncoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000,
                                         cudaEnableDefault,
                                         &found) != cudaSuccess ||
        found != cudaDriverEntryPointSuccess) {
      return static_cast<PFN_cuTensorMapEncodeTiled_v12000>(nullptr);
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  return encode;
}

// The 4D map (d, n, head, batch) of q or k with 64-element x 128-row boxes in
// the 128-byte swizzle. Strides in elements; a dimension of
// size 1 gets a placeholder stride (TMA requires multiples of 16 bytes, and
// never uses it).
bool EncodeMap(CUtensorMap* map, const void* data, DType dtype, int d, int n,
               int heads, int batch, int64_t stride_n, int64_t stride_h,
               int64_t stride_b) {
  const PFN_cuTensorMapEncodeTiled_v12000 encode = TensorMapEncoder();
  if (encode == nullptr) return false;
  const int64_t e = DTypeBytes(dtype);
  auto stride_bytes = [&](int size, int64_t stride) -> cuuint64_t {
    return size == 1 ? 16 : static_cast<cuuint64_t>(stride * e);
  };
  const cuuint64_t dims[4] = {
      static_cast<cuuint64_t>(d), static_cast<cuuint64_t>(n),
      static_cast<cuuint64_t>(heads), static_cast<cuuint64_t>(batch)};
  const cuuint64_t strides[3] = {stride_bytes(n, stride_n),
                                 stride_bytes(heads, stride_h),
                                 stride_bytes(batch, stride_b)};
  const cuuint32_t box[4] = {kBoxCols, kKRowsPerCta, 1, 1};
  const cuuint32_t element_strides[4] = {1, 1, 1, 1};
  return encode(map,
                dtype == DType::kBFloat16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                          : CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
                4, const_cast<void*>(data), dims, strides, box, element_strides,
                CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

template <typename T, int D>
cudaError_t Launch(const BlockScoresParams& p, cudaStream_t stream) {
  static_assert(kKRowsPerCta == kRows, "one box shape serves Q and K");
  CUtensorMap q_map, k_map;
  if (!EncodeMap(&q_map, p.q, p.dtype, D, p.n, p.hq, p.batch, p.q_stride_n,
                 p.q_stride_h, p.q_stride_b) ||
      !EncodeMap(&k_map, p.k, p.dtype, D, p.n, p.hkv, p.batch, p.k_stride_n,
                 p.k_stride_h, p.k_stride_b)) {
    return cudaErrorNotSupported;
  }
  // Row pairs of 256 rows; pair P has P + 1 clusters of 2 CTAs.
  return sm90::LaunchOverCtaPairs<T, D>(BlockScoresClusterKernel<T, D>,
                                        kThreads, p, stream, q_map, k_map, p);
}

}  // namespace

cudaError_t LaunchBlockScoresCluster(const BlockScoresParams& p,
                                     cudaStream_t stream) {
  return sm90::DispatchWgmma(p,
                             {Launch<__nv_bfloat16, 64>, Launch<__half, 64>,
                              Launch<__nv_bfloat16, 128>, Launch<__half, 128>},
                             stream);
}

}  // namespace lemo::kernels::cuda
