#include "client/output.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "client/progress.h"
#include "client/table.h"
#include "client/yaml_json.h"
#include "google/protobuf/util/json_util.h"

namespace lemo::client {
namespace {

absl::Time ToTime(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

bool IsSet(const google::protobuf::Timestamp& t) {
  return t.seconds() != 0 || t.nanos() != 0;
}

std::string StateText(const v1::Job& job) {
  std::string state = v1::JobState_Name(job.state());
  if (job.state() == v1::FAILED &&
      job.failure().reason() != v1::FAILURE_REASON_UNSPECIFIED) {
    absl::StrAppend(&state, "(", v1::FailureReason_Name(job.failure().reason()),
                    ")");
  }
  return state;
}

absl::string_view StateShort(v1::JobState state) {
  return v1::JobState_IsValid(state) ? v1::JobState_Name(state)
                                     : absl::string_view("?");
}

std::string Structured(const google::protobuf::Message& message,
                       OutputFormat format) {
  return format == OutputFormat::kJson ? MessageToJson(message)
                                       : MessageToYaml(message);
}

Table JobTable() {
  return Table({"ID", "NAME", "STATE", "STEP", "LOSS", "RESTARTS", "AGE"});
}

void AddJobRow(Table& table, const v1::Job& job, absl::Time now) {
  const bool has_loss =
      job.has_latest_metrics() && job.latest_metrics().step() > 0;
  table.AddRow(
      {job.id(), job.spec().display_name(), StateText(job),
       absl::StrCat(job.current_step(), "/", job.spec().steps()),
       has_loss ? absl::StrFormat("%.4f", job.latest_metrics().loss()) : "-",
       absl::StrCat(job.restart_count()), FormatAge(job.create_time(), now)});
}

std::string DeviceText(const v1::WorkerInfo& worker) {
  std::vector<std::string> parts;
  for (const v1::Device& d : worker.devices()) {
    std::string kind =
        d.kind() == v1::CUDA ? absl::StrCat("cuda:", d.index()) : "cpu";
    parts.push_back(d.name().empty() || d.name() == "cpu"
                        ? kind
                        : absl::StrCat(kind, " ", d.name()));
  }
  return parts.empty() ? "-" : absl::StrJoin(parts, ", ");
}

int64_t DeviceMemory(const v1::WorkerInfo& worker) {
  int64_t total = 0;
  for (const v1::Device& d : worker.devices()) total += d.total_memory_bytes();
  return total;
}

}  // namespace

absl::StatusOr<OutputFormat> ParseOutputFormat(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  if (lower == "table") return OutputFormat::kTable;
  if (lower == "json") return OutputFormat::kJson;
  if (lower == "yaml" || lower == "yml") return OutputFormat::kYaml;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown output format \"", name, "\"; use table, json or yaml"));
}

std::string MessageToJson(const google::protobuf::Message& message,
                          bool pretty) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = pretty;
  options.always_print_primitive_fields = true;
  std::string out;
  // Printing a valid message cannot fail (no Any types in the API).
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  if (out.empty() || out.back() != '\n') out.push_back('\n');
  return out;
}

std::string MessageToYaml(const google::protobuf::Message& message) {
  return JsonToYaml(
      nlohmann::json::parse(MessageToJson(message, /*pretty=*/false)));
}

std::string FormatAge(const google::protobuf::Timestamp& time, absl::Time now) {
  if (!IsSet(time)) return "-";
  const int64_t s =
      std::max<int64_t>(0, absl::ToInt64Seconds(now - ToTime(time)));
  if (s < 120) return absl::StrCat(s, "s");
  if (s < 2 * 3600) return absl::StrCat(s / 60, "m");
  if (s < 2 * 86400) return absl::StrCat(s / 3600, "h");
  return absl::StrCat(s / 86400, "d");
}

std::string FormatJob(const v1::Job& job, OutputFormat format, absl::Time now) {
  if (format != OutputFormat::kTable) return Structured(job, format);
  Table table = JobTable();
  AddJobRow(table, job, now);
  std::string out = table.Render();
  if (job.state() == v1::FAILED) {
    absl::StrAppend(&out,
                    "failure: ", v1::FailureReason_Name(job.failure().reason()),
                    ": ", job.failure().message(), "\n");
  }
  if (!job.state_message().empty()) {
    absl::StrAppend(&out, "waiting: ", job.state_message(), "\n");
  }
  if (job.ranks_size() > 1) {
    // Per-rank view of a multi-rank job; the row above is the global
    // progress (rank 0's step: the ranks step together).
    absl::StrAppend(&out, "epoch ", job.epoch(), " ranks:\n");
    Table ranks({"RANK", "WORKER", "STATE", "STEP"});
    for (const v1::RankStatus& r : job.ranks()) {
      absl::string_view state = StateShort(r.state());
      ranks.AddRow({absl::StrCat(r.rank()), r.worker_id(), std::string(state),
                    absl::StrCat(r.step(), "/", job.spec().steps())});
    }
    absl::StrAppend(&out, ranks.Render());
  } else if (job.worker_ids_size() > 0) {
    absl::StrAppend(&out, "workers: ", absl::StrJoin(job.worker_ids(), ", "),
                    "\n");
  }
  if (!job.latest_checkpoint_id().empty()) {
    absl::StrAppend(&out, "latest checkpoint: ", job.latest_checkpoint_id(),
                    "\n");
  }
  return out;
}

std::string FormatJobList(const v1::ListJobsResponse& list, OutputFormat format,
                          absl::Time now) {
  if (format != OutputFormat::kTable) return Structured(list, format);
  Table table = JobTable();
  for (const v1::Job& job : list.jobs()) AddJobRow(table, job, now);
  std::string out = table.Render();
  if (!list.next_page_token().empty()) {
    absl::StrAppend(&out, "(more jobs not shown; raise --limit)\n");
  }
  return out;
}

std::string FormatCheckpoints(const v1::ListCheckpointsResponse& list,
                              OutputFormat format, absl::Time now) {
  if (format != OutputFormat::kTable) return Structured(list, format);
  Table table({"ID", "STEP", "FILES", "SIZE", "AGE"});
  for (const v1::CheckpointInfo& c : list.checkpoints()) {
    table.AddRow({c.checkpoint_id(), absl::StrCat(c.step()),
                  absl::StrCat(c.files_size()), FormatBytes(c.total_bytes()),
                  FormatAge(c.create_time(), now)});
  }
  return table.Render();
}

std::string FormatWorkers(const v1::ListWorkersResponse& list,
                          OutputFormat format, absl::Time now) {
  if (format != OutputFormat::kTable) return Structured(list, format);
  Table table(
      {"ID", "HOST", "DEVICE", "MEMORY", "STATE", "JOB", "RANK", "HEARTBEAT"});
  for (const v1::WorkerInfo& w : list.workers()) {
    const bool busy = !w.job_id().empty();
    table.AddRow({w.worker_id(), w.host(), DeviceText(w),
                  FormatBytes(DeviceMemory(w)),
                  v1::WorkerInfo::State_Name(w.state()),
                  busy ? w.job_id() : "-", busy ? absl::StrCat(w.rank()) : "-",
                  FormatAge(w.last_heartbeat_time(), now)});
  }
  return table.Render();
}

std::string FormatEventLine(const v1::JobEvent& event) {
  std::string line = IsSet(event.time())
                         ? absl::FormatTime("%H:%M:%S ", ToTime(event.time()),
                                            absl::LocalTimeZone())
                         : "";
  switch (event.kind_case()) {
    case v1::JobEvent::kStateChange: {
      const v1::StateChange& c = event.state_change();
      // The first event of a job has no `from` state.
      if (c.from() != v1::JOB_STATE_UNSPECIFIED) {
        absl::StrAppend(&line, v1::JobState_Name(c.from()), " -> ");
      }
      absl::StrAppend(&line, v1::JobState_Name(c.to()));
      if (c.has_failure() &&
          c.failure().reason() != v1::FAILURE_REASON_UNSPECIFIED) {
        absl::StrAppend(&line, " [",
                        v1::FailureReason_Name(c.failure().reason()), ": ",
                        c.failure().message(), "]");
      }
      if (!c.message().empty()) absl::StrAppend(&line, " (", c.message(), ")");
      return line;
    }
    case v1::JobEvent::kLog: {
      const v1::LogLine& l = event.log();
      absl::string_view level = v1::LogLine::Level_Name(l.level());
      absl::ConsumePrefix(&level, "LEVEL_");
      absl::StrAppend(&line, "[rank ", l.rank(), " ", level, "] ", l.text());
      return line;
    }
    case v1::JobEvent::kCheckpoint: {
      const v1::CheckpointInfo& c = event.checkpoint();
      absl::StrAppend(&line, "checkpoint ", c.checkpoint_id(), " at step ",
                      c.step(), " (", c.files_size(), " files, ",
                      FormatBytes(c.total_bytes()), ")");
      return line;
    }
    case v1::JobEvent::kMetric: {
      const v1::MetricSample& m = event.metric();
      absl::StrAppend(
          &line,
          absl::StrFormat("step %d/%d loss %.4f %.0f tok/s %.2f s/step peak %s",
                          m.step(), m.total_steps(), m.loss(),
                          m.tokens_per_second(), m.step_time_seconds(),
                          FormatBytes(m.peak_allocated_bytes())));
      return line;
    }
    default:
      return absl::StrCat(line, "event ", event.sequence());
  }
}

}  // namespace lemo::client
