// Opens a training-data file (JSONL corpus or token file) with errors that say
// what is wrong: a directory, a missing file (NOT_FOUND), or one that cannot be
// read.
//
//   LEMO_ASSIGN_OR_RETURN(std::ifstream in, OpenDataFile(path));
#ifndef LEMO_WORKER_ENGINE_DATA_DATA_FILE_H_
#define LEMO_WORKER_ENGINE_DATA_DATA_FILE_H_

#include <fstream>
#include <string>

#include "absl/status/statusor.h"

namespace lemo::engine {

absl::StatusOr<std::ifstream> OpenDataFile(const std::string& path);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_DATA_DATA_FILE_H_
