// Causal-LM cross-entropy exactly as HF's ForCausalLMLoss (logits upcast to
// fp32, labels shifted left with -100 padding, ignore_index -100, mean over
// counted tokens), plus a segmented variant: the LM head + cross-entropy run
// over chunks of S tokens inside one autograd node that saves only the hidden
// states and recomputes each chunk's logits in backward, so [N, vocab] logits
// never exist at once (LEMO.md section 3).
//
//   torch::Tensor loss = CausalLmLoss(hidden /*[B,N,D]*/, lm_head /*[V,D]*/,
//   labels /*[B,N]*/,
//                                     /*segment_tokens=*/2048);
#ifndef LEMO_WORKER_ENGINE_TRAIN_LOSS_H_
#define LEMO_WORKER_ENGINE_TRAIN_LOSS_H_

#include <torch/torch.h>

#include <cstdint>

namespace lemo::engine {

inline constexpr int64_t kIgnoreIndex = -100;

// labels [B, N] -> [B * N]: position t gets labels[t + 1], the last position
// kIgnoreIndex.
torch::Tensor ShiftLabels(const torch::Tensor& labels);

// Mean next-token cross-entropy of linear(hidden, lm_head) against the shifted
// labels. segment_tokens <= 0: HF's op-by-op path (full logits). > 0: chunked
// and recomputed; equal up to fp32 summation order. The LM head is treated as
// frozen (no gradient for it).
torch::Tensor CausalLmLoss(const torch::Tensor& hidden,
                           const torch::Tensor& lm_head,
                           const torch::Tensor& labels, int64_t segment_tokens);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_TRAIN_LOSS_H_
