// SHA-256 (OpenSSL libcrypto), hex-encoded the way checkpoint chunks carry it
// on the wire and SHA256SUMS files list it: incremental, of bytes, or of a
// file. The one copy every process shares.
//
//   Sha256 h;  h.Update(chunk1);  h.Update(chunk2);
//   std::string hex = h.HexDigest();   // 64 lowercase hex chars
//   LEMO_ASSIGN_OR_RETURN(std::string sum, Sha256File("adapter.safetensors"));
#ifndef LEMO_COMMON_SHA256_H_
#define LEMO_COMMON_SHA256_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
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

// Hex sha256 of a file's contents, streamed so any size works; NOT_FOUND when
// it does not exist.
absl::StatusOr<std::string> Sha256File(const std::string& path);

}  // namespace lemo

#endif  // LEMO_COMMON_SHA256_H_
