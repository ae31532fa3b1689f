#include "server/core/fleet_paths.h"

#include <set>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/safe_path.h"

namespace lemo::server {
namespace {

// Which roots of a worker a field may use.
enum class Roots { kModel, kData, kEither };

struct Field {
  const char* name;
  const std::string* path;
  Roots roots;
};

bool Under(const std::string& path,
           const google::protobuf::RepeatedPtrField<std::string>& roots) {
  for (const std::string& root : roots) {
    if (IsLexicallyUnder(path, root)) return true;
  }
  return false;
}

bool Opens(const v1::Register& worker, const Field& f) {
  switch (f.roots) {
    case Roots::kModel:
      return Under(*f.path, worker.model_roots());
    case Roots::kData:
      return Under(*f.path, worker.data_roots());
    case Roots::kEither:
      return Under(*f.path, worker.model_roots()) ||
             Under(*f.path, worker.data_roots());
  }
  return false;
}

// The fleet's roots a field may use, deduplicated, for the message.
std::string Offered(const std::vector<v1::Register>& fleet, Roots roots) {
  std::set<std::string> all;
  for (const v1::Register& w : fleet) {
    if (roots != Roots::kData)
      all.insert(w.model_roots().begin(), w.model_roots().end());
    if (roots != Roots::kModel)
      all.insert(w.data_roots().begin(), w.data_roots().end());
  }
  if (all.empty()) return "none";
  return absl::StrJoin(all, ", ");
}

}  // namespace

absl::Status CheckSpecPathsAgainstFleet(
    const v1::JobSpec& spec, const std::vector<v1::Register>& fleet) {
  if (fleet.empty()) return absl::OkStatus();
  for (const v1::Register& w : fleet) {
    if (w.model_roots().empty() && w.data_roots().empty()) {
      return absl::OkStatus();  // an unconfined worker opens any path
    }
  }
  std::vector<Field> fields;
  auto add = [&](const char* name, const std::string& path, Roots roots) {
    // Relative paths resolve on the worker (its working directory); only it
    // can confine them.
    // Paths with ".." are refused by spec validation, with its own message.
    if (absl::StartsWith(path, "/") && !HasDotDotComponent(path)) {
      fields.push_back({name, &path, roots});
    }
  };
  add("spec.model.path", spec.model().path(), Roots::kModel);
  add("spec.data.path", spec.data().path(), Roots::kData);
  add("spec.data.tokenizer", spec.data().tokenizer(), Roots::kEither);
  if (spec.lemo().mode() == v1::PREDICTOR) {
    add("spec.lemo.predictor_path", spec.lemo().predictor_path(),
        Roots::kEither);
  }
  for (const v1::Register& w : fleet) {
    bool all = true;
    for (const Field& f : fields) all = all && Opens(w, f);
    if (all) return absl::OkStatus();
  }
  for (const Field& f : fields) {
    bool any = false;
    for (const v1::Register& w : fleet) any = any || Opens(w, f);
    if (!any) {
      return absl::InvalidArgumentError(absl::StrCat(
          f.name, ": \"", absl::CHexEscape(*f.path), "\" is under no ",
          f.roots == Roots::kModel  ? "model root"
          : f.roots == Roots::kData ? "data root"
                                    : "model or data root",
          " of the registered workers (", Offered(fleet, f.roots), ")"));
    }
  }
  return absl::InvalidArgumentError(
      "spec: no registered worker has roots holding all of the spec's model, "
      "data, tokenizer and predictor paths");
}

}  // namespace lemo::server
