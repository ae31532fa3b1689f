// A minimal HTTP/1.0 GET against 127.0.0.1 for tests that read a real
// /metrics endpoint (prometheus-cpp's exposer, the worker's and coordinator's
// metrics servers) without pulling an HTTP client library into the tests.
//
//   std::string response = lemo::testing::HttpGet(port, "/metrics");
//   EXPECT_THAT(response, HasSubstr("lemo_worker_steps_total"));
#ifndef LEMO_TESTS_TESTING_HTTP_GET_H_
#define LEMO_TESTS_TESTING_HTTP_GET_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string>

namespace lemo::testing {

// The whole response (status line, headers and body) of GET `path` on
// 127.0.0.1:port; "" when nothing listens there.
inline std::string HttpGet(int port, const std::string& path = "/metrics") {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  const std::string request = "GET " + path +
                              " HTTP/1.0\r\nHost: 127.0.0.1\r\n"
                              "Connection: close\r\n\r\n";
  (void)!write(fd, request.data(), request.size());
  std::string response;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) {
    response.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return response;
}

}  // namespace lemo::testing

#endif  // LEMO_TESTS_TESTING_HTTP_GET_H_
