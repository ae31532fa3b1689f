#include "worker/engine/model/segment_memo.h"

#include <utility>

namespace lemo::engine {
namespace {

thread_local SegmentMemo* current_memo = nullptr;
thread_local SegmentMemo::Mode current_mode = SegmentMemo::Mode::kRecord;

}  // namespace

SegmentMemo::Scope::Scope(SegmentMemo* memo, Mode mode)
    : previous_memo_(current_memo), previous_mode_(current_mode) {
  current_memo = memo;
  current_mode = mode;
}

SegmentMemo::Scope::~Scope() {
  current_memo = previous_memo_;
  current_mode = previous_mode_;
}

torch::Tensor Memoized(const std::function<torch::Tensor()>& compute) {
  SegmentMemo* memo = current_memo;
  if (memo == nullptr) return compute();
  if (current_mode == SegmentMemo::Mode::kReplay) {
    TORCH_CHECK(!memo->entries_.empty(),
                "checkpointed segment: the recompute asked for more memoized "
                "values than the forward recorded");
    torch::Tensor value = std::move(memo->entries_.front());
    memo->entries_.pop_front();
    ++memo->replayed_;
    return value;
  }
  torch::Tensor value = compute();
  memo->entries_.push_back(value);
  return value;
}

bool ReplayingSegment() {
  return current_memo != nullptr && current_mode == SegmentMemo::Mode::kReplay;
}

}  // namespace lemo::engine
