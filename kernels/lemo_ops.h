// The LeMo torch ops (namespace `lemo`) in one include, for the engine. Each
// op lives in kernels/<op>/, whose header <op>.h declares its plain C++ entry
// (through the dispatcher: the CPU reference or a CUDA kernel by the inputs'
// device, and autograd where a gradient flows) and its CPU reference; this
// header only includes them. Ops throw c10::Error (TORCH_CHECK) on bad input;
// the engine converts that at its boundary.
//
//   at::Tensor map = lemo::kernels::BlockScores(q, k);  // [B, nb, nb] fp32
//   lemo::kernels::SelectOptions select;
//   select.keep_ratio = 0.4;
//   at::Tensor kept = lemo::kernels::SelectBlocks(
//       lemo::kernels::BlockColumnScores(map), select);  // int64 [B, k]
//   at::Tensor xk = lemo::kernels::GatherBlocks(x, kept);  // [B, n, D]
//   // x + yk at the kept tokens, x elsewhere:
//   at::Tensor out = lemo::kernels::ScatterAddBlocks(x, yk, kept);
#ifndef LEMO_KERNELS_LEMO_OPS_H_
#define LEMO_KERNELS_LEMO_OPS_H_

#include "kernels/block_scores/block_scores.h"
#include "kernels/common/block.h"
#include "kernels/cross_entropy_chunk/cross_entropy_chunk.h"
#include "kernels/gather_blocks/gather_blocks.h"
#include "kernels/kept_positions/kept_positions.h"
#include "kernels/scatter_add_blocks/scatter_add_blocks.h"
#include "kernels/select_blocks/select_blocks.h"

#endif  // LEMO_KERNELS_LEMO_OPS_H_
