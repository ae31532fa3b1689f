// The one loop over token tiles that the tiled steps share (the RMSNorm in
// lean_ops, the LoRA node in lora_linear, the MLP node in
// worker/engine/lemo/sparse_mlp.h): body(t0, len) over [0, n) in tiles of
// `tile` tokens, ragged last tile included; one tile of all n when tile is 0
// or covers n, so the untiled path runs the very same operations once.
//
//   ForEachTile(x.size(1), 16384, [&](int64_t t0, int64_t len) {
//     out.narrow(1, t0, len).copy_(Step(x.narrow(1, t0, len)));
//   });
#ifndef LEMO_WORKER_ENGINE_MODEL_TOKEN_TILES_H_
#define LEMO_WORKER_ENGINE_MODEL_TOKEN_TILES_H_

#include <algorithm>
#include <cstdint>

namespace lemo::engine {

template <typename F>
void ForEachTile(int64_t n, int64_t tile, F&& body) {
  const int64_t step = tile > 0 && tile < n ? tile : std::max<int64_t>(n, 1);
  for (int64_t t0 = 0; t0 < n; t0 += step) body(t0, std::min(step, n - t0));
}

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_MODEL_TOKEN_TILES_H_
