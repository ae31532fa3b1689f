#include "bench/control_plane/ticker.h"

#include "absl/time/clock.h"

namespace lemo::bench {

Ticker::Ticker() : thread_([this] { Loop(); }) {}

Ticker::~Ticker() { Stop(); }

void Ticker::At(absl::Time when, std::function<void()> fn) {
  absl::MutexLock lock(&mu_);
  if (stop_) return;
  queue_.push(Entry{when, next_order_++, std::move(fn)});
}

void Ticker::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    queue_ = {};
  }
  if (thread_.joinable()) thread_.join();
}

void Ticker::Loop() {
  while (true) {
    std::function<void()> fn;
    {
      absl::MutexLock lock(&mu_);
      // Wake for the earliest entry, for a new earlier one, or for Stop; a
      // 10 ms cap bounds the wait when nothing is queued.
      absl::Time deadline = absl::Now() + absl::Milliseconds(10);
      if (!queue_.empty()) deadline = std::min(deadline, queue_.top().when);
      auto due = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return stop_ || (!queue_.empty() && queue_.top().when <= absl::Now());
      };
      mu_.AwaitWithDeadline(absl::Condition(&due), deadline);
      if (stop_) return;
      if (queue_.empty() || queue_.top().when > absl::Now()) continue;
      fn = queue_.top().fn;
      queue_.pop();
    }
    fn();
  }
}

}  // namespace lemo::bench
