// The MLP sublayer's memory savers (LEMO.md section 3) as one autograd node
// over PostAttentionNorm -> gate/up (with LoRA) -> SwiGLU -> down (with LoRA):
// - channel-sparse backward: the forward runs dense; per sample, the
//   intermediate channels are ranked by ||SiLU(gate)||_2 + ||up||_2 over the
//   tokens, only the top (1 - prune_ratio) channels' gate/up are saved, and
//   backward flows through those channels only (approximate);
// - norm recomputation: the post-attention RMSNorm output is recomputed in
//   backward from the layer's residual h (which the norm's backward needs
//   anyway) instead of being saved (exact);
// - gate/up recomputation: gate/up (2 x intermediate values per token, the
//   largest thing a layer saves) are recomputed in backward from the node's
//   input instead of being saved (exact; costs gate/up's forward GEMMs again);
// - sequence tiling: the node runs over tiles of tokens, forward and
//   backward, so a full-length [B, N, intermediate] tensor (3 x 8.6 GiB at
//   384K tokens on Llama-2-7B) is never alive; only its input is saved.
//   Row for row the same operations (the adapters' weight gradients are summed
//   tile by tile, so MLP LoRA gradients may differ in the last bits).
// The node never saves SwiGLU's output: down_proj's LoRA gradient recomputes
// it from the saved gate/up. It must be the last op of a decoder layer: inside
// a gradient checkpoint's re-run (InCheckpointRecompute) it skips down_proj's
// base GEMM and returns zeros, since that re-run reads only the graph.
//
//   MlpSavers savers{/*prune_ratio=*/0.8, /*recompute_norm=*/true};
//   torch::Tensor out = h + MlpSublayer(layer, h, savers, /*training=*/true);
//
// LoRA on gate_proj/up_proj/down_proj is supported: lora_B of gate/up gets
// gradient rows only at kept channels, down_proj's lora_A gradient columns only
// at kept channels, down_proj's lora_B its exact gradient. LoRA dropout on
// those projections is rejected (ValidateMlpSavers): its dropped input would
// have to be saved in full.
//
// Torch errors throw (TORCH_CHECK); the trainer wraps calls with CallTorch.
#ifndef LEMO_WORKER_ENGINE_LEMO_SPARSE_MLP_H_
#define LEMO_WORKER_ENGINE_LEMO_SPARSE_MLP_H_

#include <torch/torch.h>

#include <cstdint>

#include "absl/status/status.h"
#include "worker/engine/lemo/lemo_options.h"
#include "worker/engine/model/llama_model.h"

namespace lemo::engine {

struct MlpSavers {
  // Fraction of intermediate channels whose backward is dropped, in [0, 1); 0
  // keeps every channel (the exact dense backward).
  double prune_ratio = 0;
  // Recompute the post-attention norm output in backward instead of saving it.
  bool recompute_norm = false;
  // Recompute gate/up in backward from the node's input instead of saving
  // them.
  bool recompute_gate_up = false;
  // Tokens per tile: the node runs over the sequence in tiles, forward and
  // backward, so no [B, N, intermediate] tensor is ever alive (needs
  // recompute_norm and recompute_gate_up; no prune_ratio). 0 = untiled.
  int64_t tile_tokens = 0;
};

// The savers LemoOptions asks for (recompute_mlp: gate/up and the norm).
MlpSavers MlpSaversFrom(const LemoOptions& options);
// True when any saver is on (MlpSublayer then runs the fused node).
bool MlpSaversActive(const MlpSavers& savers);

// Checks the saver options against the adapters: prune ratio in [0, 1), and no
// LoRA dropout on MLP projections while a saver is on.
absl::Status ValidateMlpSavers(const LemoOptions& options,
                               const LoraOptions& lora);

// Channels a layer of `intermediate` channels keeps: ceil((1 - prune_ratio) x
// intermediate), at least 1.
int64_t KeptMlpChannels(int64_t intermediate, double prune_ratio);

// The kept channels per sample for gate/up [B, N, I]: int64 [B, k], ascending,
// k = KeptMlpChannels(I, prune_ratio), ranked by the fp32 L2 norms over tokens
// of silu(gate) plus those of up.
torch::Tensor TopMlpChannels(const torch::Tensor& gate, const torch::Tensor& up,
                             double prune_ratio);

// layer.Mlp(layer.PostAttentionNorm(h)) with `savers`: the same forward values;
// exactly the op-by-op path when no saver is on.
torch::Tensor MlpSublayer(const DecoderLayer& layer, const torch::Tensor& h,
                          const MlpSavers& savers, bool training);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_LEMO_SPARSE_MLP_H_
