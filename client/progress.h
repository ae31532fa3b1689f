// Live training progress for terminals: `lemo-train finetune` and `lemoctl
// watch` both print it.
//
//   ProgressPrinter printer(stderr);
//   printer.Update({.step = 12, .total_steps = 100, .loss = 3.21, ...});
//   printer.Finish();
//
// On a terminal the line is redrawn in place; elsewhere (CI logs, pipes) each
// update is a line.
#ifndef LEMO_CLIENT_PROGRESS_H_
#define LEMO_CLIENT_PROGRESS_H_

#include <cstdint>
#include <cstdio>
#include <string>

namespace lemo::client {

struct ProgressInfo {
  int64_t step = 0;
  int64_t total_steps = 0;
  double loss = 0;
  double tokens_per_second = 0;
  double step_time_seconds = 0;
  int64_t peak_memory_bytes = 0;
  // Seconds left at the current pace; negative when unknown.
  double eta_seconds = -1;
  // Multi-rank jobs: each rank's newest step, rank 0 first (e.g. "12 12 11");
  // empty for one rank.
  std::string rank_steps;
};

// "1.5 GiB", "512 MiB", "12 KiB".
std::string FormatBytes(int64_t bytes);
// "0:45", "1:02:03".
std::string FormatDuration(double seconds);
// The progress line, without a newline; the bar is `bar_width` characters wide.
std::string FormatProgressLine(const ProgressInfo& info, int bar_width = 24);

class ProgressPrinter {
 public:
  explicit ProgressPrinter(std::FILE* out);
  void Update(const ProgressInfo& info);
  // Ends the in-place line so later output starts on a fresh one.
  void Finish();

 private:
  std::FILE* out_;
  bool tty_;
  bool dirty_ = false;
};

}  // namespace lemo::client

#endif  // LEMO_CLIENT_PROGRESS_H_
