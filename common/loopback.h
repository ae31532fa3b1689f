// Whether a host is loopback, decided by the address it resolves to, never by
// how its name is spelled: "127.evil.example" is a DNS name that may point
// anywhere, and a plaintext connection (or a coordinator without
// authentication) must only ever be reachable from this machine. The
// coordinator asks it of its listen address, clients of their target.
//
//   if (!ResolvesOnlyToLoopback("localhost")) { ...require TLS and tokens... }
#ifndef LEMO_COMMON_LOOPBACK_H_
#define LEMO_COMMON_LOOPBACK_H_

#include "absl/strings/string_view.h"

namespace lemo {

// True for an IP literal in 127.0.0.0/8, ::1 or ::ffff:127.x.y.z ("[::1]"
// brackets allowed). False for names and anything else.
bool IsLoopbackIpLiteral(absl::string_view host);

// True when `host` is a loopback IP literal, or a name every one of whose
// resolved addresses (getaddrinfo, IPv4 and IPv6) is loopback. False when it
// does not resolve, resolves to nothing, or to any other address; empty,
// "0.0.0.0" and "::" (every interface) are never loopback.
bool ResolvesOnlyToLoopback(absl::string_view host);

}  // namespace lemo

#endif  // LEMO_COMMON_LOOPBACK_H_
