// Loopback is decided by the resolved address, not the spelling. To add a
// case: a host string in the right list below.
#include "common/loopback.h"

#include "gtest/gtest.h"

namespace lemo {
namespace {

TEST(Loopback, IpLiterals) {
  for (const char* h :
       {"127.0.0.1", "127.1.2.3", "::1", "[::1]", "::ffff:127.0.0.1"}) {
    EXPECT_TRUE(IsLoopbackIpLiteral(h)) << h;
    EXPECT_TRUE(ResolvesOnlyToLoopback(h)) << h;
  }
  for (const char* h : {"0.0.0.0", "::", "10.0.0.1", "128.0.0.1",
                        "::ffff:10.0.0.1", "2001:db8::1", "localhost", ""}) {
    EXPECT_FALSE(IsLoopbackIpLiteral(h)) << h;
  }
}

TEST(Loopback, NamesAreResolvedNotPrefixMatched) {
  EXPECT_TRUE(ResolvesOnlyToLoopback("localhost"));
  // A DNS name that merely starts like a loopback address: whatever it
  // resolves to (here: nothing), the spelling must not make it loopback.
  EXPECT_FALSE(ResolvesOnlyToLoopback("127.evil.example"));
  EXPECT_FALSE(ResolvesOnlyToLoopback("localhost.evil.example"));
  EXPECT_FALSE(ResolvesOnlyToLoopback("0.0.0.0"));
  EXPECT_FALSE(ResolvesOnlyToLoopback("[::]"));
  EXPECT_FALSE(ResolvesOnlyToLoopback(""));
}

}  // namespace
}  // namespace lemo
