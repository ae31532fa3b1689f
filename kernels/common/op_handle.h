// The typed dispatcher handle behind each op's plain C++ entry
// (kernels/<op>/<op>.cc): the call goes through the dispatcher, so it picks
// the CPU reference or the CUDA binding by the inputs' device, and the op's
// Autograd kernel where a gradient flows. Plain LibTorch.
//
//   at::Tensor GatherBlocks(const at::Tensor& x, const at::Tensor& kept,
//                           int64_t block) {
//     static const auto op =
//         OpHandle<at::Tensor(const at::Tensor&, const at::Tensor&, int64_t)>(
//             "lemo::gather_blocks");
//     return op.call(x, kept, block);
//   }
#ifndef LEMO_KERNELS_COMMON_OP_HANDLE_H_
#define LEMO_KERNELS_COMMON_OP_HANDLE_H_

#include <ATen/core/dispatch/Dispatcher.h>

namespace lemo::kernels {

// The handle of schema `name` ("lemo::<op>"), typed by the C++ signature of
// its kernels. Look it up once (a function-local static): the schemas are
// registered when lemo_kernels_ops loads, before any entry can run.
template <typename Signature>
c10::TypedOperatorHandle<Signature> OpHandle(const char* name) {
  return c10::Dispatcher::singleton()
      .findSchemaOrThrow(name, "")
      .typed<Signature>();
}

}  // namespace lemo::kernels

#endif  // LEMO_KERNELS_COMMON_OP_HANDLE_H_
