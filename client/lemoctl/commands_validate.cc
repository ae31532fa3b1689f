// validate: the coordinator's submit-time checks, run locally on spec files.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/lemoctl/commands.h"
#include "client/lemoctl/exit_codes.h"
#include "client/spec_loader.h"
#include "proto/validation/spec_validation.h"

namespace lemo::client {
namespace {

// "tiny-demo: 60 steps x 256 tokens (batch 2, grad_accum 1) on 1 CPU rank,
// LoRA r=8 alpha=16 on q_proj,k_proj,v_proj,o_proj, lemo DENSE, model
// build/demo/model (llama)".
std::string Summary(const v1::JobSpec& s,
                    const proto::ModelConfigCheck& model) {
  const int32_t ranks = s.resources().world_size();
  return absl::StrCat(
      s.display_name().empty() ? "(no displayName)" : s.display_name(), ": ",
      s.steps(), " steps x ", s.seq_len(), " tokens (batch ", s.batch_size(),
      ", grad_accum ", s.grad_accum(), ") on ", ranks, " ",
      v1::DeviceKind_Name(s.resources().device_kind()),
      ranks == 1 ? " rank" : " ranks", ", LoRA r=", s.lora().r(),
      " alpha=", s.lora().alpha(), " on ",
      absl::StrJoin(s.lora().target_modules(), ","), ", lemo ",
      v1::LemoMode_Name(s.lemo().mode()), ", model ", s.model().path(),
      model.read ? absl::StrCat(" (", model.model_type, ")")
                 : " (config.json not readable here; the worker checks it)");
}

}  // namespace

int RunValidate(const Context& ctx, const std::vector<std::string>& paths) {
  int worst = kExitOk;
  bool first_document = true;
  for (const std::string& path : paths) {
    auto spec = LoadJobSpec(path);
    if (!spec.ok()) {
      // The loader's messages name the file already.
      Fail(ctx, spec.status());
      worst = kExitUsage;  // As for submit: a missing file is a usage error.
      continue;
    }
    // The coordinator's checks, in its order: NormalizeJobSpec with the model
    // check is exactly these two calls; the second also says what it read.
    proto::SpecCheckOptions no_files;
    no_files.check_model_config = false;
    auto normalized = proto::NormalizeJobSpec(*spec, no_files);
    absl::StatusOr<proto::ModelConfigCheck> model =
        normalized.ok()
            ? proto::CheckModelConfig(*normalized)
            : absl::StatusOr<proto::ModelConfigCheck>(normalized.status());
    if (!model.ok()) {
      std::fprintf(ctx.err, "lemoctl: %s: %s\n", path.c_str(),
                   std::string(model.status().message()).c_str());
      worst = ExitCodeFor(model.status());
      continue;
    }
    switch (ctx.format) {
      case OutputFormat::kTable:
        std::fprintf(ctx.out, "OK %s: %s\n", path.c_str(),
                     Summary(*normalized, *model).c_str());
        break;
      case OutputFormat::kJson:
        std::fputs(MessageToJson(*normalized).c_str(), ctx.out);
        break;
      case OutputFormat::kYaml:
        // One YAML document per file.
        if (!first_document) std::fputs("---\n", ctx.out);
        std::fputs(MessageToYaml(*normalized).c_str(), ctx.out);
        break;
    }
    first_document = false;
  }
  std::fflush(ctx.out);
  return worst;
}

}  // namespace lemo::client
