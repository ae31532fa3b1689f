// Counts the bytes the CPU allocator hands out and takes back on this thread,
// so tests can measure live and peak activation memory (what autograd keeps
// alive) instead of estimating it.
//
//   auto tracker = std::make_shared<lemo::testing::CpuAllocationTracker>();
//   {
//     lemo::testing::CpuAllocationTracker::Scope scope(tracker);
//     torch::Tensor y = f(x);  // what y's graph saves stays allocated
//     int64_t kept = tracker->live_bytes();
//   }
//
// It plugs into c10's memory-profiling hook (MemoryReportingInfoBase under
// DebugInfoKind::PROFILER_STATE), which LibTorch's CPU allocator calls on every
// allocation and free while the hook is installed. The hook is thread-local:
// run measured code with torch::set_num_threads(1) if an op might allocate
// inside a parallel region. Header-only; only targets that link LibTorch
// include it.
#ifndef LEMO_TESTS_TESTING_CPU_ALLOCATION_TRACKER_H_
#define LEMO_TESTS_TESTING_CPU_ALLOCATION_TRACKER_H_

#include <c10/core/Allocator.h>
#include <c10/util/ThreadLocalDebugInfo.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <utility>

namespace lemo::testing {

class CpuAllocationTracker : public c10::MemoryReportingInfoBase {
 public:
  // Installs the tracker for this thread for the scope's lifetime.
  class Scope {
   public:
    explicit Scope(std::shared_ptr<CpuAllocationTracker> tracker)
        : guard_(c10::DebugInfoKind::PROFILER_STATE, std::move(tracker)) {}

   private:
    c10::DebugInfoGuard guard_;
  };

  void reportMemoryUsage(void* /*ptr*/, int64_t alloc_size,
                         size_t /*total_allocated*/, size_t /*total_reserved*/,
                         c10::Device device) override {
    if (device.type() != c10::DeviceType::CPU) return;
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

}  // namespace lemo::testing

#endif  // LEMO_TESTS_TESTING_CPU_ALLOCATION_TRACKER_H_
