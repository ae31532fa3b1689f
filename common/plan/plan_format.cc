#include "common/plan/plan_format.h"

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace lemo::plan {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

std::string Seconds(double s) { return absl::StrFormat("%.2f s", s); }

// Columns separated by two spaces, the last one unpadded (as lemoctl's
// client/table.h, which this base library cannot use).
std::string Render(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    if (width.size() < row.size()) width.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) {
      width[i] = std::max(width[i], row[i].size());
    }
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size())
        line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

}  // namespace

std::string FormatGiB(int64_t bytes) {
  return absl::StrFormat("%.2f", static_cast<double>(bytes) / kGiB);
}

std::string DescribeSettings(const StepSettings& s) {
  std::vector<std::string> parts;
  parts.push_back(absl::StrCat("seq ", s.seq_len, " x batch ", s.batch));
  parts.push_back(s.activation_bytes == 4 ? "fp32" : "bf16/fp16");
  parts.push_back(absl::StrCat("LoRA r=", s.lora_rank, " on ",
                               absl::StrJoin(s.lora_targets, ",")));
  if (s.gradient_checkpointing) {
    parts.push_back(s.checkpoint_keep_attention
                        ? "gradient checkpointing keeping attention"
                        : "gradient checkpointing");
  }
  if (s.offload != OffloadPolicy::kNone) {
    parts.push_back(absl::StrCat(
        "offload ", OffloadPolicyName(s.offload),
        s.offload_gpu_budget_gib >= 0
            ? absl::StrCat(" (GPU budget ", s.offload_gpu_budget_gib, " GiB)")
            : ""));
  }
  if (s.recompute_mlp) parts.push_back("recompute MLP");
  if (s.recompute_norm) parts.push_back("recompute norm");
  if (s.tile_tokens > 0) parts.push_back(absl::StrCat("tiles ", s.tile_tokens));
  if (s.attention_head_groups > 1) {
    parts.push_back(absl::StrCat("head groups ", s.attention_head_groups));
  }
  if (s.loss_segment_tokens > 0) {
    parts.push_back(absl::StrCat("loss segments ", s.loss_segment_tokens));
  }
  if (!s.keep_fractions.empty()) {
    const int64_t sparse =
        std::count_if(s.keep_fractions.begin(), s.keep_fractions.end(),
                      [](double f) { return f < 1.0; });
    parts.push_back(absl::StrCat(
        "LeMo ", s.lemo_oracle ? "oracle" : "predictor", " (", sparse, " of ",
        s.keep_fractions.size(), " layers sparse)"));
  } else {
    parts.push_back("dense attention");
  }
  if (s.mlp_prune_ratio > 0) {
    parts.push_back(absl::StrCat("MLP prune ", s.mlp_prune_ratio));
  }
  if (s.lemo_2d) parts.push_back("2D sparsity");
  return absl::StrJoin(parts, ", ");
}

std::string FormatPlanTable(const StepPlan& plan,
                            const DeviceDescription& device,
                            const StepSettings& settings) {
  std::string out = absl::StrCat(
      "device: ", device.name,
      device.description.empty() ? ""
                                 : absl::StrCat(" (", device.description, ")"),
      ", ", FormatGiB(device.memory_bytes), " GiB",
      // An unknown host (an older worker) is planned as unlimited: not shown.
      device.host_memory_bytes > 0 &&
              device.host_memory_bytes < (int64_t{1} << 50)
          ? absl::StrCat(", host ", FormatGiB(device.host_memory_bytes), " GiB")
          : "",
      "\n");
  absl::StrAppend(&out, "settings: ", DescribeSettings(settings), "\n");
  std::vector<std::vector<std::string>> rows = {
      {"ITEM", "WHERE", "GIB", "DETAIL"}};
  for (const PlanItem& item : plan.items) {
    rows.push_back({item.name, item.where, FormatGiB(item.bytes), item.detail});
  }
  rows.push_back({"peak (GPU)", "gpu", FormatGiB(plan.peak_gpu_bytes),
                  "predicted peak allocated"});
  rows.push_back(
      {"pinned (host)", "host", FormatGiB(plan.pinned_host_bytes),
       absl::StrCat("offloaded layer inputs (", plan.offloaded_layers,
                    plan.offloaded_layers == 1 ? " layer)" : " layers)")});
  out += Render(rows);
  std::vector<std::string> parts;
  for (const auto& [name, seconds] : plan.time_items) {
    parts.push_back(absl::StrCat(name, " ", Seconds(seconds)));
  }
  absl::StrAppend(
      &out, "step time: ", Seconds(plan.step_seconds),
      parts.empty() ? "" : absl::StrCat(" (", absl::StrJoin(parts, ", "), ")"),
      "\n");
  absl::StrAppend(&out, "verdict: ", plan.verdict, "\n");
  return out;
}

nlohmann::json PlanToJson(const StepPlan& plan, const DeviceDescription& device,
                          const StepSettings& s) {
  nlohmann::json items = nlohmann::json::array();
  for (const PlanItem& item : plan.items) {
    items.push_back({{"name", item.name},
                     {"where", item.where},
                     {"bytes", item.bytes},
                     {"gib", static_cast<double>(item.bytes) / kGiB},
                     {"detail", item.detail}});
  }
  nlohmann::json times = nlohmann::json::array();
  for (const auto& [name, seconds] : plan.time_items) {
    times.push_back({{"name", name}, {"seconds", seconds}});
  }
  nlohmann::json settings = {
      {"seqLen", s.seq_len},
      {"batch", s.batch},
      {"activationBytes", s.activation_bytes},
      {"loraRank", s.lora_rank},
      {"loraTargets", s.lora_targets},
      {"gradientCheckpointing", s.gradient_checkpointing},
      {"checkpointKeepAttention", s.checkpoint_keep_attention},
      {"recomputeMlp", s.recompute_mlp},
      {"recomputeNorm", s.recompute_norm},
      {"offload", OffloadPolicyName(s.offload)},
      {"offloadGpuBudgetGib", s.offload_gpu_budget_gib},
      {"tileTokens", s.tile_tokens},
      {"attentionHeadGroups", s.attention_head_groups},
      {"lossSegmentTokens", s.loss_segment_tokens},
      {"keepFractions", s.keep_fractions},
      {"lemoOracle", s.lemo_oracle},
      {"mlpPruneRatio", s.mlp_prune_ratio},
      {"lemo2d", s.lemo_2d},
      {"summary", DescribeSettings(s)}};
  return {{"device",
           {{"name", device.name},
            {"description", device.description},
            {"memoryBytes", device.memory_bytes},
            {"hostMemoryBytes", device.host_memory_bytes}}},
          {"settings", settings},
          {"items", items},
          {"peakGpuBytes", plan.peak_gpu_bytes},
          {"pinnedHostBytes", plan.pinned_host_bytes},
          {"offloadedLayers", plan.offloaded_layers},
          {"stepSeconds", plan.step_seconds},
          {"timeItems", times},
          {"fits", plan.fits},
          {"shortfallBytes", plan.shortfall_bytes},
          {"verdict", plan.verdict}};
}

}  // namespace lemo::plan
