// lemo::cross_entropy_chunk and lemo::cross_entropy_chunk_backward_: the
// cross-entropy of one chunk of LM-head logits, the unit of the segmented loss
// (LEMO.md section 3; worker/engine/loss.cc runs one per chunk and recomputes
// the logits in backward).
//
//   at::Tensor sum = lemo::kernels::CrossEntropyChunk(logits, labels);
//   // sum: fp32 scalar, sum over rows of -log softmax(logits)[label]
//   lemo::kernels::CrossEntropyChunkBackward_(logits, labels, scale);
//   // logits now hold (softmax - onehot(label)) * scale, in their dtype
//
// logits [T, V] (any float dtype), labels int64 [T]; rows whose label is
// ignore_index (-100) count 0 in the sum and get a zero gradient. The CPU
// reference is exactly the ATen sequence loss.cc used before (upcast to fp32,
// F::cross_entropy with reduction sum; softmax, scatter_add of -1, scale), so
// CPU results are bit-identical to it. The CUDA kernel
// (kernels/cuda/cross_entropy_chunk.h) reads 16-bit logits once, without the
// fp32 copy, and writes the gradient in place. Autograd of cross_entropy_chunk
// (d logits) calls the backward op on a copy of the saved logits.
#ifndef LEMO_KERNELS_OPS_CROSS_ENTROPY_CHUNK_H_
#define LEMO_KERNELS_OPS_CROSS_ENTROPY_CHUNK_H_

#include <ATen/ATen.h>

#include <cstdint>

namespace lemo::kernels {

// Throws c10::ValueError unless logits is a floating [T, V] matrix and labels
// an int64 [T] vector on the same device.
void CheckCrossEntropyChunkInputs(const at::Tensor& logits,
                                  const at::Tensor& labels);

// CPU references, plain LibTorch (device-generic ATen).
at::Tensor CrossEntropyChunkReference(const at::Tensor& logits,
                                      const at::Tensor& labels,
                                      int64_t ignore_index);
at::Tensor& CrossEntropyChunkBackwardReference(at::Tensor& logits,
                                               const at::Tensor& labels,
                                               const at::Tensor& grad_scale,
                                               int64_t ignore_index);

}  // namespace lemo::kernels

#endif  // LEMO_KERNELS_OPS_CROSS_ENTROPY_CHUNK_H_
