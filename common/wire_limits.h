// Message size limits both ends of the worker stream must agree on, in one
// place: the worker's channel refuses any message above
// kWorkerMaxMessageBytes, so the coordinator must never send an Assign that
// large. It bounds a job spec at submit (--max-spec-bytes) to leave
// kAssignEnvelopeBytes for the rest of the Assign (ids, rendezvous address,
// the resume checkpoint's file list).
//
//   if (max_spec_bytes > kWorkerMaxMessageBytes - kAssignEnvelopeBytes) ...
#ifndef LEMO_COMMON_WIRE_LIMITS_H_
#define LEMO_COMMON_WIRE_LIMITS_H_

#include <cstdint>

namespace lemo {

// Largest message a lemo-worker sends or receives: a 1 MiB checkpoint chunk
// with ample room for its envelope, and any Assign.
inline constexpr int kWorkerMaxMessageBytes = 8 << 20;
// Room an Assign needs beside its spec; a resume checkpoint lists at most 64
// files (CheckpointStore::Options::max_files) of a few hundred bytes each.
inline constexpr int kAssignEnvelopeBytes = 1 << 20;
// The coordinator's default --max-spec-bytes: real specs are a few KiB; this
// leaves room for long label lists and per-layer schedules.
inline constexpr int64_t kDefaultMaxSpecBytes = 4 << 20;

}  // namespace lemo

#endif  // LEMO_COMMON_WIRE_LIMITS_H_
