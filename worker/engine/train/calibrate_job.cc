#include "worker/engine/train/calibrate_job.h"

#include <algorithm>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/formats/model_config.h"
#include "worker/engine/model/llama_model.h"
#include "worker/engine/model/safetensors.h"
#include "worker/engine/runtime/torch_status.h"
#include "worker/engine/train/model_tokenizer.h"

namespace lemo::engine {

absl::StatusOr<CalibrationReport> RunCalibrateJob(
    const CalibrateJobOptions& job,
    const std::function<void(int64_t step, double loss)>& on_step) {
  if (job.model_dir.empty())
    return absl::InvalidArgumentError("model: required");
  if (job.out_dir.empty()) return absl::InvalidArgumentError("out: required");
  if (job.data.seq_len <= 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("seq_len: must be > 1, got ", job.data.seq_len));
  }
  if (job.heldout_samples < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "heldout_samples: must be >= 0, got ", job.heldout_samples));
  }
  LEMO_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(job.model_dir),
                        absl::StrCat("model ", job.model_dir));
  LEMO_ASSIGN_OR_RETURN(std::unique_ptr<ModelWeights> weights,
                        ModelWeights::Open(job.model_dir),
                        absl::StrCat("model ", job.model_dir));
  DataOptions data = job.data;
  LEMO_RETURN_IF_ERROR(ResolveDataTokenizer(job.model_dir, config, &data),
                       absl::StrCat("data ", data.path));
  const int64_t batch = data.batch_size;
  data.batch_size = 1;
  LEMO_ASSIGN_OR_RETURN(std::unique_ptr<PackedDataset> dataset,
                        PackedDataset::Create(data, config.vocab_size),
                        absl::StrCat("data ", data.path));
  if (batch <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch_size: must be > 0, got ", batch));
  }
  if (dataset->num_samples() <= job.heldout_samples) {
    return absl::InvalidArgumentError(
        absl::StrCat("data ", data.path, ": ", dataset->num_samples(),
                     " samples of seq_len ", data.seq_len,
                     "; calibration needs more than the ", job.heldout_samples,
                     " held out"));
  }
  ModelOptions options;
  options.device = job.device;
  options.base_dtype = job.dtype;
  // The frozen model: adapters are created (B = 0, so they change nothing)
  // but never trained.
  WeightLoader loader = [&weights](const std::string& name) {
    return weights->Get(name);
  };
  LEMO_ASSIGN_OR_RETURN(std::unique_ptr<LlamaModel> model,
                        CallTorch("building the model", [&] {
                          return LlamaModel::Create(config, options, loader);
                        }));
  model->SetTraining(false);

  // One epoch's order, held-out samples first; training samples never include
  // them (they cycle over the rest).
  const int64_t wanted =
      std::min(dataset->num_samples(),
               job.heldout_samples +
                   std::max<int64_t>(1, job.calibration.steps) * batch);
  std::vector<torch::Tensor> samples;
  for (int64_t i = 0; i < wanted; ++i) {
    LEMO_ASSIGN_OR_RETURN(torch::Tensor s, dataset->Next());
    samples.push_back(s);
  }
  std::vector<torch::Tensor> heldout(samples.begin(),
                                     samples.begin() + job.heldout_samples);
  std::vector<torch::Tensor> train(samples.begin() + job.heldout_samples,
                                   samples.end());
  size_t cursor = 0;
  const auto next = [&]() -> absl::StatusOr<torch::Tensor> {
    std::vector<torch::Tensor> rows;
    for (int64_t b = 0; b < batch; ++b) {
      rows.push_back(train[cursor]);
      cursor = (cursor + 1) % train.size();
    }
    return torch::cat(rows, 0);
  };
  CalibrationReport report;
  LEMO_ASSIGN_OR_RETURN(std::unique_ptr<PatternPredictors> predictors,
                        CalibratePredictors(*model, next, heldout,
                                            job.calibration, &report, on_step));
  report.train_samples = static_cast<int64_t>(train.size());
  predictors->mutable_info().calibration["train_samples"] =
      report.train_samples;
  predictors->mutable_info().calibration["model_dir"] = job.model_dir;
  LEMO_RETURN_IF_ERROR(predictors->Save(job.out_dir),
                       absl::StrCat("writing predictors to ", job.out_dir));
  return report;
}

}  // namespace lemo::engine
