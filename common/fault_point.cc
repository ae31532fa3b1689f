#include "common/fault_point.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace lemo::fault_point_internal {
namespace {

// One armed point: its name and the hit that fires.
struct Target {
  std::string name;
  int64_t nth = 0;  // 0: not armed
  std::atomic<int64_t> hits{0};
};

void Parse(const char* env, Target* t) {
  const char* value = std::getenv(env);
  if (value == nullptr || *value == '\0') return;
  std::string spec(value);
  t->nth = 1;
  const size_t colon = spec.rfind(':');
  int64_t n = 0;
  if (colon != std::string::npos &&
      absl::SimpleAtoi(spec.substr(colon + 1), &n) && n >= 1) {
    t->nth = n;
    spec.resize(colon);
  }
  t->name = spec;
}

struct Targets {
  Target crash;
  Target stop;
  Targets() {
    Parse("LEMO_FAULT_CRASH_AT", &crash);
    Parse("LEMO_FAULT_STOP_AT", &stop);
  }
};

Targets& Get() {
  static Targets* targets = new Targets();
  return *targets;
}

// True on the armed hit of `t` (exactly once per process).
bool Fires(Target& t, absl::string_view name) {
  if (t.nth == 0 || name != t.name) return false;
  return t.hits.fetch_add(1) + 1 == t.nth;
}

}  // namespace

bool Armed() {
  static const bool armed = Get().crash.nth > 0 || Get().stop.nth > 0;
  return armed;
}

void Hit(absl::string_view prefix, absl::string_view suffix) {
  const std::string name = absl::StrCat(prefix, suffix);
  Targets& t = Get();
  if (Fires(t.crash, name)) {
    // Said on stderr first, so a test's log shows where the process died.
    std::fprintf(stderr, "fault point %s: SIGKILL (LEMO_FAULT_CRASH_AT)\n",
                 name.c_str());
    std::fflush(stderr);
    ::kill(::getpid(), SIGKILL);
    ::_exit(137);  // not reached
  }
  if (Fires(t.stop, name)) {
    std::fprintf(stderr, "fault point %s: SIGSTOP (LEMO_FAULT_STOP_AT)\n",
                 name.c_str());
    std::fflush(stderr);
    // raise(), not kill(getpid()): a process-directed signal may be taken by
    // another thread, and this one runs on (it was seen to finish the very
    // upload it should have frozen in) until the group stop reaches it. Sent
    // to this thread, it stops before raise() returns.
    ::raise(SIGSTOP);
  }
}

}  // namespace lemo::fault_point_internal
