// What lemoctl prints: jobs, checkpoints, workers and events as aligned tables,
// JSON (protobuf's JSON mapping, the same spelling job specs use) or YAML (that
// JSON re-emitted).
//
//   LEMO_ASSIGN_OR_RETURN(OutputFormat format, ParseOutputFormat("yaml"));
//   std::fputs(FormatJobList(response, format).c_str(), stdout);
//
// Tables show ages relative to `now` (a parameter so output is testable).
#ifndef LEMO_CLIENT_OUTPUT_H_
#define LEMO_CLIENT_OUTPUT_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/message.h"
#include "lemo/v1/job_service.pb.h"

namespace lemo::client {

enum class OutputFormat { kTable, kJson, kYaml };

// "table", "json" or "yaml"; INVALID_ARGUMENT otherwise.
absl::StatusOr<OutputFormat> ParseOutputFormat(absl::string_view name);

// Every field, defaults included, so scripts see stable keys. `pretty` indents;
// otherwise one line (for a stream of events). Ends with a newline.
std::string MessageToJson(const google::protobuf::Message& message,
                          bool pretty = true);
std::string MessageToYaml(const google::protobuf::Message& message);

std::string FormatJob(const v1::Job& job, OutputFormat format,
                      absl::Time now = absl::Now());
std::string FormatJobList(const v1::ListJobsResponse& list, OutputFormat format,
                          absl::Time now = absl::Now());
std::string FormatCheckpoints(const v1::ListCheckpointsResponse& list,
                              OutputFormat format,
                              absl::Time now = absl::Now());
std::string FormatWorkers(const v1::ListWorkersResponse& list,
                          OutputFormat format, absl::Time now = absl::Now());

// One human line (no newline) for a state change, log line or checkpoint event;
// metric samples read "step 3/10 loss 2.1000 ...". Prefixed by the event's
// local time.
std::string FormatEventLine(const v1::JobEvent& event);

// "3s", "5m", "2h", "4d"; "-" for an unset time.
std::string FormatAge(const google::protobuf::Timestamp& time, absl::Time now);

}  // namespace lemo::client

#endif  // LEMO_CLIENT_OUTPUT_H_
