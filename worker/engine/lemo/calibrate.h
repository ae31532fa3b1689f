// Offline calibration of LeMo's pattern predictors (LEMO.md section 2): the
// model is frozen and runs dense; at every sparse layer (keep ratio < 1) the
// layer's normalised input X gives the oracle block map (the target) and the
// predictor's map, which is fitted with SmoothL1 and AdamW. Every
// `prune_every` steps, hidden neurons whose ReLU output was <= 0 on more than
// a threshold fraction of inputs are removed (elastic size). Dense layers get
// no predictor: predictor mode never consults one there, so the finetune must
// use the schedule the predictors were calibrated for (checked at load).
//
//   CalibrationOptions options;  // the artifact's settings by default
//   CalibrationReport report;
//   LEMO_ASSIGN_OR_RETURN(std::unique_ptr<PatternPredictors> predictors,
//       CalibratePredictors(model, next_batch, heldout, options, &report));
//   // report.layers[i].recall: top-k recall of the oracle's kept blocks on
//   // the held-out batches. Loading the model and data and writing the
//   // directory is train/calibrate_job.h's (`lemo-train calibrate`).
#ifndef LEMO_WORKER_ENGINE_LEMO_CALIBRATE_H_
#define LEMO_WORKER_ENGINE_LEMO_CALIBRATE_H_

#include <torch/torch.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "worker/engine/lemo/pattern_predictor.h"
#include "worker/engine/model/llama_model.h"

namespace lemo::engine {

struct CalibrationOptions {
  // Predictor sizes (the artifact's by default); head_dim is taken from the
  // model.
  PatternPredictorOptions predictor;
  // Keep ratio per layer, as the finetune will use it (empty: the default
  // schedule); layers at 1.0 get no predictor.
  std::vector<double> keep_ratios;
  // Optimizer steps; each step fits every sparse layer on one batch.
  int64_t steps = 400;
  // AdamW, the artifact's settings (torch.optim.AdamW's weight decay).
  double lr = 2e-5;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.01;
  // SmoothL1's transition point, in units of the normalised target (see
  // calibrate.cc: targets are divided by their per-sample causal mean).
  double smooth_l1_beta = 1.0;
  // Prune dead neurons every this many steps; 0 = never.
  int64_t prune_every = 100;
  // First round's dead fraction threshold, and how much it drops per round.
  double prune_threshold = 0.8;
  double prune_threshold_step = 0.05;
  // Seeds the predictors' initial weights (layer i uses seed + i).
  uint64_t seed = 0;
};

struct LayerCalibration {
  int64_t layer = 0;
  double keep_ratio = 1;
  // Top-k recall of the oracle's kept blocks on the held-out samples, before
  // and after calibration (-1 without held-out samples).
  double recall_before = -1;
  double recall = -1;
  // Predictor parameters before and after elastic pruning.
  int64_t params_before = 0;
  int64_t params_after = 0;
  // SmoothL1 loss of the last step.
  double final_loss = 0;
};

struct CalibrationReport {
  std::vector<LayerCalibration> layers;
  int64_t steps = 0;
  int64_t seq_len = 0;
  int64_t train_samples = 0;
  int64_t heldout_samples = 0;
  double seconds = 0;
  nlohmann::json ToJson() const;
};

// Counts, per hidden neuron, the inputs on which its ReLU output was <= 0.
struct NeuronActivity {
  // [path][hidden layer]: int64 [width] counts.
  std::array<std::array<torch::Tensor, 2>, 2> dead;
  // Inputs seen per path.
  std::array<int64_t, 2> inputs = {0, 0};
  // `hidden` as PatternPredictor::PathForward returns it.
  void Observe(PredictorPath path, const std::vector<torch::Tensor>& hidden);
};

// Removes the neurons dead on more than `threshold` of the observed inputs
// (at least one neuron per layer survives: the least dead). Returns, per
// [path][hidden layer], the kept indices, so optimizer state can follow.
std::array<std::array<torch::Tensor, 2>, 2> PruneDeadNeurons(
    PatternPredictor& predictor, const NeuronActivity& activity,
    double threshold);

// Fits predictors for `model`'s sparse layers. `next_batch` yields int64
// [B, N] token batches; `heldout` batches measure recall. `on_step`
// (optional) sees each step's mean loss over layers.
absl::StatusOr<std::unique_ptr<PatternPredictors>> CalibratePredictors(
    LlamaModel& model,
    const std::function<absl::StatusOr<torch::Tensor>()>& next_batch,
    const std::vector<torch::Tensor>& heldout,
    const CalibrationOptions& options, CalibrationReport* report,
    const std::function<void(int64_t step, double loss)>& on_step = nullptr);

// Recall of each layer's predictor against the oracle on `batches` at the
// layer's keep ratio in `keep_ratios` (-1 where a layer has no predictor).
absl::StatusOr<std::vector<double>> MeasurePredictorRecall(
    LlamaModel& model, const PatternPredictors& predictors,
    const std::vector<double>& keep_ratios,
    const std::vector<torch::Tensor>& batches);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_LEMO_CALIBRATE_H_
