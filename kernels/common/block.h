// The token block every LeMo op works in: the paper's 64 tokens (LEMO.md
// section 1), also the tile of the fused scoring kernel. The ops take `block`
// as an argument (tests use others); this is its default.
//
//   at::Tensor xk = lemo::kernels::GatherBlocks(x, kept);  // block = 64
//   const int64_t nb = (n + kDefaultBlock - 1) / kDefaultBlock;
#ifndef LEMO_KERNELS_COMMON_BLOCK_H_
#define LEMO_KERNELS_COMMON_BLOCK_H_

#include <cstdint>

namespace lemo::kernels {

// Tokens per block.
inline constexpr int64_t kDefaultBlock = 64;

}  // namespace lemo::kernels

#endif  // LEMO_KERNELS_COMMON_BLOCK_H_
