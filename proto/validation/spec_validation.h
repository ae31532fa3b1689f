// Turns a user's JobSpec into the explicit one the coordinator stores and
// workers receive: fills every default (documented in job_spec.proto), then
// validates. It lives below both the coordinator and the client (it needs only
// the generated messages), so `lemoctl validate` runs exactly the checks that
// the coordinator runs at submit. Errors are INVALID_ARGUMENT and name the field the way the user
// wrote it, e.g. "spec.lora.dropout: must be in [0, 1), got 1.5".
//
//   LEMO_ASSIGN_OR_RETURN(v1::JobSpec spec, NormalizeJobSpec(request.spec()));
#ifndef LEMO_PROTO_VALIDATION_SPEC_VALIDATION_H_
#define LEMO_PROTO_VALIDATION_SPEC_VALIDATION_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "lemo/v1/job_spec.pb.h"

namespace lemo::proto {

// Fills defaults in place: zero (or absent, for optional fields) becomes the
// default. Negative or otherwise odd values are left for ValidateJobSpec to
// reject.
void ApplySpecDefaults(v1::JobSpec* spec);

// Checks every field of a spec whose defaults are applied.
absl::Status ValidateJobSpec(const v1::JobSpec& spec);

// ApplySpecDefaults + ValidateJobSpec on a copy.
absl::StatusOr<v1::JobSpec> NormalizeJobSpec(const v1::JobSpec& spec);

}  // namespace lemo::proto

#endif  // LEMO_PROTO_VALIDATION_SPEC_VALIDATION_H_
