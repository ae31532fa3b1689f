// `lemo-train calibrate` as a function: loads an HF model (frozen, dense) and
// calibration text, fits LeMo's pattern predictors for the model's sparse
// layers (worker/engine/lemo/calibrate.h), and writes the predictor directory
// that predictor-mode fine-tunes load.
//
//   CalibrateJobOptions job;
//   job.model_dir = "/models/tiny";
//   job.data.path = "corpus.jsonl";
//   job.data.seq_len = 4096;
//   job.out_dir = "/models/tiny/predictors";
//   LEMO_ASSIGN_OR_RETURN(CalibrationReport report, RunCalibrateJob(job));
//   // report.layers[i].recall: top-k recall of the oracle's kept blocks on
//   // held-out samples.
#ifndef LEMO_WORKER_ENGINE_TRAIN_CALIBRATE_JOB_H_
#define LEMO_WORKER_ENGINE_TRAIN_CALIBRATE_JOB_H_

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "worker/engine/data/dataset.h"
#include "worker/engine/lemo/calibrate.h"

namespace lemo::engine {

struct CalibrateJobOptions {
  // HF model directory.
  std::string model_dir;
  // Calibration text, tokenizer, seq_len (tokens per sample) and batch size.
  DataOptions data;
  // Where the predictor directory is written (atomically).
  std::string out_dir;
  // Device and dtype of the frozen model; predictors train in fp32 there.
  torch::Device device = torch::kCPU;
  torch::ScalarType dtype = torch::kFloat32;
  // Samples held out of training to measure recall.
  int64_t heldout_samples = 2;
  CalibrationOptions calibration;
};

// Loads the model and data, calibrates, and writes the predictor directory.
absl::StatusOr<CalibrationReport> RunCalibrateJob(
    const CalibrateJobOptions& job,
    const std::function<void(int64_t step, double loss)>& on_step = nullptr);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_TRAIN_CALIBRATE_JOB_H_
