// Tests for common/safe_path.h: the names every checkpoint sender and receiver
// accepts. To add a case: put the name in the accepted or refused list, with
// the reason beside a refusal when it is not obvious.
#include "common/safe_path.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace lemo {
namespace {

using ::testing::HasSubstr;

TEST(IsSafeRelativePath, AcceptsCheckpointNames) {
  for (const char* name :
       {"adapter_config.json", "adapter_model.safetensors",
        "resume/optimizer.safetensors", "resume/trainer_state.json",
        "SHA256SUMS", "a", ".hidden", "a/b/c/d", "x-1_2.bin"}) {
    EXPECT_TRUE(IsSafeRelativePath(name)) << name;
  }
}

// Formerly worker/agent's IsSafeRelativePath test, client/checkpoint_writer's
// unsafe names and server/core/checkpoint_store's: one list for all three.
TEST(IsSafeRelativePath, RejectsEscapes) {
  for (const std::string& name : std::vector<std::string>{
           "",                      // nothing to name
           "/etc/passwd",           // absolute
           "../evil",               // escapes upwards
           "a/../../b",             //
           "a//b",                  // empty component
           "./a",                   // "." component
           "a/./b",                 //
           "a/",                    // trailing slash: an empty last component
           "a\\b",                  // a separator on other systems
           "sp ace",                // outside [A-Za-z0-9._-]
           "caf\xc3\xa9",           // non-ASCII bytes
           "a/b/c/d/e",             // deeper than 4 components
           std::string(256, 'a'),   // longer than 255
           std::string("a\0b", 3),  // NUL would cut the name short
       }) {
    EXPECT_FALSE(IsSafeRelativePath(name)) << name;
  }
}

TEST(IsSafeRelativePath, LongestAcceptedName) {
  EXPECT_TRUE(IsSafeRelativePath(std::string(255, 'a')));
}

TEST(UnsafeFileNameMessage, QuotesTheNameAndStatesTheRule) {
  EXPECT_THAT(UnsafeFileNameMessage("../evil"),
              HasSubstr("unsafe file name \"../evil\": file_name must be"));
  // A NUL or control byte is shown escaped, never raw.
  const std::string with_nul = UnsafeFileNameMessage(std::string("a\0b", 3));
  EXPECT_EQ(with_nul.find('\0'), std::string::npos) << with_nul;
  EXPECT_THAT(with_nul, HasSubstr("\"a\\x"));
}

}  // namespace
}  // namespace lemo
