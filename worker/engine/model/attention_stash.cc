#include "worker/engine/model/attention_stash.h"

#include <ATen/SDPBackend.h>

#include <optional>
#include <tuple>
#include <utility>

namespace lemo::engine {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

thread_local AttentionStash* current_stash = nullptr;
thread_local AttentionStash::Mode current_mode = AttentionStash::Mode::kRecord;

using Kernel = StashedAttention::Kernel;

// sdpa's own choice among the fused kernels for these (unexpanded, for GQA)
// tensors.
Kernel ChosenKernel(const torch::Tensor& q, const torch::Tensor& k,
                    const torch::Tensor& v, bool is_causal, double scale) {
  const int64_t choice = at::_fused_sdp_choice(
      q, k, v, /*attn_mask=*/std::nullopt, /*dropout_p=*/0.0, is_causal, scale,
      /*enable_gqa=*/q.size(1) != k.size(1));
  if (choice == static_cast<int64_t>(at::SDPBackend::flash_attention)) {
    return Kernel::kFlash;
  }
  if (choice == static_cast<int64_t>(at::SDPBackend::cudnn_attention)) {
    return Kernel::kCudnn;
  }
  if (choice == static_cast<int64_t>(at::SDPBackend::efficient_attention)) {
    return Kernel::kEfficient;
  }
  return Kernel::kRecompute;
}

// K or V as `kernel` takes it: flash reads GQA's KV heads natively; for the
// others sdpa repeats each KV head over its query heads first, as here
// (differentiable, so the replay's K/V gradients sum back over the group).
torch::Tensor KvFor(Kernel kernel, const torch::Tensor& kv, int64_t q_heads) {
  if (kernel == Kernel::kFlash || kv.size(1) == q_heads) return kv;
  return kv.repeat_interleave(q_heads / kv.size(1), /*dim=*/1);
}

// The flash and cuDNN CUDA ops return the same nine outputs: (out, lse,
// cum_seq_q, cum_seq_k, max_q, max_k, philox seed, philox offset, debug mask).
template <typename Outputs>
void TakeCudaOutputs(const Outputs& r, StashedAttention* e) {
  std::tie(e->out, e->logsumexp, e->cum_seq_q, e->cum_seq_k, std::ignore,
           std::ignore, e->philox_seed, e->philox_offset, std::ignore) = r;
  e->max_q = std::get<4>(r).expect_int();
  e->max_k = std::get<5>(r).expect_int();
}

StashedAttention FusedForward(StashedAttention::Kernel kernel,
                              const torch::Tensor& q, const torch::Tensor& k,
                              const torch::Tensor& v, bool is_causal,
                              double scale) {
  StashedAttention e;
  e.kernel = kernel;
  if (kernel == Kernel::kEfficient) {
    std::tie(e.out, e.logsumexp, e.philox_seed, e.philox_offset) =
        at::_scaled_dot_product_efficient_attention(
            q, k, v, /*attn_bias=*/std::nullopt, /*compute_log_sumexp=*/true,
            /*dropout_p=*/0.0, is_causal, scale);
  } else if (kernel == Kernel::kCudnn) {
    TakeCudaOutputs(at::_scaled_dot_product_cudnn_attention(
                        q, k, v, /*attn_bias=*/std::nullopt,
                        /*compute_log_sumexp=*/true, /*dropout_p=*/0.0,
                        is_causal, /*return_debug_mask=*/false, scale),
                    &e);
  } else if (q.is_cuda()) {
    TakeCudaOutputs(at::_scaled_dot_product_flash_attention(
                        q, k, v, /*dropout_p=*/0.0, is_causal,
                        /*return_debug_mask=*/false, scale),
                    &e);
  } else {
    std::tie(e.out, e.logsumexp) =
        at::_scaled_dot_product_flash_attention_for_cpu(
            q, k, v, /*dropout_p=*/0.0, is_causal, /*attn_mask=*/std::nullopt,
            scale);
  }
  return e;
}

// Returns the recorded output as the attention of (q, k, v); backward is the
// fused kernel's own backward on it.
struct ReplayedAttention : torch::autograd::Function<ReplayedAttention> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& q,
                               const torch::Tensor& k, const torch::Tensor& v,
                               StashedAttention e, bool is_causal,
                               double scale) {
    ctx->save_for_backward({q, k, v, e.out, e.logsumexp, e.cum_seq_q,
                            e.cum_seq_k, e.philox_seed, e.philox_offset});
    ctx->saved_data["max_q"] = e.max_q;
    ctx->saved_data["max_k"] = e.max_k;
    ctx->saved_data["kernel"] = static_cast<int64_t>(e.kernel);
    ctx->saved_data["is_causal"] = is_causal;
    ctx->saved_data["scale"] = scale;
    // The op returned a transposed view, made under no-grad; a detached alias
    // of it gets this node as its history like any fresh output.
    return e.out.detach();
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    const bool is_causal = ctx->saved_data["is_causal"].toBool();
    const double scale = ctx->saved_data["scale"].toDouble();
    const torch::Tensor& q = s[0];
    const int64_t max_q = ctx->saved_data["max_q"].toInt();
    const int64_t max_k = ctx->saved_data["max_k"].toInt();
    const auto kernel = static_cast<Kernel>(ctx->saved_data["kernel"].toInt());
    torch::Tensor gq, gk, gv;
    if (kernel == Kernel::kEfficient) {
      std::tie(gq, gk, gv, std::ignore) =
          at::_scaled_dot_product_efficient_attention_backward(
              grads[0], q, s[1], s[2], /*attn_bias=*/torch::Tensor(), s[3],
              s[4], s[7], s[8], /*dropout_p=*/0.0, {true, true, true, false},
              is_causal, scale);
    } else if (kernel == Kernel::kCudnn) {
      std::tie(gq, gk, gv) = at::_scaled_dot_product_cudnn_attention_backward(
          grads[0], q, s[1], s[2], s[3], s[4], s[7], s[8],
          /*attn_bias=*/torch::Tensor(), s[5], s[6], max_q, max_k,
          /*dropout_p=*/0.0, is_causal, scale);
    } else if (q.is_cuda()) {
      std::tie(gq, gk, gv) = at::_scaled_dot_product_flash_attention_backward(
          grads[0], q, s[1], s[2], s[3], s[4], s[5], s[6], max_q, max_k,
          /*dropout_p=*/0.0, is_causal, s[7], s[8], scale);
    } else {
      std::tie(gq, gk, gv) =
          at::_scaled_dot_product_flash_attention_for_cpu_backward(
              grads[0], q, s[1], s[2], s[3], s[4], /*dropout_p=*/0.0, is_causal,
              /*attn_mask=*/std::nullopt, scale);
    }
    return {gq, gk, gv, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

torch::Tensor Sdpa(const torch::Tensor& q, const torch::Tensor& k,
                   const torch::Tensor& v, bool is_causal, double scale) {
  return at::scaled_dot_product_attention(
      q, k, v, /*attn_mask=*/std::nullopt, /*dropout_p=*/0.0, is_causal, scale,
      /*enable_gqa=*/q.size(1) != k.size(1));
}

}  // namespace

AttentionStash::Scope::Scope(AttentionStash* stash, Mode mode)
    : previous_stash_(current_stash), previous_mode_(current_mode) {
  current_stash = stash;
  current_mode = mode;
}

AttentionStash::Scope::~Scope() {
  current_stash = previous_stash_;
  current_mode = previous_mode_;
}

torch::Tensor ScaledDotProductAttention(const torch::Tensor& q,
                                        const torch::Tensor& k,
                                        const torch::Tensor& v, bool is_causal,
                                        double scale) {
  AttentionStash* stash = current_stash;
  if (stash == nullptr) return Sdpa(q, k, v, is_causal, scale);
  if (current_mode == AttentionStash::Mode::kRecord) {
    const Kernel kernel = ChosenKernel(q, k, v, is_causal, scale);
    if (kernel == Kernel::kRecompute) {
      stash->entries_.emplace_back();
      return Sdpa(q, k, v, is_causal, scale);
    }
    const int64_t heads = q.size(1);
    StashedAttention e =
        FusedForward(kernel, q, KvFor(kernel, k, heads),
                     KvFor(kernel, v, heads), is_causal, scale);
    torch::Tensor out = e.out;
    stash->entries_.push_back(std::move(e));
    return out;
  }
  TORCH_CHECK(!stash->entries_.empty(),
              "attention stash: the recompute made more attention calls than "
              "the forward recorded");
  StashedAttention e = std::move(stash->entries_.front());
  stash->entries_.pop_front();
  if (e.kernel == Kernel::kRecompute) return Sdpa(q, k, v, is_causal, scale);
  TORCH_CHECK(e.out.size(2) == q.size(2) && e.out.size(1) == q.size(1),
              "attention stash: the recompute's attention has ", q.size(2),
              " tokens and ", q.size(1), " heads, the recorded one ",
              e.out.size(2), " and ", e.out.size(1));
  ++stash->skipped_forwards_;
  const Kernel kernel = e.kernel;
  return ReplayedAttention::apply(q, KvFor(kernel, k, q.size(1)),
                                  KvFor(kernel, v, q.size(1)), std::move(e),
                                  is_causal, scale);
}

}  // namespace lemo::engine
