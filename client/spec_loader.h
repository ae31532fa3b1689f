// Reads a JobSpec from a YAML or JSON file through protobuf's JSON mapping, so
// there is one schema (proto/lemo/v1/job_spec.proto) for lemoctl, the API and
// the docs.
//
//   LEMO_ASSIGN_OR_RETURN(v1::JobSpec spec,
//   LoadJobSpec("deploy/examples/demo-job.yaml"));
//
// Errors name the file, the line (YAML) and the field:
//   "demo.yaml:7:6: lora.r: expected an integer, got \"eight\""
// Field names may be snake_case or lowerCamelCase; enum values are bare and
// case-insensitive
// ("deviceKind: cuda"). Semantic checks (seq_len > 0, ...) are the
// coordinator's, on submit.
#ifndef LEMO_CLIENT_SPEC_LOADER_H_
#define LEMO_CLIENT_SPEC_LOADER_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lemo/v1/job_spec.pb.h"

namespace lemo::client {

enum class SpecFormat { kYaml, kJson };

// `path` ending in .json is read as JSON, anything else as YAML (a superset of
// JSON). "-" reads standard input as YAML. NOT_FOUND for a missing file;
// INVALID_ARGUMENT for a bad spec.
absl::StatusOr<v1::JobSpec> LoadJobSpec(const std::string& path);

// Parses `text`; `source_name` prefixes error messages (a file name, or
// "<stdin>").
absl::StatusOr<v1::JobSpec> ParseJobSpec(absl::string_view text,
                                         SpecFormat format,
                                         absl::string_view source_name);

}  // namespace lemo::client

#endif  // LEMO_CLIENT_SPEC_LOADER_H_
