// The comm/ folder owns how worker processes join each other: a c10d
// TCPStore rendezvous (rank 0 hosts it) and one c10d process group over it,
// Gloo for CPU tensors and NCCL for CUDA ones (DESIGN.md, "Collectives and
// multi-node"). ProcessGroup owns both, turns torch exceptions into
// absl::Status, and never blocks past its timeout: a rank that cannot reach the
// store or its peers fails with an error naming the store's address.
//
//   ProcessGroupOptions o;
//   o.rank = rank;
//   o.world_size = 2;
//   o.store_host = "10.0.0.1";  // rank 0's host; rank 0 listens on
//   o.store_port = 29500;       // this port
//   LEMO_ASSIGN_OR_RETURN(std::unique_ptr<ProcessGroup> pg,
//                         ProcessGroup::Create(o));
//   LEMO_RETURN_IF_ERROR(pg->AllReduceSum(grads));  // in place, every rank
//
// World size 1 opens no socket: every collective is a no-op.
#ifndef LEMO_WORKER_COMM_PROCESS_GROUP_H_
#define LEMO_WORKER_COMM_PROCESS_GROUP_H_

#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace lemo::comm {

struct ProcessGroupOptions {
  // This process's rank, in [0, world_size).
  int64_t rank = 0;
  // Processes in the group; 1 needs no store and no peers.
  int64_t world_size = 1;
  // Host (name or address) of rank 0, which hosts the c10d TCPStore.
  std::string store_host = "127.0.0.1";
  // TCP port the store listens on at rank 0 (1..65535; required when
  // world_size > 1).
  int store_port = 0;
  // The device the collectives' tensors live on: CPU selects Gloo, CUDA selects
  // NCCL (only in builds with LEMO_ENABLE_CUDA).
  torch::Device device = torch::kCPU;
  // Bound on the rendezvous (connecting to the store, all ranks joining) and
  // on every collective.
  std::chrono::milliseconds timeout{std::chrono::seconds(60)};
  // Gloo only: the address this rank's peers reach it on. Empty takes Gloo's
  // default (the host name's address, else loopback).
  std::string gloo_hostname;
  // AllReduceSum flattens tensors into buckets of at most this many bytes (one
  // collective each), so many small LoRA gradients cost a few collectives.
  int64_t bucket_bytes = int64_t{25} << 20;
  // False when a StoreServer already listens at store_host:store_port (the
  // worker agent hosts one for its lifetime): then rank 0 only connects, like
  // every other rank. True: rank 0 starts the store and stops it with the
  // group.
  bool rank0_hosts_store = true;
  // Prefix of every key this group writes in the store (a c10d PrefixStore),
  // e.g. "job-1/epoch-3/", so groups sharing one long-lived store never read
  // each other's keys; empty uses the store's keys as they are.
  std::string store_prefix;
  // Create the backend even for world_size 1 (over an in-process store), so
  // that a one-rank run exercises the collectives it would use with more
  // (NCCL on a GPU); its collectives then reduce over one rank.
  bool backend_for_one_rank = false;
};

struct StoreServerOptions {
  // TCP port to listen on; 0 picks a free one (read it back with port()).
  int port = 0;
  // Bound on the store's own operations (its self-connection at start).
  std::chrono::milliseconds timeout{std::chrono::seconds(60)};
};

// A c10d TCPStore server that outlives the groups using it: a worker agent
// hosts one for its lifetime and advertises its address, and each group it is
// rank 0 of uses it with rank0_hosts_store = false and its own store_prefix.
// Binding once at start means the advertised port is never taken by someone
// else between two jobs, and a new epoch never meets an old epoch's keys.
//
//   LEMO_ASSIGN_OR_RETURN(std::unique_ptr<StoreServer> store,
//                         StoreServer::Create({}));
//   Register.rendezvous_address = host + ":" + store->port();
class StoreServer {
 public:
  using Options = StoreServerOptions;
  // UNAVAILABLE when the port cannot be bound.
  static absl::StatusOr<std::unique_ptr<StoreServer>> Create(
      const Options& options);
  ~StoreServer();
  StoreServer(const StoreServer&) = delete;
  StoreServer& operator=(const StoreServer&) = delete;

  // The port it listens on.
  int port() const { return port_; }

 private:
  StoreServer() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

// INVALID_ARGUMENT unless world_size >= 1 and rank is in [0, world_size); the
// one check of a rank assignment, for the group and for its users (the
// trainer) alike.
absl::Status ValidateRank(int64_t rank, int64_t world_size);

class ProcessGroup {
 public:
  using Options = ProcessGroupOptions;

  // Joins the group: rank 0 starts the store (unless rank0_hosts_store is
  // false), every rank connects to it, then the backend connects every pair of
  // ranks. INVALID_ARGUMENT for bad options, FAILED_PRECONDITION for a backend
  // this build lacks, and UNAVAILABLE naming rank and store address
  // ("host:port") when the rendezvous does not complete within the timeout.
  // The collectives below return UNAVAILABLE when a peer vanished or the
  // collective timed out: the group is then broken, and only a new group (a
  // restart of every rank) goes on.
  static absl::StatusOr<std::unique_ptr<ProcessGroup>> Create(
      const Options& options);

  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  // Sums `tensors` elementwise across ranks, in place, on every rank. Every
  // rank passes the same shapes and dtypes in the same order; tensors of one
  // dtype are flattened into buckets (see Options::bucket_bytes).
  absl::Status AllReduceSum(std::vector<torch::Tensor>& tensors);
  // Copies rank `root`'s `tensors` into every other rank's, in place.
  absl::Status Broadcast(std::vector<torch::Tensor>& tensors, int64_t root = 0);
  // Returns when every rank has reached it.
  absl::Status Barrier();

  int64_t rank() const { return options_.rank; }
  int64_t world_size() const { return options_.world_size; }
  // "gloo", "nccl", or "none" (world_size 1 without backend_for_one_rank).
  std::string backend_name() const;
  const Options& options() const { return options_; }

 private:
  explicit ProcessGroup(Options options);
  absl::Status AllReduceBucket(std::vector<torch::Tensor>& bucket);

  Options options_;
  // The store and the c10d backend (null when world_size == 1), behind a
  // pointer so that this header needs neither c10d's nor gloo's headers.
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lemo::comm

#endif  // LEMO_WORKER_COMM_PROCESS_GROUP_H_
