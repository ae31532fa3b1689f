// lemo::select_blocks: which 64-token blocks a layer keeps (LEMO.md section 1,
// "Selection"), and its C++ entry.
//
//   lemo::kernels::SelectOptions select;
//   select.keep_ratio = 0.4;  // or adaptive: select.tau = 0.9, min/max_keep
//   at::Tensor kept = lemo::kernels::SelectBlocks(scores, select);
//   // scores [B, nb] (or a block map [B, nb, nb]); kept: int64 [B, k],
//   // ascending, always holding blocks 0 and nb - 1.
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
#ifndef LEMO_KERNELS_SELECT_BLOCKS_SELECT_BLOCKS_H_
#define LEMO_KERNELS_SELECT_BLOCKS_SELECT_BLOCKS_H_

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>

namespace lemo::kernels {

struct SelectOptions {
  // Fraction of blocks kept by the fixed rule, in (0, 1]; ignored when tau is
  // set.
  double keep_ratio = 1.0;
  // Adaptive rule: keep the fewest blocks whose score mass reaches tau of the
  // total, in (0, 1].
  std::optional<double> tau;
  // Lower bound on kept blocks (either rule); first and last are kept
  // regardless.
  int64_t min_keep = 1;
  // Upper bound on kept blocks (either rule); < 0 means no bound.
  int64_t max_keep = -1;
};

// lemo::select_blocks through the dispatcher: kept block indices, int64
// [B, k], ascending, first and last included. Throws c10::Error on bad
// options or scores.
at::Tensor SelectBlocks(const at::Tensor& scores, const SelectOptions& options);

// The reference, in device-generic ATen (sort and cumsum on [B, nb] floats);
// the op runs it on every device.
at::Tensor SelectBlocksImpl(const at::Tensor& scores, double keep_ratio,
                            std::optional<double> tau, int64_t min_keep,
                            int64_t max_keep);

}  // namespace lemo::kernels

#endif  // LEMO_KERNELS_SELECT_BLOCKS_SELECT_BLOCKS_H_
