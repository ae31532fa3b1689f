#include "worker/lemo_train/calibrate_command.h"

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "worker/engine/data/token_file.h"
#include "worker/engine/train/calibrate_job.h"
#include "worker/lemo_train/device_flags.h"

namespace lemo::worker::lemo_train {
namespace {

struct CalibrateFlags {
  lemo::engine::CalibrateJobOptions job;
  std::string device = "cpu";
  std::string dtype;  // empty: bf16 on CUDA, fp32 on CPU
  std::string data_format = "auto";
  std::string keep_ratios;  // comma-separated; empty: the default schedule
  std::string report_json;
};

int RunCalibrate(CalibrateFlags& flags) {
  auto& job = flags.job;
  auto dd = ParseDeviceAndDtype(flags.device, flags.dtype);
  if (!dd.ok()) return Fail(dd.status());
  job.device = dd->device;
  job.dtype = dd->dtype;
  auto format = lemo::engine::ParseDataFormat(flags.data_format);
  if (!format.ok()) return Fail(format.status());
  job.data.format = *format;
  for (absl::string_view r :
       absl::StrSplit(flags.keep_ratios, ',', absl::SkipEmpty())) {
    double v = 0;
    if (!absl::SimpleAtod(r, &v)) {
      return Fail(absl::InvalidArgumentError(
          "keep-ratios: \"" + std::string(r) + "\" is not a number"));
    }
    job.calibration.keep_ratios.push_back(v);
  }
  // Opened before the (long) calibration so a bad path fails in seconds.
  std::ofstream report_file;
  if (!flags.report_json.empty()) {
    report_file.open(flags.report_json, std::ios::out | std::ios::trunc);
    if (!report_file) {
      return Fail(absl::InvalidArgumentError("report-json: cannot open " +
                                             flags.report_json));
    }
  }
  const int64_t steps = job.calibration.steps;
  auto report =
      lemo::engine::RunCalibrateJob(job, [steps](int64_t step, double loss) {
        if (step == steps || step % 10 == 0) {
          std::fprintf(stderr, "calibration step %lld/%lld loss %.4f\n",
                       static_cast<long long>(step),
                       static_cast<long long>(steps), loss);
        }
      });
  if (!report.ok()) return Fail(report.status());
  std::printf("%5s %6s %14s %8s %13s %12s %10s\n", "layer", "keep",
              "recall_before", "recall", "params_before", "params_after",
              "loss");
  for (const auto& l : report->layers) {
    std::printf("%5lld %6.3f %14.3f %8.3f %13lld %12lld %10.4f\n",
                static_cast<long long>(l.layer), l.keep_ratio, l.recall_before,
                l.recall, static_cast<long long>(l.params_before),
                static_cast<long long>(l.params_after), l.final_loss);
  }
  std::printf("wrote predictors to %s (%.1f s)\n", job.out_dir.c_str(),
              report->seconds);
  if (report_file.is_open()) {
    report_file << report->ToJson().dump(2) << "\n";
    report_file.flush();
  }
  return 0;
}

}  // namespace

Command AddCalibrateCommand(CLI::App* app) {
  auto cal = std::make_shared<CalibrateFlags>();
  auto& job = cal->job;
  job.data.seq_len = 4096;
  CLI::App* cmd = app->add_subcommand(
      "calibrate",
      "Train LeMo pattern predictors against the oracle (model frozen)");
  cmd->add_option("--model", job.model_dir, "HF model directory")->required();
  cmd->add_option("--data", job.data.path,
                  "JSONL with a \"text\" field, or a .u16/.u32 token file")
      ->required();
  cmd->add_option("--out", job.out_dir, "Predictor directory to write")
      ->required();
  cmd->add_option("--data-format", cal->data_format, "auto | jsonl | u16 | u32")
      ->capture_default_str();
  cmd->add_option("--tokenizer", job.data.tokenizer,
                  "byte, a tokenizer.json or tokenizer.model, or a directory "
                  "holding one. Default: the --model directory's own (a "
                  "random-weight init-model directory: byte)");
  cmd->add_option("--seq-len", job.data.seq_len, "Tokens per sample")
      ->capture_default_str();
  cmd->add_option("--batch-size", job.data.batch_size)->capture_default_str();
  cmd->add_option("--steps", job.calibration.steps, "Optimizer steps")
      ->capture_default_str();
  cmd->add_option("--device", cal->device, "cpu | cuda:N")
      ->capture_default_str();
  cmd->add_option(
      "--dtype", cal->dtype,
      "Model dtype: fp32 | bf16 (default: bf16 on CUDA, fp32 on CPU)");
  cmd->add_option("--lr", job.calibration.lr, "AdamW learning rate")
      ->capture_default_str();
  cmd->add_option("--prune-every", job.calibration.prune_every,
                  "Prune dead neurons every N steps (0: never)")
      ->capture_default_str();
  cmd->add_option("--hidden1", job.calibration.predictor.hidden1,
                  "First hidden width")
      ->capture_default_str();
  cmd->add_option("--hidden2", job.calibration.predictor.hidden2,
                  "Second hidden width (0: 64 x head_dim, the artifact's)")
      ->capture_default_str();
  cmd->add_option("--keep-ratios", cal->keep_ratios,
                  "Comma-separated keep ratio per layer, as the fine-tune "
                  "uses (default: the artifact's schedule)");
  cmd->add_option("--heldout-samples", job.heldout_samples,
                  "Samples held out to measure recall")
      ->capture_default_str();
  cmd->add_option("--seed", job.calibration.seed)->capture_default_str();
  cmd->add_option("--data-seed", job.data.seed, "Shuffle seed")
      ->capture_default_str();
  cmd->add_option("--report-json", cal->report_json,
                  "Write the per-layer report here");
  return {cmd, [cal] { return RunCalibrate(*cal); }};
}

}  // namespace lemo::worker::lemo_train
