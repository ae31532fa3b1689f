// Tests of selective checkpointing for attention
// (worker/engine/model/attention_stash.h): outside a scope the call is plain
// sdpa; a replay returns the recorded output (it does not run the forward) with
// flash attention's exact gradients; mismatched replays fail loudly;
// checkpointed models that keep attention train exactly like the unchecked
// ones, dense and LeMo. To add a case: record under
// AttentionStash::Mode::kRecord, replay under kReplay, and compare with
// at::scaled_dot_product_attention. The CUDA case is in
// attention_stash_cuda_test.cc (label gpu).
#include "worker/engine/model/attention_stash.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tests/worker/engine/model/attention_test_util.h"
#include "tests/worker/engine/tiny_model.h"
#include "worker/engine/train/recompute.h"
#include "worker/engine/train/training_model.h"

namespace lemo::engine {
namespace {

using ::testing::HasSubstr;

using ::lemo::engine::testing::ExpectSameGrads;
using ::lemo::engine::testing::Qkv;
using ::lemo::engine::testing::RandomQkv;
using ::lemo::engine::testing::Reference;

TEST(AttentionStash, OutsideAScopeIsPlainSdpa) {
  const Qkv t = RandomQkv(2, 3, 37, 16, 1);
  const torch::Tensor got =
      ScaledDotProductAttention(t.q, t.k, t.v, true, 0.25);
  EXPECT_TRUE(torch::allclose(got, Reference(t, true, 0.25), 1e-6, 1e-6));
}

TEST(AttentionStash, ReplayReturnsTheRecordedOutputWithExactGradients) {
  for (const bool causal : {true, false}) {
    for (const int64_t len : {1, 37, 130}) {
      SCOPED_TRACE(::testing::Message() << "causal " << causal << " n " << len);
      const Qkv t = RandomQkv(2, 3, len, 16, 2);
      const double scale = 0.25;
      AttentionStash stash;
      torch::Tensor recorded;
      {
        torch::NoGradGuard no_grad;
        AttentionStash::Scope record(&stash, AttentionStash::Mode::kRecord);
        recorded = ScaledDotProductAttention(t.q, t.k, t.v, causal, scale);
      }
      ASSERT_EQ(stash.pending(), 1u);
      torch::Tensor replayed;
      {
        AttentionStash::Scope replay(&stash, AttentionStash::Mode::kReplay);
        replayed = ScaledDotProductAttention(t.q, t.k, t.v, causal, scale);
      }
      EXPECT_EQ(stash.pending(), 0u);
      EXPECT_EQ(stash.skipped_forwards(), 1) << "CPU sdpa did not pick flash";
      const torch::Tensor want = Reference(t, causal, scale);
      EXPECT_TRUE(torch::allclose(replayed, want, 1e-5, 1e-6));
      ExpectSameGrads(replayed, want, t, 1e-4);
    }
  }
}

TEST(AttentionStash, ReplaySkipsTheForward) {
  // Replaying with other q values of the same shape must hand back what was
  // recorded: proof that the attention forward did not run again.
  const Qkv t = RandomQkv(1, 2, 20, 8, 3);
  AttentionStash stash;
  torch::Tensor recorded;
  {
    torch::NoGradGuard no_grad;
    AttentionStash::Scope record(&stash, AttentionStash::Mode::kRecord);
    recorded = ScaledDotProductAttention(t.q, t.k, t.v, true, 0.5).clone();
  }
  AttentionStash::Scope replay(&stash, AttentionStash::Mode::kReplay);
  const torch::Tensor other = torch::randn_like(t.q);
  const torch::Tensor out =
      ScaledDotProductAttention(other, t.k, t.v, true, 0.5);
  EXPECT_TRUE(torch::equal(out.detach(), recorded));
}

TEST(AttentionStash, MismatchedReplayFailsWithAReason) {
  const Qkv t = RandomQkv(1, 2, 20, 8, 4);
  AttentionStash stash;
  {
    AttentionStash::Scope replay(&stash, AttentionStash::Mode::kReplay);
    try {
      ScaledDotProductAttention(t.q, t.k, t.v, true, 0.5);
      FAIL() << "replay with nothing recorded did not throw";
    } catch (const c10::Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("more attention calls than the forward"));
    }
  }
  {
    torch::NoGradGuard no_grad;
    AttentionStash::Scope record(&stash, AttentionStash::Mode::kRecord);
    ScaledDotProductAttention(t.q, t.k, t.v, true, 0.5);
  }
  const Qkv longer = RandomQkv(1, 2, 21, 8, 5);
  AttentionStash::Scope replay(&stash, AttentionStash::Mode::kReplay);
  try {
    ScaledDotProductAttention(longer.q, longer.k, longer.v, true, 0.5);
    FAIL() << "replay with another length did not throw";
  } catch (const c10::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("21 tokens"));
  }
}

TEST(AttentionStash, GqaReplaysWithExactGradients) {
  // Recorded when sdpa picks flash for GQA, recomputed otherwise: exact
  // either way.
  torch::manual_seed(6);
  Qkv t;
  t.q = torch::randn({1, 4, 16, 8}, torch::requires_grad());
  t.k = torch::randn({1, 2, 16, 8}, torch::requires_grad());
  t.v = torch::randn({1, 2, 16, 8}, torch::requires_grad());
  AttentionStash stash;
  {
    torch::NoGradGuard no_grad;
    AttentionStash::Scope record(&stash, AttentionStash::Mode::kRecord);
    ScaledDotProductAttention(t.q, t.k, t.v, true, 0.5);
  }
  AttentionStash::Scope replay(&stash, AttentionStash::Mode::kReplay);
  const torch::Tensor out = ScaledDotProductAttention(t.q, t.k, t.v, true, 0.5);
  std::cout << "[lemo] GQA on the CPU: "
            << (stash.skipped_forwards() == 1 ? "recorded (flash)"
                                              : "recomputed (not flash)")
            << "\n";
  const torch::Tensor want = at::scaled_dot_product_attention(
      t.q, t.k, t.v, std::nullopt, 0.0, true, 0.5, /*enable_gqa=*/true);
  EXPECT_TRUE(torch::allclose(out, want, 1e-5, 1e-6));
  ExpectSameGrads(out, want, t, 1e-4);
}

TEST(AttentionStash, CheckpointThatKeepsAttentionHasTheSameGradients) {
  const Qkv t = RandomQkv(1, 2, 33, 8, 7);
  const torch::Tensor w_proj = torch::randn({8, 8}, torch::requires_grad());
  const auto fn = [&](const torch::Tensor& x) {
    torch::Tensor q = torch::matmul(x, w_proj);
    return ScaledDotProductAttention(q, t.k.detach(), t.v.detach(), true, 0.3);
  };
  const torch::Tensor x = t.q.detach().clone().requires_grad_(true);
  const torch::Tensor w = torch::randn({1, 2, 33, 8});
  const auto run = [&](bool checkpoint, bool stash) {
    torch::Tensor y = checkpoint ? Checkpoint(fn, x, {w_proj}, stash) : fn(x);
    return torch::autograd::grad({(y * w).sum()}, {x, w_proj});
  };
  const auto plain = run(false, false);
  for (const bool stash : {false, true}) {
    const auto got = run(true, stash);
    for (size_t i = 0; i < 2; ++i) {
      EXPECT_TRUE(torch::allclose(got[i], plain[i], 1e-5, 1e-6))
          << "stash " << stash << " grad " << i;
    }
  }
}

// Loss and LoRA gradients of a fresh model with `options` on fixed tokens.
std::pair<double, std::vector<torch::Tensor>> TrainStep(
    const ModelConfig& config, const TrainingModelOptions& options,
    const std::map<std::string, torch::Tensor>& weights,
    const torch::Tensor& ids) {
  auto model = testing::MakeRandomLoraModel(config, options, weights);
  torch::Tensor loss = model->Loss(ids, ids);
  loss.backward();
  std::vector<torch::Tensor> grads;
  for (auto& [name, p] : model->LoraParameters()) grads.push_back(p.grad());
  return {loss.item<double>(), grads};
}

TEST(AttentionStash, CheckpointedModelsThatKeepAttentionTrainTheSame) {
  for (const bool gqa : {false, true})
    for (const bool lemo : {false, true}) {
      SCOPED_TRACE(::testing::Message() << (lemo ? "LeMo oracle" : "dense")
                                        << (gqa ? ", GQA" : ", MHA"));
      ModelConfig config = testing::TinyConfig();
      config.max_position_embeddings = 320;
      if (!gqa) config.num_key_value_heads = config.num_attention_heads;
      const auto w = testing::RandomWeights(config, 8);
      torch::manual_seed(9);
      const torch::Tensor ids = torch::randint(0, config.vocab_size, {1, 300});
      TrainingModelOptions plain;
      // Adapters on the MLP too: the re-run skips down_proj's GEMM but not its
      // adapter.
      plain.lora.target_modules = {"q_proj", "v_proj", "gate_proj",
                                   "down_proj"};
      if (lemo) {
        plain.lemo.mode = LemoMode::kOracle;
        plain.lemo.keep_ratios = {1.0, 0.4};
      }
      TrainingModelOptions kept = plain;
      kept.gradient_checkpointing = true;
      kept.checkpoint_keep_attention = true;
      const auto [loss_a, grads_a] = TrainStep(config, plain, w, ids);
      const auto [loss_b, grads_b] = TrainStep(config, kept, w, ids);
      EXPECT_NEAR(loss_a, loss_b, 1e-6);
      ASSERT_EQ(grads_a.size(), grads_b.size());
      for (size_t i = 0; i < grads_a.size(); ++i) {
        EXPECT_TRUE(torch::allclose(grads_a[i], grads_b[i], 1e-4, 1e-6))
            << "LoRA grad " << i << " max diff "
            << (grads_a[i] - grads_b[i]).abs().max().item<double>();
      }
    }
}

}  // namespace
}  // namespace lemo::engine
