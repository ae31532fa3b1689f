#include "worker/engine/train/offload.h"

#include <algorithm>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "worker/engine/runtime/device_memory.h"
#include "worker/engine/runtime/torch_status.h"

namespace lemo::engine {
namespace {

std::string GiB(int64_t bytes) {
  return absl::StrFormat("%.1f GiB", static_cast<double>(bytes) / (1 << 30));
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

absl::StatusOr<OffloadPolicy> ParseOffloadPolicy(absl::string_view name) {
  if (name == "none") return OffloadPolicy::kNone;
  if (name == "uniform") return OffloadPolicy::kUniform;
  if (name == "sparsity" || name == "auto") return OffloadPolicy::kSparsity;
  return absl::InvalidArgumentError(
      absl::StrCat("offload policy must be none, uniform, sparsity or auto, "
                   "got \"",
                   name, "\""));
}

std::string OffloadPolicyName(OffloadPolicy policy) {
  switch (policy) {
    case OffloadPolicy::kNone:
      return "none";
    case OffloadPolicy::kUniform:
      return "uniform";
    case OffloadPolicy::kSparsity:
      return "sparsity";
  }
  return "unknown";
}

absl::Status ValidateOffloadOptions(const OffloadOptions& options) {
  if (!(options.working_set_inputs >= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("offload working_set_inputs must be >= 0, got ",
                     options.working_set_inputs));
  }
  if (!(options.max_host_fraction > 0 && options.max_host_fraction <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("offload max_host_fraction must be in (0, 1], got ",
                     options.max_host_fraction));
  }
  return absl::OkStatus();
}

int64_t OffloadPlan::offloaded_layers() const {
  return std::count_if(host_tokens.begin(), host_tokens.end(),
                       [](int64_t t) { return t > 0; });
}

std::string OffloadPlan::Describe() const {
  std::string out = absl::StrCat(
      offloaded_layers(), " of ", host_tokens.size(),
      " layers' checkpointed inputs on the host, ", GiB(host_bytes), "; ",
      GiB(device_bytes), " on the device, budget ",
      budget_bytes < 0 ? std::string("none") : GiB(budget_bytes));
  if (reserve_bytes > 0) {
    absl::StrAppend(&out, " (", GiB(reserve_bytes), " reserved for a layer's ",
                    reserve_measured ? "measured" : "estimated", " backward)");
  }
  return out;
}

OffloadPlan PlanOffload(OffloadPolicy policy, int64_t tokens,
                        int64_t bytes_per_token,
                        const std::vector<double>& kept_fraction,
                        int64_t budget_bytes) {
  const int64_t layers = static_cast<int64_t>(kept_fraction.size());
  OffloadPlan plan;
  plan.budget_bytes = budget_bytes;
  plan.host_tokens.assign(layers, 0);
  const int64_t layer_bytes = tokens * bytes_per_token;
  const int64_t total = layers * layer_bytes;
  int64_t excess =
      budget_bytes < 0 ? 0 : std::max<int64_t>(0, total - budget_bytes);
  if (policy == OffloadPolicy::kNone || layer_bytes == 0) excess = 0;
  if (excess > 0 && policy == OffloadPolicy::kUniform) {
    const int64_t per_layer =
        std::min(tokens, CeilDiv(CeilDiv(excess, layers), bytes_per_token));
    plan.host_tokens.assign(layers, per_layer);
  } else if (excess > 0) {
    std::vector<int64_t> order(layers);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return kept_fraction[a] > kept_fraction[b];
    });
    for (int64_t layer : order) {
      if (excess <= 0) break;
      const int64_t t = std::min(tokens, CeilDiv(excess, bytes_per_token));
      plan.host_tokens[layer] = t;
      excess -= t * bytes_per_token;
    }
  }
  for (int64_t t : plan.host_tokens) {
    plan.host_bytes += t * bytes_per_token;
    plan.device_bytes += (tokens - t) * bytes_per_token;
  }
  return plan;
}

// One checkpoint's input [B, N, D]: its first host_tokens tokens in pinned
// host memory, the rest in a device tensor of their own (so that the
// offloaded part's device memory is freed).
class ActivationOffloader::OffloadedInput final : public SavedInput {
 public:
  OffloadedInput(ActivationOffloader* owner, int64_t layer,
                 const torch::Tensor& x, int64_t host_tokens)
      : owner_(owner),
        layer_(layer),
        live_host_bytes_(owner->live_host_bytes_),
        sizes_(x.sizes().vec()),
        options_(x.options()),
        host_tokens_(host_tokens) {
    host_ = owner_->stream_->ToHost(x.narrow(1, 0, host_tokens).contiguous());
    host_bytes_ = static_cast<int64_t>(host_.tensor.nbytes());
    *live_host_bytes_ += host_bytes_;
    owner_->Throttle(host_);
    if (host_tokens < x.size(1)) {
      // A copy of its own (not a view, which would keep all of x alive).
      device_part_ = x.narrow(1, host_tokens, x.size(1) - host_tokens)
                         .clone(at::MemoryFormat::Contiguous);
    }
  }
  ~OffloadedInput() override { Release(); }

  // Starts the copy back into a full-size device tensor.
  void Prefetch() {
    if (back_.tensor.defined() || !host_.tensor.defined()) return;
    torch::Tensor full = torch::empty(sizes_, options_);
    TransferStream& stream = *owner_->stream_;
    Transfer head =
        stream.ToDevice(host_.tensor, full.narrow(1, 0, host_tokens_));
    back_ = Transfer{full, std::move(head.event)};
  }

  torch::Tensor Restore() override {
    // The layer below is needed next: start its copy before waiting for ours.
    Prefetch();
    owner_->PrefetchBelow(layer_);
    torch::Tensor full = owner_->stream_->Wait(back_);
    if (device_part_.defined()) {
      full.narrow(1, host_tokens_, device_part_.size(1)).copy_(device_part_);
    }
    back_ = Transfer{};
    device_part_.reset();
    Release();
    return full;
  }

 private:
  void Release() {
    if (host_.tensor.defined()) {
      *live_host_bytes_ -= host_bytes_;
      host_ = Transfer{};
    }
  }

  ActivationOffloader* owner_;
  int64_t layer_;
  std::shared_ptr<int64_t> live_host_bytes_;
  std::vector<int64_t> sizes_;
  torch::TensorOptions options_;
  int64_t host_tokens_;
  int64_t host_bytes_ = 0;
  Transfer host_;
  Transfer back_;
  torch::Tensor device_part_;
};

absl::StatusOr<std::unique_ptr<ActivationOffloader>>
ActivationOffloader::Create(torch::Device device,
                            const OffloadOptions& options) {
  LEMO_RETURN_IF_ERROR(ValidateOffloadOptions(options));
  LEMO_ASSIGN_OR_RETURN(std::unique_ptr<TransferStream> stream,
                        CallTorch("creating the offload stream", [&] {
                          return TransferStream::Create(device);
                        }));
  return std::unique_ptr<ActivationOffloader>(
      new ActivationOffloader(device, options, std::move(stream)));
}

absl::Status ActivationOffloader::BeginForward(
    torch::IntArrayRef shape, torch::ScalarType dtype,
    const std::vector<double>& kept_fraction,
    int64_t measured_working_set_bytes) {
  saved_.assign(kept_fraction.size(), {});
  if (shape.size() != 3) {
    return absl::InvalidArgumentError(absl::StrCat(
        "offload: layer inputs must be [B, N, D], got ", c10::str(shape)));
  }
  const int64_t tokens = shape[1];
  const int64_t bytes_per_token =
      shape[0] * shape[2] * static_cast<int64_t>(c10::elementSize(dtype));
  const int64_t layer_bytes = tokens * bytes_per_token;
  int64_t budget = options_.device_budget_bytes;
  int64_t reserve = 0;
  const bool measured = measured_working_set_bytes >= 0;
  if (budget < 0) {
    const int64_t free = FreeDeviceMemoryBytes(device_);
    if (free >= 0) {
      reserve = measured
                    ? measured_working_set_bytes +
                          static_cast<int64_t>(kMeasuredMarginInputs *
                                               static_cast<double>(layer_bytes))
                    : static_cast<int64_t>(options_.working_set_inputs *
                                           static_cast<double>(layer_bytes));
      budget = std::max<int64_t>(0, free - reserve);
    }
  }
  plan_ = PlanOffload(options_.policy, tokens, bytes_per_token, kept_fraction,
                      budget);
  plan_.reserve_bytes = reserve;
  plan_.reserve_measured = measured && reserve > 0;
  if (plan_.host_bytes > 0) {
    const int64_t available = AvailableHostMemoryBytes();
    if (available >= 0 &&
        static_cast<double>(plan_.host_bytes) >
            options_.max_host_fraction * static_cast<double>(available)) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "offload: ", tokens, " tokens need ", GiB(plan_.host_bytes),
          " of pinned host memory for ", plan_.offloaded_layers(),
          " layers' checkpointed inputs (", GiB(layer_bytes), " per layer; ",
          GiB(plan_.device_bytes), " stay on ", device_.str(),
          " within a budget of ", GiB(std::max<int64_t>(budget, 0)),
          "), but the host has ", GiB(available), " available (limit ",
          options_.max_host_fraction * 100,
          "%): use a shorter sequence or a larger GPU"));
    }
  }
  return absl::OkStatus();
}

SaveInputFn ActivationOffloader::SaverFor(int64_t index) {
  if (index < 0 || index >= static_cast<int64_t>(plan_.host_tokens.size()) ||
      plan_.host_tokens[index] == 0) {
    return nullptr;
  }
  const int64_t host_tokens = plan_.host_tokens[index];
  return [this, index, host_tokens](const torch::Tensor& x) {
    auto saved = std::make_shared<OffloadedInput>(
        this, index, x, std::min(host_tokens, x.size(1)));
    saved_[index] = saved;
    return std::shared_ptr<SavedInput>(saved);
  };
}

void ActivationOffloader::Throttle(Transfer copy) {
  copy.tensor = torch::Tensor();  // only the event is needed
  in_flight_.push_back(std::move(copy));
  while (in_flight_.size() > kMaxCopiesInFlight) {
    TransferStream::Synchronize(in_flight_.front());
    in_flight_.pop_front();
  }
}

void ActivationOffloader::EndForward() {
  in_flight_.clear();
  PrefetchBelow(static_cast<int64_t>(saved_.size()));
}

void ActivationOffloader::PrefetchBelow(int64_t index) {
  for (int64_t i = std::min<int64_t>(index, saved_.size()) - 1; i >= 0; --i) {
    if (std::shared_ptr<OffloadedInput> saved = saved_[i].lock()) {
      saved->Prefetch();
      return;
    }
  }
}

}  // namespace lemo::engine
