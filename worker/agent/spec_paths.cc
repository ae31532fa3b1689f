#include "worker/agent/spec_paths.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/safe_path.h"
#include "common/status_macros.h"

namespace lemo::worker {
namespace {

void AddUnique(std::vector<std::string>* list, const std::string& value) {
  if (std::find(list->begin(), list->end(), value) == list->end()) {
    list->push_back(value);
  }
}

absl::Status AddRoots(const char* flag, const std::vector<std::string>& given,
                      std::vector<std::string>* canonical,
                      std::vector<std::string>* reported) {
  for (const std::string& root : given) {
    LEMO_ASSIGN_OR_RETURN(std::string c, CanonicalRoot(flag, root));
    AddUnique(canonical, c);
    AddUnique(reported, LexicallyNormal(root));
    AddUnique(reported, c);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SpecPathPolicy> SpecPathPolicy::Create(
    const std::vector<std::string>& model_roots,
    const std::vector<std::string>& data_roots, SpecPathLimits limits) {
  if (limits.max_file_bytes <= 0 || limits.max_metadata_bytes <= 0) {
    return absl::InvalidArgumentError(
        "--max-data-file-bytes and --max-metadata-file-bytes must be > 0");
  }
  SpecPathPolicy p;
  p.limits_ = limits;
  LEMO_RETURN_IF_ERROR(AddRoots("--model-root", model_roots, &p.model_roots_,
                                &p.reported_model_roots_));
  LEMO_RETURN_IF_ERROR(AddRoots("--data-root", data_roots, &p.data_roots_,
                                &p.reported_data_roots_));
  return p;
}

void SpecPathPolicy::FillRegister(v1::Register* reg) const {
  for (const std::string& r : reported_model_roots_) reg->add_model_roots(r);
  for (const std::string& r : reported_data_roots_) reg->add_data_roots(r);
}

absl::Status SpecPathPolicy::Confine(absl::string_view field,
                                     const std::string& path,
                                     const std::vector<std::string>& roots,
                                     absl::string_view flags,
                                     PathKind kind) const {
  // With some roots configured, a kind without roots of its own accepts
  // nothing: a worker given only --model-root opens no data.
  if (confined() && roots.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": this worker has no ", flags, ", so it opens no such path"));
  }
  ConfinedPathOptions o;
  o.roots = roots;
  o.kind = kind;
  o.max_file_bytes = limits_.max_file_bytes;
  o.max_metadata_bytes = limits_.max_metadata_bytes;
  return ResolveConfinedPath(field, path, o).status();
}

absl::Status SpecPathPolicy::Check(const v1::JobSpec& spec) const {
  std::vector<std::string> either = model_roots_;
  for (const std::string& r : data_roots_) AddUnique(&either, r);
  LEMO_RETURN_IF_ERROR(Confine("spec.model.path", spec.model().path(),
                               model_roots_, "--model-root",
                               PathKind::kDirectory));
  LEMO_RETURN_IF_ERROR(Confine("spec.data.path", spec.data().path(),
                               data_roots_, "--data-root", PathKind::kFile));
  // "byte" names the built-in tokenizer, and empty the model's own (inside
  // the model directory, whose entries were just checked).
  const std::string& tokenizer = spec.data().tokenizer();
  if (!tokenizer.empty() && tokenizer != "byte") {
    LEMO_RETURN_IF_ERROR(Confine("spec.data.tokenizer", tokenizer, either,
                                 "--model-root or --data-root",
                                 PathKind::kFileOrDirectory));
  }
  if (spec.lemo().mode() == v1::PREDICTOR ||
      !spec.lemo().predictor_path().empty()) {
    LEMO_RETURN_IF_ERROR(
        Confine("spec.lemo.predictor_path", spec.lemo().predictor_path(),
                either, "--model-root or --data-root", PathKind::kDirectory));
  }
  return absl::OkStatus();
}

}  // namespace lemo::worker
