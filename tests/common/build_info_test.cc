// Tests for common/build_info.h: the version is CMake's project version and
// the revision is a short git commit (or "unknown" outside a checkout). To
// add a case: call the function and check its text.
#include "common/build_info.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace lemo {
namespace {

using ::testing::AnyOf;
using ::testing::Eq;
using ::testing::MatchesRegex;

TEST(BuildInfo, VersionIsTheProjectVersion) {
  EXPECT_STREQ(BuildVersion(), LEMO_TEST_PROJECT_VERSION);
}

TEST(BuildInfo, RevisionIsAShortCommitOrUnknown) {
  EXPECT_THAT(std::string(BuildRevision()),
              AnyOf(Eq("unknown"), MatchesRegex("[0-9a-f]{12}(-dirty)?")));
}

TEST(BuildInfo, VersionLineNamesProgramVersionAndCommit) {
  EXPECT_EQ(VersionLine("lemoctl"), std::string("lemoctl ") + BuildVersion() +
                                        " (commit " + BuildRevision() + ")");
}

}  // namespace
}  // namespace lemo
