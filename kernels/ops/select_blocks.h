// lemo::select_blocks: which 64-token blocks a layer keeps (LEMO.md section 1,
// "Selection").
//
//   kept = select_blocks(scores, /*keep_ratio=*/0.4);  // scores [B,nb]
//   kept = select_blocks(scores, 1.0, /*tau=*/0.9, /*min_keep=*/4,
//                        /*max_keep=*/64);  // adaptive
//   // kept: int64 [B, k], ascending, always holding blocks 0 and nb - 1.
//
// A block map is first reduced to its column sums s_j = sum_i M[i, j]. Fixed
// rule: k = ceil(keep_ratio x nb). Adaptive rule (tau given): per row, the
// fewest blocks, taken in keeping order (first and last, then by descending
// score), whose score mass reaches tau of the row's total (0 when the total is
// 0), so the kept set itself holds tau of the mass. Both rules then clamp k to
// [min_keep, max_keep] (max_keep < 0: nb), and k is at least the forced blocks
// (first and last: they win over max_keep) and at most nb. Kept blocks are the
// first and last, then the highest scores; ties go to the lower index. Batch >
// 1 with adaptive: rows need different k but the output is rectangular, so
// every row keeps the largest k of the batch, filling with its own next-best
// blocks (a row never keeps fewer than its own adaptive count).
#ifndef LEMO_KERNELS_OPS_SELECT_BLOCKS_H_
#define LEMO_KERNELS_OPS_SELECT_BLOCKS_H_

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>

namespace lemo::kernels {

// The reference, in device-generic ATen (sort and cumsum on [B, nb] floats).
at::Tensor SelectBlocksImpl(const at::Tensor& scores, double keep_ratio,
                            std::optional<double> tau, int64_t min_keep,
                            int64_t max_keep);

}  // namespace lemo::kernels

#endif  // LEMO_KERNELS_OPS_SELECT_BLOCKS_H_
