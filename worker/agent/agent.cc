#include "worker/agent/agent.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "common/build_info.h"
#include "common/status_macros.h"
#include "common/wire_limits.h"
#include "google/protobuf/util/time_util.h"
#include "proto/status/grpc_status.h"
#include "worker/agent/task.h"
#include "worker/engine/runtime/device_memory.h"

namespace lemo::worker {
namespace {

// Job-scoped messages kept while the coordinator is unreachable: a few minutes
// of steps.
constexpr size_t kMaxBacklog = 20000;

void Logf(const std::string& text) {
  std::fprintf(stderr, "lemo-worker: %s\n", text.c_str());
}

std::string HostName() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "localhost";
  return buf;
}

int64_t HostMemoryBytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<int64_t>(pages) * page : 0;
}

// The device as Register and Heartbeat describe it.
v1::Device WireDevice(const torch::Device& device) {
  v1::Device d;
  d.set_kind(device.is_cuda() ? v1::CUDA : v1::CPU);
  d.set_index(device.is_cuda() ? device.index() : 0);
  d.set_name("cpu");
  d.set_total_memory_bytes(HostMemoryBytes());
  for (const engine::DeviceInfo& info : engine::ListDevices()) {
    if (info.name == device.str()) {
      d.set_name(info.description);
      d.set_total_memory_bytes(info.total_memory_bytes);
    }
  }
  d.set_free_memory_bytes(d.total_memory_bytes());
  return d;
}

}  // namespace

client::ChannelOptions WorkerChannelOptions() {
  client::ChannelOptions options;
  options.flag_names.target = "--coordinator";
  options.flag_names.ca_file = "--tls-ca";
  options.flag_names.cert_file = "--tls-cert";
  options.flag_names.key_file = "--tls-key";
  options.max_message_bytes = kWorkerMaxMessageBytes;
  options.keepalive_time = absl::Seconds(20);
  options.max_reconnect_backoff = absl::Seconds(1);
  return options;
}

absl::StatusOr<std::unique_ptr<Agent>> Agent::Create(
    const AgentOptions& options_in) {
  AgentOptions options = options_in;
  LEMO_ASSIGN_OR_RETURN(torch::Device device,
                        engine::ParseDevice(options.device), "--device");
  std::string worker_id = options.worker_id;
  if (worker_id.empty()) {
    worker_id = absl::StrCat(HostName(), "-",
                             absl::StrReplaceAll(device.str(), {{":", ""}}));
  }
  if (options.work_dir.empty()) {
    options.work_dir =
        (std::filesystem::temp_directory_path() / ("lemo-worker-" + worker_id))
            .string();
  }
  std::error_code ec;
  std::filesystem::create_directories(options.work_dir, ec);
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--work-dir ", options.work_dir, ": cannot create: ", ec.message()));
  }
  if (options.heartbeat_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--heartbeat-interval: must be > 0");
  }
  LEMO_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                        client::CreateCoordinatorChannel(options.channel));
  LEMO_ASSIGN_OR_RETURN(std::unique_ptr<WorkerMetrics> metrics,
                        WorkerMetrics::Create(options.metrics_listen));
  v1::Device wire = WireDevice(device);
  if (options.device_memory_bytes > 0) {
    wire.set_total_memory_bytes(options.device_memory_bytes);
    wire.set_free_memory_bytes(options.device_memory_bytes);
  }
  metrics->SetDeviceMemoryBytes(wire.total_memory_bytes());
  if (options.collective_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--collective-timeout: must be > 0");
  }
  if (options.node.empty()) options.node = HostName();
  if (options.rendezvous_host.empty()) options.rendezvous_host = HostName();
  // Bound once, for the worker's life: the address Register advertises is
  // never taken by someone else between two jobs, and each job's keys live
  // under their own job/epoch prefix (comm::StoreServer).
  comm::StoreServerOptions store_options;
  store_options.port = options.rendezvous_port;
  store_options.timeout =
      absl::ToChronoMilliseconds(options.collective_timeout);
  LEMO_ASSIGN_OR_RETURN(std::unique_ptr<comm::StoreServer> store,
                        comm::StoreServer::Create(store_options),
                        "--rendezvous-port");
  return std::unique_ptr<Agent>(
      new Agent(options, std::move(worker_id), device.str(), std::move(wire),
                std::move(channel), std::move(metrics), std::move(store)));
}

Agent::Agent(const AgentOptions& options, std::string worker_id,
             std::string device, v1::Device wire_device,
             std::shared_ptr<grpc::Channel> channel,
             std::unique_ptr<WorkerMetrics> metrics,
             std::unique_ptr<comm::StoreServer> store)
    : options_(options),
      worker_id_(std::move(worker_id)),
      device_(std::move(device)),
      wire_device_(std::move(wire_device)),
      channel_(std::move(channel)),
      stub_(v1::WorkerService::NewStub(channel_)),
      metrics_(std::move(metrics)),
      heartbeat_interval_(options.heartbeat_interval),
      store_(std::move(store)),
      rendezvous_address_(
          absl::StrCat(options.rendezvous_host, ":", store_->port())) {}

Agent::~Agent() {
  Shutdown();
  task_.reset();
}

void Agent::Shutdown() {
  std::lock_guard<std::mutex> lock(mu_);
  shutdown_ = true;
  if (context_ != nullptr) context_->TryCancel();
  cv_.notify_all();
}

absl::Status Agent::Run() {
  absl::Duration backoff = absl::Milliseconds(100);
  Logf(absl::StrCat("connecting to ", options_.channel.target, " as ",
                    worker_id_));
  while (true) {
    bool welcomed = false;
    absl::Status session = RunSession(&welcomed);
    metrics_->SetConnected(false);
    std::unique_lock<std::mutex> lock(mu_);
    if (shutdown_) break;
    if (welcomed) backoff = absl::Milliseconds(100);
    Logf(absl::StrCat("stream to ", options_.channel.target, " ended (",
                      session.ToString(), "); reconnecting in ",
                      absl::FormatDuration(backoff)));
    cv_.wait_for(lock, absl::ToChronoMilliseconds(backoff),
                 [this] { return shutdown_; });
    if (shutdown_) break;
    backoff = std::min(backoff * 2, options_.max_reconnect_backoff);
  }
  if (task_ != nullptr) {
    if (!task_->done()) {
      Logf(absl::StrCat("stopping job ", task_->job_id(), " at step ",
                        task_->step(), "; the coordinator will reschedule it"));
    }
    task_->Stop();
    task_->Join();
    task_.reset();
  }
  return absl::OkStatus();
}

v1::WorkerMessage Agent::RegisterMessage() {
  v1::WorkerMessage msg;
  v1::Register* reg = msg.mutable_register_();
  reg->set_worker_id(worker_id_);
  reg->set_host(options_.node);
  *reg->add_devices() = wire_device_;
  reg->set_host_memory_bytes(HostMemoryBytes());
  reg->set_rendezvous_address(rendezvous_address_);
  reg->set_version(VersionLine("lemo-worker"));
  options_.paths.FillRegister(reg);
  v1::RunningTask running;
  if (task_ != nullptr && !task_->done()) {
    running.set_job_id(task_->job_id());
    running.set_epoch(task_->epoch());
    running.set_rank(task_->rank());
    running.set_step(task_->step());
  } else {
    // A task that ended while the coordinator was away is still running as far
    // as it knows; its final status follows the Welcome.
    std::lock_guard<std::mutex> lock(mu_);
    for (const v1::WorkerMessage& m : backlog_) {
      if (m.has_task_status() && m.task_status().state() != v1::RUNNING) {
        running.set_job_id(m.task_status().job_id());
        running.set_epoch(m.task_status().epoch());
        running.set_step(m.task_status().step());
        if (task_ != nullptr) running.set_rank(task_->rank());
      }
    }
  }
  if (!running.job_id().empty()) *reg->mutable_running_task() = running;
  return msg;
}

absl::Status Agent::RunSession(bool* welcomed) {
  grpc::ClientContext ctx;
  client::AddBearerToken(&ctx, options_.channel.token);
  // Wait for the channel to (re)connect instead of failing while it is in
  // TRANSIENT_FAILURE: the stream then opens as soon as a restarted
  // coordinator listens, before its --worker-timeout gives up on this worker.
  ctx.set_wait_for_ready(true);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shutdown_) return absl::OkStatus();
    context_ = &ctx;
  }
  auto stream = stub_->Connect(&ctx);
  // Nothing else writes until stream_ is published after the Welcome.
  v1::CoordinatorMessage in;
  const bool registered = stream->Write(RegisterMessage()) && stream->Read(&in);
  int64_t session = 0;
  std::thread heartbeats;
  if (registered && in.has_welcome()) {
    *welcomed = true;
    std::lock_guard<std::mutex> lock(mu_);
    stream_ = stream.get();
    session = ++session_;
    if (in.welcome().has_heartbeat_interval()) {
      const int64_t ms =
          google::protobuf::util::TimeUtil::DurationToMilliseconds(
              in.welcome().heartbeat_interval());
      if (ms > 0) heartbeat_interval_ = absl::Milliseconds(ms);
    }
    Logf(absl::StrCat("registered with ", options_.channel.target, " as ",
                      worker_id_, " (", wire_device_.name(), ")"));
  } else if (registered) {
    ctx.TryCancel();
  }
  if (*welcomed) {
    metrics_->SetConnected(true);
    heartbeats = std::thread([this, session] { HeartbeatLoop(session); });
    Flush();
    while (stream->Read(&in)) {
      if (in.has_assign()) HandleAssign(in.assign());
      if (in.has_cancel()) HandleCancel(in.cancel());
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    stream_ = nullptr;
    context_ = nullptr;
    ++session_;
    cv_.notify_all();
  }
  if (heartbeats.joinable()) heartbeats.join();
  std::lock_guard<std::mutex> write_lock(write_mu_);
  absl::Status status = FromGrpcStatus(stream->Finish());
  if (status.ok() && !*welcomed) {
    return absl::UnavailableError(
        "the coordinator closed the stream before Welcome");
  }
  return status;
}

void Agent::HeartbeatLoop(int64_t session) {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait_for(lock, absl::ToChronoMilliseconds(heartbeat_interval_),
                 [&] { return shutdown_ || session_ != session; });
    if (shutdown_ || session_ != session) return;
    v1::WorkerMessage msg;
    *msg.mutable_heartbeat()->mutable_time() =
        google::protobuf::util::TimeUtil::GetCurrentTime();
    *msg.mutable_heartbeat()->add_devices() = wire_device_;
    lock.unlock();
    Send(msg);
    lock.lock();
  }
}

bool Agent::Send(const v1::WorkerMessage& msg) {
  std::lock_guard<std::mutex> write_lock(write_mu_);
  grpc::ClientReaderWriter<v1::WorkerMessage, v1::CoordinatorMessage>* stream;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stream = stream_;
  }
  return stream != nullptr && stream->Write(msg);
}

void Agent::Deliver(const v1::WorkerMessage& msg) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    backlog_.push_back(msg);
    if (backlog_.size() > kMaxBacklog) {
      // Never the front: Flush may be writing it right now.
      auto victim = std::find_if(
          std::next(backlog_.begin()), backlog_.end(),
          [](const v1::WorkerMessage& m) { return !m.has_task_status(); });
      if (victim != backlog_.end()) backlog_.erase(victim);
    }
  }
  Flush();
}

void Agent::Flush() {
  std::lock_guard<std::mutex> flush_lock(flush_mu_);
  while (true) {
    v1::WorkerMessage next;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (backlog_.empty()) return;
      next = backlog_.front();
    }
    if (!Send(next)) return;
    std::lock_guard<std::mutex> lock(mu_);
    backlog_.pop_front();
  }
}

TaskEnvironment Agent::MakeTaskEnvironment() {
  TaskEnvironment env;
  env.stub = stub_.get();
  env.token = options_.channel.token;
  env.worker_id = worker_id_;
  // Create() parsed it already.
  env.device = engine::ParseDevice(device_).value();
  env.work_dir = options_.work_dir;
  env.metrics = metrics_.get();
  env.send = [this](const v1::WorkerMessage& m) { Deliver(m); };
  env.transfer_retry_for = options_.transfer_retry_for;
  env.rendezvous_host = options_.rendezvous_host;
  env.collective_timeout = options_.collective_timeout;
  env.paths = options_.paths;
  return env;
}

void Agent::HandleAssign(const v1::Assign& assign) {
  auto known = epochs_.find(assign.job_id());
  if (known != epochs_.end() && assign.epoch() <= known->second) {
    Logf(absl::StrCat("ignoring stale Assign of ", assign.job_id(), " epoch ",
                      assign.epoch(), " (at epoch ", known->second, ")"));
    return;
  }
  epochs_[assign.job_id()] = assign.epoch();
  if (task_ != nullptr && !task_->done()) {
    // The coordinator no longer counts on the old task; it gets no status.
    Logf(absl::StrCat("job ", task_->job_id(), " epoch ", task_->epoch(),
                      " superseded by ", assign.job_id(), " epoch ",
                      assign.epoch()));
    task_->Stop();
  }
  task_.reset();
  Logf(absl::StrCat(
      "assigned ", assign.job_id(), " epoch ", assign.epoch(),
      assign.has_resume()
          ? absl::StrCat(" resuming from ", assign.resume().checkpoint_id())
          : ""));
  task_ = Task::Start(assign, MakeTaskEnvironment());
}

void Agent::HandleCancel(const v1::Cancel& cancel) {
  if (task_ != nullptr && !task_->done() &&
      task_->job_id() == cancel.job_id() && task_->epoch() == cancel.epoch()) {
    Logf(absl::StrCat("cancelling ", cancel.job_id(), " epoch ", cancel.epoch(),
                      cancel.reason().empty() ? "" : ": " + cancel.reason()));
    task_->Cancel();
    return;
  }
  if (epochs_.count(cancel.job_id()) == 0) {
    // Never ran here (e.g. the Assign was lost in a coordinator restart):
    // confirm at once so the job does not wait in CANCELLING.
    v1::WorkerMessage msg;
    msg.mutable_task_status()->set_job_id(cancel.job_id());
    msg.mutable_task_status()->set_epoch(cancel.epoch());
    msg.mutable_task_status()->set_state(v1::CANCELLED);
    Deliver(msg);
    return;
  }
  Logf(absl::StrCat("ignoring Cancel of ", cancel.job_id(), " epoch ",
                    cancel.epoch(), ": not running that epoch"));
}

}  // namespace lemo::worker
