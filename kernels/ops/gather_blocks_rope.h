// lemo::gather_blocks_rope: gather the kept blocks of q or k and rotate them
// (RoPE, HF Llama's rotate_half convention) at their ORIGINAL positions, the
// fused gather + RoPE of LEMO.md section 4.
//
//   auto [cos, sin] = rope.CosSin(arange(N), dtype);  // [1, N, d], HF layout
//   at::Tensor qk = lemo::kernels::GatherBlocksRope(q, kept, cos, sin);
//   // == ApplyRotary(GatherBlocks(q, kept), cos/sin at the kept positions)
//
// y = x * cos + rotate_half(x) * sin, computed in x's dtype with cos/sin cast
// to it (as HF does). cos/sin are [B or 1, N, d] tables for positions 0..N-1
// and get no gradient. Autograd: the backward rotates the gradient back (g *
// cos + rotate_half^T(g * sin)) and scatters it; it saves the kept indices and
// references to the shared cos/sin tables, no activation.
#ifndef LEMO_KERNELS_OPS_GATHER_BLOCKS_ROPE_H_
#define LEMO_KERNELS_OPS_GATHER_BLOCKS_ROPE_H_

#include <ATen/ATen.h>

#include <cstdint>

namespace lemo::kernels {

// CPU reference of lemo::gather_blocks_rope, plain LibTorch.
at::Tensor GatherBlocksRopeCpu(const at::Tensor& x,
                               const at::Tensor& kept_blocks,
                               const at::Tensor& cos, const at::Tensor& sin,
                               int64_t block);

}  // namespace lemo::kernels

#endif  // LEMO_KERNELS_OPS_GATHER_BLOCKS_ROPE_H_
