// lemo::cross_entropy_chunk and lemo::cross_entropy_chunk_backward_: the
// cross-entropy of one chunk of LM-head logits, the unit of the segmented loss
// (LEMO.md section 3; worker/engine/loss.cc runs one per chunk and recomputes
// the logits in backward), and their C++ entries.
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
// (kernels/cross_entropy_chunk/cross_entropy_chunk_kernel.h) reads 16-bit
// logits once, without the fp32 copy, and writes the gradient in place.
// Autograd of cross_entropy_chunk (d logits) calls the backward op on a copy of
// the saved logits.
#ifndef LEMO_KERNELS_CROSS_ENTROPY_CHUNK_CROSS_ENTROPY_CHUNK_H_
#define LEMO_KERNELS_CROSS_ENTROPY_CHUNK_CROSS_ENTROPY_CHUNK_H_

#include <ATen/ATen.h>

#include <cstdint>

namespace lemo::kernels {

// lemo::cross_entropy_chunk through the dispatcher (and its autograd): sum
// over rows of the cross-entropy of logits [T, V] against labels int64 [T]
// (rows labelled ignore_index count 0), fp32 scalar. Differentiable in logits.
at::Tensor CrossEntropyChunk(const at::Tensor& logits, const at::Tensor& labels,
                             int64_t ignore_index = -100);

// lemo::cross_entropy_chunk_backward_ through the dispatcher: overwrites
// logits with d(sum)/d logits times grad_scale (fp32 scalar tensor), i.e.
// (softmax - onehot) * grad_scale, 0 on ignored rows, in the logits' dtype.
// Returns logits.
at::Tensor& CrossEntropyChunkBackward_(at::Tensor& logits,
                                       const at::Tensor& labels,
                                       const at::Tensor& grad_scale,
                                       int64_t ignore_index = -100);

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

#endif  // LEMO_KERNELS_CROSS_ENTROPY_CHUNK_CROSS_ENTROPY_CHUNK_H_
