// Incremental SHA-256 (OpenSSL), lowercase hex as checkpoints carry it.
//
//   Sha256 h;
//   h.Update(chunk);
//   std::string hex = h.HexDigest();  // 64 characters
#ifndef LEMO_CLIENT_SHA256_H_
#define LEMO_CLIENT_SHA256_H_

#include <string>

#include "absl/strings/string_view.h"

struct evp_md_ctx_st;

namespace lemo::client {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(absl::string_view data);
  // Finishes the hash; call once.
  std::string HexDigest();

 private:
  evp_md_ctx_st* ctx_;
};

}  // namespace lemo::client

#endif  // LEMO_CLIENT_SHA256_H_
