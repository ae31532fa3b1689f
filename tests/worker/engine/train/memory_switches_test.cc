// The automatic attention head groups (train/memory_switches.h): on where one
// layer's whole-attention backward would crowd the device, off where it fits
// or where groups cannot apply. The device sizes are the H100 80GB's and the
// H200's as cudaMemGetInfo reports them, so the cases read as the measured
// runs do. The rule and its constants are the planner's
// (common/plan/step_plan.h AutoHeadGroups); these cases check the engine's
// inputs reach it, and the one condition the engine adds (LoRA dropout). To
// add a case: a Llama-2-7B-shaped config, a length, a device
// size and the count the rule should give.
#include "worker/engine/train/memory_switches.h"

#include <gtest/gtest.h>

#include <cstdint>

#include "common/plan/step_plan.h"
#include "worker/engine/formats/model_config.h"
#include "worker/engine/train/training_model.h"

namespace lemo::engine {
namespace {

constexpr int64_t kH100Bytes = 85'045'477'376;   // 79.2 GiB
constexpr int64_t kH200Bytes = 150'754'820'096;  // 140.4 GiB

ModelConfig Llama2Shape() {
  ModelConfig c;
  c.hidden_size = 4096;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 32;
  return c;
}

TrainingModelOptions Checkpointed() {
  TrainingModelOptions o;
  o.gradient_checkpointing = true;
  o.base_dtype = torch::kBFloat16;
  return o;
}

TEST(AutoHeadGroups, OnlyWhereTheWholeAttentionBackwardCrowdsTheDevice) {
  const ModelConfig c = Llama2Shape();
  const TrainingModelOptions o = Checkpointed();
  // 256K on an H100: 14 inputs of 2 GiB = 28 GiB, 35% of the card: whole
  // (measured: fits at 76.9 GiB, 25% faster than 4 groups).
  EXPECT_EQ(AutoHeadGroups(262144, c, o, kH100Bytes), 0);
  // 384K: 42 GiB, 53%: groups (measured: fits at 64.5 GiB in 4 groups).
  EXPECT_EQ(AutoHeadGroups(393216, c, o, kH100Bytes), plan::kAutoHeadGroups);
  // The H200 holds 384K whole, and needs groups only past 40% of 140 GiB.
  EXPECT_EQ(AutoHeadGroups(393216, c, o, kH200Bytes), 0);
  EXPECT_EQ(AutoHeadGroups(655360, c, o, kH200Bytes), plan::kAutoHeadGroups);
}

TEST(AutoHeadGroups, OffWhereGroupsDoNotApply) {
  const int64_t long_seq = 1 << 20;
  ModelConfig c = Llama2Shape();
  TrainingModelOptions o = Checkpointed();
  ASSERT_EQ(AutoHeadGroups(long_seq, c, o, kH100Bytes), plan::kAutoHeadGroups);
  // Unknown device size (the CPU).
  EXPECT_EQ(AutoHeadGroups(long_seq, c, o, -1), 0);
  // No checkpointing: there is no per-group re-run to bound the backward.
  o.gradient_checkpointing = false;
  EXPECT_EQ(AutoHeadGroups(long_seq, c, o, kH100Bytes), 0);
  // Kept attention outputs and LoRA dropout: the layer refuses groups.
  o = Checkpointed();
  o.checkpoint_keep_attention = true;
  EXPECT_EQ(AutoHeadGroups(long_seq, c, o, kH100Bytes), 0);
  o = Checkpointed();
  o.lora.dropout = 0.1;
  EXPECT_EQ(AutoHeadGroups(long_seq, c, o, kH100Bytes), 0);
  // Heads (or kv heads) that 4 does not divide.
  o = Checkpointed();
  c.num_key_value_heads = 2;
  EXPECT_EQ(AutoHeadGroups(long_seq, c, o, kH100Bytes), 0);
}

TEST(AutoHeadGroups, CountsTheBaseDtypesBytes) {
  // fp32 activations are twice as big: 256K crowds the H100 in fp32.
  const ModelConfig c = Llama2Shape();
  TrainingModelOptions o = Checkpointed();
  o.base_dtype = torch::kFloat32;
  EXPECT_EQ(AutoHeadGroups(262144, c, o, kH100Bytes), plan::kAutoHeadGroups);
}

}  // namespace
}  // namespace lemo::engine
