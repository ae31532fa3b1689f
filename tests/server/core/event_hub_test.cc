// Event fan-out: history then live with no gap or duplicate, many watchers, and
// a slow watcher that lags (catching up from the store) without blocking the
// publisher or losing events. To add a case: a TEST with a FakeLog standing in
// for the store.
#include "server/core/event_hub.h"

#include <thread>

#include "absl/synchronization/mutex.h"
#include "tests/testing/status_matchers.h"

namespace lemo::server {
namespace {

using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;

// The store's events table in memory: append, then publish, as the coordinator
// does.
class FakeLog {
 public:
  explicit FakeLog(EventHub* hub) : hub_(hub) {}
  void Append(int n) {
    for (int i = 0; i < n; ++i) {
      v1::JobEvent e;
      {
        absl::MutexLock lock(&mu_);
        e.set_job_id("job");
        e.set_sequence(static_cast<int64_t>(events_.size()) + 1);
        e.mutable_metric()->set_step(e.sequence());
        events_.push_back(e);
      }
      hub_->Publish(e);
    }
  }
  JobWatcher::HistoryReader Reader() {
    return [this](int64_t from,
                  int limit) -> absl::StatusOr<std::vector<v1::JobEvent>> {
      absl::MutexLock lock(&mu_);
      std::vector<v1::JobEvent> out;
      for (const auto& e : events_) {
        if (e.sequence() >= from && static_cast<int>(out.size()) < limit)
          out.push_back(e);
      }
      return out;
    };
  }

 private:
  EventHub* hub_;
  absl::Mutex mu_;
  std::vector<v1::JobEvent> events_;
};

// Reads until `count` events arrived or a read times out; returns their
// sequence numbers.
std::vector<int64_t> Drain(JobWatcher& w, int count) {
  std::vector<int64_t> seqs;
  while (static_cast<int>(seqs.size()) < count) {
    auto e = w.Next(absl::Seconds(2));
    if (!e.ok() || !e->has_value()) break;
    seqs.push_back((*e)->sequence());
  }
  return seqs;
}

std::vector<int64_t> Range(int64_t from, int64_t to) {
  std::vector<int64_t> out;
  for (int64_t i = from; i <= to; ++i) out.push_back(i);
  return out;
}

TEST(EventHub, LateWatcherGetsHistoryThenLive) {
  EventHub hub({});
  FakeLog log(&hub);
  log.Append(5);
  JobWatcher w(*hub.Subscribe("job"), log.Reader(), 1);
  EXPECT_EQ(Drain(w, 5), Range(1, 5));
  log.Append(3);
  EXPECT_EQ(Drain(w, 3), Range(6, 8));
}

TEST(EventHub, FromSequenceSkipsOlderEvents) {
  EventHub hub({});
  FakeLog log(&hub);
  log.Append(10);
  JobWatcher w(*hub.Subscribe("job"), log.Reader(), 8);
  EXPECT_EQ(Drain(w, 3), Range(8, 10));
}

TEST(EventHub, NextTimesOutWhenNothingHappens) {
  EventHub hub({});
  FakeLog log(&hub);
  JobWatcher w(*hub.Subscribe("job"), log.Reader(), 1);
  LEMO_ASSERT_OK_AND_ASSIGN(auto e, w.Next(absl::Milliseconds(20)));
  EXPECT_FALSE(e.has_value());
}

TEST(EventHub, ManyWatchersEachSeeEverythingInOrder) {
  EventHub hub({});
  FakeLog log(&hub);
  std::vector<std::unique_ptr<JobWatcher>> watchers;
  for (int i = 0; i < 8; ++i) {
    watchers.push_back(
        std::make_unique<JobWatcher>(*hub.Subscribe("job"), log.Reader(), 1));
  }
  EXPECT_EQ(hub.WatcherCount("job"), 8);
  std::thread producer([&] { log.Append(200); });
  for (auto& w : watchers) EXPECT_EQ(Drain(*w, 200), Range(1, 200));
  producer.join();
}

TEST(EventHub, SlowWatcherLagsButLosesNothingAndBlocksNobody) {
  EventHub hub(EventHub::Options{/*watcher_buffer_events=*/4});
  FakeLog log(&hub);
  JobWatcher slow(*hub.Subscribe("job"), log.Reader(), 1);
  JobWatcher fast(*hub.Subscribe("job"), log.Reader(), 1);
  // 100 events with nobody reading: the publisher must not block on the 4-event
  // buffers.
  log.Append(100);
  EXPECT_EQ(Drain(fast, 100), Range(1, 100));
  EXPECT_EQ(Drain(slow, 100), Range(1, 100));
  log.Append(2);
  EXPECT_EQ(Drain(slow, 2), Range(101, 102));
}

TEST(EventHub, DroppedWatchersAreForgotten) {
  EventHub hub({});
  FakeLog log(&hub);
  { JobWatcher w(*hub.Subscribe("job"), log.Reader(), 1); }
  log.Append(1);
  EXPECT_EQ(hub.WatcherCount("job"), 0);
}

TEST(EventHub, WatchersPerJobAreCapped) {
  // One client must not exhaust the server with streams on one job; other
  // jobs keep their own allowance, and an ended watcher frees its place.
  EventHub::Options options;
  options.max_watchers_per_job = 2;
  EventHub hub(options);
  LEMO_ASSERT_OK_AND_ASSIGN(std::shared_ptr<Subscription> first,
                            hub.Subscribe("job"));
  LEMO_ASSERT_OK_AND_ASSIGN(std::shared_ptr<Subscription> second,
                            hub.Subscribe("job"));
  EXPECT_THAT(hub.Subscribe("job"),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       "job job has 2 watchers already, the most the "
                       "coordinator allows (--max-watchers-per-job)"));
  EXPECT_THAT(hub.Subscribe("other-job"), IsOk());
  first.reset();
  EXPECT_THAT(hub.Subscribe("job"), IsOk());
  EXPECT_EQ(hub.WatcherCount("job"), 1);  // the last one was dropped at once
}

}  // namespace
}  // namespace lemo::server
