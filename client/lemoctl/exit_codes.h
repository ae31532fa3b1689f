// lemoctl's exit codes (documented in docs/cli.md; scripts rely on them).
//
//   return ExitCodeFor(client->Get(id).status());  // NOT_FOUND -> 4
#ifndef LEMO_CLIENT_LEMOCTL_EXIT_CODES_H_
#define LEMO_CLIENT_LEMOCTL_EXIT_CODES_H_

#include "absl/status/status.h"

namespace lemo::client {

enum ExitCode : int {
  kExitOk = 0,          // Done; for watch / submit --watch: the job SUCCEEDED.
  kExitJobFailed = 1,   // The watched job ended FAILED or CANCELLED.
  kExitDoesNotFit = 1,  // plan: the job does not fit the device.
  kExitUsage =
      2,  // Bad command line, or an invalid job spec (ours or the server's).
  kExitUnreachable =
      3,  // No answer from the coordinator (UNAVAILABLE, DEADLINE_EXCEEDED).
  kExitNotFound = 4,  // No such job or checkpoint.
  kExitAuth = 5,      // UNAUTHENTICATED or PERMISSION_DENIED.
  kExitOther =
      6,  // Anything else: wrong job state, server error, local I/O error.
};

// The exit code for a failed call (kExitOk for OK).
int ExitCodeFor(const absl::Status& status);

}  // namespace lemo::client

#endif  // LEMO_CLIENT_LEMOCTL_EXIT_CODES_H_
