// Channels to the coordinator for the control-plane benchmark: plaintext,
// loopback only (the workplace allows load only against 127.0.0.1), and one
// TCP connection per simulated process, as real workers and clients have.
//
//   LEMO_RETURN_IF_ERROR(CheckLoopback(target));
//   auto channel = OwnConnection(target);
//   LEMO_RETURN_IF_ERROR(WaitServing(channel, absl::Seconds(20)));
#ifndef LEMO_BENCH_CONTROL_PLANE_CHANNELS_H_
#define LEMO_BENCH_CONTROL_PLANE_CHANNELS_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"

namespace lemo::bench {

// INVALID_ARGUMENT unless target is "127.x.x.x:PORT", "localhost:PORT" or
// "[::1]:PORT".
absl::Status CheckLoopback(const std::string& target);

// A channel with a TCP connection of its own: gRPC otherwise shares one
// connection among channels with equal arguments, and the coordinator would
// see one client instead of 1000 workers.
std::shared_ptr<grpc::Channel> OwnConnection(const std::string& target);

// Polls grpc.health.v1.Health/Check until it answers SERVING; UNAVAILABLE
// after `timeout`.
absl::Status WaitServing(const std::shared_ptr<grpc::Channel>& channel,
                         absl::Duration timeout);

}  // namespace lemo::bench

#endif  // LEMO_BENCH_CONTROL_PLANE_CHANNELS_H_
