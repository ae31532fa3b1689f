#include "bench/control_plane/job_load.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "absl/random/random.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/control_plane/channels.h"
#include "grpcpp/client_context.h"

namespace lemo::bench {
namespace {

// What the calls in flight share with Run.
struct LoadState {
  absl::Mutex mu;
  LoadStats stats ABSL_GUARDED_BY(mu);
  std::vector<std::string> job_ids ABSL_GUARDED_BY(mu);
  int in_flight ABSL_GUARDED_BY(mu) = 0;
};

template <typename Request, typename Response>
struct Call {
  grpc::ClientContext ctx;
  Request request;
  Response response;
  absl::Time start;
};

void LogError(int64_t n, const char* what, const grpc::Status& s) {
  if (n < 5) {
    std::fprintf(stderr, "lemo-cp-bench: %s failed: %d %s\n", what,
                 static_cast<int>(s.error_code()), s.error_message().c_str());
  }
}

}  // namespace

Percentiles Summarize(std::vector<double> values) {
  Percentiles p;
  p.count = static_cast<int64_t>(values.size());
  if (values.empty()) return p;
  std::sort(values.begin(), values.end());
  auto rank = [&](double q) {
    // Nearest rank: the smallest value with at least q of the samples at or
    // below it.
    size_t i = static_cast<size_t>(std::ceil(q * values.size()));
    return values[std::min(values.size(), std::max<size_t>(i, 1)) - 1];
  };
  p.p50 = rank(0.50);
  p.p99 = rank(0.99);
  p.max = values.back();
  return p;
}

JobLoad::JobLoad(const LoadOptions& options,
                 std::shared_ptr<grpc::Channel> channel)
    : options_(options), stub_(v1::JobService::NewStub(channel)) {}

LoadStats JobLoad::Run(
    const std::function<void(const std::string&)>& on_submitted) {
  LoadState state;
  absl::BitGen gen;
  const int per_cycle = 1 + std::max(options_.gets_per_submit, 0);
  const absl::Duration period =
      absl::Seconds(1) / (std::max(options_.submit_rate, 1e-3) * per_cycle);
  const absl::Time start = absl::Now();
  const absl::Time end = start + options_.duration;
  for (int64_t k = 0;; ++k) {
    const absl::Time due = start + period * k;
    if (due >= end) break;
    absl::SleepFor(due - absl::Now());
    const bool submit = k % per_cycle == 0;
    std::string get_id;
    {
      absl::MutexLock lock(&state.mu);
      if (state.in_flight >= options_.max_in_flight) {
        ++state.stats.skipped;
        continue;
      }
      if (!submit) {
        if (state.job_ids.empty()) continue;  // Nothing to get yet.
        get_id =
            state.job_ids[absl::Uniform<size_t>(gen, 0u, state.job_ids.size())];
      }
      ++state.in_flight;
    }
    const auto deadline =
        absl::ToChronoTime(absl::Now() + options_.call_deadline);
    if (submit) {
      auto* call = new Call<v1::SubmitJobRequest, v1::Job>();
      *call->request.mutable_spec() = options_.spec;
      call->ctx.set_deadline(deadline);
      AddToken(&call->ctx, options_.token);
      call->start = absl::Now();
      stub_->async()->SubmitJob(
          &call->ctx, &call->request, &call->response,
          [call, &state, &on_submitted](grpc::Status s) {
            const double ms =
                absl::ToDoubleMilliseconds(absl::Now() - call->start);
            if (s.ok()) on_submitted(call->response.id());
            absl::MutexLock lock(&state.mu);
            if (s.ok()) {
              state.stats.submit_ms.push_back(ms);
              state.job_ids.push_back(call->response.id());
            } else {
              LogError(state.stats.submit_errors++, "SubmitJob", s);
            }
            --state.in_flight;
            delete call;
          });
    } else {
      auto* call = new Call<v1::GetJobRequest, v1::Job>();
      call->request.set_job_id(get_id);
      call->ctx.set_deadline(deadline);
      AddToken(&call->ctx, options_.token);
      call->start = absl::Now();
      stub_->async()->GetJob(
          &call->ctx, &call->request, &call->response,
          [call, &state](grpc::Status s) {
            const double ms =
                absl::ToDoubleMilliseconds(absl::Now() - call->start);
            absl::MutexLock lock(&state.mu);
            if (s.ok()) {
              state.stats.get_ms.push_back(ms);
            } else {
              LogError(state.stats.get_errors++, "GetJob", s);
            }
            --state.in_flight;
            delete call;
          });
    }
  }
  // Every call has a deadline, so this wait is bounded.
  absl::MutexLock lock(&state.mu);
  auto idle = [&state]() ABSL_SHARED_LOCKS_REQUIRED(state.mu) {
    return state.in_flight == 0;
  };
  state.mu.Await(absl::Condition(&idle));
  state.stats.wall_seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return std::move(state.stats);
}

v1::JobSpec BenchJobSpec(int64_t steps) {
  v1::JobSpec s;
  s.set_display_name("cp-bench");
  (*s.mutable_labels())["purpose"] = "bench";
  s.mutable_model()->set_path("build/demo/model");
  s.mutable_model()->set_dtype(v1::FP32);
  s.mutable_data()->set_path("bench/data/corpus.jsonl");
  s.mutable_data()->set_format(v1::JSONL);
  s.mutable_data()->set_tokenizer("byte");
  s.mutable_lora()->set_r(8);
  s.mutable_lora()->set_alpha(16);
  for (const char* m : {"q_proj", "k_proj", "v_proj", "o_proj"}) {
    s.mutable_lora()->add_target_modules(m);
  }
  s.mutable_lemo()->set_mode(v1::DENSE);
  s.mutable_optimizer()->set_lr(2e-3);
  s.set_seq_len(256);
  s.set_steps(steps);
  s.set_batch_size(2);
  s.set_grad_accum(1);
  s.mutable_resources()->set_world_size(1);
  s.mutable_resources()->set_device_kind(v1::CPU);
  s.set_max_restarts(2);
  return s;
}

}  // namespace lemo::bench
