#include "worker/engine/train/evaluate.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/formats/model_config.h"
#include "worker/engine/model/safetensors.h"
#include "worker/engine/runtime/torch_status.h"
#include "worker/engine/train/checkpoint.h"
#include "worker/engine/train/model_tokenizer.h"

namespace lemo::engine {

absl::StatusOr<EvalResult> EvaluateModel(TrainingModel& model,
                                         const PackedDataset& data,
                                         int64_t skip_samples,
                                         int64_t batches) {
  if (skip_samples < 0 || batches < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("eval: skip_samples and batches must be >= 0, got ",
                     skip_samples, " and ", batches));
  }
  const int64_t available = data.num_samples() - skip_samples;
  if (available <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "eval: the data has ", data.num_samples(), " samples of ",
        data.seq_len(), " tokens; none left after skipping ", skip_samples));
  }
  const int64_t per_batch = data.batch_size();
  const int64_t samples =
      batches == 0 ? available : std::min(available, batches * per_batch);
  if (data.seq_len() < 2) {
    return absl::InvalidArgumentError("eval: seq_len must be >= 2");
  }
  const bool was_training = model.training();
  model.SetTraining(false);
  double loss_sum = 0;  // sum over samples of each sample's mean token loss
  int64_t tokens = 0;   // masked data: tokens the loss counted
  absl::Status status;
  for (int64_t first = 0; first < samples && status.ok(); first += per_batch) {
    const int64_t count = std::min(per_batch, samples - first);
    absl::StatusOr<DataBatch> batch =
        data.SampleBatch(skip_samples + first, count);
    if (!batch.ok()) {
      status = batch.status();
      break;
    }
    int64_t counted = 0;
    absl::StatusOr<double> loss = CallTorch("evaluating", [&] {
      torch::NoGradGuard no_grad;
      const torch::Device device = model.options().device;
      // Position t predicts labels[t + 1].
      counted = batch->labels.narrow(1, 1, data.seq_len() - 1)
                    .ne(-100)
                    .sum()
                    .item<int64_t>();
      return model
          .Loss(batch->ids.to(device), data.masked() ? batch->labels.to(device)
                                                     : batch->ids.to(device))
          .item<double>();
    });
    if (!loss.ok()) {
      status = loss.status();
      break;
    }
    if (data.masked()) {
      // Batch means over different token counts: weight by the counts.
      loss_sum += *loss * static_cast<double>(counted);
      tokens += counted;
    } else {
      // Every sample predicts seq_len - 1 tokens, so weighting batch means by
      // their sample count gives the token mean.
      loss_sum += *loss * static_cast<double>(count);
    }
  }
  model.SetTraining(was_training);
  LEMO_RETURN_IF_ERROR(status);
  EvalResult r;
  r.samples = samples;
  if (data.masked()) {
    r.tokens = tokens;
    r.loss = loss_sum / static_cast<double>(std::max<int64_t>(tokens, 1));
  } else {
    r.tokens = samples * (data.seq_len() - 1);
    r.loss = loss_sum / static_cast<double>(samples);
  }
  r.perplexity = std::exp(r.loss);
  return r;
}

absl::StatusOr<EvalResult> Evaluate(const EvalOptions& options) {
  LEMO_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(options.model_dir),
                        absl::StrCat("model ", options.model_dir));
  LEMO_ASSIGN_OR_RETURN(std::unique_ptr<ModelWeights> weights,
                        ModelWeights::Open(options.model_dir),
                        absl::StrCat("model ", options.model_dir));
  TrainingModelOptions model_options;
  model_options.device = options.device;
  model_options.base_dtype = options.base_dtype;
  LoadedCheckpoint adapter;
  const bool with_adapter = !options.adapter_dir.empty();
  if (with_adapter) {
    LEMO_ASSIGN_OR_RETURN(adapter, ReadPeftAdapter(options.adapter_dir),
                          absl::StrCat("adapter ", options.adapter_dir));
    model_options.lora.rank = adapter.adapter_config.r;
    model_options.lora.alpha = adapter.adapter_config.alpha;
    model_options.lora.target_modules = adapter.adapter_config.target_modules;
  }
  WeightLoader loader = [&weights](const std::string& name) {
    return weights->Get(name);
  };
  LEMO_ASSIGN_OR_RETURN(std::unique_ptr<TrainingModel> model,
                        CallTorch("building the model", [&] {
                          return TrainingModel::Create(config, model_options,
                                                       loader);
                        }));
  if (with_adapter) {
    LEMO_RETURN_IF_ERROR(
        CallTorch("loading LoRA weights",
                  [&] { return model->LoadLoraWeights(adapter.lora); }),
        absl::StrCat("adapter ", options.adapter_dir));
  }
  DataOptions data_options = options.data;
  LEMO_RETURN_IF_ERROR(
      ResolveDataTokenizer(options.model_dir, config, &data_options),
      absl::StrCat("data ", options.data.path));
  LEMO_ASSIGN_OR_RETURN(std::unique_ptr<PackedDataset> data,
                        PackedDataset::Create(data_options, config.vocab_size),
                        absl::StrCat("data ", options.data.path));
  return EvaluateModel(*model, *data, options.skip_samples, options.batches);
}

}  // namespace lemo::engine
