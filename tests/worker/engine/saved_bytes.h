// Bytes a forward leaves saved for backward, for the engine's memory tests.
//
//   int64_t saved = SavedBytes([&] { return layer.Forward(x, cos, sin, true);
//   });
#ifndef LEMO_TESTS_WORKER_ENGINE_SAVED_BYTES_H_
#define LEMO_TESTS_WORKER_ENGINE_SAVED_BYTES_H_

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>

#include "kernels/allocation_tracker.h"

namespace lemo::engine::testing {

// Bytes that stay allocated after `forward` (what its autograd graph saves),
// minus its output. Measured on the CPU allocator (see
// kernels/allocation_tracker.h), single-threaded so no allocation escapes the
// thread-local hook.
inline int64_t SavedBytes(const std::function<torch::Tensor()>& forward) {
  const int threads = torch::get_num_threads();
  torch::set_num_threads(1);
  auto tracker = std::make_shared<kernels::AllocationTracker>();
  int64_t saved = 0;
  {
    kernels::AllocationTracker::Scope scope(tracker);
    torch::Tensor out = forward();
    saved = tracker->live_bytes() - static_cast<int64_t>(out.nbytes());
  }
  torch::set_num_threads(threads);
  return saved;
}

}  // namespace lemo::engine::testing

#endif  // LEMO_TESTS_WORKER_ENGINE_SAVED_BYTES_H_
