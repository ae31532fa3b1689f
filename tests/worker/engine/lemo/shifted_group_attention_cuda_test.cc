// GPU test of shifted group attention
// (worker/engine/lemo/shifted_group_attention.h; label gpu, fails without a
// CUDA device) against the masked reference of shifted_group_reference.h. To
// add a case: append a Shape to Shapes() there.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "tests/testing/require_cuda.h"
#include "tests/worker/engine/lemo/shifted_group_reference.h"

namespace lemo::engine {
namespace {

using ::lemo::engine::testing::ExpectMatchesReference;
using ::lemo::engine::testing::Shape;
using ::lemo::engine::testing::Shapes;

// The same comparison on the GPU, where SDPA picks the flash (bf16) or
// memory-efficient (fp32) kernels the long-context runs use.
TEST(ShiftedGroupAttentionCuda, MatchesMaskedReference) {
  LEMO_REQUIRE_CUDA();
  for (const torch::ScalarType dtype : {torch::kFloat32, torch::kBFloat16}) {
    for (const Shape& s : Shapes()) {
      ExpectMatchesReference(s, dtype, torch::Device(torch::kCUDA, 0));
    }
  }
}

}  // namespace
}  // namespace lemo::engine
