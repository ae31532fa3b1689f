// The one conversion between absl::Status (used everywhere inside) and
// grpc::Status (the wire). Servers call ToGrpcStatus at the end of a handler;
// the client library calls FromGrpcStatus on every reply.
//
//   grpc::Status SubmitJob(...) override {
//     return lemo::ToGrpcStatus(core_->Submit(request->spec()).status());
//   }
//   absl::Status s = lemo::FromGrpcStatus(stub->GetJob(&ctx, req, &job));
#ifndef LEMO_PROTO_STATUS_GRPC_STATUS_H_
#define LEMO_PROTO_STATUS_GRPC_STATUS_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace lemo {

// Same code and message; the codes of both libraries are the canonical gRPC
// codes.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Same code and message. An out-of-range code (a broken peer) becomes UNKNOWN.
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace lemo

#endif  // LEMO_PROTO_STATUS_GRPC_STATUS_H_
