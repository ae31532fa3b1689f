// Fused block scoring on Hopper warpgroup MMA (kBlockScoresWgmma; see
// block_scores.h for the semantics and block_scores_wgmma.h for the entry).
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
#include "kernels/cuda/block_scores_wgmma.h"

#include <cmath>

#include "kernels/cuda/device_utils.cuh"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ == 900 && \
    defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define LEMO_WGMMA_AVAILABLE 1
#endif

namespace lemo::kernels::cuda {
namespace {

constexpr int kTile = kBlockScoresTile;
constexpr int kRows = 2 * kTile;  // CTA rows: 2 warpgroups x 64
constexpr int kCols = 4 * kTile;  // CTA columns: 2 halves x 128
constexpr int kThreads = 256;

template <int D>
constexpr int Stages() {
  return D == 64 ? 3 : 2;
}

// Bytes of shared memory for one Q tile and one K tile.
template <typename T, int D>
constexpr int QTileBytes() {
  return kRows * D * static_cast<int>(sizeof(T));
}
template <typename T, int D>
constexpr int KTileBytes() {
  return kCols * D * static_cast<int>(sizeof(T));
}

// Dynamic shared memory: the rings plus 1 KB to align them to 1024 bytes.
template <typename T, int D>
constexpr int SmemBytes() {
  return Stages<D>() * (QTileBytes<T, D>() + KTileBytes<T, D>()) + 1024;
}

template <typename T>
__device__ __forceinline__ void WgmmaM64N128K16(float (&d)[64], uint64_t desc_a,
                                                uint64_t desc_b,
                                                int accumulate);

#ifdef LEMO_WGMMA_AVAILABLE
constexpr int kHalf = 128;        // columns per wgmma (n = 128)
constexpr int kPanelBytes = 128;  // one swizzled row of a 64-element panel

// Byte offset of (row r, 16-byte chunk c) in a swizzled tile of `rows` rows.
__device__ __forceinline__ int SwizzledOffset(int rows, int r, int c) {
  return (c >> 3) * rows * kPanelBytes + r * kPanelBytes +
         (((c & 7) ^ (r & 7)) << 4);
}

// One m64n128k16 wgmma, D += A * B^T, both operands from shared memory by
// descriptor; TYPE is the PTX element type ("bf16" or "f16"), the only
// difference between the two instantiations.
#define LEMO_WGMMA_M64N128K16(TYPE)                                      \
  asm volatile(                                                          \
      "{\n"                                                              \
      ".reg .pred p;\n"                                                  \
      "setp.ne.b32 p, %66, 0;\n"                                         \
      "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE "." TYPE       \
      " "                                                                \
      "{%0, %1, %2, %3, %4, %5, %6, %7, "                                \
      "%8, %9, %10, %11, %12, %13, %14, %15, "                           \
      "%16, %17, %18, %19, %20, %21, %22, %23, "                         \
      "%24, %25, %26, %27, %28, %29, %30, %31, "                         \
      "%32, %33, %34, %35, %36, %37, %38, %39, "                         \
      "%40, %41, %42, %43, %44, %45, %46, %47, "                         \
      "%48, %49, %50, %51, %52, %53, %54, %55, "                         \
      "%56, %57, %58, %59, %60, %61, %62, %63}, "                        \
      "%64, %65, p, 1, 1, 0, 0;\n"                                       \
      "}\n"                                                              \
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]),      \
        "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]),      \
        "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), \
        "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), \
        "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), \
        "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), \
        "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), \
        "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), \
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), \
        "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), \
        "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), \
        "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), \
        "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])               \
      : "l"(desc_a), "l"(desc_b), "r"(accumulate));

template <>
__device__ __forceinline__ void WgmmaM64N128K16<__nv_bfloat16>(float (&d)[64],
                                                               uint64_t desc_a,
                                                               uint64_t desc_b,
                                                               int accumulate) {
  LEMO_WGMMA_M64N128K16("bf16");
}

template <>
__device__ __forceinline__ void WgmmaM64N128K16<__half>(float (&d)[64],
                                                        uint64_t desc_a,
                                                        uint64_t desc_b,
                                                        int accumulate) {
  LEMO_WGMMA_M64N128K16("f16");
}
#undef LEMO_WGMMA_M64N128K16

// Descriptor of a K-major operand in a 128-byte-swizzled panel at shared
// address `addr` (1024-byte aligned up to the 32-byte K step).
__device__ __forceinline__ uint64_t SmemDesc(uint32_t addr) {
  constexpr uint64_t kLeading = 1;         // 16 bytes; unused (swizzled)
  constexpr uint64_t kStride = 1024 >> 4;  // 8 rows x 128 bytes
  constexpr uint64_t kSwizzle128B = 1;
  return static_cast<uint64_t>((addr >> 4) & 0x3FFF) | (kLeading << 16) |
         (kStride << 32) | (kSwizzle128B << 62);
}

__device__ __forceinline__ void WgmmaFence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void WgmmaCommit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void WgmmaWaitAll() {
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
}
// Pins the accumulator registers at this point of the program: the compiler
// sees wgmma's outputs as ready when the asm statement ends, so without this
// it could move reads of them above wgmma.wait_group.
__device__ __forceinline__ void FenceOperands(float (&d)[64]) {
#pragma unroll
  for (int i = 0; i < 64; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
// Makes this thread's shared-memory writes (cp.async) visible to the async
// proxy that wgmma reads through.
__device__ __forceinline__ void FenceProxyAsync() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

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

#endif  // LEMO_WGMMA_AVAILABLE

template <typename T, int D>
__global__ void __launch_bounds__(kThreads, 1)
    BlockScoresWgmmaKernel(const BlockScoresParams p) {
#ifdef LEMO_WGMMA_AVAILABLE
  constexpr int kStages = Stages<D>();
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
      FenceOperands(s);
      WgmmaFence();
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        // Panel kk / 4, then 32 bytes per 16-element K step inside it.
        const uint32_t koff = (kk & 3) << 5;
        const uint64_t da =
            SmemDesc(qs + (kk >> 2) * kRows * kPanelBytes + koff);
        const uint64_t db = SmemDesc(ks + (kk >> 2) * kCols * kPanelBytes +
                                     hf * kHalf * kPanelBytes + koff);
        WgmmaM64N128K16<T>(s, da, db, kk > 0 ? 1 : 0);
      }
      WgmmaCommit();
      WgmmaWaitAll();
      FenceOperands(s);
      // ReLU(s * scale) = scale * ReLU(s) for scale > 0, and the tile max
      // commutes with it: the scale is applied once per tile at the end,
      // saving one of three FP ops per score (a rounding-level difference
      // from the reference's order).
#pragma unroll
      for (int i = 0; i < 64; ++i) acc[hf][i] += fmaxf(s[i], 0.0f);
    }
  }

  // Accumulator layout of m64nNk16 (fp32): register i of lane l in warp w of
  // the warpgroup is row 16 w + l / 4 + 8 ((i % 4) / 2), column 8 (i / 4) +
  // 2 (l % 4) + i % 2. Tile column = 2 hf + (column >= 64).
  float m[4] = {0.0f, 0.0f, 0.0f, 0.0f};
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
  if (lane == 0) {
#pragma unroll
    for (int c = 0; c < 4; ++c) warp_max[tid >> 5][c] = m[c];
  }
  __syncthreads();
  if (tid < 8) {
    const int tr = tid >> 2;  // tile row in the CTA = warpgroup
    const int tc = tid & 3;   // tile column in the CTA
    float v = 0.0f;
#pragma unroll
    for (int w = 0; w < 4; ++w) v = fmaxf(v, warp_max[tr * 4 + w][tc]);
    v *= p.scale;
    const int nb = (p.n + kTile - 1) / kTile;
    const int gi = big_i * 2 + tr;
    const int gj = big_j * 4 + tc;
    if (gi < nb && gj <= gi) {
      p.out[(static_cast<int64_t>(b) * nb + gi) * nb + gj] = v;
    }
  }
#else
  __trap();
#endif
}

template <typename T, int D>
cudaError_t Launch(const BlockScoresParams& p, cudaStream_t stream) {
  const int pairs = (p.n + 2 * kRows - 1) / (2 * kRows);
  const dim3 grid(pairs * (pairs + 1), p.batch);
  constexpr int kSmem = SmemBytes<T, D>();
  auto* kernel = BlockScoresWgmmaKernel<T, D>;
  cudaError_t err = cudaFuncSetAttribute(
      kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  if (err != cudaSuccess) return err;
  kernel<<<grid, kThreads, kSmem, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchBlockScoresWgmma(const BlockScoresParams& p,
                                   cudaStream_t stream) {
  // scale > 0: the kernel applies it after the ReLU and the max.
  if (p.dtype == DType::kFloat32 || (p.d != 64 && p.d != 128) ||
      !(p.scale > 0.0f)) {
    return cudaErrorInvalidValue;
  }
  const bool bf16 = p.dtype == DType::kBFloat16;
  if (p.d == 64) {
    return bf16 ? Launch<__nv_bfloat16, 64>(p, stream)
                : Launch<__half, 64>(p, stream);
  }
  return bf16 ? Launch<__nv_bfloat16, 128>(p, stream)
              : Launch<__half, 128>(p, stream);
}

}  // namespace lemo::kernels::cuda
