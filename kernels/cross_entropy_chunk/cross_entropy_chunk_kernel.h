// Fused cross-entropy of one chunk of LM-head logits on the GPU
// (lemo::cross_entropy_chunk and its in-place backward, LEMO.md section 3's
// segmented loss, "fused where it pays"). Forward: one pass per row computes
// the logsumexp (online max + sum, fp32) and reads the target logit, reading
// the 16-bit logits once and never making an fp32 copy of them. Backward: per
// row, the logsumexp again, then (softmax - onehot) * scale written straight
// over the logits in their dtype, ready for the LM head's backward GEMM.
// Ignored rows (label == ignore_index) give loss 0 and gradient 0. Torch-free;
// kernels/cross_entropy_chunk/cross_entropy_chunk_cuda.cc fills the params.
//
//   CrossEntropyChunkParams p;
//   p.logits = logits; p.labels = labels; p.loss = per_row;  // [rows] fp32
//   p.dtype = DType::kBFloat16; p.rows = 2048; p.vocab = 32000;
//   p.row_stride = 32000;
//   LaunchCrossEntropyChunkForward(p, stream);
//   p.grad_scale = scale;  // device fp32 scalar: d loss / d (sum of rows)
//   LaunchCrossEntropyChunkBackward(p, stream);  // overwrites p.logits
#ifndef LEMO_KERNELS_CROSS_ENTROPY_CHUNK_CROSS_ENTROPY_CHUNK_KERNEL_H_
#define LEMO_KERNELS_CROSS_ENTROPY_CHUNK_CROSS_ENTROPY_CHUNK_KERNEL_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/common/dtype.h"

namespace lemo::kernels::cuda {

struct CrossEntropyChunkParams {
  // Logits [rows, vocab], vocab contiguous; the backward overwrites them with
  // the gradient.
  void* logits = nullptr;
  // Target ids int64 [rows], each in [0, vocab) or ignore_index (validated by
  // the caller).
  const int64_t* labels = nullptr;
  // Forward output: per-row loss fp32 [rows] (0 at ignored rows).
  float* loss = nullptr;
  // Backward input: fp32 scalar on the device scaling every row's gradient.
  const float* grad_scale = nullptr;
  // Element type of the logits.
  DType dtype = DType::kBFloat16;
  // Rows (tokens) in the chunk.
  int64_t rows = 0;
  // Vocabulary size.
  int64_t vocab = 0;
  // Elements between consecutive rows.
  int64_t row_stride = 0;
  // Label value that marks an ignored row.
  int64_t ignore_index = -100;
};

cudaError_t LaunchCrossEntropyChunkForward(const CrossEntropyChunkParams& p,
                                           cudaStream_t stream);

cudaError_t LaunchCrossEntropyChunkBackward(const CrossEntropyChunkParams& p,
                                            cudaStream_t stream);

}  // namespace lemo::kernels::cuda

#endif  // LEMO_KERNELS_CROSS_ENTROPY_CHUNK_CROSS_ENTROPY_CHUNK_KERNEL_H_
