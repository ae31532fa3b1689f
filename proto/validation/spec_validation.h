// Turns a user's JobSpec into the explicit one the coordinator stores and
// workers receive: fills every default (documented in job_spec.proto), then
// validates. It lives below both the coordinator and the client (it needs only
// the generated messages), so `lemoctl validate` runs exactly the checks that
// the coordinator runs at submit. Errors are INVALID_ARGUMENT and name the
// field the way the user wrote it, e.g. "spec.lora.dropout: must be in [0, 1),
// got 1.5".
//
//   LEMO_ASSIGN_OR_RETURN(v1::JobSpec spec, NormalizeJobSpec(request.spec()));
//
// One check reads a file: when this process can read <model.path>/config.json,
// a model_type the engine does not support is refused at submit rather than on
// the worker. Workers may mount paths the coordinator does not, so an
// unreadable file is accepted (the worker checks it); a relative model.path is
// read relative to this process's working directory.
#ifndef LEMO_PROTO_VALIDATION_SPEC_VALIDATION_H_
#define LEMO_PROTO_VALIDATION_SPEC_VALIDATION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lemo/v1/job_spec.pb.h"

namespace lemo::proto {

// The config.json model_type values the engine trains
// (worker/engine/formats/model_config.cc; keep the two lists equal).
const std::vector<std::string>& SupportedModelTypes();

struct SpecCheckOptions {
  // Read <model.path>/config.json when it is readable here and refuse an
  // unsupported model_type. Off, the checks read no file.
  bool check_model_config = true;
  // Larger config.json files are refused unread, in bytes (a HF config.json is
  // a few KB; the cap bounds what a spec can make the coordinator read).
  int64_t max_model_config_bytes = int64_t{1} << 20;
};

// What CheckModelConfig found.
struct ModelConfigCheck {
  // False when config.json could not be read here (left to the worker).
  bool read = false;
  // Its model_type, when read.
  std::string model_type;
  // The file's text, when read: the planner's model shape comes from it
  // (plan::ModelShapeFromConfigJson), so the coordinator reads it once.
  std::string config_json;
};

// Parses a Kubernetes-style memory quantity, the syntax of
// spec.resources.memory_budget: a decimal number (a fraction allowed) and a
// unit: none or B (bytes); Ki, Mi, Gi, Ti, Pi, Ei (also KiB ... EiB: powers of
// 1024); k or K, M, G, T, P, E (also KB ... EB: powers of 1000). "70Gi",
// "72GiB", "75G", "80000Mi", "1.5Ti". A fraction of a byte is dropped.
// INVALID_ARGUMENT starting with `field` for an unknown unit, a malformed
// number, a negative or zero quantity, or more than int64 bytes.
absl::StatusOr<int64_t> ParseMemoryQuantity(absl::string_view field,
                                            absl::string_view text);

// spec.resources.memory_budget in bytes; 0 when the spec gives none. Errors
// name spec.resources.memory_budget.
absl::StatusOr<int64_t> MemoryBudgetBytes(const v1::JobSpec& spec);

// Fills defaults in place: zero (or absent, for optional fields) becomes the
// default. Negative or otherwise odd values are left for ValidateJobSpec to
// reject.
void ApplySpecDefaults(v1::JobSpec* spec);

// Checks every field of a spec whose defaults are applied.
absl::Status ValidateJobSpec(const v1::JobSpec& spec);

// Reads <spec.model.path>/config.json (a regular file of at most
// options.max_model_config_bytes) and refuses, with INVALID_ARGUMENT naming
// spec.model.path, a file that is not a JSON object or whose model_type is
// missing or outside SupportedModelTypes(). A file this process cannot open
// (missing, no permission, a path only workers mount) is fine: read = false.
// Errors never quote the file beyond the model_type value.
absl::StatusOr<ModelConfigCheck> CheckModelConfig(
    const v1::JobSpec& spec, const SpecCheckOptions& options = {});

// ApplySpecDefaults + ValidateJobSpec + (if options.check_model_config)
// CheckModelConfig, on a copy: exactly what the coordinator runs at submit.
absl::StatusOr<v1::JobSpec> NormalizeJobSpec(
    const v1::JobSpec& spec, const SpecCheckOptions& options = {});

}  // namespace lemo::proto

#endif  // LEMO_PROTO_VALIDATION_SPEC_VALIDATION_H_
