// A single timer thread for the control-plane benchmark: 1000 simulated
// workers heartbeating at 1 Hz need a few thousand timed callbacks a second,
// not 1000 sleeping threads.
//
//   Ticker ticker;
//   ticker.At(absl::Now() + absl::Seconds(1), [] { SendHeartbeat(); });
//   ...
//   ticker.Stop();   // pending callbacks are dropped
#ifndef LEMO_BENCH_CONTROL_PLANE_TICKER_H_
#define LEMO_BENCH_CONTROL_PLANE_TICKER_H_

#include <functional>
#include <queue>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace lemo::bench {

class Ticker {
 public:
  Ticker();
  ~Ticker();

  // Runs `fn` on the timer thread at `when` (at once if it is past). Callbacks
  // must be short: they delay every later one.
  void At(absl::Time when, std::function<void()> fn);
  // Drops what is pending and joins the thread; At() does nothing afterwards.
  void Stop();

 private:
  struct Entry {
    absl::Time when;
    uint64_t order;  // FIFO among equal times
    std::function<void()> fn;
    bool operator>(const Entry& o) const {
      return when != o.when ? when > o.when : order > o.order;
    }
  };
  void Loop();

  absl::Mutex mu_;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> queue_
      ABSL_GUARDED_BY(mu_);
  uint64_t next_order_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace lemo::bench

#endif  // LEMO_BENCH_CONTROL_PLANE_TICKER_H_
