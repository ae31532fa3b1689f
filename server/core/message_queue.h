// A closable multi-producer queue: the coordinator pushes CoordinatorMessages
// for a worker, the worker's stream writer pops them. Pushing never blocks (a
// worker gets a handful of Assign and Cancel messages, so the queue stays
// short).
//
//   auto q = std::make_shared<MessageQueue<int>>();
//   q->Push(1);
//   while (std::optional<int> v = q->Pop()) Use(*v);   // ends once closed and
//   drained
#ifndef LEMO_SERVER_CORE_MESSAGE_QUEUE_H_
#define LEMO_SERVER_CORE_MESSAGE_QUEUE_H_

#include <deque>
#include <optional>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace lemo::server {

template <typename T>
class MessageQueue {
 public:
  // False (and dropped) once closed.
  bool Push(T value) {
    absl::MutexLock lock(&mu_);
    if (closed_) return false;
    items_.push_back(std::move(value));
    return true;
  }

  // Waits for an item; nullopt once closed and drained, or after `timeout`.
  std::optional<T> Pop(absl::Duration timeout = absl::InfiniteDuration()) {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return closed_ || !items_.empty();
    };
    mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
    if (items_.empty()) return std::nullopt;
    T value = std::move(items_.front());
    items_.pop_front();
    return value;
  }

  void Close() {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }

  bool closed() const {
    absl::MutexLock lock(&mu_);
    return closed_;
  }

 private:
  mutable absl::Mutex mu_;
  std::deque<T> items_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace lemo::server

#endif  // LEMO_SERVER_CORE_MESSAGE_QUEUE_H_
