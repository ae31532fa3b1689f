#include "client/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace lemo::client {

std::string FormatBytes(int64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(std::max<int64_t>(bytes, 0));
  int unit = 0;
  while (v >= 1024 && unit < 4) {
    v /= 1024;
    ++unit;
  }
  return unit == 0 ? absl::StrFormat("%d B", bytes)
                   : absl::StrFormat("%.1f %s", v, kUnits[unit]);
}

std::string FormatDuration(double seconds) {
  if (!(seconds >= 0) || std::isinf(seconds)) return "?";
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  if (s >= 3600) {
    return absl::StrFormat("%d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60);
  }
  return absl::StrFormat("%d:%02d", s / 60, s % 60);
}

std::string FormatProgressLine(const ProgressInfo& info, int bar_width) {
  const double fraction =
      info.total_steps > 0
          ? std::clamp(static_cast<double>(info.step) / info.total_steps, 0.0,
                       1.0)
          : 0.0;
  const int filled = static_cast<int>(std::floor(fraction * bar_width));
  std::string bar =
      std::string(filled, '#') + std::string(bar_width - filled, '-');
  std::string line = absl::StrFormat(
      "step %d/%d [%s] %3d%% | loss %.4f | %.0f tok/s | %.2f s/step | peak %s "
      "| "
      "ETA %s",
      info.step, info.total_steps, bar, static_cast<int>(fraction * 100),
      info.loss, info.tokens_per_second, info.step_time_seconds,
      FormatBytes(info.peak_memory_bytes), FormatDuration(info.eta_seconds));
  if (!info.rank_steps.empty()) {
    absl::StrAppend(&line, " | rank steps ", info.rank_steps);
  }
  return line;
}

ProgressPrinter::ProgressPrinter(std::FILE* out)
    : out_(out), tty_(isatty(fileno(out)) != 0) {}

void ProgressPrinter::Update(const ProgressInfo& info) {
  const std::string line = FormatProgressLine(info);
  if (tty_) {
    // \33[2K clears the old line, which may be longer than the new one.
    std::fprintf(out_, "\r\33[2K%s", line.c_str());
    dirty_ = true;
  } else {
    std::fprintf(out_, "%s\n", line.c_str());
  }
  std::fflush(out_);
}

void ProgressPrinter::Finish() {
  if (dirty_) std::fputc('\n', out_);
  dirty_ = false;
  std::fflush(out_);
}

}  // namespace lemo::client
