#include "server/core/event_hub.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace lemo::server {

std::optional<v1::JobEvent> Subscription::Pop(absl::Duration timeout,
                                              bool* overflowed) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return closed_ || overflowed_ || !buffer_.empty();
  };
  mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  *overflowed = overflowed_;
  overflowed_ = false;
  if (buffer_.empty()) return std::nullopt;
  v1::JobEvent e = std::move(buffer_.front());
  buffer_.pop_front();
  return e;
}

void Subscription::Push(const v1::JobEvent& event) {
  absl::MutexLock lock(&mu_);
  if (closed_) return;
  if (buffer_.size() >= capacity_) {
    // Dropping the whole buffer (not just the oldest event) keeps the watcher's
    // catch-up a single store read instead of a trickle of gap repairs.
    buffer_.clear();
    overflowed_ = true;
  }
  buffer_.push_back(event);
}

void Subscription::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
}

absl::StatusOr<std::shared_ptr<Subscription>> EventHub::Subscribe(
    const std::string& job_id) {
  auto sub = std::make_shared<Subscription>(options_.watcher_buffer_events);
  absl::MutexLock lock(&mu_);
  if (shutdown_) {
    sub->Close();
    return sub;
  }
  std::vector<std::weak_ptr<Subscription>>& list = subs_[job_id];
  // Watchers that ended are pruned here too, so the count is of live ones.
  list.erase(std::remove_if(list.begin(), list.end(),
                            [](const std::weak_ptr<Subscription>& w) {
                              return w.expired();
                            }),
             list.end());
  if (options_.max_watchers_per_job > 0 &&
      static_cast<int>(list.size()) >= options_.max_watchers_per_job) {
    return absl::ResourceExhaustedError(
        absl::StrCat("job ", job_id, " has ", list.size(),
                     " watchers already, the most the coordinator allows "
                     "(--max-watchers-per-job)"));
  }
  list.push_back(sub);
  return sub;
}

void EventHub::Publish(const v1::JobEvent& event) {
  std::vector<std::shared_ptr<Subscription>> live;
  {
    absl::MutexLock lock(&mu_);
    auto it = subs_.find(event.job_id());
    if (it == subs_.end()) return;
    auto& list = it->second;
    for (auto w = list.begin(); w != list.end();) {
      if (auto s = w->lock()) {
        live.push_back(std::move(s));
        ++w;
      } else {
        w = list.erase(w);
      }
    }
    if (list.empty()) subs_.erase(it);
  }
  for (const auto& s : live) s->Push(event);
}

void EventHub::Shutdown() {
  absl::MutexLock lock(&mu_);
  shutdown_ = true;
  for (auto& [job, list] : subs_) {
    for (auto& w : list) {
      if (auto s = w.lock()) s->Close();
    }
  }
  subs_.clear();
}

int EventHub::WatcherCount(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  auto it = subs_.find(job_id);
  if (it == subs_.end()) return 0;
  int n = 0;
  for (auto& w : it->second) n += w.expired() ? 0 : 1;
  return n;
}

std::optional<v1::JobEvent> JobWatcher::TakePending() {
  while (!pending_.empty()) {
    v1::JobEvent e = std::move(pending_.front());
    pending_.pop_front();
    // pending_ holds only store reads, which answer from next_ in order: an
    // event past next_ means the ones between were dropped (the bound on
    // events per job), so they are skipped, or the watcher would wait for
    // them for ever.
    if (e.sequence() >= next_) {
      next_ = e.sequence() + 1;
      return e;
    }
  }
  return std::nullopt;
}

absl::StatusOr<bool> JobWatcher::ReadStore() {
  LEMO_ASSIGN_OR_RETURN(std::vector<v1::JobEvent> events,
                        reader_(next_, kStoreBatch), "reading job history");
  pending_.assign(events.begin(), events.end());
  return !pending_.empty();
}

absl::StatusOr<std::optional<v1::JobEvent>> JobWatcher::Next(
    absl::Duration timeout) {
  if (auto e = TakePending()) return e;
  // Anything stored but not yet seen comes from the store: history on the first
  // call, and the events a full buffer dropped.
  LEMO_ASSIGN_OR_RETURN(bool more, ReadStore());
  if (more) return TakePending();
  absl::Time deadline = absl::Now() + timeout;
  while (true) {
    bool overflowed = false;
    std::optional<v1::JobEvent> e =
        sub_->Pop(deadline - absl::Now(), &overflowed);
    if (overflowed) {
      LEMO_ASSIGN_OR_RETURN(bool refill, ReadStore());
      if (refill) return TakePending();
    }
    if (!e.has_value()) return std::optional<v1::JobEvent>();
    if (e->sequence() < next_) continue;  // Already sent from the store.
    if (e->sequence() == next_) {
      ++next_;
      return e;
    }
    // A gap: events published before we subscribed, or dropped. The store has
    // them.
    LEMO_ASSIGN_OR_RETURN(bool refill, ReadStore());
    if (refill) return TakePending();
    if (absl::Now() >= deadline) return std::optional<v1::JobEvent>();
  }
}

}  // namespace lemo::server
