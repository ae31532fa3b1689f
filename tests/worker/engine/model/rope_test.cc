// Tests for worker/engine/model/rope.h. Bit-exactness against transformers is
// covered by hf_parity_test.cc; these check the formulas' properties. To add a
// case: build a ModelConfig with the rope fields under test and compare
// RotaryEmbedding's output with a closed form.
#include "worker/engine/model/rope.h"

#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "tests/testing/status_matchers.h"
#include "tests/worker/engine/tiny_model.h"

namespace lemo::engine {
namespace {

using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;
using Type = RopeScaling::Type;

ModelConfig RopeConfig(Type type) {
  ModelConfig c = engine::testing::TinyConfig();
  c.head_dim = 16;
  c.rope_theta = 500000.0;
  c.rope_scaling.type = type;
  c.rope_scaling.factor = 8.0;
  c.rope_scaling.low_freq_factor = 1.0;
  c.rope_scaling.high_freq_factor = 4.0;
  c.rope_scaling.original_max_position_embeddings = 64;
  return c;
}

TEST(RotaryEmbedding, DefaultFrequenciesAreThetaPowers) {
  LEMO_ASSERT_OK_AND_ASSIGN(RotaryEmbedding rope,
                            RotaryEmbedding::Create(RopeConfig(Type::kNone)));
  torch::Tensor inv = rope.InverseFrequencies(10);
  ASSERT_EQ(inv.size(0), 8);
  for (int64_t i = 0; i < 8; ++i) {
    const double expected = 1.0 / std::pow(500000.0, 2.0 * i / 16.0);
    EXPECT_NEAR(inv[i].item<double>() / expected, 1.0, 1e-6) << i;
  }
}

TEST(RotaryEmbedding, LinearDividesEveryFrequency) {
  LEMO_ASSERT_OK_AND_ASSIGN(RotaryEmbedding base,
                            RotaryEmbedding::Create(RopeConfig(Type::kNone)));
  LEMO_ASSERT_OK_AND_ASSIGN(RotaryEmbedding linear,
                            RotaryEmbedding::Create(RopeConfig(Type::kLinear)));
  EXPECT_TRUE(torch::allclose(linear.InverseFrequencies(0) * 8,
                              base.InverseFrequencies(0), 1e-6, 0));
}

TEST(RotaryEmbedding, Llama3KeepsHighAndScalesLowFrequencies) {
  LEMO_ASSERT_OK_AND_ASSIGN(RotaryEmbedding base,
                            RotaryEmbedding::Create(RopeConfig(Type::kNone)));
  LEMO_ASSERT_OK_AND_ASSIGN(RotaryEmbedding llama3,
                            RotaryEmbedding::Create(RopeConfig(Type::kLlama3)));
  torch::Tensor b = base.InverseFrequencies(0);
  torch::Tensor l = llama3.InverseFrequencies(0);
  int kept = 0, scaled = 0, smoothed = 0;
  for (int64_t i = 0; i < b.size(0); ++i) {
    const double wavelen = 2 * M_PI / b[i].item<double>();
    const double ratio = l[i].item<double>() / b[i].item<double>();
    if (wavelen < 64.0 / 4.0) {
      EXPECT_NEAR(ratio, 1.0, 1e-6);
      ++kept;
    } else if (wavelen > 64.0) {
      EXPECT_NEAR(ratio, 1.0 / 8.0, 1e-6);
      ++scaled;
    } else {
      EXPECT_GT(ratio, 1.0 / 8.0);
      EXPECT_LT(ratio, 1.0);
      ++smoothed;
    }
  }
  // The config above puts frequencies in all three bands.
  EXPECT_GT(kept, 0);
  EXPECT_GT(scaled, 0);
  EXPECT_GT(smoothed, 0);
}

// The expected values are what transformers 5.17 returns for these configs:
//   inv, factor = ROPE_INIT_FUNCTIONS["yarn"](Qwen3Config(hidden_size=64,
//       num_attention_heads=4, head_dim=16, max_position_embeddings=512,
//       rope_parameters=dict(rope_type="yarn", ...)), "cpu")
// printed as %.9g (float32 round-trips) and repr(factor).
TEST(RotaryEmbedding, YarnMatchesTransformers) {
  struct Case {
    const char* name;
    double theta, factor, beta_fast, beta_slow, mscale, mscale_all_dim;
    bool truncate;
    double attention_factor;
    std::vector<double> inv_freq;
  };
  const std::vector<Case> cases = {
      // mscale / mscale_all_dim give the attention factor; no truncation.
      {"mscale_untruncated",
       10000.0,
       8.0,
       16.0,
       2.0,
       0.707,
       0.5,
       false,
       1.0389905150739585,
       {1, 0.120533988, 0.0125000002, 0.00395284733, 0.00124999997,
        0.000395284733, 0.000125000006, 3.95284733e-05}},
      // Defaults: beta 32/1, truncated range, attention factor 0.1 ln 4 + 1.
      {"defaults",
       500000.0,
       4.0,
       0,
       0,
       0,
       0,
       true,
       1.138629436111989,
       {1, 0.121201724, 0.00940150768, 0.00182316627, 0.000353553361,
        6.85620471e-05, 1.32957393e-05, 2.57834631e-06}},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    ModelConfig c = RopeConfig(Type::kYarn);
    c.max_position_embeddings = 512;
    c.rope_theta = k.theta;
    RopeScaling& s = c.rope_scaling;
    s.factor = k.factor;
    s.original_max_position_embeddings = 64;
    if (k.beta_fast > 0) s.beta_fast = k.beta_fast;
    if (k.beta_slow > 0) s.beta_slow = k.beta_slow;
    s.mscale = k.mscale;
    s.mscale_all_dim = k.mscale_all_dim;
    s.truncate = k.truncate;
    LEMO_ASSERT_OK_AND_ASSIGN(RotaryEmbedding rope, RotaryEmbedding::Create(c));
    EXPECT_DOUBLE_EQ(rope.attention_scaling(), k.attention_factor);
    torch::Tensor inv = rope.InverseFrequencies(1000);  // static: any length
    ASSERT_EQ(inv.size(0), 8);
    for (int64_t i = 0; i < 8; ++i) {
      EXPECT_EQ(inv[i].item<float>(), static_cast<float>(k.inv_freq[i])) << i;
    }
    // cos/sin carry the attention factor: at position 0, cos = factor.
    auto [cos, sin] = rope.CosSin(torch::arange(3), torch::kFloat);
    EXPECT_FLOAT_EQ(cos[0][0][0].item<float>(),
                    static_cast<float>(k.attention_factor));
    EXPECT_FLOAT_EQ(sin[0][0][0].item<float>(), 0.0f);
  }
  // An explicit attention_factor wins over the derived one.
  ModelConfig explicit_factor = RopeConfig(Type::kYarn);
  explicit_factor.rope_scaling.attention_factor = 1.25;
  LEMO_ASSERT_OK_AND_ASSIGN(RotaryEmbedding rope,
                            RotaryEmbedding::Create(explicit_factor));
  EXPECT_DOUBLE_EQ(rope.attention_scaling(), 1.25);
}

TEST(RotaryEmbedding, DynamicChangesOnlyPastMaxPositions) {
  ModelConfig c = RopeConfig(Type::kDynamic);
  c.rope_scaling.factor = 2.0;
  LEMO_ASSERT_OK_AND_ASSIGN(RotaryEmbedding rope, RotaryEmbedding::Create(c));
  LEMO_ASSERT_OK_AND_ASSIGN(RotaryEmbedding base,
                            RotaryEmbedding::Create(RopeConfig(Type::kNone)));
  EXPECT_TRUE(
      torch::equal(rope.InverseFrequencies(63), base.InverseFrequencies(63)));
  // NTK: base' = theta * (factor * L / max - (factor - 1)) ^ (d / (d - 2)), L =
  // 128.
  const double theta = 500000.0 * std::pow(2.0 * 128 / 64 - 1, 16.0 / 14.0);
  torch::Tensor inv = rope.InverseFrequencies(127);
  for (int64_t i = 0; i < 8; ++i) {
    EXPECT_NEAR(inv[i].item<double>() * std::pow(theta, 2.0 * i / 16.0), 1.0,
                1e-5);
  }
}

TEST(RotaryEmbedding, ExplicitPositionsPickTheSameRows) {
  LEMO_ASSERT_OK_AND_ASSIGN(RotaryEmbedding rope,
                            RotaryEmbedding::Create(RopeConfig(Type::kLlama3)));
  auto [cos_all, sin_all] = rope.CosSin(torch::arange(40), torch::kFloat);
  torch::Tensor picked = torch::tensor({3, 17, 18, 39}, torch::kLong);
  auto [cos, sin] = rope.CosSin(picked.unsqueeze(0), torch::kFloat);
  EXPECT_TRUE(torch::equal(cos[0], cos_all[0].index_select(0, picked)));
  EXPECT_TRUE(torch::equal(sin[0], sin_all[0].index_select(0, picked)));
}

TEST(ApplyRotary, IsAPairwiseRotationAndIdentityAtZero) {
  LEMO_ASSERT_OK_AND_ASSIGN(RotaryEmbedding rope,
                            RotaryEmbedding::Create(RopeConfig(Type::kNone)));
  auto [cos, sin] = rope.CosSin(torch::arange(5), torch::kDouble);
  torch::Tensor x = torch::randn({1, 3, 5, 16}, torch::kDouble);
  torch::Tensor y = ApplyRotary(x, cos, sin);
  // Position 0 has angle 0.
  EXPECT_TRUE(torch::allclose(y.select(2, 0), x.select(2, 0)));
  // rotate_half pairs dim i with dim i + d/2: each pair keeps its length.
  const auto pair_norm = [](const torch::Tensor& t) {
    return t.narrow(-1, 0, 8).pow(2) + t.narrow(-1, 8, 8).pow(2);
  };
  EXPECT_TRUE(torch::allclose(pair_norm(y), pair_norm(x)));
  EXPECT_TRUE(torch::equal(RotateHalf(torch::arange(4)),
                           torch::tensor({-2, -3, 0, 1}, torch::kLong)));
}

TEST(RotaryEmbedding, RejectsBadConfigs) {
  ModelConfig odd = RopeConfig(Type::kNone);
  odd.head_dim = 7;
  EXPECT_THAT(
      RotaryEmbedding::Create(odd),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("head_dim")));
  ModelConfig bad = RopeConfig(Type::kLlama3);
  bad.rope_scaling.high_freq_factor = 0.5;
  EXPECT_THAT(
      RotaryEmbedding::Create(bad),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("llama3")));
  ModelConfig yarn = RopeConfig(Type::kYarn);
  yarn.rope_scaling.original_max_position_embeddings = 0;
  EXPECT_THAT(RotaryEmbedding::Create(yarn),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("original_max_position_embeddings")));
  ModelConfig zero = RopeConfig(Type::kLinear);
  zero.rope_scaling.factor = 0;
  EXPECT_THAT(
      RotaryEmbedding::Create(zero),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("factor")));
}

}  // namespace
}  // namespace lemo::engine
