// WatchJob fan-out. The coordinator stores every event first, then publishes it
// here; each watcher has a bounded buffer of live events. A watcher that falls
// behind never blocks the job or the other watchers: its buffer is dropped and
// it catches up from the store, so it lags but loses nothing. A JobWatcher
// yields a job's events in sequence order: the history it asked for (read from
// the store), then live ones, with no gap and no duplicate.
//
//   auto watcher = JobWatcher(hub.Subscribe(job_id), reader,
//   /*next_sequence=*/1); while (...) {
//     LEMO_ASSIGN_OR_RETURN(std::optional<v1::JobEvent> e,
//     watcher.Next(absl::Seconds(1))); if (e) Send(*e);
//   }
#ifndef LEMO_SERVER_CORE_EVENT_HUB_H_
#define LEMO_SERVER_CORE_EVENT_HUB_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "lemo/v1/job.pb.h"

namespace lemo::server {

// One watcher's live buffer.
class Subscription {
 public:
  explicit Subscription(size_t capacity) : capacity_(capacity) {}
  // Waits up to `timeout` for an event. Sets *overflowed when events were
  // dropped since the last call (the caller must re-read them from the store).
  std::optional<v1::JobEvent> Pop(absl::Duration timeout, bool* overflowed);
  void Push(const v1::JobEvent& event);
  void Close();

 private:
  const size_t capacity_;
  absl::Mutex mu_;
  std::deque<v1::JobEvent> buffer_ ABSL_GUARDED_BY(mu_);
  bool overflowed_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

class EventHub {
 public:
  struct Options {
    // Live events buffered per watcher before it is switched to catching up
    // from the store.
    size_t watcher_buffer_events = 1024;
    // Live watchers one job may have; 0 = no limit. Each holds a stream and a
    // buffer, so an unbounded number lets one client exhaust the server.
    int max_watchers_per_job = 0;
  };
  explicit EventHub(const Options& options) : options_(options) {}

  // The subscription ends (is closed) when its last owner drops it.
  // RESOURCE_EXHAUSTED when the job has max_watchers_per_job live ones.
  absl::StatusOr<std::shared_ptr<Subscription>> Subscribe(
      const std::string& job_id);
  // Never blocks on a watcher: each buffer is touched under its own short lock.
  void Publish(const v1::JobEvent& event);
  // Wakes and closes every subscription (coordinator shutdown).
  void Shutdown();
  // Live watchers of a job (for tests and metrics).
  int WatcherCount(const std::string& job_id);

 private:
  Options options_;
  absl::Mutex mu_;
  std::map<std::string, std::vector<std::weak_ptr<Subscription>>> subs_
      ABSL_GUARDED_BY(mu_);
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
};

class JobWatcher {
 public:
  // Stored events of the job with sequence >= from, oldest first, at most
  // limit.
  using HistoryReader = std::function<absl::StatusOr<std::vector<v1::JobEvent>>(
      int64_t from, int limit)>;

  JobWatcher(std::shared_ptr<Subscription> subscription, HistoryReader reader,
             int64_t next_sequence)
      : sub_(std::move(subscription)),
        reader_(std::move(reader)),
        next_(next_sequence) {}

  // The event with the next sequence number, or nullopt when none arrived
  // within `timeout`.
  absl::StatusOr<std::optional<v1::JobEvent>> Next(absl::Duration timeout);
  // Sequence number the next event will have.
  int64_t next_sequence() const { return next_; }

 private:
  // Refills pending_ from the store; false when the store has nothing new.
  absl::StatusOr<bool> ReadStore();
  std::optional<v1::JobEvent> TakePending();

  // Events read from the store per query; bounds a watcher's memory while
  // catching up.
  static constexpr int kStoreBatch = 256;
  std::shared_ptr<Subscription> sub_;
  HistoryReader reader_;
  int64_t next_;
  std::deque<v1::JobEvent> pending_;
};

}  // namespace lemo::server

#endif  // LEMO_SERVER_CORE_EVENT_HUB_H_
