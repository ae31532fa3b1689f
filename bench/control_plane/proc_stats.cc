#include "bench/control_plane/proc_stats.h"

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace lemo::bench {
namespace {

absl::StatusOr<std::string> ReadAll(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The number of a /proc/<pid>/status line: "VmRSS:\t  1234 kB" -> 1234,
// "Threads:\t7" -> 7; 0 when the line is missing.
int64_t StatusNumber(absl::string_view text, absl::string_view key) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::ConsumePrefix(&line, key) || !absl::ConsumePrefix(&line, ":")) {
      continue;
    }
    line = absl::StripAsciiWhitespace(line);
    absl::ConsumeSuffix(&line, " kB");
    int64_t v = 0;
    return absl::SimpleAtoi(line, &v) ? v : 0;
  }
  return 0;
}

}  // namespace

absl::StatusOr<ProcSample> ReadProcSample(pid_t pid) {
  const std::string dir = absl::StrCat("/proc/", pid);
  absl::StatusOr<std::string> stat = ReadAll(dir + "/stat");
  if (!stat.ok()) return stat.status();
  absl::StatusOr<std::string> status = ReadAll(dir + "/status");
  if (!status.ok()) return status.status();
  // The command name (field 2) may hold spaces and parentheses: split after
  // the last ')'. utime and stime are fields 14 and 15 of stat(5).
  size_t paren = stat->rfind(')');
  if (paren == std::string::npos) {
    return absl::InternalError(absl::StrCat(dir, "/stat: no ')'"));
  }
  std::vector<std::string> fields =
      absl::StrSplit(stat->substr(paren + 2), ' ', absl::SkipEmpty());
  // fields[0] is field 3 (state), so field n is fields[n - 3].
  int64_t utime = 0, stime = 0;
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &utime) ||
      !absl::SimpleAtoi(fields[12], &stime)) {
    return absl::InternalError(absl::StrCat(dir, "/stat: cannot parse"));
  }
  ProcSample s;
  s.cpu_seconds = static_cast<double>(utime + stime) / sysconf(_SC_CLK_TCK);
  s.rss_bytes = StatusNumber(*status, "VmRSS") * 1024;
  s.rss_peak_bytes = StatusNumber(*status, "VmHWM") * 1024;
  s.threads = static_cast<int>(StatusNumber(*status, "Threads"));
  return s;
}

}  // namespace lemo::bench
