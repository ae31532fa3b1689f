// For GPU tests (the *_cuda_test.cc files, which CMake registers under the
// ctest label gpu): each test starts with LEMO_REQUIRE_CUDA(). Without a CUDA
// device the test fails, with the reason, rather than skipping: a skipped
// gtest counts as passed in ctest, so `ctest -L gpu` on a machine or build
// without CUDA would report success for nothing tested. CPU CI runs
// `ctest -LE gpu`, which never starts these tests.
//
//   TEST(FooCuda, MatchesTheCpu) {
//     LEMO_REQUIRE_CUDA();
//     ...
//   }
//
// Tests that need the project's own CUDA kernels (#ifdef LEMO_WITH_CUDA) fail
// the same way in a build without them: GTEST_FAIL() << "built without
// LEMO_ENABLE_CUDA".
#ifndef LEMO_TESTS_TESTING_REQUIRE_CUDA_H_
#define LEMO_TESTS_TESTING_REQUIRE_CUDA_H_

#include <gtest/gtest.h>
#include <torch/torch.h>

#define LEMO_REQUIRE_CUDA()                                               \
  do {                                                                    \
    if (!torch::cuda::is_available()) {                                   \
      GTEST_FAIL() << "no CUDA device: gpu-labelled tests need one (CPU " \
                      "runs use ctest -LE gpu)";                          \
    }                                                                     \
  } while (0)

#endif  // LEMO_TESTS_TESTING_REQUIRE_CUDA_H_
