// Gradient checkpointing: run a segment (one decoder layer) without recording
// its graph, keep only its input, and re-run it with grad when backward reaches
// it.
//
//   torch::Tensor y = Checkpoint([&](const torch::Tensor& h) { return
//   layer.Forward(h); },
//                                x, layer.TrainableParameters());
//
// The CPU and (for a CUDA input) the CUDA generator states are captured before
// the forward and restored around the re-run, so dropout draws the same masks;
// the caller's RNG stream is left where it was. `fn` must be a pure function of
// its input, the captured tensors and `params`. `params` are the leaf tensors
// inside the segment that need gradients; they receive their gradients through
// this node. Backward may run only once (no retain_graph).
//
// With stash_attention, the segment's attention calls
// (ScaledDotProductAttention) keep their outputs from the forward and the
// re-run replays them instead of running the attention forward again
// (worker/engine/model/attention_stash.h): selective checkpointing. The re-run
// happens inside a RecomputeScope (worker/engine/model/recompute_context.h).
//
// Values the segment's ops pass through Memoized (worker/engine/model/
// segment_memo.h: LeMo's kept blocks) are computed once, in the forward, and
// handed back to the re-run, so it keeps the tokens the forward kept without
// scoring them again.
//
// With hooks.save_input, the input is handed over once the forward has run,
// and restored from there in backward (offload); the values are the same.
// hooks.on_backward_peak receives the segment's backward working set, measured
// by tracking the allocator (kernels/allocation_tracker.h) on the thread that
// runs the backward.
#ifndef LEMO_WORKER_ENGINE_TRAIN_RECOMPUTE_H_
#define LEMO_WORKER_ENGINE_TRAIN_RECOMPUTE_H_

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <vector>

#include "worker/engine/model/decoder_layer.h"

namespace lemo::engine {

// Where a checkpoint keeps its input between the forward and the re-run: on
// the device by default, or elsewhere (pinned host memory,
// worker/engine/train/offload.h).
class SavedInput {
 public:
  virtual ~SavedInput() = default;
  // The input's values again, on its device. Called once, in backward.
  virtual torch::Tensor Restore() = 0;
};
// Takes the input (detached) when the forward has run; null keeps it as is.
using SaveInputFn =
    std::function<std::shared_ptr<SavedInput>(const torch::Tensor& input)>;

struct CheckpointHooks {
  // Takes the input after the forward; null keeps it on its device.
  SaveInputFn save_input;
  // Called once backward is done with the most bytes the re-run and backward
  // had allocated at once above what was live when the backward began; null:
  // not measured.
  std::function<void(int64_t peak_bytes)> on_backward_peak;
};

torch::Tensor Checkpoint(SegmentFn fn, const torch::Tensor& input,
                         const std::vector<torch::Tensor>& params,
                         bool stash_attention = false,
                         CheckpointHooks hooks = {});

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_TRAIN_RECOMPUTE_H_
