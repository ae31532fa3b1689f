// What a decoder layer's ops may learn about gradient checkpointing, which the
// model itself never runs (train/recompute.h does, from above): whether this
// thread is re-running a checkpointed segment for backward. The re-run's
// output values are never read (only its graph is), so an op whose output
// feeds nothing else in the segment may skip computing it
// (lemo/sparse_mlp.h skips down_proj's GEMM).
//
//   { RecomputeScope scope;            // train/recompute.cc, around a re-run
//     y = segment(x); }
//   if (InCheckpointRecompute()) ...   // inside an op
#ifndef LEMO_WORKER_ENGINE_MODEL_RECOMPUTE_CONTEXT_H_
#define LEMO_WORKER_ENGINE_MODEL_RECOMPUTE_CONTEXT_H_

namespace lemo::engine {

// True on this thread while a checkpoint node re-runs its segment for
// backward.
bool InCheckpointRecompute();

// Marks this thread as re-running a segment until destroyed; nests.
class RecomputeScope {
 public:
  RecomputeScope();
  ~RecomputeScope();
  RecomputeScope(const RecomputeScope&) = delete;
  RecomputeScope& operator=(const RecomputeScope&) = delete;

 private:
  bool previous_;
};

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_MODEL_RECOMPUTE_CONTEXT_H_
