// The coordinator's half of path confinement: a submitted spec's absolute
// model, data, tokenizer and predictor paths must lie, lexically, under the
// roots some registered worker reported (Register.model_roots / data_roots),
// so a spec naming /etc/shadow fails at submit with INVALID_ARGUMENT naming
// the field instead of failing later on a worker. The coordinator never looks
// at worker filesystems: symlinks, FIFOs, devices and sizes are the worker's
// check (worker/agent/spec_paths.h), and relative paths are left to it too.
//
//   std::vector<v1::Register> fleet = registry.Registrations();
//   LEMO_RETURN_IF_ERROR(CheckSpecPathsAgainstFleet(spec, fleet));
#ifndef LEMO_SERVER_CORE_FLEET_PATHS_H_
#define LEMO_SERVER_CORE_FLEET_PATHS_H_

#include <vector>

#include "absl/status/status.h"
#include "lemo/v1/job_spec.pb.h"
#include "lemo/v1/worker_service.pb.h"

namespace lemo::server {

// OK when no worker has registered yet (nothing is known; the worker checks),
// when some registered worker is unconfined (reported no roots), or when one
// worker's roots hold every absolute path of `spec`: model.path under a model
// root, data.path under a data root, data.tokenizer and lemo.predictor_path
// under either. Otherwise INVALID_ARGUMENT naming the first field no worker
// can open, with the roots the fleet offers for it.
absl::Status CheckSpecPathsAgainstFleet(const v1::JobSpec& spec,
                                        const std::vector<v1::Register>& fleet);

}  // namespace lemo::server

#endif  // LEMO_SERVER_CORE_FLEET_PATHS_H_
