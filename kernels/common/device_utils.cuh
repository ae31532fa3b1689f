// Device helpers shared by the LeMo CUDA kernels: element conversion, 16-byte
// vectors, warp reductions, the block-CTA row split of the gather/scatter
// kernels, and the sm_80+ PTX wrappers (cp.async, ldmatrix, mma.sync) the
// tensor-core block scoring uses. Device-only; include from .cu files.
//
//   using V = Vec<__nv_bfloat16, 8>;  // one 16-byte access
//   const V v = *reinterpret_cast<const V*>(row + j);
//   float m = ToFloat(v.v[0]);
//   m = WarpMax(m);
#ifndef LEMO_KERNELS_COMMON_DEVICE_UTILS_CUH_
#define LEMO_KERNELS_COMMON_DEVICE_UTILS_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace lemo::kernels::cuda {

template <typename T>
__device__ __forceinline__ float ToFloat(T v);
template <>
__device__ __forceinline__ float ToFloat<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ float ToFloat<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
template <>
__device__ __forceinline__ float ToFloat<__half>(__half v) {
  return __half2float(v);
}

// Round-to-nearest-even, as ATen rounds each op's fp32 result to the dtype.
template <typename T>
__device__ __forceinline__ T FromFloat(float v);
template <>
__device__ __forceinline__ float FromFloat<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <>
__device__ __forceinline__ __half FromFloat<__half>(float v) {
  return __float2half_rn(v);
}

// `kVec` elements of T moved as one access (16 bytes when kVec * sizeof(T) is
// 16).
template <typename T, int kVec>
struct alignas(sizeof(T) * kVec) Vec {
  T v[kVec];
};

__device__ __forceinline__ uint32_t SmemAddr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte global -> shared copy that bypasses L1; src_bytes = 0 fills zeros
// (rows past the sequence end), reading nothing.
__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem,
                                          int src_bytes) {
  asm volatile(
      "cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(SmemAddr(smem)),
      "l"(gmem), "r"(src_bytes));
}
__device__ __forceinline__ void CpAsyncCommit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
template <int kPending>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

// Four 8x8 b16 matrices; lane i gives the row address of matrix i / 8, row i
// % 8.
__device__ __forceinline__ void LdMatrixX4(uint32_t (&r)[4], const void* smem) {
  asm volatile(
      "ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
      : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
      : "r"(SmemAddr(smem)));
}

// D = A (16x16, row) * B (16x8, col) + D, fp32 accumulation.
template <typename T>
__device__ __forceinline__ void Mma16816(float (&d)[4], const uint32_t (&a)[4],
                                         uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void Mma16816<__nv_bfloat16>(float (&d)[4],
                                                        const uint32_t (&a)[4],
                                                        uint32_t b0,
                                                        uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void Mma16816<__half>(float (&d)[4],
                                                 const uint32_t (&a)[4],
                                                 uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  }
  return v;
}

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// The rows one CTA of a block-CTA copy kernel covers. Grid x enumerates
// (block, chunk) pairs, `chunks` chunks of `rows_per_cta` rows per block of
// `block` tokens; a chunk is cut at its block's end and at the tensor's
// `tokens`. rows == 0: this CTA has nothing to do.
struct BlockCtaRows {
  // Block index along the tensor being walked (a kept slot for the gathers,
  // an original block for the scatter).
  int32_t block_index;
  // First row within that block.
  int32_t first_row;
  // First token: block_index * block + first_row.
  int64_t token;
  // Rows to copy, in [0, rows_per_cta].
  int32_t rows;
};

__device__ __forceinline__ BlockCtaRows BlockCtaRowsOf(int64_t block,
                                                       int64_t tokens,
                                                       int32_t rows_per_cta,
                                                       int32_t chunks) {
  BlockCtaRows c;
  c.block_index = static_cast<int32_t>(blockIdx.x) / chunks;
  c.first_row = (static_cast<int32_t>(blockIdx.x) - c.block_index * chunks) *
                rows_per_cta;
  c.token = c.block_index * block + c.first_row;
  int64_t rows = rows_per_cta;
  if (block - c.first_row < rows) rows = block - c.first_row;
  if (tokens - c.token < rows) rows = tokens - c.token;
  c.rows = rows > 0 ? static_cast<int32_t>(rows) : 0;
  return c;
}

}  // namespace lemo::kernels::cuda

#endif  // LEMO_KERNELS_COMMON_DEVICE_UTILS_CUH_
