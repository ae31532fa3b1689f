// The runtime/ wing is the engine's lowest LibTorch layer: the exception ->
// Status boundary below, device memory and synchronisation
// (device_memory.h), and the CUDA allocator's settings (allocator_config.h).
//
// Where torch exceptions stop: the engine boundary converts them into
// absl::Status, so no exception ever crosses into the agent or gRPC code
// (STYLE.md, "Errors").
//
//   absl::StatusOr<torch::Tensor> out = CallTorch("forward", [&] { return
//   model.Forward(ids); });
//
// c10::OutOfMemoryError -> RESOURCE_EXHAUSTED; c10::ValueError / IndexError /
// TypeError -> INVALID_ARGUMENT; any other c10::Error or std::exception ->
// INTERNAL.
#ifndef LEMO_WORKER_ENGINE_RUNTIME_TORCH_STATUS_H_
#define LEMO_WORKER_ENGINE_RUNTIME_TORCH_STATUS_H_

#include <exception>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lemo::engine {

template <typename T>
struct IsStatusOr : std::false_type {};
template <typename T>
struct IsStatusOr<absl::StatusOr<T>> : std::true_type {};

// Maps the exception currently being handled to a status whose message starts
// with `what_doing`.
absl::Status StatusFromCurrentException(absl::string_view what_doing);

// Runs `fn`, turning any exception into a status. `fn` returns void,
// absl::Status, a value or an absl::StatusOr<T>.
template <typename Fn>
auto CallTorch(absl::string_view what_doing, Fn&& fn) {
  using R = std::invoke_result_t<Fn>;
  if constexpr (std::is_void_v<R>) {
    try {
      std::forward<Fn>(fn)();
      return absl::OkStatus();
    } catch (...) {
      return StatusFromCurrentException(what_doing);
    }
  } else if constexpr (std::is_same_v<R, absl::Status>) {
    try {
      return std::forward<Fn>(fn)();
    } catch (...) {
      return StatusFromCurrentException(what_doing);
    }
  } else {
    using Out = std::conditional_t<IsStatusOr<R>::value, R, absl::StatusOr<R>>;
    try {
      return Out(std::forward<Fn>(fn)());
    } catch (...) {
      return Out(StatusFromCurrentException(what_doing));
    }
  }
}

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_RUNTIME_TORCH_STATUS_H_
