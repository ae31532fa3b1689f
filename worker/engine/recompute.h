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
// (worker/engine/attention_stash.h): selective checkpointing.
#ifndef LEMO_WORKER_ENGINE_RECOMPUTE_H_
#define LEMO_WORKER_ENGINE_RECOMPUTE_H_

#include <torch/torch.h>

#include <functional>
#include <vector>

namespace lemo::engine {

using SegmentFn = std::function<torch::Tensor(const torch::Tensor&)>;

torch::Tensor Checkpoint(SegmentFn fn, const torch::Tensor& input,
                         const std::vector<torch::Tensor>& params,
                         bool stash_attention = false);

// True on this thread while a Checkpoint node re-runs its segment for
// backward. The re-run's output values are never read (only its graph is), so
// an op whose output feeds nothing else in the segment may skip computing it.
bool InCheckpointRecompute();

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_RECOMPUTE_H_
