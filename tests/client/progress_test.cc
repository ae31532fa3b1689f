// Tests for client/progress.h. To add a case: a TEST that formats a
// ProgressInfo and checks the rendered fragment.
#include "client/progress.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace lemo::client {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(FormatBytes, PicksBinaryUnits) {
  EXPECT_EQ(FormatBytes(512), "512 B");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(int64_t{3} << 30), "3.0 GiB");
}

TEST(FormatDuration, MinutesAndHours) {
  EXPECT_EQ(FormatDuration(45), "0:45");
  EXPECT_EQ(FormatDuration(3723), "1:02:03");
  EXPECT_EQ(FormatDuration(-1), "?");
}

TEST(FormatProgressLine, ShowsStepBarLossRateMemoryEta) {
  ProgressInfo info;
  info.step = 5;
  info.total_steps = 10;
  info.loss = 2.5;
  info.tokens_per_second = 1234;
  info.step_time_seconds = 0.25;
  info.peak_memory_bytes = int64_t{1} << 30;
  info.eta_seconds = 75;
  const std::string line = FormatProgressLine(info, 10);
  EXPECT_THAT(line, HasSubstr("step 5/10 [#####-----]  50%"));
  EXPECT_THAT(line, HasSubstr("loss 2.5000"));
  EXPECT_THAT(line, HasSubstr("1234 tok/s"));
  EXPECT_THAT(line, HasSubstr("peak 1.0 GiB"));
  EXPECT_THAT(line, HasSubstr("ETA 1:15"));
  EXPECT_THAT(line, Not(HasSubstr("rank steps")));
  info.rank_steps = "5 5 4";
  EXPECT_THAT(FormatProgressLine(info, 10), HasSubstr("| rank steps 5 5 4"));
}

}  // namespace
}  // namespace lemo::client
