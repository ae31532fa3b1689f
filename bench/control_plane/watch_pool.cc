#include "bench/control_plane/watch_pool.h"

#include <algorithm>
#include <cstdio>

#include "bench/control_plane/channels.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/client_callback.h"

namespace lemo::bench {

// One WatchJob call; reports its end to the pool, which owns it.
class WatchCall : public grpc::ClientReadReactor<v1::JobEvent> {
 public:
  WatchCall(WatchPool* pool, int slot, std::string job_id,
            const std::string& token)
      : pool_(pool), slot_(slot), job_id_(std::move(job_id)) {
    AddToken(&ctx_, token);
    request_.set_job_id(job_id_);
    request_.set_history(v1::WatchJobRequest::ALL);
  }

  void Start(v1::JobService::Stub* stub) {
    stub->async()->WatchJob(&ctx_, &request_, this);
    StartRead(&event_);
    StartCall();
  }
  void Cancel() { ctx_.TryCancel(); }

 private:
  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows.
    pool_->OnEvent();
    StartRead(&event_);
  }
  void OnDone(const grpc::Status& status) override {
    pool_->OnCallDone(slot_, job_id_, status.ok(),
                      status.ok() ? "" : status.error_message());
  }

  WatchPool* const pool_;
  const int slot_;
  const std::string job_id_;
  grpc::ClientContext ctx_;
  v1::WatchJobRequest request_;
  v1::JobEvent event_;
};

WatchPool::WatchPool(const WatchPoolOptions& options)
    : token_(options.token), max_per_job_(std::max(options.max_per_job, 1)) {
  absl::MutexLock lock(&mu_);
  slots_.resize(static_cast<size_t>(std::max(options.watchers, 0)));
  for (Slot& s : slots_) {
    s.channel = OwnConnection(options.target, options.ca_pem);
    s.stub = v1::JobService::NewStub(s.channel);
  }
}

WatchPool::~WatchPool() { Stop(); }

void WatchPool::Open(int slot, const std::string& job_id) {
  WatchCall* call;
  v1::JobService::Stub* stub;
  {
    absl::MutexLock lock(&mu_);
    // Checked here, under the lock that also counts the call: two submits
    // may pick the same idle slot, and several ended watchers the same job.
    auto watching = per_job_.find(job_id);
    if (stopping_ || slots_[slot].call != nullptr ||
        (watching != per_job_.end() && watching->second >= max_per_job_)) {
      return;
    }
    ++per_job_[job_id];
    calls_.push_back(std::make_unique<WatchCall>(this, slot, job_id, token_));
    call = calls_.back().get();
    slots_[slot].call = call;
    stub = slots_[slot].stub.get();
    peak_open_ = std::max(peak_open_, ++open_);
    ++opened_;
  }
  call->Start(stub);
}

void WatchPool::OnSubmitted(const std::string& job_id) {
  int idle = -1;
  {
    absl::MutexLock lock(&mu_);
    newest_job_ = job_id;
    for (size_t i = 0; i < slots_.size() && idle < 0; ++i) {
      if (slots_[i].call == nullptr) idle = static_cast<int>(i);
    }
  }
  if (idle >= 0) Open(idle, job_id);
}

void WatchPool::OnCallDone(int slot, const std::string& job_id, bool ok,
                           const std::string& error) {
  std::string next;
  {
    absl::MutexLock lock(&mu_);
    slots_[slot].call = nullptr;
    if (--per_job_[job_id] <= 0) per_job_.erase(job_id);
    --open_;
    if (ok) {
      ++finished_;
    } else if (!stopping_) {
      if (errors_++ < 5) {
        std::fprintf(stderr, "lemo-cp-bench: watch of %s failed: %s\n",
                     job_id.c_str(), error.c_str());
      }
    }
    // The newest job, unless it is the one that just ended (then the slot
    // waits for the next submit).
    if (!stopping_ && newest_job_ != job_id) next = newest_job_;
  }
  // Starting a call from a reaction is allowed: it does not block.
  if (!next.empty()) Open(slot, next);
}

void WatchPool::Stop() {
  std::vector<WatchCall*> open;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (Slot& s : slots_) {
      if (s.call != nullptr) open.push_back(s.call);
    }
  }
  // Outside mu_: a cancelled call may finish inline and call OnCallDone.
  for (WatchCall* c : open) c->Cancel();
  absl::MutexLock lock(&mu_);
  auto none_open = [this]()
                       ABSL_SHARED_LOCKS_REQUIRED(mu_) { return open_ == 0; };
  mu_.Await(absl::Condition(&none_open));
}

WatchStats WatchPool::stats() {
  absl::MutexLock lock(&mu_);
  WatchStats s;
  s.opened = opened_;
  s.finished = finished_;
  s.events = events_.load();
  s.errors = errors_;
  s.peak_open = peak_open_;
  return s;
}

}  // namespace lemo::bench
