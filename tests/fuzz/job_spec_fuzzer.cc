// libFuzzer target: a job spec as lemoctl reads it and the coordinator checks
// it. The bytes are parsed as YAML and as JSON (client/spec_loader.h: YAML
// through yaml-cpp and client/yaml_json.h, JSON straight into protobuf's JSON
// mapping); each spec that parses then goes through NormalizeJobSpec
// (proto/validation/spec_validation.h) without reading a model's config.json.
// Every step must return a status, never crash. Seeds: tests/fuzz/job_spec/.
#include <cstddef>
#include <cstdint>

#include "client/spec_loader.h"
#include "proto/validation/spec_validation.h"

namespace {

void Check(absl::string_view text, lemo::client::SpecFormat format) {
  auto spec = lemo::client::ParseJobSpec(text, format, "fuzz");
  if (!spec.ok()) return;
  lemo::proto::SpecCheckOptions options;
  // A fuzzed model.path must not make the fuzzer read files.
  options.check_model_config = false;
  (void)lemo::proto::NormalizeJobSpec(*spec, options);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  Check(text, lemo::client::SpecFormat::kYaml);
  Check(text, lemo::client::SpecFormat::kJson);
  return 0;
}
