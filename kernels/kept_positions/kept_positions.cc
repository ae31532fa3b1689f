#include "kernels/kept_positions/kept_positions.h"

#include <torch/library.h>

#include <vector>

#include "kernels/common/op_handle.h"

namespace lemo::kernels {

void CheckKeptBlocksArgs(const at::Tensor& kept_blocks, int64_t n_tokens,
                         int64_t block, const char* what) {
  TORCH_CHECK_VALUE(block > 0, what, ": block must be > 0, got ", block);
  TORCH_CHECK_VALUE(n_tokens > 0, what, ": sequence length must be > 0, got ",
                    n_tokens);
  TORCH_CHECK_VALUE(
      kept_blocks.dim() == 2 && kept_blocks.scalar_type() == at::kLong, what,
      ": kept_blocks must be int64 [B, k], got ", kept_blocks.scalar_type(),
      " ", kept_blocks.sizes());
  TORCH_CHECK_VALUE(kept_blocks.size(1) >= 1, what,
                    ": kept_blocks keeps no block");
}

int64_t KeptTokensFromFacts(const int64_t* fact, int64_t batch, int64_t k,
                            int64_t n_tokens, int64_t block, const char* what) {
  const int64_t nb = (n_tokens + block - 1) / block;
  const int64_t lo = fact[0];
  const int64_t hi = fact[1];
  TORCH_CHECK_VALUE(lo >= 0 && hi < nb, what, ": kept_blocks must lie in [0, ",
                    nb, ") for ", n_tokens, " tokens in blocks of ", block,
                    ", got [", lo, ", ", hi, "]");
  TORCH_CHECK_VALUE(fact[2] != 0, what,
                    ": kept_blocks must be strictly ascending per row");
  const int64_t missing = nb * block - n_tokens;
  if (missing == 0) return k * block;
  // The ragged block is the largest index, so where kept it is each row's tail.
  const int64_t rows_with_last = fact[3];
  TORCH_CHECK_VALUE(rows_with_last == 0 || rows_with_last == batch, what,
                    ": every row must keep the same number of tokens, but the "
                    "ragged last block ",
                    nb - 1, " is kept by ", rows_with_last, " of ", batch,
                    " rows");
  return rows_with_last == 0 ? k * block : k * block - missing;
}

at::Tensor KeptPositionsImpl(const at::Tensor& kept_blocks, int64_t n_tokens,
                             int64_t block, const char* what) {
  CheckKeptBlocksArgs(kept_blocks, n_tokens, block, what);
  const int64_t batch = kept_blocks.size(0);
  const int64_t k = kept_blocks.size(1);
  const int64_t nb = (n_tokens + block - 1) / block;
  if (batch == 0) {
    return at::empty({0, k * block}, kept_blocks.options());
  }
  // Every fact the checks need (min, max, ascending, rows keeping the ragged
  // last block) comes to the host in ONE copy: on a GPU each .item() is a
  // sync that drains the launch queue, and the engine validates several times
  // per layer.
  const at::Tensor ascending =
      k > 1
          ? (kept_blocks.narrow(1, 1, k - 1) > kept_blocks.narrow(1, 0, k - 1))
                .all()
                .to(at::kLong)
          : at::ones({}, kept_blocks.options());
  const at::Tensor facts =
      at::stack({kept_blocks.min(), kept_blocks.max(), ascending,
                 (kept_blocks.select(1, k - 1) == nb - 1).sum()})
          .cpu();
  const int64_t kept_tokens = KeptTokensFromFacts(
      facts.data_ptr<int64_t>(), batch, k, n_tokens, block, what);
  at::Tensor pos =
      (kept_blocks.unsqueeze(2) * block +
       at::arange(block, kept_blocks.options()).view({1, 1, block}))
          .view({batch, k * block});
  if (kept_tokens == k * block) return pos;
  return pos.narrow(1, 0, kept_tokens).contiguous();
}

void CheckBlockTokenArgs(const at::Tensor& full, const at::Tensor& kept_blocks,
                         const char* what) {
  TORCH_CHECK_VALUE(full.dim() == 3 || full.dim() == 4, what,
                    ": expected [B, N, D] or [B, H, N, d], got ", full.sizes());
  TORCH_CHECK_VALUE(kept_blocks.device() == full.device(), what,
                    ": kept_blocks is on ", kept_blocks.device(),
                    " but the tensor is on ", full.device());
  TORCH_CHECK_VALUE(
      kept_blocks.dim() == 2 && kept_blocks.size(0) == full.size(0), what,
      ": kept_blocks ", kept_blocks.sizes(),
      " must be [B, k] with B = ", full.size(0));
}

at::Tensor BlockTokenIndex(const at::Tensor& full,
                           const at::Tensor& kept_blocks, int64_t block,
                           const char* what) {
  CheckBlockTokenArgs(full, kept_blocks, what);
  const int64_t token_dim = full.dim() - 2;
  const at::Tensor pos =
      KeptPositionsImpl(kept_blocks, full.size(token_dim), block, what);
  std::vector<int64_t> sizes = full.sizes().vec();
  sizes[token_dim] = pos.size(1);
  const at::Tensor index =
      full.dim() == 3 ? pos.unsqueeze(2) : pos.unsqueeze(1).unsqueeze(3);
  return index.expand(sizes);
}

namespace {
at::Tensor KeptPositionsOp(const at::Tensor& kept_blocks, int64_t n_tokens,
                           int64_t block) {
  return KeptPositionsImpl(kept_blocks, n_tokens, block);
}
}  // namespace

at::Tensor KeptPositions(const at::Tensor& kept_blocks, int64_t n_tokens,
                         int64_t block) {
  static const auto op =
      OpHandle<at::Tensor(const at::Tensor&, int64_t, int64_t)>(
          "lemo::kept_positions");
  return op.call(kept_blocks, n_tokens, block);
}

TORCH_LIBRARY_FRAGMENT(lemo, m) {
  m.def(
      "kept_positions(Tensor kept_blocks, int n_tokens, int block=64) -> "
      "Tensor");
}

// Plain ATen index math runs on any device, and its int64 output never needs a
// gradient.
TORCH_LIBRARY_IMPL(lemo, CompositeExplicitAutograd, m) {
  m.impl("kept_positions", TORCH_FN(KeptPositionsOp));
}

}  // namespace lemo::kernels
