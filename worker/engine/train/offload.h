// Offloaded gradient checkpoints: under gradient checkpointing every decoder
// layer keeps only its input ([B, N, D], 3 GiB per layer at 384K tokens on
// Llama-2-7B), and all layers' inputs together are what stops long contexts.
// This unit moves part of them to pinned host memory on a side stream while
// the forward goes on, and brings each back ahead of its layer's backward
// (the layer above prefetches it), so no copy waits on the critical path.
//
// How much goes to the host is planned per forward (PlanOffload): as many
// layer inputs stay on the GPU as the budget allows. Which ones is the policy:
// - kUniform: every layer offloads the same share of its tokens;
// - kSparsity (LEMO.md section 5, "sparsity-sensitive offload"): the layers
//   that keep the most tokens (the dense ones) offload first, since their
//   larger attention compute hides the copies, and highly sparse layers,
//   whose short compute would leave a copy exposed, stay on the GPU.
//
//   LEMO_ASSIGN_OR_RETURN(auto offloader,
//                         ActivationOffloader::Create(device, options));
//   LEMO_RETURN_IF_ERROR(offloader->BeginForward(shape, kept_fractions));
//   ... Checkpoint(fn, x, params, stash, offloader->SaverFor(layer)) ...
//   offloader->EndForward();   // prefetches the last offloaded input
//   loss.backward();           // each restore prefetches the one below
#ifndef LEMO_WORKER_ENGINE_TRAIN_OFFLOAD_H_
#define LEMO_WORKER_ENGINE_TRAIN_OFFLOAD_H_

#include <torch/torch.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "worker/engine/runtime/host_transfer.h"
#include "worker/engine/train/recompute.h"

namespace lemo::engine {

enum class OffloadPolicy {
  // Every checkpointed input stays on the device.
  kNone,
  // Each layer offloads the same share of its input.
  kUniform,
  // The densest layers offload first (see above).
  kSparsity,
};

// "none", "uniform" or "sparsity" ("auto" is sparsity with the automatic
// budget; it offloads nothing when everything fits).
absl::StatusOr<OffloadPolicy> ParseOffloadPolicy(absl::string_view name);
std::string OffloadPolicyName(OffloadPolicy policy);

struct OffloadOptions {
  // Which layers' checkpointed inputs go to pinned host memory.
  OffloadPolicy policy = OffloadPolicy::kNone;
  // Bytes of checkpointed inputs that may stay on the device; < 0: what is
  // free on the device at the start of the forward minus
  // working_set_inputs layer inputs (the largest layer's recompute and
  // backward). On the CPU < 0 means no limit (nothing is offloaded).
  int64_t device_budget_bytes = -1;
  // The automatic budget's reserve for one layer's recompute + backward, in
  // layer inputs ([B, N, D] each), until the first backward has measured it
  // (LemoLayerStats::backward_peak_bytes; then that plus a margin). Measured
  // on an H100 at 64K tokens (Llama-2-7B, LeMo oracle, token tiles of 16384,
  // every input offloaded): 14 inputs for a dense layer with attention whole,
  // 9.9 in 4 head groups (and 14.04 at 512K on an H200). 18 is what a
  // measured step reserves (14 + kMeasuredMarginInputs): the margin holds the
  // gradient arriving at the top layer and the residual stream's growth
  // during the forward. 16 ran a 512K step on an H200 out of memory
  // (bench/results/2026-12-06-h200-512k/). (Earlier guesses of 20-24 were
  // inflated by a bug that kept every offloaded input on the device too.)
  double working_set_inputs = 18;
  // Fail before the step (not by the out-of-memory killer) when the plan
  // needs more pinned host memory than this fraction of the host's available
  // memory.
  double max_host_fraction = 0.9;
};

absl::Status ValidateOffloadOptions(const OffloadOptions& options);

// Which tokens of each layer's checkpointed input go to the host.
struct OffloadPlan {
  // Per layer: the first host_tokens[i] tokens (of N) are offloaded.
  std::vector<int64_t> host_tokens;
  // Totals over the layers, in bytes.
  int64_t host_bytes = 0;
  int64_t device_bytes = 0;
  // The budget the plan was made for (< 0: none).
  int64_t budget_bytes = -1;
  // What the automatic budget held back for one layer's backward (0 with a
  // fixed budget), and whether that came from the last step's measurement.
  int64_t reserve_bytes = 0;
  bool reserve_measured = false;
  // Layers with any token on the host.
  int64_t offloaded_layers() const;
  // "K of L layers' checkpointed inputs on the host, X GiB; Y GiB on the
  // device, budget Z GiB" (or "budget none") and the reserve, for messages.
  std::string Describe() const;
};

// The plan for `policy` over layers whose inputs are `tokens` tokens of
// `bytes_per_token` bytes each, when at most `budget_bytes` may stay on the
// device (< 0: no limit). kept_fraction[i] is layer i's share of tokens that
// reach attention (1 = dense); it orders the layers for kSparsity (densest
// first, then the earlier layer).
OffloadPlan PlanOffload(OffloadPolicy policy, int64_t tokens,
                        int64_t bytes_per_token,
                        const std::vector<double>& kept_fraction,
                        int64_t budget_bytes);

class ActivationOffloader {
 public:
  static absl::StatusOr<std::unique_ptr<ActivationOffloader>> Create(
      torch::Device device, const OffloadOptions& options);

  // Plans this forward: layer inputs of `shape` ([B, N, D]) in `dtype`, one
  // kept fraction per layer. Fails with RESOURCE_EXHAUSTED, naming the
  // sizes, when the plan needs more pinned host memory than the host has.
  // measured_working_set_bytes: the largest layer backward working set of
  // the previous step at this shape (LemoLayerStats::backward_peak_bytes), or
  // -1; when known, the automatic budget reserves it plus
  // kMeasuredMarginInputs layer inputs instead of working_set_inputs.
  absl::Status BeginForward(torch::IntArrayRef shape, torch::ScalarType dtype,
                            const std::vector<double>& kept_fraction,
                            int64_t measured_working_set_bytes = -1);
  // How layer `index`'s checkpoint keeps its input under the plan; null
  // (keep it on the device) when the layer offloads nothing.
  SaveInputFn SaverFor(int64_t index);
  // Starts bringing back the input that backward needs first.
  void EndForward();

  const OffloadPlan& plan() const { return plan_; }
  const OffloadOptions& options() const { return options_; }
  // Pinned host bytes held by offloaded inputs right now (0 once backward has
  // restored them all).
  int64_t live_host_bytes() const { return *live_host_bytes_; }
  const TransferStream& stream() const { return *stream_; }

 private:
  class OffloadedInput;
  ActivationOffloader(torch::Device device, OffloadOptions options,
                      std::unique_ptr<TransferStream> stream)
      : device_(device),
        options_(options),
        stream_(std::move(stream)),
        live_host_bytes_(std::make_shared<int64_t>(0)) {}

  // Prefetches the offloaded input of the nearest layer below `index`.
  void PrefetchBelow(int64_t index);
  // Called after each copy to the host: waits (on the host) for all but the
  // newest kMaxCopiesInFlight. The forward queues kernels far ahead of the
  // GPU, and an offloaded input's device memory is reusable only once its copy
  // has run, so without this bound the allocator holds every queued layer's
  // input at once (at 256K tokens on an H100 that ran out of memory).
  void Throttle(Transfer copy);
  static constexpr size_t kMaxCopiesInFlight = 2;
  // On top of a measured working set: the gradient arriving at the top layer
  // and the loss's (bf16 and fp32), and the next step's kept fractions, which
  // move with the input.
  static constexpr double kMeasuredMarginInputs = 4;

  torch::Device device_;
  OffloadOptions options_;
  std::unique_ptr<TransferStream> stream_;
  OffloadPlan plan_;
  // This forward's offloaded inputs, by layer; expired once restored.
  std::vector<std::weak_ptr<OffloadedInput>> saved_;
  std::shared_ptr<int64_t> live_host_bytes_;
  // Copies to the host not known to be done, oldest first (see Throttle).
  std::deque<Transfer> in_flight_;
};

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_TRAIN_OFFLOAD_H_
