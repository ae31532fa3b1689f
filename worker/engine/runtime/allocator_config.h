// Process-wide settings of LibTorch's CUDA caching allocator. Torch-free, so
// that the binaries' main files can call it without parsing LibTorch.
//
//   int main(int argc, char** argv) {
//     lemo::engine::PreferExpandableCudaSegments();  // before any CUDA use
#ifndef LEMO_WORKER_ENGINE_RUNTIME_ALLOCATOR_CONFIG_H_
#define LEMO_WORKER_ENGINE_RUNTIME_ALLOCATOR_CONFIG_H_

namespace lemo::engine {

// What PreferExpandableCudaSegments sets when the user set nothing.
inline constexpr char kDefaultCudaAllocConf[] = "expandable_segments:True";

// Unless the user configured the allocator (PYTORCH_ALLOC_CONF or
// PYTORCH_CUDA_ALLOC_CONF is set, even to ""), sets PYTORCH_CUDA_ALLOC_CONF to
// kDefaultCudaAllocConf. Long contexts allocate a few large buffers of many
// sizes; with fixed segments, LeMo at 128K on an 80 GB H100 ran out of memory
// with 11 GB reserved but unusable, and fitted with expandable segments. The
// allocator reads the setting once, at its first use: call this at the start
// of main. Returns whether it set the variable.
bool PreferExpandableCudaSegments();

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_RUNTIME_ALLOCATOR_CONFIG_H_
