// A TCP port on 127.0.0.1 that nothing listens on right now, for tests whose
// rank 0 must know its store's port before the other ranks start. Another
// process could take it in between; the tests accept that (rare) race.
#ifndef LEMO_TESTS_WORKER_COMM_FREE_PORT_H_
#define LEMO_TESTS_WORKER_COMM_FREE_PORT_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace lemo::testing {

inline int FreeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

}  // namespace lemo::testing

#endif  // LEMO_TESTS_WORKER_COMM_FREE_PORT_H_
