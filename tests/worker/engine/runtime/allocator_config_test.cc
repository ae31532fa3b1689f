// Tests of the CUDA allocator default
// (worker/engine/runtime/allocator_config.h): it fills in
// PYTORCH_CUDA_ALLOC_CONF only when the user set neither variable. To add a
// case: set the environment, call, and check both variables.
#include "worker/engine/runtime/allocator_config.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>

namespace lemo::engine {
namespace {

// Restores one environment variable when the test ends.
class ScopedEnv {
 public:
  explicit ScopedEnv(const char* name) : name_(name) {
    if (const char* v = std::getenv(name)) saved_ = v;
    unsetenv(name);
  }
  ~ScopedEnv() {
    if (saved_) {
      setenv(name_, saved_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> saved_;
};

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "<unset>" : v;
}

TEST(PreferExpandableCudaSegments, SetsTheDefaultWhenNothingIsSet) {
  ScopedEnv cuda("PYTORCH_CUDA_ALLOC_CONF");
  ScopedEnv generic("PYTORCH_ALLOC_CONF");
  EXPECT_TRUE(PreferExpandableCudaSegments());
  EXPECT_EQ(Env("PYTORCH_CUDA_ALLOC_CONF"), kDefaultCudaAllocConf);
  EXPECT_EQ(Env("PYTORCH_ALLOC_CONF"), "<unset>");
}

TEST(PreferExpandableCudaSegments, KeepsWhatTheUserSet) {
  ScopedEnv cuda("PYTORCH_CUDA_ALLOC_CONF");
  ScopedEnv generic("PYTORCH_ALLOC_CONF");
  setenv("PYTORCH_CUDA_ALLOC_CONF", "max_split_size_mb:512", 1);
  EXPECT_FALSE(PreferExpandableCudaSegments());
  EXPECT_EQ(Env("PYTORCH_CUDA_ALLOC_CONF"), "max_split_size_mb:512");

  unsetenv("PYTORCH_CUDA_ALLOC_CONF");
  setenv("PYTORCH_ALLOC_CONF", "", 1);  // set but empty still means "mine"
  EXPECT_FALSE(PreferExpandableCudaSegments());
  EXPECT_EQ(Env("PYTORCH_CUDA_ALLOC_CONF"), "<unset>");
}

}  // namespace
}  // namespace lemo::engine
