#include "common/loopback.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"

namespace lemo {
namespace {

bool IsLoopbackV4(const in_addr& a) { return (ntohl(a.s_addr) >> 24) == 127; }

bool IsLoopbackV6(const in6_addr& a) {
  if (IN6_IS_ADDR_LOOPBACK(&a)) return true;
  if (IN6_IS_ADDR_V4MAPPED(&a)) {
    // ::ffff:a.b.c.d: the last four bytes are the IPv4 address.
    return a.s6_addr[12] == 127;
  }
  return false;
}

std::string StripBrackets(absl::string_view host) {
  if (absl::StartsWith(host, "[") && absl::EndsWith(host, "]")) {
    host.remove_prefix(1);
    host.remove_suffix(1);
  }
  return std::string(host);
}

}  // namespace

bool IsLoopbackIpLiteral(absl::string_view host) {
  const std::string h = StripBrackets(host);
  in_addr v4{};
  if (inet_pton(AF_INET, h.c_str(), &v4) == 1) return IsLoopbackV4(v4);
  in6_addr v6{};
  if (inet_pton(AF_INET6, h.c_str(), &v6) == 1) return IsLoopbackV6(v6);
  return false;
}

bool ResolvesOnlyToLoopback(absl::string_view host) {
  const std::string h = StripBrackets(host);
  if (h.empty()) return false;
  in_addr v4{};
  in6_addr v6{};
  if (inet_pton(AF_INET, h.c_str(), &v4) == 1) return IsLoopbackV4(v4);
  if (inet_pton(AF_INET6, h.c_str(), &v6) == 1) return IsLoopbackV6(v6);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(h.c_str(), nullptr, &hints, &res) != 0 || res == nullptr) {
    return false;
  }
  bool any = false;
  bool all_loopback = true;
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    if (a->ai_family == AF_INET) {
      any = true;
      all_loopback &=
          IsLoopbackV4(reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr);
    } else if (a->ai_family == AF_INET6) {
      any = true;
      all_loopback &=
          IsLoopbackV6(reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr);
    }
  }
  freeaddrinfo(res);
  return any && all_loopback;
}

}  // namespace lemo
