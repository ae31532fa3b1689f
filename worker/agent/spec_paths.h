// The worker's confinement of a JobSpec's paths: before the engine opens
// anything, every model, data, tokenizer and predictor path of an Assign is
// resolved (symlinks followed) and must land under this worker's read-only
// roots, be a regular file or directory as the field needs, and stay within
// the size caps (common/safe_path.h has the rule; docs/security.md the threat
// model). Models live under --model-root; data under --data-root; tokenizers
// and predictors may live under either, as they ship with models or are
// trained next to data.
//
//   LEMO_ASSIGN_OR_RETURN(SpecPathPolicy policy,
//                         SpecPathPolicy::Create({"/models"}, {"/data"}));
//   LEMO_RETURN_IF_ERROR(CheckSpecPaths(assign.spec(), policy));
#ifndef LEMO_WORKER_AGENT_SPEC_PATHS_H_
#define LEMO_WORKER_AGENT_SPEC_PATHS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/safe_path.h"
#include "lemo/v1/job_spec.pb.h"
#include "lemo/v1/worker_service.pb.h"

namespace lemo::worker {

struct SpecPathLimits {
  // Largest data file or model weight file, in bytes (--max-data-file-bytes).
  int64_t max_file_bytes = int64_t{64} << 30;
  // Largest config or tokenizer file (.json, .model, .txt), in bytes: these
  // are parsed whole in memory (--max-metadata-file-bytes).
  int64_t max_metadata_bytes = int64_t{64} << 20;
};

class SpecPathPolicy {
 public:
  // Roots as the flags gave them. INVALID_ARGUMENT naming --model-root or
  // --data-root for one that is missing, not a directory or has "..".
  // With no roots at all the worker is unconfined: paths may be anywhere, but
  // ".." components, FIFOs, devices, sockets and oversized files are still
  // refused.
  static absl::StatusOr<SpecPathPolicy> Create(
      const std::vector<std::string>& model_roots,
      const std::vector<std::string>& data_roots, SpecPathLimits limits = {});
  SpecPathPolicy() = default;

  bool confined() const {
    return !model_roots_.empty() || !data_roots_.empty();
  }
  // Fills Register.model_roots / data_roots: each root as given (normalized)
  // and, when a symlink made it differ, its canonical form too, so the
  // coordinator's lexical check accepts either spelling.
  void FillRegister(v1::Register* reg) const;

  // Every path field of `spec` checked (see the file comment); the first
  // refusal, INVALID_ARGUMENT naming the field, e.g.
  //   spec.data.path: "/etc/shadow" resolves outside the worker's roots
  //   (/data)
  absl::Status Check(const v1::JobSpec& spec) const;

 private:
  // One field: INVALID_ARGUMENT naming `flags` when the worker is confined
  // but has no roots for it, else ResolveConfinedPath's verdict.
  absl::Status Confine(absl::string_view field, const std::string& path,
                       const std::vector<std::string>& roots,
                       absl::string_view flags, PathKind kind) const;

  // Canonical roots (what a resolved path is compared with).
  std::vector<std::string> model_roots_;
  std::vector<std::string> data_roots_;
  // As reported at registration.
  std::vector<std::string> reported_model_roots_;
  std::vector<std::string> reported_data_roots_;
  SpecPathLimits limits_;
};

}  // namespace lemo::worker

#endif  // LEMO_WORKER_AGENT_SPEC_PATHS_H_
