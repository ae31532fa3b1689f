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

// --- Calibration constants. Each says which measured row it comes from. ---

// One layer's recompute + backward working set under gradient checkpointing,
// in layer inputs (N x hidden x activation bytes), as the engine measured it
// (worker/engine/train/memory_switches.h; bench/results/2026-12-06-h100-working-set/):
// 14 with attention whole (64K and 256K), 9.9 in 4 head groups.
constexpr double kWorkingSetWholeInputs = 14;
constexpr double kWorkingSetGroupedInputs = 9.9;
// What the automatic offload budget holds back, in layer inputs
// (worker/engine/train/offload.h working_set_inputs).
constexpr double kAutoBudgetReserveInputs = 18;
// The CUDA context and what else torch cannot allocate from the free memory
// cudaMemGetInfo reports, which the automatic offload budget starts from.
constexpr int64_t kCudaContextBytes = int64_t{512} << 20;
// Allocator workspace beyond the counted tensors (cuBLAS workspaces, RoPE
// tables, small temporaries).
constexpr int64_t kWorkspaceBytes = int64_t{512} << 20;

struct Proj {
  const char* name;
  int64_t in, out;
};

std::string Gib(int64_t bytes) { return absl::StrFormat("%.1f GiB", bytes / kGiB); }

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
  return absl::InvalidArgumentError(
      absl::StrCat("offload must be none, uniform or sparsity, got \"", name, "\""));
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
  // worker/engine/lemo/lemo_options.cc DefaultKeepSchedule: 15 of the
  // artifact's 32 layers run dense before sparsity starts paying off.
  constexpr double kDenseFraction = 15.0 / 32.0;
  constexpr double kSparseKeep = 0.4;
  const int64_t dense_prefix =
      static_cast<int64_t>(std::lround(kDenseFraction * static_cast<double>(num_layers)));
  std::vector<double> ratios(num_layers > 0 ? num_layers : 0, kSparseKeep);
  for (int64_t i = 0; i < num_layers; ++i) {
    if (i < dense_prefix || i == num_layers - 1) ratios[i] = 1.0;
  }
  return ratios;
}

absl::Status ValidateDevice(const DeviceDescription& d) {
  if (d.memory_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("device memory_bytes must be > 0, got ", d.memory_bytes));
  }
  if (d.host_memory_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("device host_memory_bytes must be >= 0, got ", d.host_memory_bytes));
  }
  const std::pair<const char*, double> rates[] = {
      {"matmul_flops_per_s", d.matmul_flops_per_s},
      {"attention_flops_per_s", d.attention_flops_per_s},
      {"host_copy_bytes_per_s", d.host_copy_bytes_per_s}};
  for (const auto& [name, v] : rates) {
    if (!std::isfinite(v) || v < 0) {
      return absl::InvalidArgumentError(absl::StrCat("device ", name, " must be >= 0, got ", v));
    }
  }
  if (d.matmul_flops_per_s <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "device matmul_flops_per_s must be > 0, got ", d.matmul_flops_per_s));
  }
  return absl::OkStatus();
}

absl::Status ValidateStepSettings(const ModelShape& model, const StepSettings& s) {
  LEMO_RETURN_IF_ERROR(ValidateModelShape(model));
  // Bounds far past any real step keep every byte count inside int64.
  constexpr int64_t kMaxTokens = int64_t{1} << 26;
  if (s.seq_len <= 0 || s.seq_len > kMaxTokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("seq_len must be in [1, ", kMaxTokens, "], got ", s.seq_len));
  }
  if (s.batch <= 0 || s.batch > 4096 || s.batch * s.seq_len > kMaxTokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch must be >= 1 with batch x seq_len <= ", kMaxTokens, ", got ", s.batch));
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
    return absl::InvalidArgumentError("lora_targets must name at least one projection");
  }
  std::set<std::string> known;
  for (const Proj& p : Projections(model)) known.insert(p.name);
  std::set<std::string> seen;
  for (const std::string& t : s.lora_targets) {
    if (known.count(t) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "lora_targets: unknown projection \"", t, "\" (known: ", absl::StrJoin(known, ", "),
          ")"));
    }
    if (!seen.insert(t).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("lora_targets: \"", t, "\" appears twice"));
    }
  }
  if (!s.gradient_checkpointing && s.offload != OffloadPolicy::kNone) {
    return absl::InvalidArgumentError(
        "offload needs gradient_checkpointing (only checkpointed inputs are offloaded)");
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
    return absl::InvalidArgumentError(absl::StrCat(
        "attention_head_groups must be >= 0 (0/1: off), got ", s.attention_head_groups));
  }
  if (s.attention_head_groups > 1 && (model.num_heads % s.attention_head_groups != 0 ||
                                      model.num_kv_heads % s.attention_head_groups != 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "attention_head_groups (", s.attention_head_groups, ") must divide num_heads (",
        model.num_heads, ") and num_kv_heads (", model.num_kv_heads, ")"));
  }
  if (s.loss_segment_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "loss_segment_tokens must be >= 0 (0: one chunk), got ", s.loss_segment_tokens));
  }
  if (!s.keep_fractions.empty()) {
    if (static_cast<int64_t>(s.keep_fractions.size()) != model.num_layers) {
      return absl::InvalidArgumentError(
          absl::StrCat("keep_fractions has ", s.keep_fractions.size(),
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
        "lemo_oracle needs keep_fractions (LeMo on); empty keep_fractions is dense");
  }
  if (!(s.mlp_prune_ratio >= 0 && s.mlp_prune_ratio < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("mlp_prune_ratio must be in [0, 1), got ", s.mlp_prune_ratio));
  }
  return absl::OkStatus();
}

absl::StatusOr<StepPlan> PlanStep(const ModelShape& m, const StepSettings& s,
                                  const DeviceDescription& device) {
  LEMO_RETURN_IF_ERROR(ValidateStepSettings(m, s));
  LEMO_RETURN_IF_ERROR(ValidateDevice(device));
  StepPlan plan;
  const int64_t L = m.num_layers;
  const int64_t D = m.hidden_size;
  const int64_t I = m.intermediate_size;
  const int64_t Q = m.num_heads * m.head_dim;
  const int64_t KV = m.num_kv_heads * m.head_dim;
  const int64_t N = s.batch * s.seq_len;
  const int64_t ab = s.activation_bytes;
  std::vector<double> keep = s.keep_fractions;
  if (keep.empty()) keep.assign(L, 1.0);
  auto add = [&](std::string name, std::string where, int64_t bytes, std::string detail) {
    plan.items.push_back({std::move(name), std::move(where), bytes, std::move(detail)});
    return bytes;
  };

  // Persistent state.
  const int64_t frozen_params = FrozenParameterCount(m);
  const int64_t weights = add("frozen weights", "gpu", frozen_params * m.weight_bytes,
                              absl::StrCat(frozen_params, " parameters x ", m.weight_bytes,
                                           " bytes"));
  int64_t lora_params_layer = 0;
  for (const Proj& p : Projections(m)) {
    if (std::find(s.lora_targets.begin(), s.lora_targets.end(), p.name) != s.lora_targets.end()) {
      lora_params_layer += s.lora_rank * (p.in + p.out);
    }
  }
  const int64_t lora_params = L * lora_params_layer;
  // Adapters, their gradients and AdamW's two moments are fp32 whatever the
  // base dtype (worker/engine/model/lora_linear.h, train/optimizer.h).
  const int64_t adapters = add("adapters", "gpu", lora_params * 4,
                               absl::StrCat(lora_params, " LoRA parameters x 4 bytes (fp32)"));
  const int64_t grads = add("adapter gradients", "gpu", lora_params * 4, "fp32, one per parameter");
  const int64_t optimizer =
      add("optimizer state", "gpu", lora_params * 8, "AdamW exp_avg + exp_avg_sq, fp32");
  const int64_t persistent = weights + adapters + grads + optimizer;

  const int64_t layer_input = N * D * ab;
  int64_t activations = 0;
  int64_t checkpoints_gpu = 0;
  int64_t checkpoints_host = 0;
  int64_t working_set = 0;
  if (!s.gradient_checkpointing) {
    // What autograd saves per layer (decoder_layer.cc, lean_ops.h): the
    // layer input x and the residual h (each RMSNorm saves its input), the
    // normed inputs shared by the projections (xn; hn unless recompute_norm),
    // q, k, v and attention's output over the tokens attention sees, and
    // gate, up and their product (down_proj's input) unless recompute_mlp.
    int64_t total = 0;
    for (int64_t i = 0; i < L; ++i) {
      const int64_t na = static_cast<int64_t>(std::ceil(keep[i] * static_cast<double>(N)));
      int64_t per = 2 * D * N;                   // x, h
      per += D * na;                             // xn (sparse: the gathered rows)
      per += (2 * Q + 2 * KV) * na;              // q, k, v, attention output
      if (!s.recompute_norm && !s.recompute_mlp) per += D * N;  // hn
      if (!s.recompute_mlp) per += 3 * I * N;    // gate, up, act
      total += per * ab;
    }
    activations = add("activations", "gpu", total,
                      absl::StrCat(L, " layers, ", N, " tokens, saved for backward"));
  } else {
    // Checkpointing: each layer keeps its input; offload moves part to host.
    const int64_t total = L * layer_input;
    int64_t budget = -1;
    if (s.offload != OffloadPolicy::kNone) {
      if (s.offload_gpu_budget_gib >= 0) {
        budget = static_cast<int64_t>(s.offload_gpu_budget_gib * kGiB);
      } else {
        const int64_t free = device.memory_bytes - kCudaContextBytes - persistent;
        budget = std::max<int64_t>(
            0, free - static_cast<int64_t>(kAutoBudgetReserveInputs * layer_input));
      }
    }
    // PlanOffload (worker/engine/train/offload.cc), token for token.
    std::vector<int64_t> host_tokens(L, 0);
    int64_t excess = budget < 0 ? 0 : std::max<int64_t>(0, total - budget);
    const int64_t bpt = D * ab;
    if (excess > 0 && s.offload == OffloadPolicy::kUniform) {
      const int64_t per_layer = std::min(N, ((excess + L - 1) / L + bpt - 1) / bpt);
      host_tokens.assign(L, per_layer);
    } else if (excess > 0) {
      std::vector<int64_t> order(L);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](int64_t a, int64_t b) { return keep[a] > keep[b]; });
      for (int64_t layer : order) {
        if (excess <= 0) break;
        const int64_t t = std::min(N, (excess + bpt - 1) / bpt);
        host_tokens[layer] = t;
        excess -= t * bpt;
      }
    }
    for (int64_t t : host_tokens) {
      checkpoints_host += t * bpt;
      checkpoints_gpu += (N - t) * bpt;
      if (t > 0) ++plan.offloaded_layers;
    }
    add("checkpoints (GPU)", "gpu", checkpoints_gpu,
        absl::StrCat(L, " layer inputs of ", Gib(layer_input), ", ",
                     L - plan.offloaded_layers, " whole on the GPU"));
    if (checkpoints_host > 0) {
      add("checkpoints (host)", "host", checkpoints_host,
          absl::StrCat(plan.offloaded_layers, " layers offloaded (",
                       OffloadPolicyName(s.offload), ")"));
    }
    if (s.checkpoint_keep_attention) {
      int64_t kept = 0;
      for (int64_t i = 0; i < L; ++i) {
        kept += static_cast<int64_t>(std::ceil(keep[i] * static_cast<double>(N))) * Q * ab;
      }
      activations = add("kept attention outputs", "gpu", kept,
                        "checkpoint_keep_attention: attention's output per layer");
    }
    const double inputs = s.attention_head_groups > 1 ? kWorkingSetGroupedInputs
                                                       : kWorkingSetWholeInputs;
    working_set = add("layer backward working set", "gpu",
                      static_cast<int64_t>(inputs * static_cast<double>(layer_input)),
                      absl::StrFormat("%.1f layer inputs (measured, memory_switches.h)", inputs));
  }
  plan.pinned_host_bytes = checkpoints_host;

  // Loss: the final norm's output, then per segment the bf16 logits, their
  // fp32 copy and its gradient.
  const int64_t seg = s.loss_segment_tokens > 0 ? std::min(s.loss_segment_tokens, N) : N;
  const int64_t loss = add("loss segment", "gpu", N * D * ab + seg * m.vocab_size * (ab + 8),
                           absl::StrCat(seg, " tokens x ", m.vocab_size, " logits"));
  const int64_t workspace = add("workspace", "gpu", kWorkspaceBytes, "allocator and library workspaces");

  plan.peak_gpu_bytes = persistent + activations + checkpoints_gpu + working_set + loss + workspace;

  // Time: model FLOPs as bench/flops.py counts them, plus what checkpointing
  // recomputes, against the device's rates.
  double linear = 0, attention = 0;
  const double proj_per_token = 2.0 * (2.0 * D * Q + 2.0 * D * KV + 3.0 * D * I);
  for (int64_t i = 0; i < L; ++i) {
    const double na = keep[i] * static_cast<double>(N);
    const double attn_proj = 2.0 * (2.0 * D * Q + 2.0 * D * KV) * na;
    const double mlp = 2.0 * 3.0 * D * I * static_cast<double>(N);
    linear += attn_proj + mlp;
    attention += 2.0 * na * na * static_cast<double>(Q) / static_cast<double>(s.batch);
  }
  (void)proj_per_token;
  const double head = 2.0 * static_cast<double>(N) * D * m.vocab_size;
  const double fwd_linear = linear + head;
  double matmul_flops = 2 * fwd_linear;  // forward + input gradients
  double attn_flops = 3 * attention;     // forward + 2x backward
  if (s.gradient_checkpointing) {
    matmul_flops += linear;
    if (!s.checkpoint_keep_attention) attn_flops += attention;
  }
  const double attn_rate =
      device.attention_flops_per_s > 0 ? device.attention_flops_per_s : device.matmul_flops_per_s;
  const double t_matmul = matmul_flops / device.matmul_flops_per_s;
  const double t_attn = attn_flops / attn_rate;
  plan.time_items.push_back({"matmul", t_matmul});
  plan.time_items.push_back({"attention", t_attn});
  double t = t_matmul + t_attn;
  if (checkpoints_host > 0 && device.host_copy_bytes_per_s > 0) {
    // Copies overlap compute; what the compute of the offloaded layers cannot
    // hide shows.
    const double copy = 2.0 * checkpoints_host / device.host_copy_bytes_per_s;
    const double exposed = std::max(0.0, copy - t * plan.offloaded_layers / L);
    plan.time_items.push_back({"exposed offload copies", exposed});
    t += exposed;
  }
  if (s.lemo_oracle) {
    double scoring = 0;
    for (int64_t i = 0; i < L; ++i) {
      if (keep[i] < 1) scoring += 2.0 * N * D * (Q + KV);
    }
    const double ts = scoring / device.matmul_flops_per_s;
    plan.time_items.push_back({"LeMo oracle scoring", ts});
    t += ts;
  }
  plan.step_seconds = t;

  const int64_t host_budget =
      static_cast<int64_t>(kMaxHostFraction * static_cast<double>(device.host_memory_bytes));
  const int64_t gpu_short = plan.peak_gpu_bytes - device.memory_bytes;
  const int64_t host_short = plan.pinned_host_bytes - host_budget;
  plan.fits = gpu_short <= 0 && host_short <= 0;
  plan.shortfall_bytes = std::max<int64_t>(0, std::max(gpu_short, host_short));
  if (plan.fits) {
    plan.verdict = absl::StrCat("fits: ", absl::StrFormat("%.1f", plan.peak_gpu_bytes / kGiB),
                                " of ", Gib(device.memory_bytes), " on ", device.name);
  } else if (gpu_short > 0) {
    plan.verdict = absl::StrCat("does not fit: needs ", Gib(plan.peak_gpu_bytes), " of ",
                                Gib(device.memory_bytes), " on ", device.name, ", ",
                                Gib(gpu_short), " short");
  } else {
    plan.verdict = absl::StrCat("does not fit: needs ", Gib(plan.pinned_host_bytes),
                                " of pinned host memory, ", Gib(host_budget), " allowed (",
                                Gib(host_short), " short)");
  }
  return plan;
}

}  // namespace lemo::plan
