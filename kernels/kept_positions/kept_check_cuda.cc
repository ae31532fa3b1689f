#include "kernels/kept_positions/kept_check_cuda.h"

#include <c10/cuda/CUDAGuard.h>

#include "kernels/common/binding_utils.h"
#include "kernels/kept_positions/kept_facts_kernel.h"
#include "kernels/kept_positions/kept_positions.h"

namespace lemo::kernels {

int64_t KeptTokensCuda(const at::Tensor& full, const at::Tensor& kept_blocks,
                       int64_t block, const char* what) {
  CheckBlockTokenArgs(full, kept_blocks, what);
  const int64_t n_tokens = full.size(full.dim() - 2);
  CheckKeptBlocksArgs(kept_blocks, n_tokens, block, what);
  const int64_t batch = kept_blocks.size(0);
  const int64_t k = kept_blocks.size(1);
  TORCH_CHECK_VALUE(batch >= 1, what, ": batch must be >= 1 here, got ", batch);
  const c10::cuda::CUDAGuard guard(full.device());
  const at::Tensor kept = kept_blocks.contiguous();
  const at::Tensor facts = at::empty({4}, kept.options());
  const int64_t nb = (n_tokens + block - 1) / block;
  CheckLaunch(cuda::LaunchKeptFacts(kept.data_ptr<int64_t>(), batch, k, nb,
                                    facts.data_ptr<int64_t>(), CurrentStream()),
              what, full);
  const at::Tensor host = facts.cpu();
  return KeptTokensFromFacts(host.data_ptr<int64_t>(), batch, k, n_tokens,
                             block, what);
}

}  // namespace lemo::kernels
