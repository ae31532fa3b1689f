// Checks a JSON tree against a protobuf message type before protobuf's JSON
// parser sees it, so a bad job spec is reported by field path
// ("lora.targetModules[1]: expected a string") with a hint, instead of
// protobuf's terse message. Field names may be proto (snake_case) or JSON
// (lowerCamelCase) spellings, as protobuf's JSON mapping allows.
//
//   std::string bad_path;
//   auto normalized = CheckJsonForMessage(json, *v1::JobSpec::descriptor(),
//   &bad_path); if (!normalized.ok()) { /* message "lora.r: expected an
//   integer, got \"eight\"" */ } JsonStringToMessage(normalized->dump(),
//   &spec);
#ifndef LEMO_CLIENT_PROTO_JSON_CHECK_H_
#define LEMO_CLIENT_PROTO_JSON_CHECK_H_

#include <string>

#include "absl/status/statusor.h"
#include "google/protobuf/descriptor.h"
#include "nlohmann/json.hpp"

namespace lemo::client {

// Returns the tree with lenient spellings made canonical (numbers given to
// string fields become strings, enum names in any case become the declared
// name). On error: INVALID_ARGUMENT whose message starts with the offending
// path, which is also stored in *error_path (may be null).
absl::StatusOr<nlohmann::json> CheckJsonForMessage(
    const nlohmann::json& json, const google::protobuf::Descriptor& type,
    std::string* error_path);

}  // namespace lemo::client

#endif  // LEMO_CLIENT_PROTO_JSON_CHECK_H_
