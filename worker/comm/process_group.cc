#include "worker/comm/process_group.h"

#include <torch/torch.h>

// ProcessGroupGloo.hpp declares its class only under USE_C10D_GLOO, the macro
// torch itself is built with. It is defined here rather than on the target so
// that this library compiles with the engine's flags and reuses its PCH
// (worker/engine/CMakeLists.txt); gloo's headers are Debian's libgloo-dev.
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef LEMO_WITH_CUDA
// Likewise USE_C10D_NCCL for ProcessGroupNCCL.hpp, whose nccl.h comes from the
// pip package nvidia-nccl beside the wheel (worker/comm/CMakeLists.txt); the
// class itself is in libtorch_cuda.
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL 1
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/runtime/torch_status.h"

namespace lemo::comm {

using ::lemo::engine::CallTorch;

struct ProcessGroup::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
};

struct StoreServer::Impl {
  c10::intrusive_ptr<c10d::TCPStore> store;
};

absl::Status ValidateRank(int64_t rank, int64_t world_size) {
  if (world_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("world_size: must be >= 1, got ", world_size));
  }
  if (rank < 0 || rank >= world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank: must be in [0, ", world_size, "), got ", rank));
  }
  return absl::OkStatus();
}

namespace {

// A failed rendezvous or collective leaves the group broken whatever torch
// called it (Gloo's timeouts and closed peers are plain c10::Errors, hence
// INTERNAL): UNAVAILABLE tells the caller that the peers, not this rank's
// inputs, are the problem, so the service restarts the gang instead of
// failing the job.
absl::Status PeersUnavailable(absl::Status s) {
  if (!absl::IsInternal(s)) return s;
  return absl::UnavailableError(s.message());
}

}  // namespace

absl::StatusOr<std::unique_ptr<StoreServer>> StoreServer::Create(
    const Options& options) {
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("port: must be in [0, 65535], got ", options.port));
  }
  std::unique_ptr<StoreServer> server(new StoreServer());
  server->impl_ = std::make_unique<Impl>();
  absl::Status s = CallTorch(
      absl::StrCat("starting the c10d store on port ", options.port), [&] {
        c10d::TCPStoreOptions so;
        so.port = static_cast<uint16_t>(options.port);
        so.isServer = true;
        // Serves any number of groups; none waits for a worker count.
        so.numWorkers = std::nullopt;
        so.waitWorkers = false;
        so.timeout = options.timeout;
        server->impl_->store =
            c10::make_intrusive<c10d::TCPStore>("127.0.0.1", so);
        server->port_ = server->impl_->store->getPort();
      });
  LEMO_RETURN_IF_ERROR(PeersUnavailable(std::move(s)));
  return server;
}

StoreServer::~StoreServer() = default;

namespace {

absl::Status Validate(const ProcessGroupOptions& o) {
  LEMO_RETURN_IF_ERROR(ValidateRank(o.rank, o.world_size));
  if (o.timeout.count() <= 0) {
    return absl::InvalidArgumentError("timeout: must be > 0");
  }
  if (o.bucket_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("bucket_bytes: must be > 0, got ", o.bucket_bytes));
  }
  if (o.world_size == 1 && !o.backend_for_one_rank) return absl::OkStatus();
  if (o.world_size > 1 && o.store_host.empty()) {
    return absl::InvalidArgumentError(
        "store_host: required when world_size > 1");
  }
  if (o.world_size > 1 && (o.store_port < 1 || o.store_port > 65535)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "store_port: must be in [1, 65535] when world_size > 1, got ",
        o.store_port));
  }
  if (o.device.is_cuda()) {
#ifndef LEMO_WITH_CUDA
    return absl::FailedPreconditionError(
        "device cuda: NCCL process groups need a build with "
        "LEMO_ENABLE_CUDA=ON; this build has Gloo (cpu) only");
#else
    return absl::OkStatus();
#endif
  }
  if (!o.device.is_cpu()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "device: ", o.device.str(), " has no process-group backend"));
  }
  return absl::OkStatus();
}

}  // namespace

ProcessGroup::ProcessGroup(Options options)
    : options_(std::move(options)), impl_(std::make_unique<Impl>()) {}

absl::StatusOr<std::unique_ptr<ProcessGroup>> ProcessGroup::Create(
    const Options& options) {
  LEMO_RETURN_IF_ERROR(Validate(options));
  auto pg = std::unique_ptr<ProcessGroup>(new ProcessGroup(options));
  if (options.world_size == 1 && !options.backend_for_one_rank) return pg;

  const std::string address =
      absl::StrCat(options.store_host, ":", options.store_port);
  const std::string who =
      absl::StrCat("rank ", options.rank, "/", options.world_size);
  // TCPStore's timeout bounds the client's connect retries and the server's
  // wait for every rank, so an absent peer or store is an error, not a hang.
  if (options.world_size == 1) {
    // Nobody to meet: an in-process store.
    pg->impl_->store = c10::make_intrusive<c10d::HashStore>();
  } else {
    LEMO_RETURN_IF_ERROR(PeersUnavailable(CallTorch(
        absl::StrCat(who, ": rendezvous at the c10d store ", address), [&] {
          c10d::TCPStoreOptions so;
          so.port = static_cast<uint16_t>(options.store_port);
          so.isServer = options.rank == 0 && options.rank0_hosts_store;
          // A shared store serves other groups too: its clients count nobody.
          if (options.rank0_hosts_store) {
            so.numWorkers = static_cast<int>(options.world_size);
            so.waitWorkers = true;
          } else {
            so.waitWorkers = false;
          }
          so.timeout = options.timeout;
          c10::intrusive_ptr<c10d::Store> store =
              c10::make_intrusive<c10d::TCPStore>(options.store_host, so);
          if (!options.store_prefix.empty()) {
            store = c10::make_intrusive<c10d::PrefixStore>(options.store_prefix,
                                                           std::move(store));
          }
          pg->impl_->store = std::move(store);
        })));
  }
#ifdef LEMO_WITH_CUDA
  if (options.device.is_cuda()) {
    LEMO_RETURN_IF_ERROR(PeersUnavailable(CallTorch(
        absl::StrCat(who, ": connecting the NCCL group on ",
                     options.device.str(), " through the store at ", address),
        [&] {
          auto no = c10d::ProcessGroupNCCL::Options::create();
          no->timeout = options.timeout;
          pg->impl_->backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(
              pg->impl_->store, static_cast<int>(options.rank),
              static_cast<int>(options.world_size), no);
        })));
    return pg;
  }
#endif
  LEMO_RETURN_IF_ERROR(PeersUnavailable(CallTorch(
      absl::StrCat(who, ": connecting the Gloo group through the store at ",
                   address),
      [&] {
        auto go = c10d::ProcessGroupGloo::Options::create(options.timeout);
        go->devices.push_back(
            options.gloo_hostname.empty()
                ? c10d::ProcessGroupGloo::createDefaultDevice()
                : c10d::ProcessGroupGloo::createDeviceForHostname(
                      options.gloo_hostname));
        pg->impl_->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(
            pg->impl_->store, static_cast<int>(options.rank),
            static_cast<int>(options.world_size), go);
      })));
  return pg;
}

std::string ProcessGroup::backend_name() const {
  return impl_->backend != nullptr ? impl_->backend->getBackendName() : "none";
}

ProcessGroup::~ProcessGroup() {
  if (impl_ == nullptr) return;
  // The backend holds the store; drop it first, then the store (rank 0's
  // server thread stops with it). Destructors must not throw out of here.
  try {
    if (impl_->backend) impl_->backend->shutdown();
  } catch (...) {
  }
  impl_->backend.reset();
  impl_->store.reset();
}

absl::Status ProcessGroup::AllReduceBucket(std::vector<torch::Tensor>& bucket) {
  return PeersUnavailable(
      CallTorch(absl::StrCat("rank ", options_.rank, ": all-reduce"), [&] {
        torch::NoGradGuard no_grad;
        // Gloo sums every tensor of the list together (one per local device),
        // so a bucket always goes as a single tensor.
        // NCCL reduces device memory only: host tensors (the loss) travel.
        const bool single = bucket.size() == 1 && bucket[0].is_contiguous() &&
                            bucket[0].device() == options_.device;
        std::vector<torch::Tensor> flat;
        if (single) {
          flat = {bucket[0]};
        } else {
          std::vector<torch::Tensor> pieces;
          pieces.reserve(bucket.size());
          for (const torch::Tensor& t : bucket) pieces.push_back(t.reshape(-1));
          flat = {torch::cat(pieces).to(options_.device)};
        }
        impl_->backend->allreduce(flat)->wait(options_.timeout);
        if (single) return;
        int64_t offset = 0;
        for (torch::Tensor& t : bucket) {
          const int64_t n = t.numel();
          t.copy_(flat[0].narrow(0, offset, n).view(t.sizes()).to(t.device()));
          offset += n;
        }
      }));
}

absl::Status ProcessGroup::AllReduceSum(std::vector<torch::Tensor>& tensors) {
  if (impl_->backend == nullptr) return absl::OkStatus();
  // Consecutive tensors of one dtype share a bucket until it is full.
  std::vector<torch::Tensor> bucket;
  int64_t bucket_bytes = 0;
  for (const torch::Tensor& t : tensors) {
    if (!t.defined()) {
      return absl::InvalidArgumentError("all-reduce: undefined tensor");
    }
    if (!t.device().is_cpu() && t.device() != options_.device) {
      return absl::InvalidArgumentError(
          absl::StrCat("all-reduce: tensor on ", t.device().str(),
                       ", the group is on ", options_.device.str()));
    }
    const int64_t bytes = t.numel() * static_cast<int64_t>(t.element_size());
    if (!bucket.empty() && (bucket[0].scalar_type() != t.scalar_type() ||
                            bucket_bytes + bytes > options_.bucket_bytes)) {
      LEMO_RETURN_IF_ERROR(AllReduceBucket(bucket));
      bucket.clear();
      bucket_bytes = 0;
    }
    bucket.push_back(t);
    bucket_bytes += bytes;
  }
  if (!bucket.empty()) LEMO_RETURN_IF_ERROR(AllReduceBucket(bucket));
  return absl::OkStatus();
}

absl::Status ProcessGroup::Broadcast(std::vector<torch::Tensor>& tensors,
                                     int64_t root) {
  if (root < 0 || root >= options_.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("broadcast: root must be in [0, ", options_.world_size,
                     "), got ", root));
  }
  if (impl_->backend == nullptr) return absl::OkStatus();
  return PeersUnavailable(
      CallTorch(absl::StrCat("rank ", options_.rank, ": broadcast"), [&] {
        torch::NoGradGuard no_grad;
        c10d::BroadcastOptions bo;
        bo.rootRank = root;
        bo.timeout = options_.timeout;
        // One tensor per call: Gloo takes a list only of one tensor per device.
        for (torch::Tensor& t : tensors) {
          std::vector<torch::Tensor> one{
              (t.is_contiguous() ? t : t.contiguous()).to(options_.device)};
          impl_->backend->broadcast(one, bo)->wait(options_.timeout);
          if (!one[0].is_same(t)) t.copy_(one[0]);
        }
      }));
}

absl::Status ProcessGroup::Barrier() {
  if (impl_->backend == nullptr) return absl::OkStatus();
  return PeersUnavailable(
      CallTorch(absl::StrCat("rank ", options_.rank, ": barrier"), [&] {
        c10d::BarrierOptions bo;
        bo.timeout = options_.timeout;
        impl_->backend->barrier(bo)->wait(options_.timeout);
      }));
}

}  // namespace lemo::comm
