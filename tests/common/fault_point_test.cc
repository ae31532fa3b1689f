// The test-only crash hooks: each case runs the point in a death-test child
// (a fresh process, so the environment is read anew). To add a case: an
// EXPECT_EXIT whose statement sets the variables, hits points, and _exit(0)s
// when it should survive.
#include "common/fault_point.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>

#include "gtest/gtest.h"

namespace lemo {
namespace {

TEST(FaultPointDeathTest, UnarmedPointsDoNothing) {
  EXPECT_EXIT(
      {
        unsetenv("LEMO_FAULT_CRASH_AT");
        unsetenv("LEMO_FAULT_STOP_AT");
        FaultPoint("checkpoint.commit.after_rename");
        FaultPoint("job.persisted.", "RUNNING");
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(FaultPointDeathTest, CrashesOnTheNamedPointOnly) {
  EXPECT_EXIT(
      {
        setenv("LEMO_FAULT_CRASH_AT", "job.persisted.RUNNING", 1);
        FaultPoint("job.persisted.SCHEDULED");
        FaultPoint("job.persisted.RUNNING.x");
        std::fprintf(stderr, "other points passed\n");
        FaultPoint("job.persisted.", "RUNNING");
        _exit(0);
      },
      ::testing::KilledBySignal(SIGKILL),
      "other points passed\n.*fault point job.persisted.RUNNING: SIGKILL");
}

TEST(FaultPointDeathTest, CrashesOnTheNthHit) {
  EXPECT_EXIT(
      {
        setenv("LEMO_FAULT_CRASH_AT", "a.b:3", 1);
        FaultPoint("a.b");
        FaultPoint("a.", "b");
        std::fprintf(stderr, "two hits passed\n");
        FaultPoint("a.b");
        _exit(0);
      },
      ::testing::KilledBySignal(SIGKILL), "two hits passed\n.*fault point a.b");
}

TEST(FaultPointDeathTest, StopsAndGoesOnWhenContinued) {
  // The child stops itself; a helper it forks first sends SIGCONT a moment
  // later, so the child only survives if the stop was a stop.
  EXPECT_EXIT(
      {
        setenv("LEMO_FAULT_STOP_AT", "upload.before_finish", 1);
        const pid_t self = getpid();
        if (fork() == 0) {
          usleep(300 * 1000);
          kill(self, SIGCONT);
          _exit(0);
        }
        FaultPoint("upload.before_finish");
        std::fprintf(stderr, "continued\n");
        _exit(7);
      },
      ::testing::ExitedWithCode(7), "SIGSTOP.*\n.*continued");
}

}  // namespace
}  // namespace lemo
