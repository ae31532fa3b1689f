#include "worker/engine/train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/runtime/torch_status.h"

namespace lemo::engine {
namespace {

constexpr char kExpAvg[] = ".exp_avg";
constexpr char kExpAvgSq[] = ".exp_avg_sq";
constexpr char kStep[] = ".step";

}  // namespace

AdapterOptimizer::AdapterOptimizer(
    std::vector<std::pair<std::string, torch::Tensor>> params,
    const OptimizerOptions& options)
    : params_(std::move(params)), options_(options) {
  for (const auto& [name, t] : params_) tensors_.push_back(t);
  adamw_ = std::make_unique<torch::optim::AdamW>(
      tensors_, torch::optim::AdamWOptions(options.lr)
                    .betas({options.beta1, options.beta2})
                    .eps(options.eps)
                    .weight_decay(options.weight_decay));
}

absl::StatusOr<std::unique_ptr<AdapterOptimizer>> AdapterOptimizer::Create(
    std::vector<std::pair<std::string, torch::Tensor>> params,
    const OptimizerOptions& options) {
  if (params.empty()) {
    return absl::InvalidArgumentError("optimizer: no parameters to train");
  }
  std::set<std::string> names;
  for (const auto& [name, t] : params) {
    if (!t.defined() || !t.requires_grad() || !t.is_leaf()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "optimizer: parameter ", name, " must be a leaf that requires grad"));
    }
    if (!names.insert(name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("optimizer: parameter ", name, " given twice"));
    }
  }
  if (!(options.lr >= 0) || !(options.eps >= 0) ||
      !(options.weight_decay >= 0) ||
      !(options.beta1 >= 0 && options.beta1 < 1) ||
      !(options.beta2 >= 0 && options.beta2 < 1)) {
    return absl::InvalidArgumentError(
        "optimizer: need lr, eps, weight_decay >= 0 and betas in [0, 1)");
  }
  if (options.total_steps <= 0 || options.warmup_steps < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "optimizer: need total_steps > 0 and warmup_steps >= 0, got ",
        options.total_steps, " and ", options.warmup_steps));
  }
  if (!(options.min_lr_ratio >= 0 && options.min_lr_ratio <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("optimizer: min_lr_ratio must be in [0, 1], got ",
                     options.min_lr_ratio));
  }
  return std::unique_ptr<AdapterOptimizer>(
      new AdapterOptimizer(std::move(params), options));
}

double AdapterOptimizer::LearningRate(int64_t s) const {
  const int64_t warmup = options_.warmup_steps;
  if (s < warmup) {
    // (s + 1) / warmup rather than HF's s / warmup: HF's first step runs at lr
    // 0 and is wasted.
    return options_.lr * static_cast<double>(s + 1) /
           static_cast<double>(warmup);
  }
  const double span =
      static_cast<double>(std::max<int64_t>(1, options_.total_steps - warmup));
  const double progress =
      std::clamp(static_cast<double>(s - warmup) / span, 0.0, 1.0);
  const double cosine = 0.5 * (1.0 + std::cos(M_PI * progress));
  return options_.lr *
         (options_.min_lr_ratio + (1.0 - options_.min_lr_ratio) * cosine);
}

double AdapterOptimizer::Step() {
  double norm = 0;
  {
    // torch.nn.utils.clip_grad_norm_'s math with foreach kernels: two launches
    // for all the adapters instead of two per tensor (hundreds of tensors on a
    // 7B model).
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> grads;
    for (const torch::Tensor& t : tensors_) {
      if (t.grad().defined()) grads.push_back(t.grad());
    }
    if (!grads.empty()) {
      torch::Tensor total = torch::stack(at::_foreach_norm(grads, 2)).norm(2);
      if (options_.max_grad_norm > 0) {
        torch::Tensor coef =
            torch::clamp_max(options_.max_grad_norm / (total + 1e-6), 1.0);
        at::_foreach_mul_(grads, coef);
      }
      norm = total.item<double>();
    }
  }
  const double rate = lr();
  for (auto& group : adamw_->param_groups()) {
    static_cast<torch::optim::AdamWOptions&>(group.options()).lr(rate);
  }
  adamw_->step();
  ++step_;
  return norm;
}

void AdapterOptimizer::ZeroGrad() { adamw_->zero_grad(/*set_to_none=*/true); }

std::vector<std::pair<std::string, torch::Tensor>>
AdapterOptimizer::ExportState() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  const auto& state = adamw_->state();
  for (const auto& [name, t] : params_) {
    auto it = state.find(t.unsafeGetTensorImpl());
    if (it == state.end()) continue;
    const auto& s =
        static_cast<const torch::optim::AdamWParamState&>(*it->second);
    out.emplace_back(name + kExpAvg,
                     s.exp_avg().detach().to(torch::kCPU).clone());
    out.emplace_back(name + kExpAvgSq,
                     s.exp_avg_sq().detach().to(torch::kCPU).clone());
    out.emplace_back(name + kStep, torch::full({}, s.step(), torch::kLong));
  }
  return out;
}

absl::Status AdapterOptimizer::ImportState(
    const std::vector<std::pair<std::string, torch::Tensor>>& state,
    int64_t step) {
  if (step < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("optimizer: step must be >= 0, got ", step));
  }
  std::map<std::string, torch::Tensor> given(state.begin(), state.end());
  std::map<std::string, const torch::Tensor*> by_name;
  for (const auto& [name, t] : params_) by_name[name] = &t;
  // Validate everything before touching the optimizer, so a bad file leaves it
  // unchanged.
  for (const auto& [key, t] : given) {
    std::string name;
    for (const char* suffix : {kExpAvgSq, kExpAvg, kStep}) {
      const std::string sfx(suffix);
      if (key.size() > sfx.size() &&
          key.compare(key.size() - sfx.size(), sfx.size(), sfx) == 0) {
        name = key.substr(0, key.size() - sfx.size());
        break;
      }
    }
    if (name.empty() || !by_name.count(name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("optimizer state: ", key, " matches no parameter"));
    }
  }
  std::vector<std::unique_ptr<torch::optim::AdamWParamState>> states(
      params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& [name, t] = params_[i];
    auto avg = given.find(name + kExpAvg);
    auto sq = given.find(name + kExpAvgSq);
    auto st = given.find(name + kStep);
    const int present =
        (avg != given.end()) + (sq != given.end()) + (st != given.end());
    if (present == 0) continue;
    if (present != 3) {
      return absl::InvalidArgumentError(
          absl::StrCat("optimizer state for ", name,
                       " needs exp_avg, exp_avg_sq and step together"));
    }
    if (avg->second.sizes() != t.sizes() || sq->second.sizes() != t.sizes()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "optimizer state for ", name, " has shape ",
          c10::str(avg->second.sizes()), "/", c10::str(sq->second.sizes()),
          ", the parameter is ", c10::str(t.sizes())));
    }
    if (st->second.numel() != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("optimizer state ", name, kStep, " must be a scalar"));
    }
    auto s = std::make_unique<torch::optim::AdamWParamState>();
    LEMO_RETURN_IF_ERROR(
        CallTorch(absl::StrCat("optimizer state for ", name), [&] {
          s->step(st->second.item<int64_t>());
          s->exp_avg(
              avg->second.to(t.device(), t.scalar_type()).contiguous().clone());
          s->exp_avg_sq(
              sq->second.to(t.device(), t.scalar_type()).contiguous().clone());
        }));
    states[i] = std::move(s);
  }
  auto& live = adamw_->state();
  live.clear();
  for (size_t i = 0; i < params_.size(); ++i) {
    if (states[i])
      live[params_[i].second.unsafeGetTensorImpl()] = std::move(states[i]);
  }
  step_ = step;
  return absl::OkStatus();
}

}  // namespace lemo::engine
