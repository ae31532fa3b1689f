#include "worker/engine/model/recompute_context.h"

namespace lemo::engine {
namespace {

thread_local bool in_checkpoint_recompute = false;

}  // namespace

bool InCheckpointRecompute() { return in_checkpoint_recompute; }

RecomputeScope::RecomputeScope() : previous_(in_checkpoint_recompute) {
  in_checkpoint_recompute = true;
}

RecomputeScope::~RecomputeScope() { in_checkpoint_recompute = previous_; }

}  // namespace lemo::engine
