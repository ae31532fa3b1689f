// lemo-kernel-bench: times the LeMo CUDA kernels (bench/kernels) and sets each
// against a roofline measured in the same run (a large bf16 torch::mm for the
// matmul rate, a large device-to-device copy for bandwidth) and against the
// unfused torch code it replaces. Prints a Markdown table; writes JSON to
// $OUT/kernel_bench.json when OUT is set.
//
//   lemo-kernel-bench                 # N = 4K..32K, Llama-2-7B shapes
//   lemo-kernel-bench --quick         # N = 4K only, fewer repeats
//   lemo-kernel-bench --no-wgmma      # without the sm_90a wgmma variant
//
// Counting (stated in the table's notes):
//   - block scoring FLOPs: the causal half of QK^T, 2 * N * N * d * Hq / 2;
//     bytes: q and k read once plus the nb^2 fp32 map;
//   - gather / scatter bytes: every element read once plus every
//     element written once (the fewest any implementation must move).
#include <ATen/cuda/CUDAContext.h>
#include <cuda_runtime_api.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/block_scores/block_scores_cuda.h"
#include "kernels/block_scores/block_scores_kernel.h"
#include "kernels/gather_blocks/gather_blocks_cuda.h"
#include "kernels/gather_blocks/gather_blocks_kernel.h"
#include "kernels/kept_positions/kept_check_cuda.h"
#include "kernels/lemo_ops.h"
#include "kernels/scatter_add_blocks/scatter_add_blocks_cuda.h"
#include "kernels/scatter_add_blocks/scatter_add_blocks_kernel.h"

namespace lemo::kernels {
namespace {

void Check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string(what) + " failed on cuda:" +
                             std::to_string(c10::cuda::current_device()) +
                             ": " + cudaGetErrorString(err));
  }
}

// Median milliseconds of `fn` over `iters` event-timed runs after `warmup`
// untimed ones; each run is timed alone, so the median drops outliers.
double MedianMs(const std::function<void()>& fn, int warmup, int iters) {
  for (int i = 0; i < warmup; ++i) fn();
  Check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  cudaStream_t stream = at::cuda::getCurrentCUDAStream().stream();
  cudaEvent_t start, stop;
  Check(cudaEventCreate(&start), "cudaEventCreate");
  Check(cudaEventCreate(&stop), "cudaEventCreate");
  std::vector<double> ms;
  for (int i = 0; i < iters; ++i) {
    Check(cudaEventRecord(start, stream), "cudaEventRecord");
    fn();
    Check(cudaEventRecord(stop, stream), "cudaEventRecord");
    Check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float t = 0;
    Check(cudaEventElapsedTime(&t, start, stop), "cudaEventElapsedTime");
    ms.push_back(t);
  }
  Check(cudaEventDestroy(start), "cudaEventDestroy");
  Check(cudaEventDestroy(stop), "cudaEventDestroy");
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

struct Row {
  std::string kernel, shape;
  double ms = 0;
  double flops = 0;   // counted FLOPs (0: memory-bound kernel)
  double bytes = 0;   // counted bytes
  double ref_ms = 0;  // unfused torch reference (0: not timed)
  std::string note;
};

struct Ceilings {
  double matmul_tflops = 0;  // measured bf16 torch::mm rate
  double copy_tbps = 0;      // measured D2D copy, read + write bytes
};

Ceilings MeasureCeilings(bool quick) {
  Ceilings c;
  const auto bf16 =
      torch::TensorOptions().device(torch::kCUDA).dtype(torch::kBFloat16);
  const int64_t m = 8192;
  const torch::Tensor a = torch::randn({m, m}, bf16);
  const torch::Tensor b = torch::randn({m, m}, bf16);
  torch::Tensor out = torch::empty({m, m}, bf16);
  double best = 1e30;
  for (int rep = 0; rep < (quick ? 2 : 5); ++rep) {
    best = std::min(best, MedianMs([&] { at::mm_out(out, a, b); }, 3, 10));
  }
  c.matmul_tflops = 2.0 * m * m * m / (best * 1e-3) / 1e12;
  const torch::Tensor src = torch::randn({int64_t{1} << 29}, bf16);  // 1 GiB
  torch::Tensor dst = torch::empty_like(src);
  const double copy_ms = MedianMs([&] { dst.copy_(src); }, 3, 20);
  c.copy_tbps = 2.0 * src.nbytes() / (copy_ms * 1e-3) / 1e12;
  return c;
}

// The unfused oracle map in plain torch: per chunk of heads a full N x N bf16
// QK^T, scale, ReLU, a head sum into an fp32 N x N map, then the causal mask
// and a 64x64 max-pool. What block_scores replaces; it materialises N x N per
// head chunk.
torch::Tensor UnfusedBlockScores(const torch::Tensor& q, const torch::Tensor& k,
                                 int64_t head_chunk) {
  const int64_t n = q.size(2), d = q.size(3), hq = q.size(1);
  const int64_t group = hq / k.size(1);
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  torch::Tensor a = torch::zeros({n, n}, q.options().dtype(torch::kFloat));
  for (int64_t h0 = 0; h0 < hq; h0 += head_chunk) {
    const int64_t c = std::min(head_chunk, hq - h0);
    const torch::Tensor qc = q[0].narrow(0, h0, c);
    const torch::Tensor kc = k[0].repeat_interleave(group, 0).narrow(0, h0, c);
    torch::Tensor s = torch::matmul(qc, kc.transpose(1, 2));
    s.mul_(scale).relu_();
    a.add_(s.sum(0, /*keepdim=*/false, torch::kFloat));
  }
  a = a.tril();
  const int64_t nb = (n + 63) / 64;
  a = torch::constant_pad_nd(a, {0, nb * 64 - n, 0, nb * 64 - n});
  return torch::max_pool2d(a.unsqueeze(0), {64, 64}).squeeze(0);
}

// One launch of a given tensor-core variant into `out` (what the op does,
// minus its input checks).
void LaunchVariant(const torch::Tensor& q, const torch::Tensor& k,
                   torch::Tensor& out, int32_t variant) {
  const cuda::BlockScoresParams p = BlockScoresParamsFor(q, k, out, variant);
  Check(cuda::LaunchBlockScores(p, at::cuda::getCurrentCUDAStream().stream()),
        "LaunchBlockScores");
}

// Times each of `variants` (checked against the op's default output) and,
// with `with_op`, the op itself and the unfused reference.
std::vector<Row> BenchBlockScores(const std::vector<int64_t>& seqs, bool quick,
                                  const std::vector<int32_t>& variants,
                                  bool with_op,
                                  std::vector<std::string>* checks) {
  std::vector<Row> rows;
  const auto bf16 =
      torch::TensorOptions().device(torch::kCUDA).dtype(torch::kBFloat16);
  for (int64_t hkv : {int64_t{32}, int64_t{8}}) {
    for (int64_t n : seqs) {
      if (hkv == 8 && n != seqs.back()) continue;  // GQA: longest N only
      const int64_t hq = 32, d = 128;
      // The engine's layout: linear(x) viewed [B, N, H, d], transposed.
      const torch::Tensor q = torch::randn({1, n, hq, d}, bf16).transpose(1, 2);
      const torch::Tensor k =
          torch::randn({1, n, hkv, d}, bf16).transpose(1, 2);
      const std::string shape = "B=1 N=" + std::to_string(n) +
                                " Hq=" + std::to_string(hq) +
                                " Hkv=" + std::to_string(hkv) + " d=128 bf16";
      const int iters = quick ? 5 : (n >= 16384 ? 10 : 30);
      const int64_t nb = (n + 63) / 64;
      const double flops = 2.0 * n * n * d * hq / 2;
      const double bytes = (q.numel() + k.numel()) * 2.0 + nb * nb * 4.0;
      // Each tensor-core variant, checked against the op's default output.
      const torch::Tensor reference = BlockScores(q, k);
      for (int32_t variant : variants) {
        torch::Tensor out = torch::empty_like(reference);
        Row v;
        v.kernel = variant == cuda::kBlockScoresSquare
                       ? "block_scores mma.sync 128x128 CTA"
                   : variant == cuda::kBlockScoresWgmma
                       ? "block_scores wgmma 128x256 CTA"
                   : variant == cuda::kBlockScoresCluster
                       ? "block_scores wgmma 2-CTA cluster, TMA multicast"
                       : "block_scores wgmma 2-CTA cluster, row-pair order";
        v.shape = shape;
        v.ms = MedianMs([&] { LaunchVariant(q, k, out, variant); }, 3, iters);
        v.flops = flops;
        v.bytes = bytes;
        const double diff = (out - reference).abs().max().item<double>();
        char buf[200];
        std::snprintf(buf, sizeof buf, "%s %s: max |variant - op| = %.2e",
                      v.kernel.c_str(), shape.c_str(), diff);
        checks->push_back(buf);
        rows.push_back(v);
      }
      if (!with_op) continue;
      Row r;
      r.kernel = "block_scores (op)";
      r.shape = shape;
      r.ms = MedianMs([&] { BlockScores(q, k); }, 3, iters);
      r.flops = flops;
      r.bytes = bytes;
      if (n == seqs.back() || n == seqs.front()) {
        const torch::Tensor fused = BlockScores(q, k);
        torch::Tensor unfused;
        r.ref_ms = MedianMs([&] { unfused = UnfusedBlockScores(q, k, 4); }, 1,
                            quick ? 1 : 3);
        const double rel = ((fused - unfused).abs().max() /
                            unfused.abs().max().clamp_min(1e-30))
                               .item<double>();
        char buf[160];
        std::snprintf(buf, sizeof buf,
                      "block_scores %s: max |fused - unfused| / max = %.2e",
                      r.shape.c_str(), rel);
        checks->push_back(buf);
        r.note = "ref: per-4-head N x N matmul + relu + sum + max_pool2d";
      }
      rows.push_back(r);
    }
  }
  return rows;
}

torch::Tensor KeptBlocks(int64_t n, double ratio, int64_t seed) {
  torch::manual_seed(seed);
  const int64_t nb = (n + 63) / 64;
  SelectOptions select;
  select.keep_ratio = ratio;
  return SelectBlocks(torch::rand({1, nb}, torch::kCUDA), select);
}

// The launcher alone on `p` (no checks, output preallocated), flat or
// block-CTA launch shape: separates kernel time from the op's fixed cost.
template <typename Params>
double LauncherMs(Params p, bool block_ctas,
                  cudaError_t (*launch)(const Params&, cudaStream_t),
                  const char* what, int iters) {
  p.block_ctas = block_ctas;
  cudaStream_t stream = at::cuda::getCurrentCUDAStream().stream();
  return MedianMs([&] { Check(launch(p, stream), what); }, 3, iters);
}

// The rows of one gather/scatter op: the op (kDefaultKeptPath), its binding
// on the other kept paths, and its launcher alone in both launch shapes.
// `row` holds the op's row (kernel name, shape, bytes, reference); `binding`
// calls the binding on a path, `launcher` times the launcher.
std::vector<Row> KeptPathRows(
    Row row, const std::function<void()>& op,
    const std::function<void(KeptPath)>& binding,
    const std::function<double(bool block_ctas)>& launcher, int iters) {
  std::vector<Row> rows;
  const std::string name = row.kernel;
  row.kernel = name + " (op)";
  row.ms = MedianMs(op, 3, iters);
  rows.push_back(row);
  row.note.clear();
  row.ref_ms = 0;
  for (KeptPath path : {KeptPath::kReferenceChecks, KeptPath::kBlockCtas}) {
    Row v = row;
    v.kernel =
        name + (path == KeptPath::kReferenceChecks ? ", reference checks"
                                                   : ", block-CTA kernels");
    v.ms = MedianMs([&] { binding(path); }, 3, iters);
    rows.push_back(v);
  }
  for (bool block_ctas : {false, true}) {
    Row v = row;
    v.kernel =
        name + (block_ctas ? " (kernel, block CTAs)" : " (kernel, flat)");
    v.ms = launcher(block_ctas);
    rows.push_back(v);
  }
  return rows;
}

std::vector<Row> BenchGatherScatter(int64_t n, bool quick) {
  std::vector<Row> rows;
  const auto bf16 =
      torch::TensorOptions().device(torch::kCUDA).dtype(torch::kBFloat16);
  const int iters = quick ? 10 : 50;
  const torch::Tensor kept = KeptBlocks(n, 0.4, 1);
  const torch::Tensor pos = KeptPositions(kept, n);
  const int64_t kn = pos.size(1);
  const std::string keep = " keep 40% (" + std::to_string(kn) + " tokens)";
  const std::string path_note =
      "; (op): kept checks by one kernel, flat kernels; reference checks: "
      "the ATen checks of the CPU reference; block-CTA kernels: checks by "
      "one kernel, block-CTA launch; (kernel): the launcher alone, no checks "
      "or allocation";
  const std::string shape = "[1, " + std::to_string(n) + ", 4096] bf16" + keep;
  {
    const torch::Tensor x = torch::randn({1, n, 4096}, bf16);
    Row r;
    r.kernel = "gather_blocks";
    r.shape = shape;
    r.bytes = 2.0 * kn * 4096 * 2;
    r.ref_ms = MedianMs([&] { x.index_select(1, pos[0]); }, 3, iters);
    r.note = "ref: index_select" + path_note;
    torch::Tensor out = torch::empty({1, kn, 4096}, bf16);
    const cuda::GatherBlocksParams p = GatherBlocksParamsFor(x, kept, out, 64);
    for (Row& v : KeptPathRows(
             r, [&] { GatherBlocks(x, kept); },
             [&](KeptPath path) { GatherBlocksCuda(x, kept, 64, path); },
             [&](bool block_ctas) {
               return LauncherMs(p, block_ctas, cuda::LaunchGatherBlocks,
                                 "LaunchGatherBlocks", iters);
             },
             iters)) {
      rows.push_back(v);
    }
  }
  {
    const torch::Tensor res = torch::randn({1, n, 4096}, bf16);
    const torch::Tensor y = torch::randn({1, kn, 4096}, bf16);
    Row r;
    r.kernel = "scatter_add_blocks";
    r.shape = shape;
    r.bytes = 2.0 * n * 4096 * 2 + 2.0 * kn * 4096;
    r.ref_ms = MedianMs(
        [&] {
          torch::Tensor full = torch::zeros_like(res);
          full.index_copy_(1, pos[0], y);
          (void)(res + full);
        },
        3, iters);
    r.note = "ref: zeros + index_copy_ + add";
    torch::Tensor out = torch::empty_like(res);
    const cuda::ScatterAddBlocksParams p =
        ScatterAddBlocksParamsFor(res, y, kept, out, 64);
    for (Row& v : KeptPathRows(
             r, [&] { ScatterAddBlocks(res, y, kept); },
             [&](KeptPath path) {
               ScatterAddBlocksCuda(res, y, kept, 64, path);
             },
             [&](bool block_ctas) {
               return LauncherMs(p, block_ctas, cuda::LaunchScatterAddBlocks,
                                 "LaunchScatterAddBlocks", iters);
             },
             iters)) {
      rows.push_back(v);
    }
  }
  return rows;
}

std::string Json(const std::vector<Row>& rows, const Ceilings& c,
                 const std::vector<std::string>& checks,
                 const std::string& device) {
  std::ostringstream o;
  o << "{\"device\": \"" << device
    << "\", \"matmul_tflops\": " << c.matmul_tflops
    << ", \"copy_tbps\": " << c.copy_tbps << ", \"rows\": [";
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    o << (i ? ", " : "") << "{\"kernel\": \"" << r.kernel << "\", \"shape\": \""
      << r.shape << "\", \"ms\": " << r.ms << ", \"flops\": " << r.flops
      << ", \"bytes\": " << r.bytes << ", \"ref_ms\": " << r.ref_ms << "}";
  }
  o << "], \"checks\": [";
  for (size_t i = 0; i < checks.size(); ++i) {
    o << (i ? ", " : "") << "\"" << checks[i] << "\"";
  }
  o << "]}\n";
  return o.str();
}

int Main(int argc, char** argv) {
  bool quick = false;
  bool wgmma = true;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--quick") {
      quick = true;
    } else if (std::string(argv[i]) == "--no-wgmma") {
      wgmma = false;
    } else {
      std::fprintf(stderr, "usage: lemo-kernel-bench [--quick] [--no-wgmma]\n");
      return 2;
    }
  }
  if (!torch::cuda::is_available()) {
    std::fprintf(stderr, "lemo-kernel-bench: no CUDA device\n");
    return 1;
  }
  cudaDeviceProp prop;
  Check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  const std::string device = prop.name;
  torch::NoGradGuard no_grad;
  const Ceilings c = MeasureCeilings(quick);
  std::vector<int64_t> seqs = {4096, 8192, 16384, 32768};
  if (quick) seqs = {4096};
  std::vector<std::string> checks;
  std::vector<Row> rows =
      BenchBlockScores(seqs, quick, {cuda::kBlockScoresSquare},
                       /*with_op=*/true, &checks);
  for (Row& r : BenchGatherScatter(seqs.back(), quick)) rows.push_back(r);
  // The wgmma variants last, each caught: a device fault is sticky, so it
  // must not cost the rows before it, which are printed either way.
  if (wgmma) {
    for (int32_t variant : {cuda::kBlockScoresWgmma, cuda::kBlockScoresCluster,
                            cuda::kBlockScoresClusterRowOrder}) {
      try {
        for (Row& r : BenchBlockScores(seqs, quick, {variant},
                                       /*with_op=*/false, &checks)) {
          rows.push_back(r);
        }
      } catch (const std::exception& e) {
        checks.push_back("block_scores variant " + std::to_string(variant) +
                         " FAILED: " + e.what());
      }
    }
  }

  std::printf("\n## LeMo kernels on %s (%d SMs)\n\n", device.c_str(),
              prop.multiProcessorCount);
  std::printf(
      "Ceilings measured in this run: bf16 matmul (torch::mm 8192^3, best "
      "of runs) %.0f TFLOP/s; device copy (1 GiB, read + write) %.2f TB/s.\n\n",
      c.matmul_tflops, c.copy_tbps);
  std::printf(
      "| kernel | shape | ms | TFLOP/s | %% of matmul | TB/s | %% of copy "
      "| unfused torch ms | speedup "
      "|\n|---|---|---|---|---|---|---|---|---|\n");
  for (const Row& r : rows) {
    const double tflops = r.flops / (r.ms * 1e-3) / 1e12;
    const double tbps = r.bytes / (r.ms * 1e-3) / 1e12;
    char fl[64] = "-", pm[64] = "-", ref[64] = "-", sp[64] = "-";
    if (r.flops > 0) {
      std::snprintf(fl, sizeof fl, "%.0f", tflops);
      std::snprintf(pm, sizeof pm, "%.0f%%", 100 * tflops / c.matmul_tflops);
    }
    if (r.ref_ms > 0) {
      std::snprintf(ref, sizeof ref, "%.3f", r.ref_ms);
      std::snprintf(sp, sizeof sp, "%.1fx", r.ref_ms / r.ms);
    }
    std::printf("| %s | %s | %.3f | %s | %s | %.2f | %.0f%% | %s | %s |\n",
                r.kernel.c_str(), r.shape.c_str(), r.ms, fl, pm, tbps,
                100 * tbps / c.copy_tbps, ref, sp);
  }
  std::printf(
      "\nCounting: block_scores FLOPs = causal half of QK^T, 2*N*N*d*Hq/2; "
      "bytes = each input read once + each output written once.\n");
  for (const Row& r : rows) {
    if (!r.note.empty()) {
      std::printf("- %s: %s\n", r.kernel.c_str(), r.note.c_str());
    }
  }
  for (const std::string& s : checks) std::printf("- check: %s\n", s.c_str());
  if (const char* out = std::getenv("OUT"); out != nullptr && *out) {
    std::ofstream f(std::string(out) + "/kernel_bench.json");
    f << Json(rows, c, checks, device);
  }
  return 0;
}

}  // namespace
}  // namespace lemo::kernels

int main(int argc, char** argv) {
  try {
    return lemo::kernels::Main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lemo-kernel-bench: %s\n", e.what());
    return 1;
  }
}
