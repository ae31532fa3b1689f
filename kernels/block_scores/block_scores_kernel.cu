// Fused oracle block scoring; see block_scores_kernel.h.
//
// Tensor-core path. One CTA (8 warps) owns a 128x128 region = 2x2 output tiles
// of one batch row, (I, J) with J <= I, and walks all Hq heads: per head it
// computes S = Q_h K_h^T on tensor cores into registers, then adds ReLU(S *
// scale) into a second register accumulator (the head sum). The head sum must
// be complete before the tile max, so the region's accumulator lives in
// registers for the whole head loop: 32x64 per warp = 64 fp32 per thread,
// plus 64 for S. Q and K head tiles stream through shared memory with cp.async,
// two stages deep (the next head loads while this one computes), 16-byte
// chunks XOR-swizzled by row so that ldmatrix reads are bank-conflict free.
// With GQA, K is loaded only when the KV head changes (q heads h..h+g-1 share
// it). Rows past N are zero-filled by cp.async, so they score 0 = ReLU(0),
// which never changes a max of non-negative scores.
#include <algorithm>
#include <cmath>

#include "kernels/block_scores/block_scores_cluster.h"
#include "kernels/block_scores/block_scores_kernel.h"
#include "kernels/block_scores/block_scores_wgmma.h"
#include "kernels/common/device_utils.cuh"

namespace lemo::kernels::cuda {
namespace {

constexpr int kTile = kBlockScoresTile;
constexpr int kCta = 2 * kTile;  // rows (and columns) per CTA
constexpr int kThreads = 256;

// Linear lower-triangle index t -> (row, col) with col <= row. The float sqrt
// is corrected by the two loops (exact in a few steps for t < 2^31).
__device__ __forceinline__ void TriangleCoords(int t, int& row, int& col) {
  int r = static_cast<int>((sqrtf(8.0f * static_cast<float>(t) + 1.0f) - 1.0f) *
                           0.5f);
  while (r > 0 && r * (r + 1) / 2 > t) --r;
  while ((r + 1) * (r + 2) / 2 <= t) ++r;
  row = r;
  col = t - r * (r + 1) / 2;
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads, 1)
    BlockScoresMmaKernel(const BlockScoresParams p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  constexpr int kChunks = D / 8;        // 16-byte chunks per row
  constexpr int kTileElems = kCta * D;  // one Q or K tile
  constexpr int kLoads = kCta * kChunks / kThreads;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  __shared__ float warp_max[kThreads / 32];
  T* smem = reinterpret_cast<T*>(smem_raw);

  const int b = blockIdx.y;
  int big_i = 0, big_j = 0;
  TriangleCoords(static_cast<int>(blockIdx.x), big_i, big_j);
  const int row0 = big_i * kCta;
  const int col0 = big_j * kCta;
  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int warp_m = warp & 3;   // 32-row slice of the 128 rows
  const int warp_n = warp >> 2;  // 64-column slice of the 128 columns
  const int group = p.hq / p.hkv;
  const T* q = static_cast<const T*>(p.q) + b * p.q_stride_b;
  const T* k = static_cast<const T*>(p.k) + b * p.k_stride_b;

  // Shared memory: two Q stages, then two K stages. Q changes every head; K
  // only every `group` heads (GQA), so it is loaded only then, into the stage
  // of its KV head.
  auto q_smem = [&](int h) { return smem + (h & 1) * kTileElems; };
  auto k_smem = [&](int h) {
    return smem + (2 + ((h / group) & 1)) * kTileElems;
  };
  auto load_head = [&](int h, bool with_k) {
    T* qs = q_smem(h);
    T* ks = k_smem(h);
    const T* qh = q + h * p.q_stride_h;
    const T* kh = k + (h / group) * p.k_stride_h;
#pragma unroll
    for (int i = 0; i < kLoads; ++i) {
      const int idx = tid + i * kThreads;
      const int r = idx / kChunks;
      const int c = idx % kChunks;
      const int sw = r * D + ((c ^ (r & 7)) << 3);
      const int qr = row0 + r;
      const int kr = col0 + r;
      CpAsync16(
          qs + sw,
          qh + static_cast<int64_t>(min(qr, p.n - 1)) * p.q_stride_n + c * 8,
          qr < p.n ? 16 : 0);
      if (with_k) {
        CpAsync16(
            ks + sw,
            kh + static_cast<int64_t>(min(kr, p.n - 1)) * p.k_stride_n + c * 8,
            kr < p.n ? 16 : 0);
      }
    }
  };

  float acc[2][8][4];
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int ni = 0; ni < 8; ++ni)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mi][ni][e] = 0.0f;

  // Stage reuse is safe: head h + 1's Q overwrites head h - 1's, and a new KV
  // head's K overwrites the one before the previous KV head, last read at
  // least one iteration (and its closing barrier) earlier.
  load_head(0, true);
  CpAsyncCommit();
  for (int h = 0; h < p.hq; ++h) {
    if (h + 1 < p.hq) load_head(h + 1, (h + 1) % group == 0);
    // Always commit (an empty group is legal), so that "wait for all but the
    // newest group" means "head h (and its K) has landed" on every iteration.
    CpAsyncCommit();
    CpAsyncWait<1>();
    __syncthreads();
    const T* qs = q_smem(h);
    const T* ks = k_smem(h);
    float s[2][8][4];
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int ni = 0; ni < 8; ++ni)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[mi][ni][e] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t a[2][4];
#pragma unroll
      for (int mi = 0; mi < 2; ++mi) {
        const int r = warp_m * 32 + mi * 16 + (lane & 15);
        const int c = kk * 2 + (lane >> 4);
        LdMatrixX4(a[mi], qs + r * D + ((c ^ (r & 7)) << 3));
      }
      uint32_t bf[4][4];
#pragma unroll
      for (int nj = 0; nj < 4; ++nj) {
        const int r = warp_n * 64 + nj * 16 + ((lane >> 4) << 3) + (lane & 7);
        const int c = kk * 2 + ((lane >> 3) & 1);
        LdMatrixX4(bf[nj], ks + r * D + ((c ^ (r & 7)) << 3));
      }
#pragma unroll
      for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int ni = 0; ni < 8; ++ni)
          Mma16816<T>(s[mi][ni], a[mi], bf[ni >> 1][(ni & 1) * 2],
                      bf[ni >> 1][(ni & 1) * 2 + 1]);
    }
    // Same op order as the reference: scale, ReLU, then add into the head sum.
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int ni = 0; ni < 8; ++ni)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          acc[mi][ni][e] += fmaxf(s[mi][ni][e] * p.scale, 0.0f);
    // Every warp is done reading this stage before the next iteration's loads
    // overwrite it.
    __syncthreads();
  }

  // Causal mask (only the diagonal CTA has columns after their row), then the
  // max of each warp's 32x64 slice; two warps make one 64x64 tile.
  const bool diagonal = big_i == big_j;
  float m = 0.0f;
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int ni = 0; ni < 8; ++ni)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = warp_m * 32 + mi * 16 + (lane >> 2) + (e >> 1) * 8;
        const int c = warp_n * 64 + ni * 8 + (lane & 3) * 2 + (e & 1);
        const float v = acc[mi][ni][e];
        if (!diagonal || c <= r) m = fmaxf(m, v);
      }
  m = WarpMax(m);
  if (lane == 0) warp_max[warp] = m;
  __syncthreads();
  if (tid < 4) {
    const int tr = tid >> 1;  // tile row within the CTA
    const int tc = tid & 1;   // tile column within the CTA
    const float v =
        fmaxf(warp_max[tc * 4 + tr * 2], warp_max[tc * 4 + tr * 2 + 1]);
    const int nb = (p.n + kTile - 1) / kTile;
    const int gi = big_i * 2 + tr;
    const int gj = big_j * 2 + tc;
    if (gi < nb && gj <= gi) {
      p.out[(static_cast<int64_t>(b) * nb + gi) * nb + gj] = v;
    }
  }
#endif
}

// CUDA-core path for fp32 (and any d): one CTA per 64x64 tile, 256 threads,
// each owning a 4x4 interleaved patch (rows ty + 16 i, columns tx + 16 j), fp32
// math, d in chunks of 32 through shared memory.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    BlockScoresSimpleKernel(const BlockScoresParams p) {
  constexpr int kChunk = 32;
  __shared__ float qs[kTile][kChunk + 1];
  __shared__ float ks[kTile][kChunk + 1];
  __shared__ float warp_max[kThreads / 32];
  const int b = blockIdx.y;
  int ti = 0, tj = 0;
  TriangleCoords(static_cast<int>(blockIdx.x), ti, tj);
  const int row0 = ti * kTile;
  const int col0 = tj * kTile;
  const int tid = threadIdx.x;
  const int ty = tid / 16;
  const int tx = tid % 16;
  const int group = p.hq / p.hkv;
  const T* q = static_cast<const T*>(p.q) + b * p.q_stride_b;
  const T* k = static_cast<const T*>(p.k) + b * p.k_stride_b;
  float acc[4][4] = {};
  for (int h = 0; h < p.hq; ++h) {
    const T* qh = q + h * p.q_stride_h;
    const T* kh = k + (h / group) * p.k_stride_h;
    float s[4][4] = {};
    for (int d0 = 0; d0 < p.d; d0 += kChunk) {
      for (int idx = tid; idx < kTile * kChunk; idx += kThreads) {
        const int r = idx / kChunk;
        const int c = idx % kChunk;
        const bool in_d = d0 + c < p.d;
        const int qr = row0 + r;
        const int kr = col0 + r;
        qs[r][c] =
            (in_d && qr < p.n)
                ? ToFloat(qh[static_cast<int64_t>(qr) * p.q_stride_n + d0 + c])
                : 0.0f;
        ks[r][c] =
            (in_d && kr < p.n)
                ? ToFloat(kh[static_cast<int64_t>(kr) * p.k_stride_n + d0 + c])
                : 0.0f;
      }
      __syncthreads();
#pragma unroll 8
      for (int c = 0; c < kChunk; ++c) {
        float qv[4], kv[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) qv[i] = qs[ty + 16 * i][c];
#pragma unroll
        for (int j = 0; j < 4; ++j) kv[j] = ks[tx + 16 * j][c];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) s[i][j] = fmaf(qv[i], kv[j], s[i][j]);
      }
      __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[i][j] += fmaxf(s[i][j] * p.scale, 0.0f);
  }
  float m = 0.0f;
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (ti != tj || tx + 16 * j <= ty + 16 * i) m = fmaxf(m, acc[i][j]);
    }
  m = WarpMax(m);
  if ((tid & 31) == 0) warp_max[tid >> 5] = m;
  __syncthreads();
  if (tid == 0) {
    float v = 0.0f;
    for (int w = 0; w < kThreads / 32; ++w) v = fmaxf(v, warp_max[w]);
    const int nb = (p.n + kTile - 1) / kTile;
    p.out[(static_cast<int64_t>(b) * nb + ti) * nb + tj] = v;
  }
}

template <typename T, int D>
cudaError_t LaunchMma(const BlockScoresParams& p, cudaStream_t stream) {
  const int nb2 = (p.n + kCta - 1) / kCta;
  const dim3 grid(nb2 * (nb2 + 1) / 2, p.batch);
  constexpr int kSmem = 2 * 2 * kCta * D * static_cast<int>(sizeof(T));
  auto* kernel = BlockScoresMmaKernel<T, D>;
  cudaError_t err = cudaFuncSetAttribute(
      kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  if (err != cudaSuccess) return err;
  kernel<<<grid, kThreads, kSmem, stream>>>(p);
  return cudaGetLastError();
}

// Whether the current device is compute capability 9.0 (Hopper), the one
// this library's sm_90a image runs on.
bool CurrentDeviceIsSm90() {
  int device = 0;
  int major = 0;
  int minor = 0;
  return cudaGetDevice(&device) == cudaSuccess &&
         cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor,
                                device) == cudaSuccess &&
         cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor,
                                device) == cudaSuccess &&
         major == 9 && minor == 0;
}

template <typename T, int D>
cudaError_t LaunchTensorCores(const BlockScoresParams& p, cudaStream_t stream) {
  // The default on Hopper is the cluster kernel: on the H100 (2026-11-22) it
  // took 8.8 ms at N = 32K (MHA) against 13.9 ms for the wgmma one and
  // 18.3 ms for the best mma.sync one. The wgmma kernel takes over where the
  // driver cannot describe q or k as a TMA tensor map.
  const bool hopper = p.variant == kBlockScoresAuto && CurrentDeviceIsSm90();
  if (hopper || p.variant == kBlockScoresCluster ||
      p.variant == kBlockScoresClusterRowOrder) {
    const cudaError_t err = LaunchBlockScoresCluster(p, stream);
    if (!(hopper && err == cudaErrorNotSupported)) return err;
  }
  if (hopper || p.variant == kBlockScoresWgmma) {
    return LaunchBlockScoresWgmma(p, stream);
  }
  return LaunchMma<T, D>(p, stream);
}

template <typename T>
cudaError_t LaunchSimple(const BlockScoresParams& p, cudaStream_t stream) {
  const int nb = (p.n + kTile - 1) / kTile;
  const dim3 grid(nb * (nb + 1) / 2, p.batch);
  BlockScoresSimpleKernel<T><<<grid, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

bool Aligned16(const void* ptr, int64_t stride_elems, int elem_bytes) {
  return reinterpret_cast<uintptr_t>(ptr) % 16 == 0 &&
         (stride_elems * elem_bytes) % 16 == 0;
}

}  // namespace

bool BlockScoresUsesTensorCores(const BlockScoresParams& p) {
  if (p.dtype == DType::kFloat32 || (p.d != 64 && p.d != 128)) return false;
  const int e = DTypeBytes(p.dtype);
  return Aligned16(p.q, p.q_stride_b, e) && Aligned16(p.q, p.q_stride_h, e) &&
         Aligned16(p.q, p.q_stride_n, e) && Aligned16(p.k, p.k_stride_b, e) &&
         Aligned16(p.k, p.k_stride_h, e) && Aligned16(p.k, p.k_stride_n, e);
}

cudaError_t LaunchBlockScores(const BlockScoresParams& p, cudaStream_t stream) {
  if (p.batch <= 0 || p.n <= 0 || p.hq <= 0 || p.hkv <= 0 || p.d <= 0 ||
      p.hq % p.hkv != 0 ||
      (p.variant != kBlockScoresAuto && p.variant != kBlockScoresSquare &&
       p.variant != kBlockScoresWgmma && p.variant != kBlockScoresCluster &&
       p.variant != kBlockScoresClusterRowOrder)) {
    return cudaErrorInvalidValue;
  }
  const int64_t nb = (p.n + kTile - 1) / kTile;
  cudaError_t err = cudaMemsetAsync(
      p.out, 0, static_cast<size_t>(p.batch) * nb * nb * sizeof(float), stream);
  if (err != cudaSuccess) return err;
  if (BlockScoresUsesTensorCores(p)) {
    const bool bf16 = p.dtype == DType::kBFloat16;
    if (p.d == 64) {
      return bf16 ? LaunchTensorCores<__nv_bfloat16, 64>(p, stream)
                  : LaunchTensorCores<__half, 64>(p, stream);
    }
    return bf16 ? LaunchTensorCores<__nv_bfloat16, 128>(p, stream)
                : LaunchTensorCores<__half, 128>(p, stream);
  }
  switch (p.dtype) {
    case DType::kFloat32:
      return LaunchSimple<float>(p, stream);
    case DType::kBFloat16:
      return LaunchSimple<__nv_bfloat16>(p, stream);
    case DType::kFloat16:
      return LaunchSimple<__half>(p, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace lemo::kernels::cuda
