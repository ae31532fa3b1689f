#include "worker/engine/lemo/pattern_predictor.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/status_macros.h"
#include "worker/engine/model/safetensors.h"
#include "worker/engine/runtime/torch_status.h"

namespace lemo::engine {
namespace {

using Json = nlohmann::json;

constexpr std::array<const char*, 2> kPathNames = {"q_path", "k_path"};

std::string WeightName(int64_t layer, int path, int index) {
  return absl::StrCat("layers.", layer, ".", kPathNames[path], ".", index,
                      ".weight");
}

absl::Status CheckPositive(const char* field, int64_t v) {
  if (v > 0) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("predictor ", field, " must be > 0, got ", v));
}

}  // namespace

absl::StatusOr<PatternPredictor> PatternPredictor::Create(
    const PatternPredictorOptions& o, uint64_t seed) {
  LEMO_RETURN_IF_ERROR(CheckPositive("block_tokens", o.block_tokens));
  LEMO_RETURN_IF_ERROR(CheckPositive("head_dim", o.head_dim));
  LEMO_RETURN_IF_ERROR(CheckPositive("hidden1", o.hidden1));
  LEMO_RETURN_IF_ERROR(CheckPositive("out", o.out));
  if (o.hidden2 < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "predictor hidden2 must be >= 0 (0 = block x head_dim), got ",
        o.hidden2));
  }
  const int64_t in = o.block_tokens * o.head_dim;
  const int64_t h2 = o.hidden2 == 0 ? in : o.hidden2;
  const std::array<std::pair<int64_t, int64_t>, 3> shapes = {
      {{o.hidden1, in}, {h2, o.hidden1}, {o.out, h2}}};
  return CallTorch("initialising a predictor", [&] {
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    std::array<std::vector<torch::Tensor>, 2> paths;
    for (auto& path : paths) {
      for (const auto& [rows, cols] : shapes) {
        // torch.nn.Linear's default init: kaiming_uniform(a = sqrt(5)) is
        // uniform in +-1/sqrt(fan_in).
        const double bound = 1.0 / std::sqrt(static_cast<double>(cols));
        path.push_back(
            at::empty({rows, cols}, at::kFloat).uniform_(-bound, bound, gen));
      }
    }
    return PatternPredictor(o.block_tokens, o.head_dim, std::move(paths));
  });
}

absl::StatusOr<PatternPredictor> PatternPredictor::FromWeights(
    int64_t block_tokens, int64_t head_dim,
    std::array<std::vector<torch::Tensor>, 2> paths) {
  LEMO_RETURN_IF_ERROR(CheckPositive("block_tokens", block_tokens));
  LEMO_RETURN_IF_ERROR(CheckPositive("head_dim", head_dim));
  int64_t out = -1;
  for (int p = 0; p < 2; ++p) {
    if (paths[p].size() != 3) {
      return absl::InvalidArgumentError(absl::StrCat(
          kPathNames[p], " has ", paths[p].size(), " matrices, expected 3"));
    }
    int64_t in = block_tokens * head_dim;
    for (int i = 0; i < 3; ++i) {
      const torch::Tensor& w = paths[p][i];
      if (!w.defined() || w.dim() != 2 || w.size(1) != in || w.size(0) <= 0 ||
          !at::isFloatingType(w.scalar_type())) {
        return absl::InvalidArgumentError(absl::StrCat(
            kPathNames[p], ".", i, ".weight must be a float [out, ", in,
            "] matrix, got ",
            w.defined() ? c10::str(w.sizes()) : std::string("nothing")));
      }
      in = w.size(0);
    }
    if (out >= 0 && in != out) {
      return absl::InvalidArgumentError(
          absl::StrCat("q_path outputs ", out, " values but k_path ", in));
    }
    out = in;
  }
  return PatternPredictor(block_tokens, head_dim, std::move(paths));
}

torch::Tensor PatternPredictor::BlockInputs(const torch::Tensor& xn) const {
  TORCH_CHECK_VALUE(xn.dim() == 3 && xn.size(1) > 0,
                    "predictor: xn must be [B, N, D] with N > 0, got ",
                    xn.sizes());
  TORCH_CHECK_VALUE(xn.size(2) % head_dim_ == 0, "predictor: hidden size ",
                    xn.size(2), " is not a multiple of head_dim ", head_dim_);
  const torch::Tensor& w = paths_[kQPath][0];
  const int64_t batch = xn.size(0);
  const int64_t len = xn.size(1);
  const int64_t heads = xn.size(2) / head_dim_;
  const int64_t nb = (len + block_tokens_ - 1) / block_tokens_;
  torch::Tensor x = xn.to(w.device(), w.scalar_type());
  // Zeros in the padded tail of the last block, as the oracle pads its tiles.
  if (nb * block_tokens_ > len) {
    x = at::constant_pad_nd(x, {0, 0, 0, nb * block_tokens_ - len}, 0);
  }
  // [B, nb, block, H, d] -> [B, H, nb, block, d]: one 64d vector per block and
  // head, tokens major, as the artifact's X.view(.., H, d) per block.
  return x.reshape({batch, nb, block_tokens_, heads, head_dim_})
      .permute({0, 3, 1, 2, 4})
      .reshape({batch, heads, nb, block_tokens_ * head_dim_});
}

torch::Tensor PatternPredictor::PathForward(
    PredictorPath path, const torch::Tensor& inputs,
    std::vector<torch::Tensor>* hidden) const {
  const std::vector<torch::Tensor>& w = paths_[path];
  torch::Tensor h = inputs;
  for (int i = 0; i < 3; ++i) {
    h = torch::matmul(h, w[i].t());
    if (i < 2) {
      h = torch::relu(h);
      if (hidden != nullptr) hidden->push_back(h);
    }
  }
  return h;
}

torch::Tensor PatternPredictor::RawMap(const torch::Tensor& inputs) const {
  TORCH_CHECK_VALUE(inputs.dim() == 4, "predictor: block inputs must be ",
                    "[B, H, nb, block x d], got ", inputs.sizes());
  const int64_t batch = inputs.size(0);
  const int64_t nb = inputs.size(2);
  // [B, H, nb, o] -> [B, nb, H x o]: one matmul then sums q_h . k_h over heads.
  const auto flat = [&](const torch::Tensor& t) {
    return t.permute({0, 2, 1, 3}).reshape({batch, nb, -1});
  };
  const torch::Tensor q = flat(PathForward(kQPath, inputs));
  const torch::Tensor k = flat(PathForward(kKPath, inputs));
  return torch::matmul(q, k.transpose(1, 2)).to(torch::kFloat).tril();
}

torch::Tensor PatternPredictor::PredictMap(const torch::Tensor& xn) const {
  torch::NoGradGuard no_grad;
  return RawMap(BlockInputs(xn)).clamp_min(0);
}

torch::Tensor PatternPredictor::KeptBlocks(
    const torch::Tensor& xn, const kernels::SelectOptions& select) const {
  torch::NoGradGuard no_grad;
  return kernels::SelectBlocks(kernels::BlockColumnScores(PredictMap(xn)),
                               select);
}

void PatternPredictor::KeepNeurons(PredictorPath path, int hidden,
                                   const torch::Tensor& keep) {
  TORCH_CHECK_VALUE(hidden == 0 || hidden == 1,
                    "predictor: hidden layer must be 0 or 1, got ", hidden);
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor>& w = paths_[path];
  const torch::Tensor index = keep.to(w[hidden].device(), torch::kLong);
  const bool grad = w[hidden].requires_grad();
  w[hidden] = w[hidden].index_select(0, index).set_requires_grad(grad);
  w[hidden + 1] =
      w[hidden + 1].index_select(1, index).contiguous().set_requires_grad(grad);
}

PatternPredictor PatternPredictor::To(torch::Device device,
                                      torch::ScalarType dtype) const {
  std::array<std::vector<torch::Tensor>, 2> paths;
  for (int p = 0; p < 2; ++p) {
    for (const torch::Tensor& w : paths_[p]) {
      paths[p].push_back(w.detach().to(device, dtype).contiguous());
    }
  }
  return PatternPredictor(block_tokens_, head_dim_, std::move(paths));
}

void PatternPredictor::SetRequiresGrad(bool on) {
  for (auto& path : paths_) {
    for (torch::Tensor& w : path) w = w.detach().set_requires_grad(on);
  }
}

int64_t PatternPredictor::NumParameters() const {
  int64_t n = 0;
  for (const auto& path : paths_) {
    for (const torch::Tensor& w : path) n += w.numel();
  }
  return n;
}

std::array<int64_t, 2> PatternPredictor::HiddenSizes(PredictorPath path) const {
  return {paths_[path][0].size(0), paths_[path][1].size(0)};
}

double KeptBlockRecall(const torch::Tensor& predicted,
                       const torch::Tensor& oracle) {
  TORCH_CHECK_VALUE(predicted.dim() == 2 && oracle.dim() == 2 &&
                        predicted.size(0) == oracle.size(0),
                    "recall: kept blocks must be [B, k], got ",
                    predicted.sizes(), " and ", oracle.sizes());
  const torch::Tensor pred = predicted.cpu();
  const torch::Tensor want = oracle.cpu();
  double sum = 0;
  for (int64_t b = 0; b < want.size(0); ++b) {
    const torch::Tensor hit = torch::isin(want[b], pred[b]);
    sum += hit.sum().item<double>() / static_cast<double>(want.size(1));
  }
  return want.size(0) > 0 ? sum / static_cast<double>(want.size(0)) : 0;
}

absl::Status PatternPredictors::CheckModel(const ModelConfig& model) const {
  const auto mismatch = [&](const char* field, int64_t have, int64_t want) {
    return absl::FailedPreconditionError(
        absl::StrCat("predictors were calibrated for ", field, " = ", have,
                     ", but the model has ", want));
  };
  if (info_.num_layers != model.num_hidden_layers) {
    return mismatch("num_layers", info_.num_layers, model.num_hidden_layers);
  }
  if (info_.hidden_size != model.hidden_size) {
    return mismatch("hidden_size", info_.hidden_size, model.hidden_size);
  }
  if (info_.num_heads != model.num_attention_heads) {
    return mismatch("num_heads", info_.num_heads, model.num_attention_heads);
  }
  if (info_.head_dim != model.head_dim) {
    return mismatch("head_dim", info_.head_dim, model.head_dim);
  }
  if (static_cast<int64_t>(layers_.size()) != info_.num_layers) {
    return absl::InternalError(absl::StrCat("predictor set has ",
                                            layers_.size(), " layers, info ",
                                            info_.num_layers));
  }
  for (size_t i = 0; i < layers_.size(); ++i) {
    if (!layers_[i].has_value()) continue;
    if (layers_[i]->head_dim() != info_.head_dim ||
        layers_[i]->block_tokens() != info_.block_tokens) {
      return absl::FailedPreconditionError(absl::StrCat(
          "predictor of layer ", i, " has block x head_dim ",
          layers_[i]->block_tokens(), " x ", layers_[i]->head_dim(),
          ", the set says ", info_.block_tokens, " x ", info_.head_dim));
    }
  }
  // The predictor splits the hidden state itself into head_dim-wide heads.
  if (model.hidden_size % model.head_dim != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("hidden_size ", model.hidden_size,
                     " is not a multiple of head_dim ", model.head_dim));
  }
  return absl::OkStatus();
}

const PatternPredictor* PatternPredictors::layer(int64_t index) const {
  if (index < 0 || index >= num_layers() || !layers_[index].has_value()) {
    return nullptr;
  }
  return &*layers_[index];
}

PatternPredictor* PatternPredictors::mutable_layer(int64_t index) {
  if (index < 0 || index >= num_layers() || !layers_[index].has_value()) {
    return nullptr;
  }
  return &*layers_[index];
}

std::unique_ptr<PatternPredictors> PatternPredictors::To(
    torch::Device device, torch::ScalarType dtype) const {
  std::vector<std::optional<PatternPredictor>> layers;
  for (const auto& p : layers_) {
    layers.push_back(p.has_value()
                         ? std::optional<PatternPredictor>(p->To(device, dtype))
                         : std::nullopt);
  }
  return std::make_unique<PatternPredictors>(info_, std::move(layers));
}

absl::Status PatternPredictors::Save(const std::string& dir) const {
  NamedTensors tensors;
  Json layers = Json::array();
  LEMO_RETURN_IF_ERROR(CallTorch("collecting predictor weights", [&] {
    for (size_t i = 0; i < layers_.size(); ++i) {
      if (!layers_[i].has_value()) continue;
      Json entry = {{"index", i}};
      for (int p = 0; p < 2; ++p) {
        const auto& w = layers_[i]->weights(static_cast<PredictorPath>(p));
        for (int j = 0; j < 3; ++j) {
          tensors.emplace_back(
              WeightName(static_cast<int64_t>(i), p, j),
              w[j].detach().to(torch::kCPU, torch::kFloat).contiguous());
        }
        const auto sizes =
            layers_[i]->HiddenSizes(static_cast<PredictorPath>(p));
        entry[absl::StrCat(kPathNames[p], "_hidden")] = {sizes[0], sizes[1]};
        entry["out"] = w[2].size(0);
      }
      layers.push_back(entry);
    }
  }));
  const Json config = {{"format_version", kFormatVersion},
                       {"block_tokens", info_.block_tokens},
                       {"num_layers", info_.num_layers},
                       {"heads", info_.hidden_size / info_.head_dim},
                       {"head_dim", info_.head_dim},
                       {"model",
                        {{"hidden_size", info_.hidden_size},
                         {"num_hidden_layers", info_.num_layers},
                         {"num_attention_heads", info_.num_heads},
                         {"head_dim", info_.head_dim}}},
                       {"layers", layers},
                       {"calibration", info_.calibration}};
  LEMO_ASSIGN_OR_RETURN(auto staged, AtomicDirectory::Create(dir),
                        absl::StrCat("predictor directory ", dir));
  LEMO_RETURN_IF_ERROR(
      WriteSafetensors(staged->path() + "/" + kWeightsFile, tensors,
                       {{"format", "lemo-predictors"}}),
      absl::StrCat("writing ", dir, "/", kWeightsFile));
  LEMO_RETURN_IF_ERROR(WriteFileAtomically(staged->path() + "/" + kConfigFile,
                                           config.dump(2) + "\n"),
                       absl::StrCat("writing ", dir, "/", kConfigFile));
  return staged->Commit();
}

namespace {

// config[key] as an integer, or an error naming the file and field.
absl::StatusOr<int64_t> IntField(const Json& j, const std::string& key,
                                 const std::string& where) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number_integer()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": field \"", key, "\" must be an integer"));
  }
  return j[key].get<int64_t>();
}

}  // namespace

absl::StatusOr<std::unique_ptr<PatternPredictors>> PatternPredictors::Load(
    const std::string& dir, const ModelConfig& model) {
  const std::string config_path = dir + "/" + kConfigFile;
  const std::string weights_path = dir + "/" + kWeightsFile;
  LEMO_ASSIGN_OR_RETURN(std::string text, ReadFileToString(config_path),
                        absl::StrCat("predictor config ", config_path));
  Json config = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(config_path, ": not a JSON object"));
  }
  LEMO_ASSIGN_OR_RETURN(int64_t version,
                        IntField(config, "format_version", config_path));
  if (version != kFormatVersion) {
    return absl::InvalidArgumentError(absl::StrCat(
        config_path, ": format_version ", version,
        " is not supported (this build reads ", kFormatVersion, ")"));
  }
  PredictorSetInfo info;
  LEMO_ASSIGN_OR_RETURN(info.block_tokens,
                        IntField(config, "block_tokens", config_path));
  LEMO_ASSIGN_OR_RETURN(info.num_layers,
                        IntField(config, "num_layers", config_path));
  LEMO_ASSIGN_OR_RETURN(info.head_dim,
                        IntField(config, "head_dim", config_path));
  const std::string model_where = config_path + " model";
  const Json model_json = config.value("model", Json());
  LEMO_ASSIGN_OR_RETURN(info.hidden_size,
                        IntField(model_json, "hidden_size", model_where));
  LEMO_ASSIGN_OR_RETURN(
      info.num_heads, IntField(model_json, "num_attention_heads", model_where));
  if (info.num_layers <= 0 || info.block_tokens <= 0 || info.head_dim <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        config_path, ": num_layers, block_tokens and head_dim must be > 0"));
  }
  if (config.contains("calibration")) info.calibration = config["calibration"];
  if (!config.contains("layers") || !config["layers"].is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat(config_path, ": field \"layers\" must be an array"));
  }

  LEMO_ASSIGN_OR_RETURN(NamedTensors named, ReadSafetensors(weights_path),
                        absl::StrCat("predictor weights ", weights_path));
  std::map<std::string, torch::Tensor> tensors(named.begin(), named.end());
  std::set<std::string> used;
  std::vector<std::optional<PatternPredictor>> layers(info.num_layers);
  for (const Json& entry : config["layers"]) {
    LEMO_ASSIGN_OR_RETURN(int64_t index,
                          IntField(entry, "index", config_path + " layers[]"));
    if (index < 0 || index >= info.num_layers || layers[index].has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat(config_path, ": layer index ", index,
                       " is out of range or repeated"));
    }
    std::array<std::vector<torch::Tensor>, 2> paths;
    for (int p = 0; p < 2; ++p) {
      const std::string key = absl::StrCat(kPathNames[p], "_hidden");
      const Json hidden = entry.value(key, Json());
      if (!hidden.is_array() || hidden.size() != 2 ||
          !hidden[0].is_number_integer() || !hidden[1].is_number_integer()) {
        return absl::InvalidArgumentError(absl::StrCat(config_path, ": layer ",
                                                       index, " field \"", key,
                                                       "\" must be [h1, h2]"));
      }
      for (int j = 0; j < 3; ++j) {
        const std::string name = WeightName(index, p, j);
        auto it = tensors.find(name);
        if (it == tensors.end()) {
          return absl::NotFoundError(
              absl::StrCat(weights_path, ": tensor ", name, " is missing"));
        }
        used.insert(name);
        paths[p].push_back(it->second.to(torch::kFloat));
      }
      if (paths[p][0].dim() != 2 || paths[p][1].dim() != 2 ||
          paths[p][0].size(0) != hidden[0].get<int64_t>() ||
          paths[p][1].size(0) != hidden[1].get<int64_t>()) {
        return absl::InvalidArgumentError(
            absl::StrCat(weights_path, ": layer ", index, " ", kPathNames[p],
                         " shapes do not match ", key, " ", hidden.dump(),
                         " in ", kConfigFile));
      }
    }
    LEMO_ASSIGN_OR_RETURN(
        PatternPredictor predictor,
        PatternPredictor::FromWeights(info.block_tokens, info.head_dim,
                                      std::move(paths)),
        absl::StrCat(weights_path, ": layer ", index));
    layers[index] = std::move(predictor);
  }
  for (const auto& [name, t] : tensors) {
    if (!used.count(name)) {
      return absl::InvalidArgumentError(
          absl::StrCat(weights_path, ": tensor ", name,
                       " belongs to no layer listed in ", kConfigFile));
    }
  }
  auto set =
      std::make_unique<PatternPredictors>(std::move(info), std::move(layers));
  LEMO_RETURN_IF_ERROR(set->CheckModel(model),
                       absl::StrCat("predictors ", dir));
  return set;
}

}  // namespace lemo::engine
