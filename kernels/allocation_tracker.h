// Counts the bytes LibTorch's allocators hand out and take back on this thread,
// so memory can be measured rather than estimated: the peak working set of an
// op, or the bytes a forward leaves allocated for backward (what autograd
// saves).
//
//   auto tracker = std::make_shared<lemo::kernels::AllocationTracker>();
//   {
//     lemo::kernels::AllocationTracker::Scope scope(tracker);
//     torch::Tensor y = f(x);  // what y's graph saves stays allocated
//     int64_t kept = tracker->live_bytes();
//   }
//
// It plugs into c10's memory-profiling hook (MemoryReportingInfoBase under
// DebugInfoKind::PROFILER_STATE), which the CPU allocator and the CUDA caching
// allocator call on every allocation and free while the hook is installed (it
// replaces the autograd profiler's memory tracking for that time). The hook is
// thread-local: on CPU, run measured code with torch::set_num_threads(1) if an
// op might allocate inside a parallel region. Counts all devices together.
#ifndef LEMO_KERNELS_ALLOCATION_TRACKER_H_
#define LEMO_KERNELS_ALLOCATION_TRACKER_H_

#include <c10/core/Allocator.h>
#include <c10/util/ThreadLocalDebugInfo.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <utility>

namespace lemo::kernels {

class AllocationTracker : public c10::MemoryReportingInfoBase {
 public:
  // Installs the tracker for this thread for the scope's lifetime.
  class Scope {
   public:
    explicit Scope(std::shared_ptr<AllocationTracker> tracker)
        : guard_(c10::DebugInfoKind::PROFILER_STATE, std::move(tracker)) {}

   private:
    c10::DebugInfoGuard guard_;
  };

  void reportMemoryUsage(void* /*ptr*/, int64_t alloc_size,
                         size_t /*total_allocated*/, size_t /*total_reserved*/,
                         c10::Device /*device*/) override {
    live_ += alloc_size;
    peak_ = std::max(peak_, live_);
  }
  bool memoryProfilingEnabled() const override { return true; }

  // Bytes allocated minus bytes freed since the tracker was created (frees of
  // older tensors count too, so this can go negative).
  int64_t live_bytes() const { return live_; }
  // The largest live_bytes() seen since creation or the last ResetPeak().
  int64_t peak_bytes() const { return peak_; }
  void ResetPeak() { peak_ = live_; }

 private:
  int64_t live_ = 0;
  int64_t peak_ = 0;
};

}  // namespace lemo::kernels

#endif  // LEMO_KERNELS_ALLOCATION_TRACKER_H_
