// Hopper (sm_90a) PTX wrappers: warpgroup MMA (wgmma) on 128-byte-swizzled
// shared-memory operands and its fences, and mbarriers, TMA loads with cluster
// multicast, cluster barriers, register reallocation and named barriers.
// Device-only; include from .cu files. Everything but LEMO_SM90_AVAILABLE is
// defined only when compiling for sm_90a; other targets compile the kernels
// that use them to a trap. Used by the block-scoring kernels
// (kernels/block_scores/block_scores_sm90.cuh builds their tiles on it).
//
//   #ifdef LEMO_SM90_AVAILABLE
//   sm90::WgmmaFence();
//   sm90::WgmmaM64N128K16<__nv_bfloat16>(acc, sm90::SmemDesc(a),
//                                        sm90::SmemDesc(b), /*accumulate=*/1);
//   sm90::WgmmaCommit();
//   sm90::WgmmaWaitAll();
//   #endif
//
// Swizzled tiles: a tile of `rows` rows x D elements is D / 64 panels of rows
// x 64 elements (128 bytes per row), each panel 1024-byte aligned; 16-byte
// chunk c of row r sits at chunk c ^ (r % 8). This is both what wgmma's
// descriptors declare (layout type 1) and what TMA writes with
// CU_TENSOR_MAP_SWIZZLE_128B, so TMA-loaded and cp.async-loaded tiles share the
// descriptors.
#ifndef LEMO_KERNELS_COMMON_SM90_CUH_
#define LEMO_KERNELS_COMMON_SM90_CUH_

#include <cstdint>

#include "kernels/common/device_utils.cuh"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ == 900 && \
    defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define LEMO_SM90_AVAILABLE 1
#endif

namespace lemo::kernels::cuda::sm90 {

template <typename T>
__device__ __forceinline__ void WgmmaM64N128K16(float (&d)[64], uint64_t desc_a,
                                                uint64_t desc_b,
                                                int accumulate);

#ifdef LEMO_SM90_AVAILABLE
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

// ---- mbarriers, TMA and clusters (the cluster kernel) ----

__device__ __forceinline__ void MbarrierInit(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar),
               "r"(count)
               : "memory");
}
// Makes the initialised barriers visible to the cluster (before its sync).
__device__ __forceinline__ void FenceMbarrierInit() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
// Arrives once and raises the phase's expected transaction bytes.
__device__ __forceinline__ void MbarrierArriveExpectTx(uint32_t bar,
                                                       uint32_t bytes) {
  asm volatile(
      "mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar),
      "r"(bytes)
      : "memory");
}
// Arrives on the barrier at the same offset in cluster CTA `rank`.
__device__ __forceinline__ void MbarrierArriveCluster(uint32_t bar,
                                                      uint32_t rank) {
  asm volatile(
      "{\n"
      ".reg .b32 remote;\n"
      "mapa.shared::cluster.u32 remote, %0, %1;\n"
      "mbarrier.arrive.release.cluster.shared::cluster.b64 _, [remote];\n"
      "}\n" ::"r"(bar),
      "r"(rank)
      : "memory");
}
// Waits for the completion of the barrier's phase with parity `parity`. A
// lost arrival or transaction would hang the GPU; after 2^26 polls (seconds)
// it traps instead, so a protocol bug fails the launch with an error.
__device__ __forceinline__ void MbarrierWait(uint32_t bar, uint32_t parity) {
  for (uint32_t polls = 0;; ++polls) {
    uint32_t done = 0;
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n"
        "}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
    if (done) return;
    if (polls > (1u << 26)) __trap();
  }
}

// 2D box {64 elements, rows} of a 4D tensor map (d, n, head, batch) into
// swizzled shared memory at `dst`, completing `bytes` on `bar`; with
// `multicast_mask`, the same box lands at `dst` (and completes on `bar`) in
// every CTA of the cluster whose bit is set.
__device__ __forceinline__ void TmaLoad4d(uint32_t dst, const void* map,
                                          uint32_t bar, int c0, int c1, int c2,
                                          int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::"
      "bytes [%0], [%1, {%3, %4, %5, %6}], [%2];\n" ::"r"(dst),
      "l"(map), "r"(bar), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
      : "memory");
}
__device__ __forceinline__ void TmaLoad4dMulticast(uint32_t dst,
                                                   const void* map,
                                                   uint32_t bar, int c0, int c1,
                                                   int c2, int c3,
                                                   uint16_t multicast_mask) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::"
      "bytes.multicast::cluster [%0], [%1, {%3, %4, %5, %6}], [%2], %7;\n" ::
          "r"(dst),
      "l"(map), "r"(bar), "r"(c0), "r"(c1), "r"(c2), "r"(c3),
      "h"(multicast_mask)
      : "memory");
}

__device__ __forceinline__ uint32_t ClusterCtaRank() {
  uint32_t rank;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(rank));
  return rank;
}
// All non-exited threads of the cluster (release, then acquire).
__device__ __forceinline__ void ClusterSync() {
  asm volatile(
      "barrier.cluster.arrive.release;\n"
      "barrier.cluster.wait.acquire;\n" ::
          : "memory");
}
// Resizes this warpgroup's registers per thread (all its warps execute it):
// a producer warpgroup gives registers back so the consumers can take more
// than the launch's even split (FlashAttention-3's setmaxnreg scheme).
template <int kRegs>
__device__ __forceinline__ void ReleaseRegisters() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}
template <int kRegs>
__device__ __forceinline__ void ClaimRegisters() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}
// Named CTA barrier `id` for `threads` threads: Sync waits, Arrive counts
// towards it without waiting.
__device__ __forceinline__ void NamedBarrierSync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void NamedBarrierArrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
#endif  // LEMO_SM90_AVAILABLE

}  // namespace lemo::kernels::cuda::sm90

#endif  // LEMO_KERNELS_COMMON_SM90_CUH_
