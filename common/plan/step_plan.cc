#include "common/plan/step_plan.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace lemo::plan {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// --- Calibration constants. Each names the measured rows it comes from. ---

// The automatic offload budget's reserve, in layer inputs (N x hidden x
// activation bytes): worker/engine/train/offload.h working_set_inputs.
constexpr double kAutoBudgetReserveInputs = 18;
// After the first backward the reserve is the measured working set plus this
// many inputs (offload.h kMeasuredMarginInputs).
constexpr double kMeasuredMarginInputs = 4;
// What cudaMemGetInfo does not report free beside torch's allocations (the
// CUDA context, cuBLAS handles), which the automatic budget starts without:
// 0.623-0.625 GB in the three H100 rows whose metrics record the plan the
// automatic budget made (2026-12-06-h100-256k, 2026-12-06-h100-384k/lemo-*:
// total_memory minus the weights and adapter state minus budget + reserve).
constexpr int64_t kCudaContextBytes = 620'000'000;

// One layer's recompute + backward working set (the engine's per-layer
// backward_peak_bytes in *.metrics.jsonl), in layer inputs, Llama-2-7B, for
// layers whose input stayed on the GPU (an offloaded layer's restored input
// comes back whole inside the measured number, one input more; "backward in
// flight" adds it where the plan offloads):
//   attention whole, tiled MLP: 13.04 (dense layer; 2026-12-06-h100-grid/
//     ckpt-128k-*), 7.04 (keep 0.4; 2026-12-06-h100-384k/
//     lemo-256k-whole-attention, whose sparse layers stayed on the GPU);
//   4 head groups: 8.26 (dense, 9.26 offloaded), 5.43 (keep 0.4):
//     2026-12-06-h100-384k/lemo-384k, 2026-12-06-h100-256k;
//   untiled MLP: 23.16 (dense), 20.17 (keep 0.4): 2026-12-06-h100-grid/
//     ckpt-short and ckpt-64k, 16K to 64K.
// Attention phase: base + keep x (shared + per_group / groups) inputs, from
// the whole-attention pair and the dense layer in 4 groups (7.76 against the
// measured 8.26: the sparse 4-group layer, 5.03 against 5.43, pulls the
// other way).
constexpr double kAttnWorkingSetBaseInputs = 3.04;
constexpr double kAttnWorkingSetSharedInputs = 2.96;
constexpr double kAttnWorkingSetPerGroupInputs = 7.04;
// MLP phase: base + keep x per_kept inputs + intermediates x I elements per
// token of the MLP's (tile or full) length: the untiled pair above (the
// intermediates term is what tiling removes: 16.15 inputs = 6.01 x I).
constexpr double kMlpWorkingSetBaseInputs = 2.03;
constexpr double kMlpWorkingSetPerKeptInputs = 4.98;
constexpr double kMlpWorkingSetIntermediates = 6.01;
// Under checkpointing, beside the working set, the gradient arriving at the
// layer: the measured peak minus weights, GPU checkpoints and the largest
// working set is 1.09-1.13 layer inputs in every row that offloaded nothing
// (2026-12-06-h100-grid/ckpt-*, 16K to 128K). Rows that offloaded add the
// restored input (the engine counts it in the working set it measures: 14.04
// against 13.04 at 128K without offload) and, where sparser layers were
// offloaded too, one more input prefetched: 2.05-2.13 beyond the measured
// working set there (384K on the H100; 512K, 256K and 64K on the H200), 1.09
// where only the dense layers were (2026-12-06-h100-256k).
constexpr double kGradientInputs = 1.09;
// Without checkpointing, the first layer backward's MLP gradients beside
// everything saved, in intermediate-sized tensors: the 8K dense row
// (2026-12-06-h100-structure/8k-no-ckpt, 38.3 GiB) is within 1% with 2.
constexpr double kNoCheckpointBackwardIntermediates = 2;
// Allocator workspace beyond the counted tensors (cuBLAS workspaces, flash
// attention's small buffers): the 8K rows' remainder.
constexpr int64_t kWorkspaceBytes = int64_t{256} << 20;

// The share of the device's 8192^3 GEMM rate that the projections reach
// with everything that rides with them (RMSNorm, RoPE, SwiGLU, the LoRA
// adapters' fp32 steps, the loss): fitted to the 8K dense row without
// checkpointing (0.80 s, 2026-12-06-h100-structure/8k-no-ckpt).
constexpr double kLinearEfficiency = 0.5;
// A fixed cost per step beside the FLOPs: a few thousand small kernel
// launches, the optimizer step over every adapter tensor, the loss's
// bookkeeping. The 8K rows without checkpointing (0.80 / 0.69 / 0.76 s,
// 2026-12-06-h100-structure/8k-no-ckpt) sit 0.07-0.12 s above their FLOPs.
constexpr double kStepOverheadSeconds = 0.1;
// Flash attention's backward rate relative to the forward's (the device's
// attention_flops_per_s), in bench/flops.py's counting (backward = 2x the
// forward's FLOPs).
constexpr double kAttentionBackwardRateShare = 1.0;

struct Proj {
  const char* name;
  int64_t in, out;
};

std::string Gib(int64_t bytes) {
  return absl::StrFormat("%.1f GiB", bytes / kGiB);
}

std::vector<Proj> Projections(const ModelShape& m) {
  const int64_t q = m.num_heads * m.head_dim;
  const int64_t kv = m.num_kv_heads * m.head_dim;
  return {{"q_proj", m.hidden_size, q},
          {"k_proj", m.hidden_size, kv},
          {"v_proj", m.hidden_size, kv},
          {"o_proj", q, m.hidden_size},
          {"gate_proj", m.hidden_size, m.intermediate_size},
          {"up_proj", m.hidden_size, m.intermediate_size},
          {"down_proj", m.intermediate_size, m.hidden_size}};
}

}  // namespace

absl::StatusOr<OffloadPolicy> ParseOffloadPolicy(absl::string_view name) {
  if (name == "none") return OffloadPolicy::kNone;
  if (name == "uniform") return OffloadPolicy::kUniform;
  if (name == "sparsity") return OffloadPolicy::kSparsity;
  return absl::InvalidArgumentError(absl::StrCat(
      "offload must be none, uniform or sparsity, got \"", name, "\""));
}

std::string OffloadPolicyName(OffloadPolicy policy) {
  switch (policy) {
    case OffloadPolicy::kUniform:
      return "uniform";
    case OffloadPolicy::kSparsity:
      return "sparsity";
    case OffloadPolicy::kNone:
      break;
  }
  return "none";
}

std::vector<double> DefaultKeepFractions(int64_t num_layers) {
  // The engine's default schedule (worker/engine/lemo/lemo_options.h
  // DefaultKeepSchedule returns this): 15 of the artifact's 32 layers run
  // dense before sparsity starts paying off.
  constexpr double kDenseFraction = 15.0 / 32.0;
  constexpr double kSparseKeep = 0.4;
  const int64_t dense_prefix = static_cast<int64_t>(
      std::lround(kDenseFraction * static_cast<double>(num_layers)));
  std::vector<double> ratios(num_layers > 0 ? num_layers : 0, kSparseKeep);
  for (int64_t i = 0; i < num_layers; ++i) {
    if (i < dense_prefix || i == num_layers - 1) ratios[i] = 1.0;
  }
  return ratios;
}

int64_t AutoTileTokens(int64_t seq_len) {
  return seq_len >= kAutoTileFromTokens ? kAutoTileTokens : 0;
}

int64_t AutoHeadGroups(const ModelShape& model, const StepSettings& s,
                       int64_t device_memory_bytes) {
  if (!s.gradient_checkpointing || s.checkpoint_keep_attention ||
      device_memory_bytes <= 0 || model.num_heads % kAutoHeadGroups != 0 ||
      model.num_kv_heads % kAutoHeadGroups != 0) {
    return 0;
  }
  const double input_bytes = static_cast<double>(s.seq_len) *
                             static_cast<double>(model.hidden_size) *
                             static_cast<double>(s.activation_bytes);
  return kWholeAttentionWorkingSetInputs * input_bytes >
                 kAutoHeadGroupsDeviceShare *
                     static_cast<double>(device_memory_bytes)
             ? kAutoHeadGroups
             : 0;
}

absl::Status ValidateDevice(const DeviceDescription& d) {
  if (d.memory_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("device memory_bytes must be > 0, got ", d.memory_bytes));
  }
  if (d.host_memory_bytes < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "device host_memory_bytes must be >= 0, got ", d.host_memory_bytes));
  }
  const std::pair<const char*, double> rates[] = {
      {"matmul_flops_per_s", d.matmul_flops_per_s},
      {"attention_flops_per_s", d.attention_flops_per_s},
      {"host_copy_bytes_per_s", d.host_copy_bytes_per_s}};
  for (const auto& [name, v] : rates) {
    if (!std::isfinite(v) || v < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("device ", name, " must be >= 0, got ", v));
    }
  }
  if (d.matmul_flops_per_s <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "device matmul_flops_per_s must be > 0, got ", d.matmul_flops_per_s));
  }
  return absl::OkStatus();
}

absl::Status ValidateStepSettings(const ModelShape& model,
                                  const StepSettings& s) {
  LEMO_RETURN_IF_ERROR(ValidateModelShape(model));
  // Bounds far past any real step keep every byte count inside int64.
  constexpr int64_t kMaxTokens = int64_t{1} << 26;
  if (s.seq_len <= 0 || s.seq_len > kMaxTokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        "seq_len must be in [1, ", kMaxTokens, "], got ", s.seq_len));
  }
  if (s.batch <= 0 || s.batch > 4096 || s.batch * s.seq_len > kMaxTokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch must be >= 1 with batch x seq_len <= ", kMaxTokens,
                     ", got ", s.batch));
  }
  // Every byte count of the plan in double first: the largest (all layers'
  // inputs, one layer's intermediates, the logits, the adapters) must stay
  // far inside int64, whatever the inputs.
  {
    const double tokens =
        static_cast<double>(s.batch) * static_cast<double>(s.seq_len);
    const double widest = static_cast<double>(std::max(
        {model.hidden_size, model.intermediate_size, model.vocab_size}));
    const double per_layer_tokens =
        tokens * widest * 64;  // every per-token term, with margin
    if (per_layer_tokens * static_cast<double>(model.num_layers) > 1e18) {
      return absl::InvalidArgumentError(
          absl::StrCat("seq_len x batch (", tokens,
                       " tokens) is too large to plan for this model: ",
                       "num_layers x tokens x the widest of hidden_size, "
                       "intermediate_size and vocab_size ",
                       "exceeds what the planner counts in int64"));
    }
  }
  if (s.activation_bytes != 2 && s.activation_bytes != 4) {
    return absl::InvalidArgumentError(
        absl::StrCat("activation_bytes must be 2 (bf16/fp16) or 4 (fp32), got ",
                     s.activation_bytes));
  }
  if (s.lora_rank <= 0 || s.lora_rank > 65536) {
    return absl::InvalidArgumentError(
        absl::StrCat("lora_rank must be in [1, 65536], got ", s.lora_rank));
  }
  if (s.lora_targets.empty()) {
    return absl::InvalidArgumentError(
        "lora_targets must name at least one projection");
  }
  std::set<std::string> known;
  for (const Proj& p : Projections(model)) known.insert(p.name);
  std::set<std::string> seen;
  for (const std::string& t : s.lora_targets) {
    if (known.count(t) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("lora_targets: unknown projection \"", t,
                       "\" (known: ", absl::StrJoin(known, ", "), ")"));
    }
    if (!seen.insert(t).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("lora_targets: \"", t, "\" appears twice"));
    }
  }
  if (!s.gradient_checkpointing && s.offload != OffloadPolicy::kNone) {
    return absl::InvalidArgumentError(
        "offload needs gradient_checkpointing (only checkpointed inputs are "
        "offloaded)");
  }
  if (!std::isfinite(s.offload_gpu_budget_gib) ||
      (s.offload_gpu_budget_gib < 0 && s.offload_gpu_budget_gib != -1) ||
      s.offload_gpu_budget_gib > 1e9) {
    return absl::InvalidArgumentError(absl::StrCat(
        "offload_gpu_budget_gib must be >= 0 (or -1: automatic), got ",
        s.offload_gpu_budget_gib));
  }
  if (s.tile_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tile_tokens must be >= 0 (0: off), got ", s.tile_tokens));
  }
  if (s.attention_head_groups < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("attention_head_groups must be >= 0 (0/1: off), got ",
                     s.attention_head_groups));
  }
  if (s.attention_head_groups > 1 &&
      (model.num_heads % s.attention_head_groups != 0 ||
       model.num_kv_heads % s.attention_head_groups != 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("attention_head_groups (", s.attention_head_groups,
                     ") must divide num_heads (", model.num_heads,
                     ") and num_kv_heads (", model.num_kv_heads, ")"));
  }
  if (s.attention_head_groups > 1 && s.checkpoint_keep_attention) {
    return absl::InvalidArgumentError(
        "attention_head_groups does not combine with checkpoint_keep_attention "
        "(the engine "
        "refuses the pair: one keeps attention's output, the other re-runs it "
        "group by group)");
  }
  if (s.loss_segment_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("loss_segment_tokens must be >= 0 (0: one chunk), got ",
                     s.loss_segment_tokens));
  }
  if (!s.keep_fractions.empty()) {
    if (static_cast<int64_t>(s.keep_fractions.size()) != model.num_layers) {
      return absl::InvalidArgumentError(absl::StrCat(
          "keep_fractions has ", s.keep_fractions.size(),
          " entries but the model has ", model.num_layers, " layers"));
    }
    for (size_t i = 0; i < s.keep_fractions.size(); ++i) {
      const double f = s.keep_fractions[i];
      if (!(f > 0 && f <= 1)) {
        return absl::InvalidArgumentError(
            absl::StrCat("keep_fractions[", i, "] must be in (0, 1], got ", f));
      }
    }
  } else if (s.lemo_oracle) {
    return absl::InvalidArgumentError(
        "lemo_oracle needs keep_fractions (LeMo on); empty keep_fractions is "
        "dense");
  }
  if (!(s.mlp_prune_ratio >= 0 && s.mlp_prune_ratio < 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "mlp_prune_ratio must be in [0, 1), got ", s.mlp_prune_ratio));
  }
  return absl::OkStatus();
}

absl::StatusOr<StepPlan> PlanStep(const ModelShape& m, const StepSettings& s,
                                  const DeviceDescription& device) {
  LEMO_RETURN_IF_ERROR(ValidateStepSettings(m, s));
  LEMO_RETURN_IF_ERROR(ValidateDevice(device));
  StepPlan plan;
  const int64_t L = m.num_layers;
  const double D = static_cast<double>(m.hidden_size);
  const double I = static_cast<double>(m.intermediate_size);
  const double Q = static_cast<double>(m.num_heads * m.head_dim);
  const double KV = static_cast<double>(m.num_kv_heads * m.head_dim);
  const int64_t N = s.batch * s.seq_len;  // tokens per step
  const double Nd = static_cast<double>(N);
  const double ab = static_cast<double>(s.activation_bytes);
  std::vector<double> keep = s.keep_fractions;
  if (keep.empty()) keep.assign(L, 1.0);
  const bool sparse_run = !s.keep_fractions.empty();
  auto targeted = [&](const char* name) {
    return std::find(s.lora_targets.begin(), s.lora_targets.end(), name) !=
           s.lora_targets.end();
  };
  auto add = [&](std::string name, std::string where, double bytes,
                 std::string detail) {
    const int64_t b = static_cast<int64_t>(std::llround(bytes));
    plan.items.push_back(
        {std::move(name), std::move(where), b, std::move(detail)});
    return b;
  };
  // A layer's input [B, N, D]: the unit the engine's own memory numbers use.
  const double input = Nd * D * ab;
  const int64_t groups = std::max<int64_t>(1, s.attention_head_groups);
  // The MLP saves only its input when tiled or told to recompute
  // (MlpSaversFrom); under checkpointing the engine drops recompute_mlp, as
  // the whole layer is recomputed anyway (training_model.cc).
  const bool mlp_recomputes =
      (s.recompute_mlp && !s.gradient_checkpointing) || s.tile_tokens > 0;

  // --- Persistent state: what is allocated before the step and stays. ---
  const int64_t frozen_params = FrozenParameterCount(m);
  const int64_t weights = add(
      "frozen weights", "gpu",
      static_cast<double>(frozen_params * m.weight_bytes),
      absl::StrCat(frozen_params, " parameters x ", m.weight_bytes, " bytes"));
  int64_t lora_params_layer = 0;
  for (const Proj& p : Projections(m)) {
    if (targeted(p.name)) lora_params_layer += s.lora_rank * (p.in + p.out);
  }
  const int64_t lora_params = L * lora_params_layer;
  // Adapters, their gradients and AdamW's two moments are fp32 whatever the
  // base dtype (worker/engine/model/lora_linear.h, train/optimizer.h).
  const int64_t adapters =
      add("adapters", "gpu", static_cast<double>(lora_params) * 4,
          absl::StrCat(lora_params, " LoRA parameters (rank ", s.lora_rank,
                       ") x 4 bytes, fp32"));
  const int64_t grads =
      add("adapter gradients", "gpu", static_cast<double>(lora_params) * 4,
          "fp32, one per adapter parameter");
  const int64_t optimizer =
      add("optimizer state", "gpu", static_cast<double>(lora_params) * 8,
          "AdamW exp_avg + exp_avg_sq, fp32");
  const int64_t persistent = weights + adapters + grads + optimizer;

  // --- What one layer saves for backward, per token, in elements. ---
  // decoder_layer.cc with lean_ops.h: the input RMSNorm saves the layer input
  // x and the post-attention one the residual h; the q/k/v LoRA node saves the
  // normed input xn once for the three (a sparse layer: only the gathered kept
  // rows); flash attention saves q, k, v and its output (o_proj's input shares
  // it); SwiGlu saves gate and up. Frozen projections without an adapter save
  // nothing (autograd keeps an input only for a weight that needs a gradient),
  // so neither the MLP's normed input nor down_proj's input is kept unless
  // gate/up/down carry adapters.
  auto saved_per_token = [&](double k) {
    double e = 2 * D;               // x, h (full length)
    e += k * (D + 2 * Q + 2 * KV);  // xn rows, q, k, v, attention output
    if (!mlp_recomputes) {
      e += 2 * I * (1 - s.mlp_prune_ratio);  // gate, up (kept channels)
      if (targeted("gate_proj") || targeted("up_proj"))
        e += D;                           // the MLP's normed input
      if (targeted("down_proj")) e += I;  // down_proj's input
    }
    return e;
  };
  // One layer's recompute + backward working set, in elements per token, the
  // larger of its two phases. Fitted to the engine's own per-layer
  // backward_peak_bytes (Llama-2-7B, bench/results/2026-12-06-h200-512k/*/ and
  // 2026-12-06-h100-384k/*/ metrics.jsonl; see the constants above):
  // attention: x and h plus per kept token the attention tensors and their
  // gradients (fewer at a time in head groups); MLP, untiled: the saved
  // attention tensors plus gate/up and their gradients over the full length.
  const double attn_scale =
      (D + 6 * Q + 4 * KV) / (11 * D);  // 1 for multi-head attention
  auto working_set_per_token = [&](double k) {
    const double per_kept =
        (kAttnWorkingSetSharedInputs +
         kAttnWorkingSetPerGroupInputs / static_cast<double>(groups)) *
        attn_scale * D;
    const double attention = kAttnWorkingSetBaseInputs * D + k * per_kept;
    double mlp =
        kMlpWorkingSetBaseInputs * D + k * kMlpWorkingSetPerKeptInputs * D;
    const double mlp_tokens =
        s.tile_tokens > 0
            ? std::min(1.0, static_cast<double>(s.tile_tokens) / Nd)
            : 1.0;
    mlp += kMlpWorkingSetIntermediates * I * mlp_tokens;
    return std::max(attention, mlp);
  };

  double activations = 0, kept_attention = 0, working_set = 0, top_backward = 0;
  int64_t checkpoints_gpu = 0, checkpoints_host = 0;
  std::vector<int64_t> host_tokens(L, 0);  // per layer, tokens offloaded
  int64_t pinned_other_step = 0;  // what another step pins beyond the peak step
  int64_t densest = 0;            // the layer with the largest working set
  for (int64_t i = 1; i < L; ++i) {
    if (keep[i] > keep[densest]) densest = i;
  }
  if (!s.gradient_checkpointing) {
    for (int64_t i = 0; i < L; ++i)
      activations += saved_per_token(keep[i]) * Nd * ab;
    activations = static_cast<double>(
        add("activations", "gpu", activations,
            absl::StrCat(L, " layers x ", N, " tokens saved for backward",
                         sparse_run ? " at the keep fractions" : "")));
    // The first layer backward: gate/up's gradients beside everything saved.
    top_backward = add("layer backward", "gpu",
                       kNoCheckpointBackwardIntermediates * I * Nd * ab,
                       "the top layer's MLP gradients, full length");
  } else {
    // Gradient checkpointing: each layer keeps its input; offload moves the
    // planned share of them to pinned host memory.
    const int64_t layer_input = N * m.hidden_size * s.activation_bytes;
    const int64_t total = L * layer_input;
    const int64_t bpt = m.hidden_size * s.activation_bytes;
    // PlanOffload (worker/engine/train/offload.cc), token for token: which
    // tokens of each layer's input go to the host under `budget`.
    auto split = [&](int64_t budget) {
      std::vector<int64_t> host_tokens(L, 0);
      int64_t excess = budget < 0 ? 0 : std::max<int64_t>(0, total - budget);
      if (excess > 0 && s.offload == OffloadPolicy::kUniform) {
        const int64_t per_layer =
            std::min(N, ((excess + L - 1) / L + bpt - 1) / bpt);
        host_tokens.assign(L, per_layer);
      } else if (excess > 0) {
        std::vector<int64_t> order(L);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) {
          return keep[x] > keep[y];
        });
        for (int64_t layer : order) {
          if (excess <= 0) break;
          const int64_t t = std::min(N, (excess + bpt - 1) / bpt);
          host_tokens[layer] = t;
          excess -= t * bpt;
        }
      }
      return host_tokens;
    };
    auto host_bytes = [&](const std::vector<int64_t>& host_tokens) {
      int64_t bytes = 0;
      for (int64_t t : host_tokens) bytes += t * bpt;
      return bytes;
    };
    int64_t budget = -1;
    int64_t most_pinned = 0;  // automatic budget: the most any step pins
    if (s.offload != OffloadPolicy::kNone) {
      if (s.offload_gpu_budget_gib >= 0) {
        budget = static_cast<int64_t>(s.offload_gpu_budget_gib * kGiB);
      } else {
        // offload.cc: what is free at the forward's start minus a reserve
        // for one layer's backward: working_set_inputs (18) layer inputs on
        // the first step, then the measured working set plus
        // kMeasuredMarginInputs (4). The step with the larger budget keeps
        // the most on the GPU and sets the peak (the later steps in head
        // groups, whose working set is under 14 inputs; the first one with
        // an untiled MLP); the one with the smaller budget pins the most
        // host memory, which the host must hold.
        const int64_t free =
            device.memory_bytes - kCudaContextBytes - persistent;
        const int64_t first_budget = std::max<int64_t>(
            0, free - static_cast<int64_t>(kAutoBudgetReserveInputs * input));
        const bool first_offloads = host_bytes(split(first_budget)) > 0;
        // What the engine measures includes the layer's offloaded input
        // brought back (the densest layers offload first).
        const double later_reserve =
            (working_set_per_token(keep[densest]) / D +
             (first_offloads ? 1.0 : 0.0) + kMeasuredMarginInputs) *
            input;
        const int64_t later_budget =
            std::max<int64_t>(0, free - static_cast<int64_t>(later_reserve));
        budget = std::max(first_budget, later_budget);
        most_pinned = host_bytes(split(std::min(first_budget, later_budget)));
      }
    }
    host_tokens = split(budget);
    for (int64_t t : host_tokens) {
      checkpoints_host += t * bpt;
      checkpoints_gpu += (N - t) * bpt;
      if (t > 0) ++plan.offloaded_layers;
    }
    add("checkpoints (GPU)", "gpu", static_cast<double>(checkpoints_gpu),
        absl::StrCat(
            L, " layer inputs of ", Gib(layer_input), ", ",
            Gib(checkpoints_gpu), " of them on the GPU",
            budget >= 0 ? absl::StrCat(" (budget ", Gib(budget), ")") : ""));
    pinned_other_step = std::max<int64_t>(0, most_pinned - checkpoints_host);
    if (checkpoints_host > 0 || pinned_other_step > 0) {
      add("checkpoints (host)", "host", static_cast<double>(checkpoints_host),
          absl::StrCat(
              plan.offloaded_layers,
              " layers' inputs (part) in pinned host memory, ",
              OffloadPolicyName(s.offload), " policy",
              pinned_other_step > 0
                  ? absl::StrCat("; the step with the automatic budget's "
                                 "other reserve pins ",
                                 Gib(checkpoints_host + pinned_other_step))
                  : ""));
    }
    if (s.checkpoint_keep_attention) {
      for (int64_t i = 0; i < L; ++i) kept_attention += keep[i] * Nd * Q * ab;
      kept_attention = static_cast<double>(
          add("kept attention outputs", "gpu", kept_attention,
              "checkpoint_keep_attention: each layer's attention output across "
              "the recompute"));
    }
    working_set = static_cast<double>(add(
        "layer backward working set", "gpu",
        working_set_per_token(keep[densest]) * Nd * ab,
        absl::StrFormat(
            "layer %d's recompute + backward, %.1f layer inputs%s", densest,
            working_set_per_token(keep[densest]) / D,
            groups > 1 ? absl::StrCat(" in ", groups, " head groups") : "")));
    // Beside the working set: the gradient arriving at the layer; the
    // layer's own input brought back whole when it was offloaded (the
    // densest layers offload first); and, where the plan offloads sparser
    // layers too, the next offloaded input already prefetched.
    bool sparser_offloaded = false;
    for (int64_t i = 0; i < L; ++i) {
      if (host_tokens[i] > 0 && keep[i] < keep[densest])
        sparser_offloaded = true;
    }
    const bool restored = host_tokens[densest] > 0;
    const double in_flight = kGradientInputs + (restored ? 1.0 : 0.0) +
                             (sparser_offloaded ? 1.0 : 0.0);
    top_backward = add(
        "backward in flight", "gpu", in_flight * input,
        absl::StrCat(
            absl::StrFormat("%.2f layer inputs: the incoming gradient",
                            in_flight),
            restored ? ", the layer's offloaded input restored" : "",
            sparser_offloaded ? ", the next offloaded input prefetched" : ""));
  }
  // The most any step pins: what the host must hold.
  plan.pinned_host_bytes = checkpoints_host + pinned_other_step;

  // Loss: in segments, the chunk's logits and, in backward, the gradient of
  // the final hidden states (loss.cc); one chunk: the full logits in fp32 too.
  const double seg =
      s.loss_segment_tokens > 0
          ? static_cast<double>(std::min(s.loss_segment_tokens, N))
          : Nd;
  const double logits = seg * static_cast<double>(m.vocab_size) *
                        (s.loss_segment_tokens > 0 ? ab : ab + 8);
  // The loss runs (forward and backward, segment by segment) before any
  // layer's backward starts and frees its logits before the top layer's
  // backward allocates: the two transients peak one after the other, never
  // together (measured on the CPU, tests/worker/engine/train/
  // plan_inputs_test.cc). So the breakdown charges the loss only with what
  // it needs beyond the layer backward's working set and in-flight gradient,
  // and the items still sum to the peak.
  const double loss_whole = logits + (s.gradient_checkpointing ? 0 : 2 * input);
  const double layer_backward = working_set + top_backward;
  const int64_t loss =
      add("loss", "gpu", std::max(0.0, loss_whole - layer_backward),
          absl::StrCat(
              static_cast<int64_t>(seg), " tokens x ", m.vocab_size, " logits",
              s.loss_segment_tokens > 0 ? " per segment" : "",
              absl::StrFormat(" (%.2f GiB, beyond the layer backward, which it "
                              "precedes)",
                              loss_whole / (1024.0 * 1024.0 * 1024.0))));
  // RoPE's cos/sin tables, [N, head_dim] each.
  const int64_t rope =
      add("RoPE tables", "gpu", 2 * Nd * static_cast<double>(m.head_dim) * ab,
          "cos and sin for every position");
  const int64_t workspace =
      add("workspace", "gpu", static_cast<double>(kWorkspaceBytes),
          "cuBLAS/flash-attention workspaces and small temporaries (measured "
          "constant)");

  plan.peak_gpu_bytes =
      persistent + static_cast<int64_t>(activations) + checkpoints_gpu +
      static_cast<int64_t>(kept_attention + working_set + top_backward) + loss +
      rope + workspace;

  // --- Time: FLOPs as bench/flops.py counts them, plus what this step's
  // settings re-run, against the device's rates. ---
  double proj_fwd = 0, attn_fwd = 0, rerun_proj = 0, rerun_attn = 0;
  // 2-D sparsity: each token attends within its group of ceil(n / 8) tokens
  // (shifted_group_attention.h), 1/8 of the causal attention's FLOPs.
  const double shifted = s.lemo_2d ? 0.125 : 1.0;
  for (int64_t i = 0; i < L; ++i) {
    const double na = keep[i] * Nd;
    const double seq_a = keep[i] * static_cast<double>(s.seq_len);
    const double attn_proj = 2.0 * (2.0 * D * Q + 2.0 * D * KV) * na;
    const double mlp = 2.0 * 3.0 * D * I * Nd;
    const double attn =
        2.0 * seq_a * seq_a * Q * static_cast<double>(s.batch) * shifted;
    proj_fwd += attn_proj + mlp;
    attn_fwd += attn;
    if (s.gradient_checkpointing) {
      rerun_proj += attn_proj + mlp;  // the recompute
      // Selective checkpointing runs the MLP as the fused node, whose re-run
      // skips down_proj's GEMM (training_model.cc, sparse_mlp.h).
      if (s.checkpoint_keep_attention) rerun_proj -= 2.0 * D * I * Nd;
      if (!s.checkpoint_keep_attention) rerun_attn += attn;
      if (groups > 1) {  // each group re-runs in backward
        rerun_proj += attn_proj;
        rerun_attn += attn;
      }
    }
    if (mlp_recomputes)
      rerun_proj += 2.0 * 2.0 * D * I * Nd;  // gate/up again in backward
  }
  const double head = 2.0 * Nd * D * static_cast<double>(m.vocab_size);
  // Frozen weights: backward computes input gradients only, as many FLOPs as
  // the forward (LoRA's own FLOPs are left out, as in flops.py).
  const double matmul_flops = 2 * (proj_fwd + head) + rerun_proj;
  const double linear_rate = device.matmul_flops_per_s * kLinearEfficiency;
  const double attn_rate = device.attention_flops_per_s > 0
                               ? device.attention_flops_per_s
                               : device.matmul_flops_per_s;
  const double t_matmul = matmul_flops / linear_rate;
  const double t_attn_fwd = (attn_fwd + rerun_attn) / attn_rate;
  const double t_attn_bwd =
      2 * attn_fwd / (attn_rate * kAttentionBackwardRateShare);
  plan.time_items.push_back({"projections and MLP", t_matmul});
  plan.time_items.push_back({"attention forward (with re-runs)", t_attn_fwd});
  plan.time_items.push_back({"attention backward", t_attn_bwd});
  plan.time_items.push_back({"per-step overhead", kStepOverheadSeconds});
  double t = t_matmul + t_attn_fwd + t_attn_bwd + kStepOverheadSeconds;
  if (s.lemo_oracle) {
    // The oracle scores blocks per sparse layer from the frozen q/k
    // projections of every token (lemo_attention.cc OracleBlockMap) and a
    // causal QK^T over every head reduced to 64x64 tiles without storing it
    // (kernels/block_scores): N^2 x Hq x d FLOPs, which the fused kernel
    // runs at about flash attention's rate (500 TFLOP/s at 32K in the
    // 2026-11-22 block-scoring rows, withdrawn for want of raw files: `git
    // show 5d9b5d8:docs/benchmarks.md`; bench/device_grid.sh 6 re-measures
    // them). Once per step: a checkpoint's re-run reuses the forward's
    // choice (worker/engine/model/segment_memo.h).
    double projections = 0, scores = 0;
    const double seq = static_cast<double>(s.seq_len);
    for (int64_t i = 0; i < L; ++i) {
      if (keep[i] >= 1) continue;
      projections += 2.0 * Nd * D * (Q + KV);
      scores += seq * seq * Q * static_cast<double>(s.batch);
    }
    const double ts = projections / linear_rate + scores / attn_rate;
    plan.time_items.push_back({"LeMo oracle scoring", ts});
    t += ts;
  }
  if (checkpoints_host > 0 && device.host_copy_bytes_per_s > 0) {
    // Copies run on a side stream and overlap compute (offload.h); what the
    // offloaded layers' own compute cannot hide shows.
    const double copy = 2.0 * static_cast<double>(checkpoints_host) /
                        device.host_copy_bytes_per_s;
    const double hidden =
        t * static_cast<double>(plan.offloaded_layers) / static_cast<double>(L);
    const double exposed = std::max(0.0, copy - hidden);
    plan.time_items.push_back({"exposed offload copies", exposed});
    t += exposed;
  }
  plan.step_seconds = t;

  const int64_t host_budget = static_cast<int64_t>(
      kMaxHostFraction * static_cast<double>(device.host_memory_bytes));
  const int64_t gpu_short = plan.peak_gpu_bytes - device.memory_bytes;
  const int64_t host_short = plan.pinned_host_bytes - host_budget;
  plan.fits = gpu_short <= 0 && host_short <= 0;
  plan.shortfall_bytes = std::max<int64_t>(0, std::max(gpu_short, host_short));
  if (plan.fits) {
    plan.verdict = absl::StrCat(
        "fits: ", absl::StrFormat("%.1f", plan.peak_gpu_bytes / kGiB), " of ",
        Gib(device.memory_bytes), " on ", device.name);
  } else {
    // Both shortfalls when both: the user has to fix each.
    std::vector<std::string> why;
    if (gpu_short > 0) {
      why.push_back(absl::StrCat("needs ", Gib(plan.peak_gpu_bytes), " of ",
                                 Gib(device.memory_bytes), " on ", device.name,
                                 ", ", Gib(gpu_short), " short"));
    }
    if (host_short > 0) {
      why.push_back(absl::StrCat("needs ", Gib(plan.pinned_host_bytes),
                                 " of pinned host memory, ", Gib(host_budget),
                                 " allowed (", Gib(host_short), " short)"));
    }
    plan.verdict = absl::StrCat("does not fit: ", absl::StrJoin(why, "; "));
  }
  return plan;
}

}  // namespace lemo::plan
