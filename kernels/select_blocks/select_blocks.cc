#include "kernels/select_blocks/select_blocks.h"

#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/common/op_handle.h"

namespace lemo::kernels {

at::Tensor SelectBlocksImpl(const at::Tensor& scores_in, double keep_ratio,
                            std::optional<double> tau, int64_t min_keep,
                            int64_t max_keep) {
  TORCH_CHECK_VALUE(
      scores_in.dim() == 2 ||
          (scores_in.dim() == 3 && scores_in.size(1) == scores_in.size(2)),
      "select_blocks: scores must be [B, nb] or a block map "
      "[B, nb, nb], got ",
      scores_in.sizes());
  TORCH_CHECK_VALUE(at::isFloatingType(scores_in.scalar_type()),
                    "select_blocks: scores must be floating point, got ",
                    scores_in.scalar_type());
  // fp64 so that cumulative mass and ties do not depend on the scores' dtype.
  const at::Tensor scores =
      (scores_in.dim() == 3 ? scores_in.sum(1) : scores_in).to(at::kDouble);
  const int64_t batch = scores.size(0);
  const int64_t nb = scores.size(1);
  TORCH_CHECK_VALUE(nb >= 1, "select_blocks: no blocks to select from");
  TORCH_CHECK_VALUE(min_keep >= 0, "select_blocks: min_keep must be >= 0, got ",
                    min_keep);
  TORCH_CHECK_VALUE(max_keep < 0 || min_keep <= max_keep,
                    "select_blocks: min_keep (", min_keep,
                    ") must be <= max_keep (", max_keep, ")");
  if (batch == 0) return at::empty({0, nb}, scores.options().dtype(at::kLong));
  TORCH_CHECK_VALUE(at::isfinite(scores).all().item<bool>(),
                    "select_blocks: scores hold NaN or infinity");

  // Kept blocks are the first and last, then the highest scores (ties: lower
  // index first).
  at::Tensor priority = scores.clone();
  priority.select(1, 0).fill_(std::numeric_limits<double>::infinity());
  priority.select(1, nb - 1).fill_(std::numeric_limits<double>::infinity());
  const at::Tensor order = std::get<1>(
      priority.sort(/*stable=*/true, /*dim=*/1, /*descending=*/true));

  int64_t k = 0;
  if (!tau.has_value()) {
    TORCH_CHECK_VALUE(keep_ratio > 0 && keep_ratio <= 1,
                      "select_blocks: keep_ratio must be in (0, 1], got ",
                      keep_ratio);
    // The epsilon keeps e.g. 0.7 x 10 = 7.000000000000001 at 7 blocks, not 8.
    k = static_cast<int64_t>(std::ceil(keep_ratio * nb - 1e-9));
  } else {
    TORCH_CHECK_VALUE(*tau > 0 && *tau <= 1,
                      "select_blocks: tau must be in (0, 1], got ", *tau);
    // Mass in keeping order, forced blocks first: the kept set itself reaches
    // tau.
    const at::Tensor mass = scores.gather(1, order).cumsum(1);
    const at::Tensor total = mass.narrow(1, nb - 1, 1);
    // Blocks before the mass reaches tau x total, plus the one that reaches it.
    const at::Tensor below = (mass < total * *tau).sum(1);
    const at::Tensor need =
        at::where(total.squeeze(1) > 0, below + 1, at::zeros_like(below));
    k = need.max().item<int64_t>();
  }
  const int64_t forced = nb >= 2 ? 2 : 1;
  k = std::max(k, min_keep);
  if (max_keep >= 0) k = std::min(k, max_keep);
  k = std::min(std::max(k, forced), nb);

  return std::get<0>(order.narrow(1, 0, k).sort(1)).contiguous();
}

at::Tensor SelectBlocks(const at::Tensor& scores,
                        const SelectOptions& options) {
  static const auto op =
      OpHandle<at::Tensor(const at::Tensor&, double, std::optional<double>,
                          int64_t, int64_t)>("lemo::select_blocks");
  return op.call(scores, options.keep_ratio, options.tau, options.min_keep,
                 options.max_keep);
}

TORCH_LIBRARY_FRAGMENT(lemo, m) {
  m.def(
      "select_blocks(Tensor scores, float keep_ratio=1.0, float? tau=None, "
      "int min_keep=1, int max_keep=-1) -> Tensor");
}

// Sorting [B, nb] floats is plain ATen on any device, and indices never need a
// gradient.
TORCH_LIBRARY_IMPL(lemo, CompositeExplicitAutograd, m) {
  m.impl("select_blocks", TORCH_FN(SelectBlocksImpl));
}

}  // namespace lemo::kernels
