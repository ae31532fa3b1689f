#include "server/core/job_table.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/core/job_state.h"
#include "server/core/proto_time.h"

namespace lemo::server {
namespace {

constexpr int kDefaultPageSize = 50;
constexpr int kMaxPageSize = 500;

bool Matches(const v1::Job& job, const ListJobsQuery& q) {
  if (!q.states.empty() && std::find(q.states.begin(), q.states.end(),
                                     job.state()) == q.states.end()) {
    return false;
  }
  for (const auto& [key, value] : q.labels) {
    auto it = job.spec().labels().find(key);
    if (it == job.spec().labels().end() || it->second != value) return false;
  }
  return absl::StrContains(job.spec().display_name(), q.display_name_contains);
}

}  // namespace

absl::Status JobTable::Transition(v1::Job* job, v1::JobState to,
                                  const std::string& message,
                                  const v1::Failure* failure,
                                  std::vector<v1::JobEvent>* events) {
  if (job->state() == v1::JOB_STATE_UNSPECIFIED) {
    // A job is born QUEUED; any other first state would skip the queue's
    // bookkeeping (create time, FIFO position).
    if (to != v1::QUEUED) {
      return absl::FailedPreconditionError(
          absl::StrCat("job ", job->id(), " is new and cannot become ",
                       StateName(to), " (only QUEUED)"));
    }
  } else {
    LEMO_RETURN_IF_ERROR(CheckTransition(job->state(), to),
                         absl::StrCat("job ", job->id()));
  }
  v1::JobEvent e;
  v1::StateChange* sc = e.mutable_state_change();
  sc->set_from(job->state());
  sc->set_to(to);
  sc->set_message(message);
  if (failure != nullptr) *sc->mutable_failure() = *failure;
  job->set_state(to);
  if (to == v1::FAILED && failure != nullptr) {
    *job->mutable_failure() = *failure;
  }
  if (to == v1::RUNNING && !job->has_start_time()) {
    *job->mutable_start_time() = ToProtoTime(absl::Now());
  }
  if (IsTerminal(to)) *job->mutable_end_time() = ToProtoTime(absl::Now());
  if (IsTerminal(to) || to == v1::RESTARTING) job->clear_worker_ids();
  sc->set_restart_count(job->restart_count());
  sc->set_epoch(job->epoch());
  events->push_back(std::move(e));
  return absl::OkStatus();
}

absl::Status JobTable::Add(v1::Job job) {
  if (job.id().empty()) return absl::InvalidArgumentError("job.id: empty");
  if (jobs_.contains(job.id())) {
    return absl::AlreadyExistsError(
        absl::StrCat("job ", job.id(), " is already in the table"));
  }
  const int64_t position = next_position_++;
  position_[job.id()] = position;
  order_[position] = job.id();
  Index(job);
  Publish(job);
  std::string id = job.id();
  jobs_[id] = std::move(job);
  return absl::OkStatus();
}

absl::Status JobTable::Set(v1::Job job) {
  auto it = jobs_.find(job.id());
  if (it == jobs_.end()) {
    return absl::NotFoundError(
        absl::StrCat("job ", job.id(), " is not in the table"));
  }
  Index(job);
  Publish(job);
  it->second = std::move(job);
  return absl::OkStatus();
}

void JobTable::Remove(const std::string& job_id) {
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return;
  {
    absl::MutexLock lock(&view_mu_);
    view_.erase(job_id);
    if (remember_pruned_ > 0) {
      pruned_owner_[job_id] = it->second.owner();
      pruned_order_.push_back(job_id);
      while (pruned_order_.size() > remember_pruned_) {
        pruned_owner_.erase(pruned_order_.front());
        pruned_order_.pop_front();
      }
    }
  }
  if (auto f = finished_key_.find(job_id); f != finished_key_.end()) {
    finished_.erase(f->second);
    finished_key_.erase(f);
  }
  order_.erase(position_[job_id]);
  position_.erase(job_id);
  jobs_.erase(it);
}

void JobTable::Index(const v1::Job& job) {
  if (!IsTerminal(job.state())) return;
  FinishedKey key{FromProtoTime(job.end_time()), position_[job.id()]};
  auto [it, inserted] = finished_key_.try_emplace(job.id(), key);
  if (!inserted) {
    if (it->second == key) return;
    finished_.erase(it->second);
    it->second = key;
  }
  finished_[key] = job.id();
}

void JobTable::Publish(const v1::Job& job) {
  auto view = std::make_shared<const v1::Job>(job);
  absl::MutexLock lock(&view_mu_);
  view_[job.id()] = std::move(view);
  // A known id is no longer "pruned" (ids are random; a restored store could
  // bring one back).
  pruned_owner_.erase(job.id());
}

const v1::Job* JobTable::Find(const std::string& job_id) const {
  auto it = jobs_.find(job_id);
  return it == jobs_.end() ? nullptr : &it->second;
}

bool JobTable::Contains(const std::string& job_id) const {
  return jobs_.contains(job_id);
}

int64_t JobTable::Position(const std::string& job_id) const {
  auto it = position_.find(job_id);
  return it == position_.end() ? -1 : it->second;
}

std::shared_ptr<const v1::Job> JobTable::View(const std::string& job_id) const {
  absl::ReaderMutexLock lock(&view_mu_);
  auto it = view_.find(job_id);
  return it == view_.end() ? nullptr : it->second;
}

std::optional<std::string> JobTable::PrunedOwner(
    const std::string& job_id) const {
  absl::ReaderMutexLock lock(&view_mu_);
  auto it = pruned_owner_.find(job_id);
  if (it == pruned_owner_.end()) return std::nullopt;
  return it->second;
}

std::vector<const v1::Job*> JobTable::Waiting() const {
  std::vector<const v1::Job*> out;
  for (const auto& [position, id] : order_) {
    const v1::Job& job = jobs_.at(id);
    if (job.state() == v1::QUEUED || job.state() == v1::RESTARTING) {
      out.push_back(&job);
    }
  }
  return out;
}

absl::StatusOr<ListJobsPage> JobTable::List(
    const ListJobsQuery& query,
    const std::function<bool(const v1::Job&)>& visible) const {
  if (query.page_size < 0) {
    return absl::InvalidArgumentError("page_size: must be >= 0");
  }
  const int page_size = query.page_size == 0
                            ? kDefaultPageSize
                            : std::min<int>(query.page_size, kMaxPageSize);
  // The token is the submission position of the next (older) job to look at:
  // newest first, and stable while new jobs arrive or old ones are pruned.
  int64_t next = next_position_ - 1;
  if (!query.page_token.empty()) {
    if (!absl::SimpleAtoi(query.page_token, &next) || next < 0 ||
        next >= next_position_) {
      return absl::InvalidArgumentError(
          "page_token: not a token ListJobs returned");
    }
  }
  ListJobsPage page;
  // Positions at or below `next`, newest first.
  auto it = order_.upper_bound(next);
  while (it != order_.begin() &&
         static_cast<int>(page.jobs.size()) < page_size) {
    --it;
    const v1::Job& job = jobs_.at(it->second);
    if (visible(job) && Matches(job, query)) page.jobs.push_back(job);
  }
  if (it != order_.begin()) {
    page.next_page_token = absl::StrCat(std::prev(it)->first);
  }
  return page;
}

std::vector<std::string> JobTable::FinishedBeyond(size_t keep) const {
  std::vector<std::string> out;
  if (finished_.size() <= keep) return out;
  size_t excess = finished_.size() - keep;
  for (auto it = finished_.begin(); it != finished_.end() && excess > 0;
       ++it, --excess) {
    out.push_back(it->second);
  }
  return out;
}

}  // namespace lemo::server
