#include "worker/engine/lemo/calibrate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "worker/engine/formats/model_config.h"
#include "worker/engine/lemo/lemo_attention.h"
#include "worker/engine/lemo/lemo_options.h"
#include "worker/engine/model/safetensors.h"
#include "worker/engine/runtime/torch_status.h"

namespace lemo::engine {
namespace {

using Json = nlohmann::json;

// AdamW state of one predictor, pruned along with its weights.
struct AdamState {
  std::array<std::vector<torch::Tensor>, 2> m;
  std::array<std::vector<torch::Tensor>, 2> v;
};

struct LayerFit {
  int64_t index = 0;
  double keep_ratio = 1;
  PatternPredictor predictor;
  AdamState adam;
  NeuronActivity activity;
  double last_loss = 0;
  int64_t params_before = 0;
};

AdamState ZeroState(const PatternPredictor& p) {
  AdamState s;
  for (int path = 0; path < 2; ++path) {
    for (const torch::Tensor& w : p.weights(static_cast<PredictorPath>(path))) {
      s.m[path].push_back(torch::zeros_like(w));
      s.v[path].push_back(torch::zeros_like(w));
    }
  }
  return s;
}

void AdamWStep(LayerFit& fit, const CalibrationOptions& o, int64_t step) {
  torch::NoGradGuard no_grad;
  const double c1 = 1 - std::pow(o.beta1, static_cast<double>(step));
  const double c2 = 1 - std::pow(o.beta2, static_cast<double>(step));
  for (int path = 0; path < 2; ++path) {
    const auto& weights =
        fit.predictor.weights(static_cast<PredictorPath>(path));
    for (size_t i = 0; i < weights.size(); ++i) {
      torch::Tensor w = weights[i];
      if (!w.grad().defined()) continue;
      const torch::Tensor g = w.grad();
      torch::Tensor& m = fit.adam.m[path][i];
      torch::Tensor& v = fit.adam.v[path][i];
      w.mul_(1 - o.lr * o.weight_decay);
      m.mul_(o.beta1).add_(g, 1 - o.beta1);
      v.mul_(o.beta2).addcmul_(g, g, 1 - o.beta2);
      const torch::Tensor denom = (v / c2).sqrt_().add_(o.eps);
      w.addcdiv_(m, denom, -o.lr / c1);
      w.mutable_grad().reset();
    }
  }
}

void PruneState(AdamState& s,
                const std::array<std::array<torch::Tensor, 2>, 2>& keep) {
  for (int path = 0; path < 2; ++path) {
    for (int h = 0; h < 2; ++h) {
      for (auto* state : {&s.m[path], &s.v[path]}) {
        const torch::Tensor idx = keep[path][h].to((*state)[h].device());
        (*state)[h] = (*state)[h].index_select(0, idx);
        (*state)[h + 1] = (*state)[h + 1].index_select(1, idx).contiguous();
      }
    }
  }
}

// Targets are divided by their per-sample mean over the causal tiles. The raw
// oracle scores scale with head count, head_dim and the model's activations
// (hundreds in a 7B model), which puts SmoothL1 deep in its L1 regime with
// tiny relative gradients; selection only depends on each sample's ranking of
// column sums, which this scaling leaves unchanged.
torch::Tensor NormaliseTarget(const torch::Tensor& map) {
  const int64_t nb = map.size(1);
  const double causal = static_cast<double>(nb * (nb + 1) / 2);
  const torch::Tensor mean = map.sum({1, 2}, /*keepdim=*/true) / causal;
  return map / mean.clamp_min(1e-12);
}

// Runs `model` dense under no-grad on `ids`, calling `visit(index, layer, xn)`
// with each layer's normalised attention input.
void ForEachLayerInput(LlamaModel& model, const torch::Tensor& ids,
                       const std::function<void(int64_t, const DecoderLayer&,
                                                const torch::Tensor&)>& visit) {
  torch::NoGradGuard no_grad;
  model.SetLayerForward([&](int64_t index, const DecoderLayer& layer,
                            const torch::Tensor& x, const torch::Tensor& cos,
                            const torch::Tensor& sin, bool training) {
    visit(index, layer, layer.InputNorm(x));
    return layer.Forward(x, cos, sin, training);
  });
  try {
    model.Hidden(ids.to(model.options().device));
  } catch (...) {
    model.SetLayerForward(nullptr);
    throw;
  }
  model.SetLayerForward(nullptr);
}

std::vector<double> RecallOf(LlamaModel& model,
                             const std::vector<const PatternPredictor*>& preds,
                             const std::vector<double>& keep_ratios,
                             int64_t block,
                             const std::vector<torch::Tensor>& batches) {
  std::vector<double> sum(preds.size(), 0);
  for (const torch::Tensor& ids : batches) {
    ForEachLayerInput(
        model, ids,
        [&](int64_t i, const DecoderLayer& layer, const torch::Tensor& xn) {
          if (preds[i] == nullptr) return;
          kernels::SelectOptions select;
          select.keep_ratio = keep_ratios[i];
          const torch::Tensor oracle =
              OracleKeptBlocks(layer, xn, select, block);
          sum[i] += KeptBlockRecall(preds[i]->KeptBlocks(xn, select), oracle);
        });
  }
  std::vector<double> out(preds.size(), -1);
  for (size_t i = 0; i < preds.size(); ++i) {
    if (preds[i] != nullptr && !batches.empty()) {
      out[i] = sum[i] / static_cast<double>(batches.size());
    }
  }
  return out;
}

}  // namespace

nlohmann::json CalibrationReport::ToJson() const {
  Json layers_json = Json::array();
  for (const LayerCalibration& l : layers) {
    layers_json.push_back({{"layer", l.layer},
                           {"keep_ratio", l.keep_ratio},
                           {"recall_before", l.recall_before},
                           {"recall", l.recall},
                           {"params_before", l.params_before},
                           {"params_after", l.params_after},
                           {"final_loss", l.final_loss}});
  }
  return {{"steps", steps},
          {"seq_len", seq_len},
          {"train_samples", train_samples},
          {"heldout_samples", heldout_samples},
          {"seconds", seconds},
          {"layers", layers_json}};
}

void NeuronActivity::Observe(PredictorPath path,
                             const std::vector<torch::Tensor>& hidden) {
  torch::NoGradGuard no_grad;
  for (int h = 0; h < 2; ++h) {
    const torch::Tensor a = hidden.at(h).detach();
    const torch::Tensor flat = a.reshape({-1, a.size(-1)});
    const torch::Tensor count =
        (flat <= 0).sum(0).to(torch::kCPU, torch::kLong);
    torch::Tensor& d = dead[path][h];
    d = d.defined() ? d + count : count;
    if (h == 0) inputs[path] += flat.size(0);
  }
}

std::array<std::array<torch::Tensor, 2>, 2> PruneDeadNeurons(
    PatternPredictor& predictor, const NeuronActivity& activity,
    double threshold) {
  std::array<std::array<torch::Tensor, 2>, 2> keep;
  for (int path = 0; path < 2; ++path) {
    const auto p = static_cast<PredictorPath>(path);
    for (int h = 0; h < 2; ++h) {
      const int64_t width = predictor.HiddenSizes(p)[h];
      const torch::Tensor& dead = activity.dead[path][h];
      if (!dead.defined() || activity.inputs[path] == 0 ||
          dead.size(0) != width) {
        keep[path][h] = torch::arange(width, torch::kLong);
        continue;
      }
      const torch::Tensor fraction =
          dead.to(torch::kDouble) / static_cast<double>(activity.inputs[path]);
      torch::Tensor kept = (fraction <= threshold).nonzero().flatten();
      // An empty layer would zero the whole path; the least dead neuron stays.
      if (kept.numel() == 0) kept = fraction.argmin().reshape({1});
      keep[path][h] = kept;
      if (kept.numel() < width) predictor.KeepNeurons(p, h, kept);
    }
  }
  return keep;
}

absl::StatusOr<std::vector<double>> MeasurePredictorRecall(
    LlamaModel& model, const PatternPredictors& predictors,
    const std::vector<double>& keep_ratios,
    const std::vector<torch::Tensor>& batches) {
  const int64_t layers = model.config().num_hidden_layers;
  if (static_cast<int64_t>(keep_ratios.size()) != layers ||
      predictors.num_layers() != layers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "recall: the model has ", layers, " layers, keep_ratios ",
        keep_ratios.size(), ", predictors ", predictors.num_layers()));
  }
  std::vector<std::unique_ptr<PatternPredictors>> converted;
  converted.push_back(
      predictors.To(model.options().device, model.options().base_dtype));
  std::vector<const PatternPredictor*> preds;
  for (int64_t i = 0; i < layers; ++i) {
    preds.push_back(converted[0]->layer(i));
  }
  return CallTorch("measuring predictor recall", [&] {
    return RecallOf(model, preds, keep_ratios, predictors.info().block_tokens,
                    batches);
  });
}

absl::StatusOr<std::unique_ptr<PatternPredictors>> CalibratePredictors(
    LlamaModel& model,
    const std::function<absl::StatusOr<torch::Tensor>()>& next_batch,
    const std::vector<torch::Tensor>& heldout, const CalibrationOptions& o,
    CalibrationReport* report,
    const std::function<void(int64_t step, double loss)>& on_step) {
  const ModelConfig& config = model.config();
  const auto start = std::chrono::steady_clock::now();
  if (o.steps < 0 || o.prune_every < 0 || !(o.lr > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "calibration: steps and prune_every must be >= 0 and lr > 0, got ",
        o.steps, ", ", o.prune_every, ", ", o.lr));
  }
  LemoOptions lemo;
  lemo.keep_ratios = o.keep_ratios;
  lemo.block_tokens = o.predictor.block_tokens;
  LEMO_ASSIGN_OR_RETURN(std::vector<double> ratios,
                        ResolveKeepSchedule(lemo, config.num_hidden_layers),
                        "calibration keep ratios");
  PatternPredictorOptions shape = o.predictor;
  shape.head_dim = config.head_dim;
  const torch::Device device = model.options().device;

  std::vector<LayerFit> fits;
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    if (ratios[i] >= 1) continue;
    LEMO_ASSIGN_OR_RETURN(PatternPredictor p,
                          PatternPredictor::Create(shape, o.seed + i),
                          absl::StrCat("layer ", i));
    LayerFit fit{i, ratios[i], p.To(device, torch::kFloat)};
    fit.predictor.SetRequiresGrad(true);
    fit.adam = ZeroState(fit.predictor);
    fit.params_before = fit.predictor.NumParameters();
    fits.push_back(std::move(fit));
  }
  if (fits.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "calibration: every layer is dense under the keep schedule (",
        absl::StrJoin(ratios, ","),
        "); there is nothing to predict: give the sparse keep ratios the "
        "fine-tune will use"));
  }
  std::vector<LayerFit*> by_layer(config.num_hidden_layers, nullptr);
  for (LayerFit& f : fits) by_layer[f.index] = &f;
  const auto current = [&] {
    std::vector<const PatternPredictor*> preds(by_layer.size(), nullptr);
    for (LayerFit& f : fits) preds[f.index] = &f.predictor;
    return preds;
  };
  const int64_t block = shape.block_tokens;

  std::vector<double> recall_before;
  LEMO_ASSIGN_OR_RETURN(
      recall_before, CallTorch("measuring recall before calibration", [&] {
        return RecallOf(model, current(), ratios, block, heldout);
      }));

  double threshold = o.prune_threshold;
  int64_t seq_len = 0;
  for (int64_t step = 1; step <= o.steps; ++step) {
    LEMO_ASSIGN_OR_RETURN(torch::Tensor ids, next_batch(),
                          absl::StrCat("calibration batch ", step));
    seq_len = ids.size(-1);
    double loss_sum = 0;
    LEMO_RETURN_IF_ERROR(
        CallTorch(absl::StrCat("calibration step ", step), [&] {
          ForEachLayerInput(
              model, ids,
              [&](int64_t i, const DecoderLayer& layer,
                  const torch::Tensor& xn) {
                LayerFit* fit = by_layer[i];
                if (fit == nullptr) return;
                const torch::Tensor target =
                    NormaliseTarget(OracleBlockMap(layer, xn, block));
                torch::AutoGradMode grad(true);
                const torch::Tensor inputs =
                    fit->predictor.BlockInputs(xn.to(torch::kFloat));
                std::vector<torch::Tensor> hq;
                std::vector<torch::Tensor> hk;
                // RawMap's paths, run here to see their hidden activations.
                const int64_t b = inputs.size(0);
                const int64_t nb = inputs.size(2);
                const auto flat = [&](const torch::Tensor& t) {
                  return t.permute({0, 2, 1, 3}).reshape({b, nb, -1});
                };
                const torch::Tensor q =
                    flat(fit->predictor.PathForward(kQPath, inputs, &hq));
                const torch::Tensor k =
                    flat(fit->predictor.PathForward(kKPath, inputs, &hk));
                const torch::Tensor pred =
                    torch::matmul(q, k.transpose(1, 2)).tril();
                // Mean over the causal tiles only: the zeros above the
                // diagonal are fixed on both sides.
                const double causal =
                    static_cast<double>(b * nb * (nb + 1) / 2);
                const torch::Tensor loss =
                    torch::smooth_l1_loss(pred, target.to(pred.dtype()),
                                          at::Reduction::Sum,
                                          o.smooth_l1_beta) /
                    causal;
                loss.backward();
                fit->activity.Observe(kQPath, hq);
                fit->activity.Observe(kKPath, hk);
                AdamWStep(*fit, o, step);
                fit->last_loss = loss.item<double>();
                loss_sum += fit->last_loss;
              });
        }));
    if (on_step) on_step(step, loss_sum / static_cast<double>(fits.size()));
    if (o.prune_every > 0 && step % o.prune_every == 0 && step < o.steps) {
      LEMO_RETURN_IF_ERROR(CallTorch("pruning predictors", [&] {
        for (LayerFit& f : fits) {
          const auto keep =
              PruneDeadNeurons(f.predictor, f.activity, threshold);
          PruneState(f.adam, keep);
          f.activity = NeuronActivity();
        }
      }));
      threshold = std::max(0.0, threshold - o.prune_threshold_step);
    }
  }

  std::vector<double> recall;
  LEMO_ASSIGN_OR_RETURN(
      recall, CallTorch("measuring recall after calibration", [&] {
        return RecallOf(model, current(), ratios, block, heldout);
      }));
  std::vector<std::optional<PatternPredictor>> layers(config.num_hidden_layers);
  CalibrationReport r;
  for (LayerFit& f : fits) {
    f.predictor.SetRequiresGrad(false);
    layers[f.index] = f.predictor.To(torch::kCPU, torch::kFloat);
    LayerCalibration l;
    l.layer = f.index;
    l.keep_ratio = f.keep_ratio;
    l.recall_before = recall_before[f.index];
    l.recall = recall[f.index];
    l.params_before = f.params_before;
    l.params_after = f.predictor.NumParameters();
    l.final_loss = f.last_loss;
    r.layers.push_back(l);
  }
  r.steps = o.steps;
  r.seq_len = seq_len;
  r.heldout_samples = 0;
  for (const torch::Tensor& h : heldout) r.heldout_samples += h.size(0);
  r.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();

  PredictorSetInfo info;
  info.block_tokens = block;
  info.num_layers = config.num_hidden_layers;
  info.hidden_size = config.hidden_size;
  info.num_heads = config.num_attention_heads;
  info.head_dim = config.head_dim;
  info.calibration = r.ToJson();
  info.calibration["keep_ratios"] = ratios;
  info.calibration["lr"] = o.lr;
  info.calibration["prune_every"] = o.prune_every;
  info.calibration["hidden1"] = shape.hidden1;
  info.calibration["hidden2"] =
      shape.hidden2 == 0 ? shape.block_tokens * shape.head_dim : shape.hidden2;
  if (report != nullptr) *report = r;
  return std::make_unique<PatternPredictors>(std::move(info),
                                             std::move(layers));
}

}  // namespace lemo::engine
