#include "worker/agent/spec_translation.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "google/protobuf/util/time_util.h"
#include "nlohmann/json.hpp"
#include "proto/validation/spec_validation.h"
#include "worker/comm/process_group.h"
#include "worker/engine/data/tokenizer.h"
#include "worker/engine/formats/model_config.h"
#include "worker/engine/train/memory_budget.h"
#include "worker/engine/train/memory_switches.h"
#include "worker/engine/train/model_tokenizer.h"

namespace lemo::worker {
namespace {

// spec.model.rope_scaling as the JSON object config.json would hold, with
// only the fields the spec sets, so the engine reads it with the file's rules
// and defaults (formats/model_config.h OverrideRopeScaling).
std::string RopeScalingJson(const v1::RopeScaling& r) {
  nlohmann::json j = {{"rope_type", r.rope_type()}};
  if (r.has_factor()) j["factor"] = r.factor();
  if (r.has_original_max_position_embeddings()) {
    j["original_max_position_embeddings"] =
        r.original_max_position_embeddings();
  }
  if (r.has_low_freq_factor()) j["low_freq_factor"] = r.low_freq_factor();
  if (r.has_high_freq_factor()) j["high_freq_factor"] = r.high_freq_factor();
  if (r.has_beta_fast()) j["beta_fast"] = r.beta_fast();
  if (r.has_beta_slow()) j["beta_slow"] = r.beta_slow();
  return j.dump();
}

// JobSpec defaults (job_spec.proto), applied when a field arrives as zero.
constexpr double kDefaultLr = 2e-4;
constexpr double kDefaultEps = 1e-8;
constexpr int64_t kDefaultLoraRank = 8;
constexpr double kDefaultLoraAlpha = 16;
constexpr int64_t kDefaultLossSegmentTokens = 2048;
constexpr double kDefaultMlpPruneRatio = 0.8;

template <typename T>
T OrDefault(T value, T fallback) {
  return value == T{} ? fallback : value;
}

absl::StatusOr<torch::ScalarType> BaseDtype(v1::DType dtype,
                                            const torch::Device& device) {
  switch (dtype) {
    case v1::DTYPE_UNSPECIFIED:
      return device.is_cuda() ? torch::kBFloat16 : torch::kFloat32;
    case v1::FP32:
      return torch::kFloat32;
    case v1::BF16:
      return torch::kBFloat16;
    case v1::FP16:
      return torch::kFloat16;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("spec.model.dtype: unknown value ", dtype));
  }
}

absl::StatusOr<engine::DataFormat> Format(v1::DataFormat format) {
  switch (format) {
    case v1::DATA_FORMAT_UNSPECIFIED:
      return engine::DataFormat::kAuto;
    case v1::JSONL:
      return engine::DataFormat::kJsonl;
    case v1::U16:
      return engine::DataFormat::kU16;
    case v1::U32:
      return engine::DataFormat::kU32;
    case v1::INSTRUCTION:
      return engine::DataFormat::kInstruction;
    case v1::CHAT:
      return engine::DataFormat::kChat;
    case v1::TOKENS_JSONL:
      return engine::DataFormat::kTokensJsonl;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("spec.data.format: unknown value ", format));
  }
}

// spec.lemo -> engine::LemoOptions. The keep schedule follows the spec: a
// per_layer entry, else default_ratio (1.0 = dense when only per_layer is
// set); with neither, the paper's default schedule that lemo-train runs too
// (engine::DefaultKeepSchedule). The model's layer count is read from its
// config.json only when a schedule is needed. `notes` gets the mode and the
// schedule that will run, for the job's log.
absl::Status TranslateLemo(const v1::JobSpec& spec,
                           const std::string& model_dir,
                           engine::LemoOptions* out,
                           std::vector<std::string>* notes) {
  const v1::LemoSpec& lemo = spec.lemo();
  // The MLP and norm savers and 2D sparsity apply in every mode, dense
  // included.
  if (lemo.mlp_sparsity().enabled()) {
    out->mlp_prune_ratio = lemo.mlp_sparsity().prune_ratio() > 0
                               ? lemo.mlp_sparsity().prune_ratio()
                               : kDefaultMlpPruneRatio;
  }
  out->recompute_norm = lemo.recompute_norm();
  out->recompute_mlp = lemo.recompute_mlp();
  out->two_d_sparsity = lemo.two_d_sparsity();
  out->measure_saved_bytes = lemo.measure_saved_bytes();
  if (lemo.mode() == v1::ORACLE) {
    out->mode = engine::LemoMode::kOracle;
  } else if (lemo.mode() == v1::PREDICTOR) {
    if (lemo.predictor_path().empty()) {
      return absl::InvalidArgumentError(
          "spec.lemo.predictor_path: required when spec.lemo.mode is "
          "PREDICTOR");
    }
    out->mode = engine::LemoMode::kPredictor;
    out->predictor_dir = lemo.predictor_path();
  } else {
    if (notes != nullptr) {
      notes->push_back(
          "lemo: DENSE, no token elimination (set lemo.mode "
          "ORACLE or PREDICTOR for LeMo)");
    }
    return absl::OkStatus();  // dense attention
  }
  const v1::KeepRatioSchedule& keep = lemo.keep_ratio();
  LEMO_ASSIGN_OR_RETURN(engine::ModelConfig config,
                        engine::LoadModelConfig(model_dir),
                        absl::StrCat("model ", model_dir));
  if (keep.per_layer_size() > config.num_hidden_layers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.lemo.keep_ratio.per_layer: ", keep.per_layer_size(),
        " ratios for a model of ", config.num_hidden_layers, " layers"));
  }
  std::string source;
  if (keep.per_layer_size() == 0 && keep.default_ratio() == 0) {
    out->keep_ratios = engine::DefaultKeepSchedule(config.num_hidden_layers);
    source = "the paper's default schedule (lemo.keep_ratio unset)";
  } else {
    const double fallback =
        keep.default_ratio() > 0 ? keep.default_ratio() : 1.0;
    out->keep_ratios.assign(keep.per_layer().begin(), keep.per_layer().end());
    out->keep_ratios.resize(config.num_hidden_layers, fallback);
    source = "the spec's lemo.keep_ratio";
  }
  if (notes != nullptr) {
    notes->push_back(absl::StrCat(
        "lemo: ", lemo.mode() == v1::ORACLE ? "ORACLE" : "PREDICTOR", " with ",
        source, ": ", engine::DescribeKeepSchedule(out->keep_ratios),
        lemo.adaptive().enabled() ? " (adaptive keep decides the sparse layers)"
                                  : ""));
  }
  const v1::AdaptiveKeep& adaptive = lemo.adaptive();
  if (adaptive.enabled()) {
    out->adaptive_tau = adaptive.tau() > 0 ? adaptive.tau() : 0.9;
    // The spec bounds fractions of the sequence; the engine counts blocks.
    const int64_t blocks =
        (spec.seq_len() + out->block_tokens - 1) / out->block_tokens;
    const double min_keep = adaptive.min_keep() > 0 ? adaptive.min_keep() : 0.1;
    const double max_keep = adaptive.max_keep() > 0 ? adaptive.max_keep() : 1.0;
    out->min_keep_blocks = std::max<int64_t>(
        1, static_cast<int64_t>(std::ceil(min_keep * blocks)));
    out->max_keep_blocks =
        max_keep >= 1.0
            ? -1
            : std::max<int64_t>(out->min_keep_blocks,
                                static_cast<int64_t>(max_keep * blocks));
  }
  return absl::OkStatus();
}

// The tokenizer of a text corpus: spec.data.tokenizer, else the model's own
// (engine::ResolveDataTokenizer, as lemo-train chooses it), loaded here so a
// tokenizer that is missing or does not fit the model's vocabulary fails the
// job as INVALID_SPEC before any weights load. The coordinator cannot check
// this: it never reads model directories.
absl::Status ResolveTokenizer(const std::string& model_dir,
                              engine::DataOptions* data,
                              std::vector<std::string>* notes) {
  absl::StatusOr<engine::DataFormat> format =
      engine::ResolveDataFormat(data->path, data->format);
  if (!format.ok() || *format == engine::DataFormat::kU16 ||
      *format == engine::DataFormat::kU32) {
    return absl::OkStatus();  // no text; the trainer reports a bad format
  }
  LEMO_ASSIGN_OR_RETURN(engine::ModelConfig config,
                        engine::LoadModelConfig(model_dir),
                        absl::StrCat("model ", model_dir));
  const bool named = !data->tokenizer.empty();
  LEMO_RETURN_IF_ERROR(engine::ResolveDataTokenizer(model_dir, config, data,
                                                    "spec.data.tokenizer"));
  absl::StatusOr<std::unique_ptr<engine::Tokenizer>> tokenizer =
      engine::LoadTokenizer(data->tokenizer);
  if (!tokenizer.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.data.tokenizer: ", data->tokenizer, ": ",
                     tokenizer.status().message()));
  }
  LEMO_RETURN_IF_ERROR(
      engine::CheckTokenizerFitsVocab(**tokenizer, config.vocab_size),
      absl::StrCat("spec.data.tokenizer: model ", model_dir));
  if (notes != nullptr) {
    notes->push_back(absl::StrCat(
        "data: tokenizer ", (*tokenizer)->name(), " (",
        named ? "spec.data.tokenizer"
        : config.random_init
            ? "default for a random-weight model directory, which has none"
            : "the model's own",
        ", ", (*tokenizer)->vocab_size(), " ids)"));
  }
  return absl::OkStatus();
}

// The last step of TrainerOptionsFromAssign, once the memory switches are
// set: a model directory that cannot be read is the trainer's to report (as
// MODEL_LOAD); this only adds the warning the coordinator could not give.
engine::TrainerOptions FinishOptions(engine::TrainerOptions o,
                                     std::vector<std::string>* warnings) {
  if (absl::StatusOr<engine::ModelConfig> config =
          engine::LoadModelConfig(o.model_dir, o.rope_scaling_json);
      config.ok() && warnings != nullptr) {
    std::string context = engine::ContextLengthWarning(*config, o.data.seq_len);
    if (!context.empty()) {
      warnings->push_back(absl::StrCat("spec.seq_len: ", context));
    }
  }
  return o;
}

}  // namespace

absl::StatusOr<engine::TrainerOptions> TrainerOptionsFromAssign(
    const v1::Assign& assign, const torch::Device& device,
    const std::string& out_dir, const std::string& resume_dir,
    std::vector<std::string>* warnings, std::vector<std::string>* notes,
    BudgetReport* budget) {
  const v1::JobSpec& spec = assign.spec();
  LEMO_RETURN_IF_ERROR(
      comm::ValidateRank(assign.rank(), std::max(assign.world_size(), 1)),
      "assign");
  const v1::DeviceKind kind = spec.resources().device_kind();
  if (kind == v1::CUDA && !device.is_cuda()) {
    return absl::InvalidArgumentError(
        "spec.resources.device_kind: CUDA, but this worker trains on the CPU");
  }
  if (kind != v1::CUDA && device.is_cuda()) {
    return absl::InvalidArgumentError(
        "spec.resources.device_kind: CPU, but this worker owns a CUDA device");
  }

  engine::TrainerOptions o;
  o.rank = assign.rank();
  o.world_size = std::max(assign.world_size(), 1);
  if (o.world_size > 1) {
    // Rank 0's worker hosts the store for its whole life; this group's keys
    // live under the job and epoch, so a restarted gang never reads the keys
    // of the epoch it replaces.
    const std::string& address = assign.rendezvous_address();
    const size_t colon = address.rfind(':');
    int port = 0;
    if (colon == std::string::npos || colon == 0 ||
        !absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 1 ||
        port > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("assign.rendezvous_address: want HOST:PORT for ",
                       o.world_size, " ranks, got \"", address, "\""));
    }
    o.comm.store_host = address.substr(0, colon);
    o.comm.store_port = port;
    o.comm.rank0_hosts_store = false;
    o.comm.store_prefix =
        absl::StrCat("lemo/", assign.job_id(), "/epoch-", assign.epoch(), "/");
    o.comm.device = device;
  }
  o.model_dir = spec.model().path();
  o.out_dir = out_dir;
  o.resume_dir = resume_dir;
  o.steps = spec.steps();
  o.grad_accum = OrDefault(spec.grad_accum(), 1);
  o.save_every = spec.checkpoint().every_n_steps();
  o.seed = spec.seed();

  o.data.path = spec.data().path();
  auto format = Format(spec.data().format());
  if (!format.ok()) return format.status();
  o.data.format = *format;
  o.data.tokenizer = spec.data().tokenizer();
  o.data.chat_template = spec.data().chat_template();
  auto on_bad_sample =
      engine::ParseBadSamplePolicy(spec.data().on_bad_sample());
  if (!on_bad_sample.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.data.on_bad_sample: ", on_bad_sample.status().message()));
  }
  o.data.on_bad_sample = *on_bad_sample;
  o.data.seq_len = spec.seq_len();
  o.data.batch_size = OrDefault(spec.batch_size(), 1);
  o.data.seed = spec.seed();

  o.model.device = device;
  auto dtype = BaseDtype(spec.model().dtype(), device);
  if (!dtype.ok()) return dtype.status();
  o.model.base_dtype = *dtype;
  o.model.gradient_checkpointing = spec.model().gradient_checkpointing();
  o.model.checkpoint_keep_attention = spec.model().checkpoint_keep_attention();
  o.model.loss_segment_tokens =
      OrDefault(spec.lemo().loss_segment_tokens(), kDefaultLossSegmentTokens);
  o.model.lora.rank = OrDefault<int64_t>(spec.lora().r(), kDefaultLoraRank);
  o.model.lora.alpha = OrDefault(spec.lora().alpha(), kDefaultLoraAlpha);
  o.model.lora.dropout = spec.lora().dropout();
  if (spec.lora().target_modules_size() > 0) {
    o.model.lora.target_modules.assign(spec.lora().target_modules().begin(),
                                       spec.lora().target_modules().end());
  }
  o.model.lora.seed = spec.seed();

  const v1::OptimizerSpec& opt = spec.optimizer();
  o.optimizer.lr = OrDefault(opt.lr(), kDefaultLr);
  o.optimizer.weight_decay = opt.weight_decay();
  if (opt.has_beta1()) o.optimizer.beta1 = opt.beta1();
  if (opt.has_beta2()) o.optimizer.beta2 = opt.beta2();
  o.optimizer.eps = OrDefault(opt.eps(), kDefaultEps);
  o.optimizer.warmup_steps = opt.warmup_steps();
  if (opt.has_min_lr_ratio()) o.optimizer.min_lr_ratio = opt.min_lr_ratio();
  if (opt.has_max_grad_norm()) o.optimizer.max_grad_norm = opt.max_grad_norm();
  o.optimizer.total_steps = spec.steps();

  LEMO_RETURN_IF_ERROR(ResolveTokenizer(o.model_dir, &o.data, notes));
  LEMO_RETURN_IF_ERROR(TranslateLemo(spec, o.model_dir, &o.model.lemo, notes));
  // A trainer option (it picks the steps), though the spec keeps it with the
  // other LeMo settings; the trainer ignores it outside PREDICTOR mode.
  o.predictor_recall_every = spec.lemo().predictor_recall_every();
  if (spec.model().has_rope_scaling()) {
    o.rope_scaling_json = RopeScalingJson(spec.model().rope_scaling());
  }
  // After the LoRA and LeMo settings, which the budget's plan and the
  // automatic choices read.
  LEMO_ASSIGN_OR_RETURN(const int64_t budget_bytes,
                        proto::MemoryBudgetBytes(spec));
  if (budget_bytes > 0) {
    engine::MemoryBudgetOptions budget_options;
    budget_options.budget_bytes = budget_bytes;
    budget_options.allow_inexact =
        spec.resources().memory_budget_allow_inexact();
    budget_options.device = engine::PlanDeviceFor(device);
    absl::StatusOr<engine::MemoryBudgetResult> chose =
        engine::ApplyMemoryBudget(budget_options, o.data.seq_len,
                                  o.data.batch_size, o.model_dir, &o.model);
    if (absl::IsFailedPrecondition(chose.status()) ||
        (absl::IsInvalidArgument(chose.status()) &&
         !absl::StartsWith(chose.status().message(), "model "))) {
      // Nothing fits (or the planner refuses the step): the spec's to fix.
      // A model directory that cannot be read stays a "model ..." error
      // (MODEL_LOAD).
      return absl::InvalidArgumentError(absl::StrCat(
          "spec.resources.memory_budget: ", chose.status().message()));
    }
    LEMO_RETURN_IF_ERROR(chose.status());
    if (notes != nullptr) {
      notes->push_back(chose->choice.summary);
      notes->push_back(
          absl::StrCat("memory budget candidates, fastest first: ",
                       absl::StrJoin(chose->choice.considered, "; ")));
      notes->push_back(absl::StrCat("memory: ", chose->switches));
    }
    if (budget != nullptr) {
      budget->applied = true;
      budget->budget_bytes = budget_bytes;
      budget->choice = chose->choice;
    }
    return FinishOptions(std::move(o), warnings);
  }
  engine::MemorySwitches memory;
  memory.offload = spec.model().offload();
  // The deprecated spec.lemo.offload asked for offload before it existed;
  // it means "sparsity" where offload can run (under checkpointing).
  if (memory.offload.empty() && spec.lemo().offload()) {
    if (spec.model().gradient_checkpointing()) {
      memory.offload = "sparsity";
    } else if (notes != nullptr) {
      notes->push_back(
          "spec.lemo.offload is deprecated (use spec.model.offload) and "
          "offloads checkpointed inputs, but gradient checkpointing is off: "
          "ignored");
    }
  }
  if (memory.offload.empty()) memory.offload = "auto";
  if (spec.model().has_offload_gpu_budget_gib()) {
    memory.offload_gpu_budget_gib = spec.model().offload_gpu_budget_gib();
  }
  if (spec.model().has_tile_tokens()) {
    memory.tile_tokens = spec.model().tile_tokens();
  }
  if (spec.model().has_attention_head_groups()) {
    memory.attention_head_groups = spec.model().attention_head_groups();
  }
  absl::StatusOr<std::string> chose = engine::ApplyMemorySwitches(
      memory, o.data.seq_len, o.model_dir, &o.model);
  if (!chose.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.model.", chose.status().message()));
  }
  if (notes != nullptr) notes->push_back(absl::StrCat("memory: ", *chose));
  return FinishOptions(std::move(o), warnings);
}

MemoryPlanSample MemoryPlanSampleFrom(const BudgetReport& report) {
  MemoryPlanSample out;
  const plan::StepSettings& s = report.choice.settings;
  out.budget_bytes = report.budget_bytes;
  out.planned_peak_bytes = report.choice.plan.peak_gpu_bytes;
  out.planned_step_seconds = report.choice.plan.step_seconds;
  out.gradient_checkpointing = s.gradient_checkpointing;
  out.keep_attention = s.checkpoint_keep_attention;
  out.offload = plan::OffloadPolicyName(s.offload);
  out.recompute = s.recompute_mlp ? "mlp" : s.recompute_norm ? "norm" : "none";
  out.tile_tokens = s.tile_tokens;
  out.attention_head_groups = s.attention_head_groups;
  out.mlp_prune_ratio = s.mlp_prune_ratio;
  out.two_d = s.lemo_2d;
  return out;
}

v1::Failure FailureFromStatus(const absl::Status& status, int rank) {
  v1::Failure failure;
  failure.set_rank(rank);
  failure.set_message(std::string(status.message()));
  const absl::string_view msg = status.message();
  v1::FailureReason reason = v1::INTERNAL;
  if (absl::IsResourceExhausted(status) &&
      absl::StartsWith(msg, "checkpoint ")) {
    // The coordinator has no room for the upload: not this worker's memory.
    reason = v1::CHECKPOINT;
  } else if (absl::IsResourceExhausted(status)) {
    reason = v1::OUT_OF_MEMORY;
  } else if (absl::StartsWith(msg, "model ") ||
             absl::StartsWith(msg, "building the model") ||
             (absl::IsNotFound(status) &&
              absl::StartsWith(msg, "spec.model.path:"))) {
    reason = v1::MODEL_LOAD;
  } else if (absl::StartsWith(msg, "data ") ||
             (absl::IsNotFound(status) &&
              absl::StartsWith(msg, "spec.data.path:"))) {
    reason = v1::DATA_LOAD;
  } else if (absl::StartsWith(msg, "resuming from") ||
             absl::StartsWith(msg, "writing checkpoint") ||
             absl::StartsWith(msg, "checkpoint ")) {
    reason = v1::CHECKPOINT;
  } else if (absl::IsUnavailable(status)) {
    // comm::ProcessGroup's word for a rendezvous or collective that timed out
    // or lost a peer (Gloo on CPU, NCCL on GPUs): the gang must restart.
    reason = v1::NCCL_TIMEOUT;
  } else if (absl::IsInvalidArgument(status) ||
             (absl::IsNotFound(status) && absl::StartsWith(msg, "spec."))) {
    // NOT_FOUND "spec.<field>: ...": a tokenizer or predictor path that does
    // not exist (SpecPathPolicy).
    reason = v1::INVALID_SPEC;
  }
  failure.set_reason(reason);
  return failure;
}

v1::MetricSample SampleFromStepMetrics(const engine::StepMetrics& m, int rank) {
  v1::MetricSample s;
  s.set_step(m.step);
  s.set_total_steps(m.total_steps);
  s.set_loss(m.loss);
  s.set_lr(m.lr);
  s.set_grad_norm(m.grad_norm);
  s.set_tokens_per_second(m.tokens_per_second);
  s.set_step_time_seconds(m.step_time_seconds);
  s.set_peak_allocated_bytes(m.peak_allocated_bytes);
  s.set_peak_reserved_bytes(m.peak_reserved_bytes);
  s.set_rank(rank);
  *s.mutable_time() = google::protobuf::util::TimeUtil::GetCurrentTime();
  bool any_saved = false;
  bool any_recall = false;
  for (const LayerSample& layer : LayerSamplesFromStepMetrics(m)) {
    s.add_kept_token_fraction(layer.kept_token_fraction);
    any_saved = any_saved || layer.saved_bytes >= 0;
    any_recall = any_recall || layer.predictor_recall >= 0;
  }
  for (const engine::LemoLayerStats& layer : m.lemo_layers) {
    if (any_saved) s.add_saved_activation_bytes(layer.saved_bytes);
    if (any_recall) s.add_predictor_recall(layer.predictor_recall);
  }
  return s;
}

std::vector<LayerSample> LayerSamplesFromStepMetrics(
    const engine::StepMetrics& m) {
  std::vector<LayerSample> out;
  for (const engine::LemoLayerStats& layer : m.lemo_layers) {
    LayerSample sample;
    // 1.0 for a layer without tokens (nothing was dropped).
    sample.kept_token_fraction =
        layer.total_tokens > 0 ? static_cast<double>(layer.kept_tokens) /
                                     static_cast<double>(layer.total_tokens)
                               : 1.0;
    sample.saved_bytes = layer.saved_bytes;
    sample.predictor_recall = layer.predictor_recall;
    out.push_back(sample);
  }
  return out;
}

}  // namespace lemo::worker
