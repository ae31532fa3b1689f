#include "worker/engine/train/trainer.h"

#include <torch/torch.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "worker/engine/formats/model_config.h"
#include "worker/engine/model/llama_model.h"
#include "worker/engine/model/safetensors.h"
#include "worker/engine/runtime/device_memory.h"
#include "worker/engine/runtime/torch_status.h"
#include "worker/engine/train/adapter_agreement.h"
#include "worker/engine/train/checkpoint.h"
#include "worker/engine/train/model_tokenizer.h"

namespace lemo::engine {
namespace {

absl::Status ValidateOptions(const TrainerOptions& o) {
  if (o.model_dir.empty()) return absl::InvalidArgumentError("model: required");
  if (o.data.path.empty()) return absl::InvalidArgumentError("data: required");
  if (o.out_dir.empty()) return absl::InvalidArgumentError("out: required");
  if (o.steps <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("steps: must be > 0, got ", o.steps));
  }
  if (o.data.seq_len <= 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("seq_len: must be > 1, got ", o.data.seq_len));
  }
  if (o.data.batch_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch_size: must be > 0, got ", o.data.batch_size));
  }
  if (o.grad_accum <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("grad_accum: must be > 0, got ", o.grad_accum));
  }
  if (o.verify_adapters_every < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "verify_adapters_every: must be >= 0, got ", o.verify_adapters_every));
  }
  if (o.save_every < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("save_every: must be >= 0, got ", o.save_every));
  }
  if (o.model.lora.rank <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("lora_r: must be > 0, got ", o.model.lora.rank));
  }
  if (o.predictor_recall_every < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("predictor_recall_every: must be >= 0, got ",
                     o.predictor_recall_every));
  }
  LEMO_RETURN_IF_ERROR(comm::ValidateRank(o.rank, o.world_size));
  if (o.process_group != nullptr &&
      (o.process_group->rank() != o.rank ||
       o.process_group->world_size() != o.world_size)) {
    return absl::InvalidArgumentError(
        absl::StrCat("process_group: is rank ", o.process_group->rank(), "/",
                     o.process_group->world_size(), ", the trainer is rank ",
                     o.rank, "/", o.world_size));
  }
  if (o.model.loss_segment_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("loss_segment_tokens: must be >= 0, got ",
                     o.model.loss_segment_tokens));
  }
  return absl::OkStatus();
}

// The CPU generator drives LoRA dropout on CPU; saving it makes a resumed run
// bit-exact.
std::string CpuRngState() {
  at::Generator generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  torch::Tensor state = generator.get_state();
  return std::string(reinterpret_cast<const char*>(state.data_ptr<uint8_t>()),
                     state.numel());
}

absl::Status SetCpuRngState(const std::string& bytes) {
  if (bytes.empty()) return absl::OkStatus();
  return CallTorch("restoring the RNG state", [&] {
    torch::Tensor state =
        torch::empty({static_cast<int64_t>(bytes.size())}, torch::kUInt8);
    std::memcpy(state.data_ptr<uint8_t>(), bytes.data(), bytes.size());
    at::Generator generator = at::detail::getDefaultCPUGenerator();
    // The generator is shared with every CPU op; hold its lock as torch does.
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(state);
  });
}

std::vector<std::pair<std::string, torch::Tensor>> ToCpu(
    const std::vector<std::pair<std::string, torch::Tensor>>& named) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  out.reserve(named.size());
  for (const auto& [name, t] : named) {
    out.emplace_back(name, t.detach().to(torch::kCPU).contiguous());
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(
    const TrainerOptions& options_in) {
  TrainerOptions options = options_in;
  LEMO_RETURN_IF_ERROR(ValidateOptions(options));
  if (options.optimizer.total_steps <= 0) {
    options.optimizer.total_steps = options.steps;
  }
  options.model.lora.seed = options.seed;

  LEMO_ASSIGN_OR_RETURN(
      ModelConfig config,
      LoadModelConfig(options.model_dir, options.rope_scaling_json),
      absl::StrCat("model ", options.model_dir));
  LEMO_ASSIGN_OR_RETURN(std::unique_ptr<ModelWeights> weights,
                        ModelWeights::Open(options.model_dir),
                        absl::StrCat("model ", options.model_dir));
  // Every rank reads the global batch (world_size * batch_size samples, the
  // same on every rank, so the cursor is too) and keeps its own slice of it.
  DataOptions global_data = options.data;
  global_data.batch_size = options.data.batch_size * options.world_size;
  LEMO_RETURN_IF_ERROR(
      ResolveDataTokenizer(options.model_dir, config, &global_data),
      absl::StrCat("data ", options.data.path));
  LEMO_ASSIGN_OR_RETURN(std::unique_ptr<PackedDataset> data,
                        PackedDataset::Create(global_data, config.vocab_size),
                        absl::StrCat("data ", options.data.path));
  std::unique_ptr<comm::ProcessGroup> owned_group;
  if ((options.world_size > 1 || options.comm.backend_for_one_rank) &&
      options.process_group == nullptr) {
    comm::ProcessGroupOptions co = options.comm;
    co.rank = options.rank;
    co.world_size = options.world_size;
    co.device = options.model.device;
    LEMO_ASSIGN_OR_RETURN(owned_group, comm::ProcessGroup::Create(co),
                          "joining the data-parallel group");
    options.process_group = owned_group.get();
  }

  torch::manual_seed(options.seed);
  WeightLoader loader = [&weights](const std::string& name) {
    return weights->Get(name);
  };
  LEMO_ASSIGN_OR_RETURN(std::unique_ptr<TrainingModel> model,
                        CallTorch("building the model", [&] {
                          return TrainingModel::Create(config, options.model,
                                                       loader);
                        }));
  LEMO_ASSIGN_OR_RETURN(
      std::unique_ptr<AdapterOptimizer> optimizer,
      AdapterOptimizer::Create(model->LoraParameters(), options.optimizer));

  auto trainer = std::unique_ptr<Trainer>(
      new Trainer(std::move(options), std::move(model), std::move(data),
                  std::move(optimizer), std::move(owned_group)));
  if (!trainer->options_.resume_dir.empty()) {
    LEMO_RETURN_IF_ERROR(
        trainer->Resume(trainer->options_.resume_dir),
        absl::StrCat("resuming from ", trainer->options_.resume_dir));
  }
  return trainer;
}

absl::Status Trainer::Resume(const std::string& dir) {
  LEMO_ASSIGN_OR_RETURN(LoadedCheckpoint ckpt, ReadCheckpoint(dir));
  if (ckpt.adapter_config.r != options_.model.lora.rank) {
    return absl::InvalidArgumentError(
        absl::StrFormat("checkpoint has LoRA rank %d, the job asks for %d",
                        ckpt.adapter_config.r, options_.model.lora.rank));
  }
  LEMO_RETURN_IF_ERROR(CallTorch("loading LoRA weights", [&] {
    return model_->LoadLoraWeights(ckpt.lora);
  }));
  LEMO_RETURN_IF_ERROR(
      optimizer_->ImportState(ckpt.resume.optimizer, ckpt.resume.step),
      "optimizer state");
  LEMO_RETURN_IF_ERROR(data_->Seek(ckpt.resume.data_cursor), "data cursor");
  LEMO_RETURN_IF_ERROR(SetCpuRngState(ckpt.resume.rng_state));
  step_ = ckpt.resume.step;
  if (step_ > options_.steps) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "checkpoint is at step %d, past steps=%d", step_, options_.steps));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Trainer::SaveCheckpoint() {
  const std::string dir = (std::filesystem::path(options_.out_dir) /
                           absl::StrFormat("checkpoint-%06d", step_))
                              .string();
  AdapterConfig adapter;
  adapter.r = options_.model.lora.rank;
  adapter.alpha = options_.model.lora.alpha;
  adapter.dropout = options_.model.lora.dropout;
  // Concrete module names ("all-linear" resolved): PEFT loads both, and
  // checkpoint readers then need no knowledge of the alias.
  LEMO_ASSIGN_OR_RETURN(
      adapter.target_modules,
      LlamaModel::ResolveTargetModules(options_.model.lora.target_modules));
  adapter.base_model_name_or_path = options_.model_dir;
  ResumeState resume;
  resume.step = step_;
  LEMO_RETURN_IF_ERROR(CallTorch("collecting the optimizer state", [&] {
    resume.optimizer = ToCpu(optimizer_->ExportState());
  }));
  resume.rng_state = CpuRngState();
  resume.data_cursor = data_->Cursor();
  resume.extra = {{"seed", options_.seed}, {"model_dir", options_.model_dir}};
  std::vector<std::pair<std::string, torch::Tensor>> lora;
  LEMO_RETURN_IF_ERROR(CallTorch("collecting LoRA weights", [&] {
    lora = ToCpu(model_->LoraParameters());
  }));
  LEMO_RETURN_IF_ERROR(WriteCheckpoint(dir, adapter, lora, resume),
                       absl::StrCat("writing checkpoint ", dir));
  return dir;
}

absl::StatusOr<DataBatch> Trainer::NextLocalBatch() {
  LEMO_ASSIGN_OR_RETURN(DataBatch global, data_->NextBatch());
  if (options_.world_size == 1) return global;
  // A contiguous slice: rank r's rows are the ones a single rank with the
  // global batch would put at [r * b, (r + 1) * b), so W ranks see exactly its
  // samples.
  const int64_t b = options_.data.batch_size;
  return DataBatch{global.ids.narrow(0, options_.rank * b, b).contiguous(),
                   global.labels.narrow(0, options_.rank * b, b).contiguous()};
}

absl::Status Trainer::AverageAcrossRanks(double& loss) {
  comm::ProcessGroup* group = options_.process_group;
  // A one-rank group (backend_for_one_rank) still runs its collectives.
  if (group == nullptr) return absl::OkStatus();
  // Each rank's loss (and gradient) is the mean over its own tokens; with
  // text data every rank has the same token count (packed samples have no
  // padding), so the global-batch mean is the mean of the ranks' means: sum,
  // then divide by W. With masked examples the counts differ and ranks still
  // weigh equally (docs/data.md).
  std::vector<torch::Tensor> grads;
  LEMO_RETURN_IF_ERROR(CallTorch("collecting LoRA gradients", [&] {
    for (const auto& [name, p] : model_->LoraParameters()) {
      // LoRA parameters all take part in every forward, so every rank has the
      // same set of gradients (the optimizer skips undefined ones).
      if (p.grad().defined()) grads.push_back(p.grad());
    }
  }));
  LEMO_RETURN_IF_ERROR(group->AllReduceSum(grads), "all-reducing gradients");
  std::vector<torch::Tensor> loss_tensor{
      torch::full({1}, loss, torch::kFloat64)};
  LEMO_RETURN_IF_ERROR(group->AllReduceSum(loss_tensor),
                       "all-reducing the loss");
  const double w = static_cast<double>(options_.world_size);
  return CallTorch("averaging gradients", [&] {
    torch::NoGradGuard no_grad;
    for (torch::Tensor& g : grads) g.div_(w);
    loss = loss_tensor[0].item<double>() / w;
  });
}

absl::StatusOr<StepMetrics> Trainer::TrainOneStep(
    const std::atomic<bool>* cancel) {
  const torch::Device device = options_.model.device;
  ResetPeakMemory(device);
  if (options_.model.lemo.mode == LemoMode::kPredictor) {
    model_->SetMeasurePredictorRecall(
        options_.predictor_recall_every > 0 &&
        (step_ + 1) % options_.predictor_recall_every == 0);
  }
  const auto start = std::chrono::steady_clock::now();
  double loss_sum = 0;
  int64_t forward_peak = -1;
  int64_t after_forward = -1;
  for (int64_t micro = 0; micro < options_.grad_accum; ++micro) {
    if (cancel != nullptr && cancel->load()) {
      return absl::CancelledError(
          absl::StrCat("cancelled before step ", step_ + 1));
    }
    LEMO_ASSIGN_OR_RETURN(DataBatch batch, NextLocalBatch());
    absl::StatusOr<double> loss = CallTorch("training step", [&] {
      torch::Tensor on_device = batch.ids.to(device);
      // Example formats: -100 where the loss mask is 0. Each micro-batch's
      // loss is the mean over its own trained tokens, and micro-batches (and
      // ranks) weigh equally.
      torch::Tensor labels =
          data_->masked() ? batch.labels.to(device) : on_device;
      torch::Tensor l = model_->Loss(on_device, labels) /
                        static_cast<double>(options_.grad_accum);
      if (device.is_cuda()) {
        forward_peak = ReadPeakMemory(device).allocated_bytes;
        after_forward = AllocatedDeviceMemoryBytes(device);
      }
      l.backward();
      return l.item<double>();
    });
    if (absl::IsResourceExhausted(loss.status())) {
      // What was where when the step ran out, so the user knows which knob
      // (sequence length, offload budget) to turn.
      return absl::Status(
          loss.status().code(),
          absl::StrCat(loss.status().message(), MemoryPlanNote()));
    }
    LEMO_RETURN_IF_ERROR(loss.status());
    loss_sum += *loss;
  }
  const double rank_loss = loss_sum;
  LEMO_RETURN_IF_ERROR(AverageAcrossRanks(loss_sum),
                       absl::StrCat("step ", step_ + 1));
  LEMO_ASSIGN_OR_RETURN(double grad_norm, CallTorch("optimizer step", [&] {
                          double norm = optimizer_->Step();
                          optimizer_->ZeroGrad();
                          return norm;
                        }));
  SynchronizeDevice(device);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  ++step_;

  StepMetrics m;
  m.step = step_;
  m.total_steps = options_.steps;
  m.loss = loss_sum;
  m.rank_loss = rank_loss;
  m.lr = optimizer_->lr();
  m.grad_norm = grad_norm;
  m.step_time_seconds = seconds;
  const double tokens = static_cast<double>(options_.grad_accum) *
                        options_.data.batch_size * options_.data.seq_len;
  m.tokens_per_second = seconds > 0 ? tokens / seconds : 0;
  m.global_tokens_per_second =
      m.tokens_per_second * static_cast<double>(options_.world_size);
  m.rank = options_.rank;
  m.world_size = options_.world_size;
  const PeakMemory peak = ReadPeakMemory(device);
  m.peak_allocated_bytes = peak.allocated_bytes;
  m.forward_peak_allocated_bytes = forward_peak;
  m.after_forward_allocated_bytes = after_forward;
  m.peak_reserved_bytes = peak.reserved_bytes;
  if (const OffloadPlan* plan = model_->offload_plan()) {
    m.offload_host_bytes = plan->host_bytes;
    m.offloaded_layers = plan->offloaded_layers();
  }
  m.lemo_layers = model_->lemo_stats();
  return m;
}

std::string Trainer::MemoryPlanNote() const {
  const OffloadPlan* plan = model_->offload_plan();
  if (plan == nullptr) return "";
  return absl::StrCat(" (offload plan: ", plan->Describe(), ")");
}

absl::Status Trainer::Run(const TrainerCallbacks& callbacks) {
  comm::ProcessGroup* group = options_.process_group;
  if (group != nullptr && !weights_synced_) {
    // Rank 0's LoRA weights for everyone: the ranks then start from one model
    // whatever their RNGs did (and a resumed run loaded the same checkpoint).
    std::vector<torch::Tensor> weights;
    LEMO_RETURN_IF_ERROR(CallTorch("collecting LoRA weights", [&] {
      for (const auto& [name, p] : model_->LoraParameters()) {
        weights.push_back(p.detach());
      }
    }));
    LEMO_RETURN_IF_ERROR(group->Broadcast(weights, /*root=*/0),
                         "broadcasting rank 0's LoRA weights");
    weights_synced_ = true;
  }
  while (step_ < options_.steps) {
    LEMO_ASSIGN_OR_RETURN(StepMetrics m, TrainOneStep(callbacks.cancel));
    if (callbacks.on_step) callbacks.on_step(m);
    const bool last = step_ == options_.steps;
    const bool periodic =
        options_.save_every > 0 && step_ % options_.save_every == 0;
    const bool verify = last || periodic ||
                        (options_.verify_adapters_every > 0 &&
                         step_ % options_.verify_adapters_every == 0);
    // Before a checkpoint, so that none is written from diverged ranks.
    if (group != nullptr && verify) {
      LEMO_RETURN_IF_ERROR(
          VerifyAdaptersAgree(*group, model_->LoraParameters(), step_));
    }
    // Every rank holds the same weights and cursor; rank 0 writes them.
    if ((last || periodic) && options_.rank == 0) {
      LEMO_ASSIGN_OR_RETURN(std::string dir, SaveCheckpoint());
      if (callbacks.on_checkpoint) callbacks.on_checkpoint(dir, step_);
    }
  }
  return absl::OkStatus();
}

}  // namespace lemo::engine
