// lemo-train tokenize: prints the token ids a tokenizer gives a text file, to
// check which ids training will see (no bos/eos: the trainer frames each
// document with them itself).
//
//   Command tok = AddTokenizeCommand(&app);
//   // lemo-train tokenize --tokenizer /models/llama/tokenizer.json \
//   //     --input doc.txt [-o json]
//   // lemo-train tokenize --model /models/llama --input doc.txt  # its own
#ifndef LEMO_WORKER_LEMO_TRAIN_TOKENIZE_COMMAND_H_
#define LEMO_WORKER_LEMO_TRAIN_TOKENIZE_COMMAND_H_

#include "CLI/CLI.hpp"
#include "worker/lemo_train/command.h"

namespace lemo::worker::lemo_train {

// Registers "tokenize" and its flags on `app`.
Command AddTokenizeCommand(CLI::App* app);

}  // namespace lemo::worker::lemo_train

#endif  // LEMO_WORKER_LEMO_TRAIN_TOKENIZE_COMMAND_H_
