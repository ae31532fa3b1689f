#include "worker/engine/model/rope.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace lemo::engine {
namespace {

using Type = RopeScaling::Type;

// Every step below repeats HF's tensor expression op for op (same dtypes, same
// order, scalars as wrapped numbers) so the fp32 frequencies are bit-identical
// to transformers'.
torch::Tensor Exponents(int64_t dim) {
  return torch::arange(0, dim, 2, torch::kInt64).to(torch::kFloat) / dim;
}

torch::Tensor FromBase(const torch::Tensor& base_pow) {
  return base_pow.reciprocal();  // HF: 1.0 / (base ** exponents)
}

torch::Tensor Llama3(torch::Tensor inv_freq, const RopeScaling& s) {
  const double factor = s.factor;
  const double low = s.low_freq_factor;
  const double high = s.high_freq_factor;
  const double old_context_len =
      static_cast<double>(s.original_max_position_embeddings);
  const double low_freq_wavelen = old_context_len / low;
  const double high_freq_wavelen = old_context_len / high;
  torch::Tensor wavelen = inv_freq.reciprocal() * (2 * M_PI);
  torch::Tensor inv_freq_llama =
      torch::where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq);
  // HF divides an int by the tensor: reciprocal() * int.
  torch::Tensor smooth_factor =
      (wavelen.reciprocal() * s.original_max_position_embeddings - low) /
      (high - low);
  torch::Tensor smoothed =
      torch::rsub(smooth_factor, 1) * inv_freq_llama / factor +
      smooth_factor * inv_freq_llama;
  torch::Tensor is_medium =
      torch::logical_not(wavelen < high_freq_wavelen)
          .logical_and(torch::logical_not(wavelen > low_freq_wavelen));
  return torch::where(is_medium, smoothed, inv_freq_llama);
}

// transformers' get_mscale inside _compute_yarn_parameters.
double YarnMscale(double scale, double mscale) {
  if (scale <= 1) return 1.0;
  return 0.1 * mscale * std::log(scale) + 1.0;
}

// find_correction_dim: the dimension whose wavelength makes `rotations` turns
// over the pretraining context.
double YarnCorrectionDim(double rotations, int64_t dim, double base,
                         int64_t max_position) {
  return (static_cast<double>(dim) *
          std::log(static_cast<double>(max_position) /
                   (rotations * 2 * M_PI))) /
         (2 * std::log(base));
}

// transformers' _compute_yarn_parameters: frequencies interpolated by factor
// below the correction range, extrapolated (kept) above it, blended linearly
// in between; returns the inverse frequencies and the cos/sin scale.
std::pair<torch::Tensor, double> Yarn(int64_t dim, double base,
                                      const RopeScaling& s) {
  const double factor = s.factor;
  double attention_factor = s.attention_factor;
  if (attention_factor == 0) {
    attention_factor = s.mscale != 0 && s.mscale_all_dim != 0
                           ? YarnMscale(factor, s.mscale) /
                                 YarnMscale(factor, s.mscale_all_dim)
                           : YarnMscale(factor, 1);
  }
  double low = YarnCorrectionDim(s.beta_fast, dim, base,
                                 s.original_max_position_embeddings);
  double high = YarnCorrectionDim(s.beta_slow, dim, base,
                                  s.original_max_position_embeddings);
  if (s.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dim - 1));
  if (low == high) high += 0.001;  // HF: prevent singularity
  torch::Tensor pos_freqs = torch::pow(base, Exponents(dim));
  torch::Tensor extrapolation = pos_freqs.reciprocal();
  torch::Tensor interpolation = (pos_freqs * factor).reciprocal();
  torch::Tensor ramp = torch::clamp(
      (torch::arange(dim / 2, torch::kFloat) - low) / (high - low), 0, 1);
  torch::Tensor extrapolation_factor = torch::rsub(ramp, 1);
  torch::Tensor inv_freq =
      interpolation * torch::rsub(extrapolation_factor, 1) +
      extrapolation * extrapolation_factor;
  return {inv_freq, attention_factor};
}

}  // namespace

absl::StatusOr<RotaryEmbedding> RotaryEmbedding::Create(
    const ModelConfig& config) {
  const int64_t dim = config.head_dim;
  if (dim <= 0 || dim % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("rope: head_dim must be positive and even, got ", dim));
  }
  if (!(config.rope_theta > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("rope: rope_theta must be > 0, got ", config.rope_theta));
  }
  const RopeScaling& s = config.rope_scaling;
  if (s.type != Type::kNone && !(s.factor > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("rope_scaling: factor must be > 0, got ", s.factor));
  }
  if (s.type == Type::kLlama3 &&
      (!(s.high_freq_factor > s.low_freq_factor) || !(s.low_freq_factor > 0) ||
       s.original_max_position_embeddings <= 0)) {
    return absl::InvalidArgumentError(
        "rope_scaling llama3: need high_freq_factor > low_freq_factor > 0 and "
        "original_max_position_embeddings > 0");
  }
  if (s.type == Type::kDynamic &&
      (dim <= 2 || config.max_position_embeddings <= 0)) {
    return absl::InvalidArgumentError(
        "rope_scaling dynamic: need head_dim > 2 and max_position_embeddings > "
        "0");
  }
  if (s.type == Type::kYarn &&
      (s.original_max_position_embeddings <= 0 || !(s.beta_fast > 0) ||
       !(s.beta_slow > 0) || s.attention_factor < 0)) {
    return absl::InvalidArgumentError(
        "rope_scaling yarn: need original_max_position_embeddings > 0, "
        "beta_fast > 0, beta_slow > 0 and attention_factor >= 0");
  }
  torch::NoGradGuard no_grad;
  torch::Tensor inv_freq;
  double attention_scaling = 1.0;
  if (s.type == Type::kNone) {
    // HF's default type builds the arange directly in float; same values.
    inv_freq = FromBase(torch::pow(
        config.rope_theta, torch::arange(0, dim, 2, torch::kFloat) / dim));
  } else if (s.type == Type::kYarn) {
    std::tie(inv_freq, attention_scaling) = Yarn(dim, config.rope_theta, s);
  } else {
    inv_freq = FromBase(torch::pow(config.rope_theta, Exponents(dim)));
    if (s.type == Type::kLinear) inv_freq = inv_freq / s.factor;
    if (s.type == Type::kLlama3) inv_freq = Llama3(inv_freq, s);
  }
  RotaryEmbedding rope(config, inv_freq.contiguous());
  rope.attention_scaling_ = attention_scaling;
  return rope;
}

RotaryEmbedding RotaryEmbedding::To(torch::Device device) const {
  RotaryEmbedding copy = *this;
  copy.inv_freq_ = inv_freq_.to(device);
  return copy;
}

torch::Tensor RotaryEmbedding::InverseFrequencies(int64_t max_position) const {
  const int64_t seq_len = max_position + 1;
  if (config_.rope_scaling.type != Type::kDynamic ||
      seq_len <= config_.max_position_embeddings) {
    return inv_freq_;
  }
  // HF recomputes with seq_len = max(position_ids) + 1 as an int64 tensor, so
  // the NTK base is an fp32 0-dim tensor. Unlike HF we do not keep the largest
  // base seen so far: the frequencies depend only on this call's positions
  // (HF's cache is an inference artefact and equals this on a fresh model).
  torch::NoGradGuard no_grad;
  const double factor = config_.rope_scaling.factor;
  const int64_t dim = config_.head_dim;
  torch::Tensor len = torch::full({}, seq_len, torch::kInt64);
  torch::Tensor base =
      config_.rope_theta *
      torch::pow(factor * len / config_.max_position_embeddings - (factor - 1),
                 static_cast<double>(dim) / static_cast<double>(dim - 2));
  return FromBase(torch::pow(base, Exponents(dim))).contiguous();
}

std::pair<torch::Tensor, torch::Tensor> RotaryEmbedding::CosSin(
    const torch::Tensor& position_ids, torch::ScalarType dtype) const {
  TORCH_CHECK_VALUE(position_ids.dim() == 1 || position_ids.dim() == 2,
                    "rope: position_ids must be [N] or [B, N], got ",
                    position_ids.sizes());
  torch::NoGradGuard no_grad;
  torch::Tensor pos =
      position_ids.dim() == 1 ? position_ids.unsqueeze(0) : position_ids;
  int64_t max_position = 0;
  if (config_.rope_scaling.type == Type::kDynamic && pos.numel() > 0) {
    max_position = pos.max().item<int64_t>();
  }
  torch::Tensor inv_freq = InverseFrequencies(max_position).to(pos.device());
  // HF: (inv_freq[None, :, None] @ pos[:, None, :]).transpose(1, 2); a K = 1
  // matmul is one rounded product per element, identical to this outer product.
  torch::Tensor freqs = pos.to(torch::kFloat).unsqueeze(-1) * inv_freq;
  torch::Tensor emb = torch::cat({freqs, freqs}, -1);
  torch::Tensor cos = emb.cos();
  torch::Tensor sin = emb.sin();
  if (attention_scaling_ != 1.0) {
    cos = cos * attention_scaling_;
    sin = sin * attention_scaling_;
  }
  return {cos.to(dtype), sin.to(dtype)};
}

torch::Tensor RotateHalf(const torch::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

torch::Tensor ApplyRotary(const torch::Tensor& x, const torch::Tensor& cos,
                          const torch::Tensor& sin) {
  torch::Tensor c = cos.unsqueeze(1);
  torch::Tensor s = sin.unsqueeze(1);
  return x * c + RotateHalf(x) * s;
}

}  // namespace lemo::engine
