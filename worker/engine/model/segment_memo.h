// Values a checkpointed segment computes in its forward that its re-run in
// backward must see again unchanged: LeMo's kept blocks. Re-computing them
// would score every token a second time (the oracle's exact pass grows with
// the square of the sequence, so under checkpointing it would run twice per
// step) and, should the scores tie or differ in the last bit, could keep
// other tokens than the forward did, so the backward would not match the
// forward that produced the loss.
//
//   SegmentMemo memo;
//   { SegmentMemo::Scope s(&memo, SegmentMemo::Mode::kRecord);
//     y = fn(x); }  // each Memoized call computes and records
//   { SegmentMemo::Scope s(&memo, SegmentMemo::Mode::kReplay);
//     y = fn(x); }  // each returns the next recorded value
//
//   torch::Tensor kept = Memoized([&] { return SelectBlocks(...); });  // an op
//
// train/recompute.cc runs every checkpointed segment inside such scopes.
// Scopes are per thread and nest (the innermost wins). Outside any scope,
// Memoized just computes.
#ifndef LEMO_WORKER_ENGINE_MODEL_SEGMENT_MEMO_H_
#define LEMO_WORKER_ENGINE_MODEL_SEGMENT_MEMO_H_

#include <torch/torch.h>

#include <cstdint>
#include <deque>
#include <functional>

namespace lemo::engine {

class SegmentMemo {
 public:
  enum class Mode { kRecord, kReplay };

  // Makes `memo` this thread's current memo in `mode` until destroyed.
  class Scope {
   public:
    Scope(SegmentMemo* memo, Mode mode);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    SegmentMemo* previous_memo_;
    Mode previous_mode_;
  };

  // Recorded values not yet replayed.
  size_t pending() const { return entries_.size(); }
  // Values handed back by a replay (computations skipped).
  int64_t replayed() const { return replayed_; }

 private:
  friend torch::Tensor Memoized(const std::function<torch::Tensor()>&);
  std::deque<torch::Tensor> entries_;
  int64_t replayed_ = 0;
};

// compute(), recorded when this thread's memo records; the next recorded
// value, without calling compute, when it replays (a replay with nothing left
// throws: the re-run made more calls than the forward); compute() outside a
// scope.
torch::Tensor Memoized(const std::function<torch::Tensor()>& compute);

// True on this thread while a memo replays: an op may skip what only the
// forward needs (statistics, a recall measurement).
bool ReplayingSegment();

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_MODEL_SEGMENT_MEMO_H_
