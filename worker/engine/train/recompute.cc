#include "worker/engine/train/recompute.h"

#include <ATen/Context.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "kernels/allocation_tracker.h"
#include "worker/engine/model/attention_stash.h"
#include "worker/engine/model/recompute_context.h"
#include "worker/engine/model/segment_memo.h"

namespace lemo::engine {
namespace {

using torch::autograd::variable_list;

struct RngState {
  torch::Tensor cpu;
  std::optional<at::Generator> cuda_gen;
  torch::Tensor cuda;
};

RngState CaptureRng(const torch::Device& device) {
  RngState state;
  {
    at::Generator gen = at::globalContext().defaultGenerator(torch::kCPU);
    std::lock_guard<std::mutex> lock(gen.mutex());
    state.cpu = gen.get_state();
  }
  if (device.is_cuda()) {
    at::Generator gen = at::globalContext().defaultGenerator(device);
    std::lock_guard<std::mutex> lock(gen.mutex());
    state.cuda = gen.get_state();
    state.cuda_gen = gen;
  }
  return state;
}

void RestoreRng(const RngState& state) {
  {
    at::Generator gen = at::globalContext().defaultGenerator(torch::kCPU);
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state.cpu);
  }
  if (state.cuda_gen.has_value()) {
    at::Generator gen = *state.cuda_gen;
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state.cuda);
  }
}

// A hand-made autograd node rather than torch::autograd::Function: it must own
// a std::function and free it (with the saved input) as soon as backward is
// done, which release_variables() gives us.
class CheckpointBackward : public torch::autograd::Node {
 public:
  CheckpointBackward(SegmentFn fn, torch::Tensor input,
                     std::shared_ptr<SavedInput> saved_input,
                     bool input_requires_grad,
                     std::vector<torch::Tensor> params, RngState rng,
                     std::unique_ptr<AttentionStash> stash,
                     std::unique_ptr<SegmentMemo> memo,
                     std::function<void(int64_t)> on_backward_peak)
      : fn_(std::move(fn)),
        input_(std::move(input)),
        saved_input_(std::move(saved_input)),
        input_requires_grad_(input_requires_grad),
        params_(std::move(params)),
        rng_(std::move(rng)),
        stash_(std::move(stash)),
        memo_(std::move(memo)),
        on_backward_peak_(std::move(on_backward_peak)) {}

  std::string name() const override { return "lemo::CheckpointBackward"; }

  variable_list apply(variable_list&& grads) override {
    TORCH_CHECK(fn_ != nullptr,
                "checkpointed segment: backward ran twice (retain_graph is "
                "not supported)");
    variable_list result(1 + params_.size());
    if (!grads[0].defined()) return result;
    // Installed on this (the backward's) thread; the restore's allocation
    // and the prefetch it starts count too.
    std::shared_ptr<kernels::AllocationTracker> tracker;
    std::optional<kernels::AllocationTracker::Scope> tracking;
    if (on_backward_peak_) {
      tracker = std::make_shared<kernels::AllocationTracker>();
      tracking.emplace(tracker);
    }
    torch::Tensor input = input_;
    if (saved_input_ != nullptr) {
      input = saved_input_->Restore();
      saved_input_.reset();
    }
    const RngState outer = CaptureRng(input.device());
    RestoreRng(rng_);
    std::vector<torch::Tensor> wrt;
    std::vector<size_t> slot;
    torch::Tensor x = input.detach().requires_grad_(input_requires_grad_);
    input = torch::Tensor();
    input_.reset();
    if (input_requires_grad_) {
      wrt.push_back(x);
      slot.push_back(0);
    }
    for (size_t i = 0; i < params_.size(); ++i) {
      if (params_[i].requires_grad()) {
        wrt.push_back(params_[i]);
        slot.push_back(i + 1);
      }
    }
    variable_list computed;
    {
      torch::AutoGradMode grad_mode(true);
      torch::Tensor y;
      RecomputeScope recompute;
      SegmentMemo::Scope replay_memo(memo_.get(), SegmentMemo::Mode::kReplay);
      if (stash_ != nullptr) {
        AttentionStash::Scope replay(stash_.get(),
                                     AttentionStash::Mode::kReplay);
        y = fn_(x);
        TORCH_CHECK(stash_->pending() == 0,
                    "checkpointed segment: the recompute made fewer attention "
                    "calls than the forward recorded");
      } else {
        y = fn_(x);
      }
      TORCH_CHECK(memo_->pending() == 0,
                  "checkpointed segment: the recompute asked for fewer "
                  "memoized values than the forward recorded");
      RestoreRng(outer);
      if (!wrt.empty() && y.requires_grad()) {
        computed = torch::autograd::grad({y}, wrt, {grads[0]},
                                         /*retain_graph=*/false,
                                         /*create_graph=*/false,
                                         /*allow_unused=*/true);
      }
    }
    for (size_t i = 0; i < computed.size(); ++i) result[slot[i]] = computed[i];
    if (tracker) {
      tracking.reset();
      on_backward_peak_(tracker->peak_bytes());
    }
    return result;
  }

  void release_variables() override {
    fn_ = nullptr;
    input_.reset();
    saved_input_.reset();
    params_.clear();
    stash_.reset();
    memo_.reset();
    on_backward_peak_ = nullptr;
  }

 private:
  SegmentFn fn_;
  // The input, unless saved_input_ holds it.
  torch::Tensor input_;
  std::shared_ptr<SavedInput> saved_input_;
  bool input_requires_grad_;
  std::vector<torch::Tensor> params_;
  RngState rng_;
  // The attention outputs recorded by the forward; null without
  // stash_attention.
  std::unique_ptr<AttentionStash> stash_;
  // What the forward's ops memoized (segment_memo.h: LeMo's kept blocks),
  // handed back to the re-run in order.
  std::unique_ptr<SegmentMemo> memo_;
  std::function<void(int64_t)> on_backward_peak_;
};

}  // namespace

torch::Tensor Checkpoint(SegmentFn fn, const torch::Tensor& input,
                         const std::vector<torch::Tensor>& params,
                         bool stash_attention, CheckpointHooks hooks) {
  bool needs_grad = torch::GradMode::is_enabled() && input.requires_grad();
  if (torch::GradMode::is_enabled()) {
    for (const torch::Tensor& p : params) needs_grad |= p.requires_grad();
  }
  if (!needs_grad) {
    // Not recorded into an enclosing checkpoint's memo: when that one's
    // forward (no grad) reaches this call it lands here, while its re-run
    // (grad) makes this a checkpoint with a memo of its own, so the enclosing
    // memo must see this segment's calls in neither.
    SegmentMemo::Scope isolated(nullptr, SegmentMemo::Mode::kRecord);
    return fn(input);
  }
  RngState rng = CaptureRng(input.device());
  std::unique_ptr<AttentionStash> stash;
  if (stash_attention) stash = std::make_unique<AttentionStash>();
  auto memo = std::make_unique<SegmentMemo>();
  torch::Tensor output;
  {
    torch::NoGradGuard no_grad;
    SegmentMemo::Scope record_memo(memo.get(), SegmentMemo::Mode::kRecord);
    std::optional<AttentionStash::Scope> record;
    if (stash) record.emplace(stash.get(), AttentionStash::Mode::kRecord);
    output = fn(input);
  }
  // Handed over after the forward, so that an offload's copy starts once the
  // forward's kernels are queued and overlaps the next layer.
  std::shared_ptr<SavedInput> saved_input =
      hooks.save_input ? hooks.save_input(input.detach()) : nullptr;
  // Decided before the call: its arguments are evaluated in no fixed order,
  // and moving saved_input first made this test see null and keep the whole
  // input on the device beside its offloaded copy.
  torch::Tensor kept_input =
      saved_input != nullptr ? torch::Tensor() : input.detach();
  auto node = std::shared_ptr<CheckpointBackward>(
      new CheckpointBackward(
          std::move(fn), std::move(kept_input), std::move(saved_input),
          input.requires_grad(), params, std::move(rng), std::move(stash),
          std::move(memo), std::move(hooks.on_backward_peak)),
      torch::autograd::deleteNode);
  torch::autograd::edge_list edges;
  edges.push_back(torch::autograd::impl::gradient_edge(input));
  for (const torch::Tensor& p : params) {
    edges.push_back(torch::autograd::impl::gradient_edge(p));
  }
  node->set_next_edges(std::move(edges));
  torch::autograd::set_history(output, node);
  return output;
}

}  // namespace lemo::engine
