#include "bench/control_plane/channels.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/channel_arguments.h"

namespace lemo::bench {

absl::Status CheckLoopback(const std::string& target) {
  if (absl::StartsWith(target, "127.") ||
      absl::StartsWith(target, "localhost:") ||
      absl::StartsWith(target, "[::1]:")) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--target ", target,
      ": load is only generated against loopback (127.x.x.x, localhost, "
      "[::1])"));
}

std::shared_ptr<grpc::Channel> OwnConnection(const std::string& target) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(),
                                   args);
}

absl::Status WaitServing(const std::shared_ptr<grpc::Channel>& channel,
                         absl::Duration timeout) {
  grpc::GenericStub generic(channel);
  const absl::Time deadline = absl::Now() + timeout;
  std::string last = "no answer";
  while (absl::Now() < deadline) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
    // HealthCheckRequest{service: ""} encodes to no bytes.
    grpc::Slice empty("");
    grpc::ByteBuffer request(&empty, 1);
    grpc::ByteBuffer response;
    absl::Mutex mu;
    bool done = false;
    grpc::Status status;
    generic.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(),
                      &request, &response, [&](grpc::Status s) {
                        absl::MutexLock lock(&mu);
                        status = std::move(s);
                        done = true;
                      });
    {
      absl::MutexLock lock(&mu);
      mu.Await(absl::Condition(&done));
    }
    std::string bytes;
    if (status.ok()) {
      std::vector<grpc::Slice> slices;
      if (response.Dump(&slices).ok()) {
        for (const grpc::Slice& s : slices) {
          bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
        }
      }
      // HealthCheckResponse{status: SERVING}.
      if (bytes == std::string("\x08\x01", 2)) return absl::OkStatus();
      last = "not SERVING";
    } else {
      last = status.error_message();
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  return absl::UnavailableError(absl::StrCat("coordinator not healthy after ",
                                             absl::FormatDuration(timeout),
                                             ": ", last));
}

}  // namespace lemo::bench
