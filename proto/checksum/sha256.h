// Incremental SHA-256 (OpenSSL), hex-encoded the way checkpoint chunks carry it
// on the wire; the one copy that the client and the coordinator share.
//
//   Sha256 h;  h.Update(chunk1);  h.Update(chunk2);
//   std::string hex = h.HexDigest();   // 64 lowercase hex chars
#ifndef LEMO_PROTO_CHECKSUM_SHA256_H_
#define LEMO_PROTO_CHECKSUM_SHA256_H_

#include <memory>
#include <string>

#include "absl/strings/string_view.h"

struct evp_md_ctx_st;

namespace lemo {

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

// Hex sha256 of `data`.
std::string Sha256Hex(absl::string_view data);

}  // namespace lemo

#endif  // LEMO_PROTO_CHECKSUM_SHA256_H_
