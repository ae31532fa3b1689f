// Selective checkpointing for attention. A checkpointed decoder layer records
// its attention core's output and log-sum-exp during the forward, and the
// recompute in backward replays them instead of running the attention forward
// again: at long context that forward is the costliest op of the recompute,
// while the projections, norms and MLP around it are cheap to redo. Exact: the
// backward is flash attention's own backward on the recorded output.
//
//   AttentionStash stash;
//   { AttentionStash::Scope s(&stash, AttentionStash::Mode::kRecord);
//     y = fn(x); }                       // no grad: records each attention
//   { AttentionStash::Scope s(&stash, AttentionStash::Mode::kReplay);
//     y = fn(x); }                       // grad: replays them in order
//
// ScaledDotProductAttention is the call every decoder layer makes; outside a
// scope it is exactly at::scaled_dot_product_attention. Calls that sdpa would
// run on a fused kernel (flash on CUDA or the CPU, cuDNN, memory-efficient)
// are recorded with that kernel; others (the math backend) are recorded as
// "recompute" and run again on replay.
//
// Scopes are per thread and nest (the innermost wins). Torch errors throw.
#ifndef LEMO_WORKER_ENGINE_MODEL_ATTENTION_STASH_H_
#define LEMO_WORKER_ENGINE_MODEL_ATTENTION_STASH_H_

#include <torch/torch.h>

#include <cstdint>
#include <deque>

namespace lemo::engine {

// One recorded attention forward: what its backward needs besides q/k/v.
struct StashedAttention {
  // The fused kernel that ran; kRecompute: none was eligible (sdpa's math
  // backend), and replay runs the call again.
  enum class Kernel { kRecompute, kFlash, kCudnn, kEfficient };
  Kernel kernel = Kernel::kRecompute;
  torch::Tensor out;  // [B, H, n, d], as the op returned it
  torch::Tensor logsumexp;
  // The CUDA ops' varlen and RNG outputs, handed back to their backward.
  torch::Tensor cum_seq_q, cum_seq_k, philox_seed, philox_offset;
  int64_t max_q = 0, max_k = 0;
};

class AttentionStash {
 public:
  enum class Mode { kRecord, kReplay };

  // Makes `stash` this thread's current stash in `mode` until destroyed.
  class Scope {
   public:
    Scope(AttentionStash* stash, Mode mode);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    AttentionStash* previous_stash_;
    Mode previous_mode_;
  };

  // Recorded calls not yet replayed.
  size_t pending() const { return entries_.size(); }
  // Replayed calls that skipped the attention forward.
  int64_t skipped_forwards() const { return skipped_forwards_; }
  // The recorded calls not yet replayed, oldest first (tests read which
  // kernel each ran on).
  const std::deque<StashedAttention>& recorded() const { return entries_; }
  void Clear() { entries_.clear(); }

 private:
  friend torch::Tensor ScaledDotProductAttention(const torch::Tensor&,
                                                 const torch::Tensor&,
                                                 const torch::Tensor&, bool,
                                                 double);
  std::deque<StashedAttention> entries_;
  int64_t skipped_forwards_ = 0;
};

// at::scaled_dot_product_attention(q, k, v, no mask, dropout 0, is_causal,
// scale, enable_gqa = heads of q != heads of k), recorded or replayed when a
// stash scope is active. q [B, H, n, d], k/v [B, Hkv, n, d].
torch::Tensor ScaledDotProductAttention(const torch::Tensor& q,
                                        const torch::Tensor& k,
                                        const torch::Tensor& v, bool is_causal,
                                        double scale);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_MODEL_ATTENTION_STASH_H_
