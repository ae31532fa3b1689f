// PrincipalLimiter on its own: budgets per principal and per kind, the admin
// multiple, shared principals counted per peer host, slots freed by scope,
// flag validation and the wording of a refusal. The same limits over real
// gRPC are in limits_test.cc.
//
// To add a case: build a limiter with Make(streams, unary), Acquire slots for
// principals from Named()/Shared(), and check InUse() or the refusal's
// StatusIs(kResourceExhausted, ...).
#include "server/service/principal_limiter.h"

#include <algorithm>
#include <atomic>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace lemo::server {
namespace {

using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using Kind = PrincipalLimiter::Kind;

constexpr char kPeerA[] = "ipv4:10.0.0.5:43122";
constexpr char kPeerA2[] = "ipv4:10.0.0.5:50000";  // same host, other port
constexpr char kPeerB[] = "ipv4:10.0.0.6:43122";

std::unique_ptr<PrincipalLimiter> Make(int streams, int unary) {
  PrincipalLimiter::Options o;
  o.max_streams = streams;
  o.max_inflight_rpcs = unary;
  auto limiter = PrincipalLimiter::Create(o);
  EXPECT_THAT(limiter.status(), IsOk());
  return limiter.ok() ? std::move(*limiter) : nullptr;
}

Principal Named(const std::string& name, Role role = Role::kClient) {
  Principal p;
  p.name = name;
  p.role = role;
  return p;
}

// A legacy bare worker token: every worker shares it.
Principal Shared() {
  Principal p = Named("worker-0123456789ab", Role::kWorker);
  p.any_worker_id = true;
  return p;
}

TEST(PrincipalLimiter, RefusesLimitsBelowOneNamingTheFlag) {
  for (int bad : {0, -1}) {
    PrincipalLimiter::Options o;
    o.max_streams = bad;
    EXPECT_THAT(PrincipalLimiter::Create(o).status(),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("--max-streams-per-principal"),
                               HasSubstr(absl::StrCat("got ", bad)))));
    o = PrincipalLimiter::Options();
    o.max_inflight_rpcs = bad;
    EXPECT_THAT(PrincipalLimiter::Create(o).status(),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("--max-inflight-rpcs-per-principal"),
                               HasSubstr(absl::StrCat("got ", bad)))));
  }
  EXPECT_THAT(PrincipalLimiter::Create({}).status(), IsOk());
}

TEST(PrincipalLimiter, DefaultsAreTheDocumentedOnes) {
  PrincipalLimiter::Options o;
  EXPECT_EQ(o.max_streams, 64);
  EXPECT_EQ(o.max_inflight_rpcs, 256);
}

TEST(PrincipalLimiter, OneMoreStreamIsRefusedNamingPrincipalCountAndFlag) {
  auto limiter = Make(2, 10);
  const Principal alice = Named("alice");
  std::vector<PrincipalLimiter::Slot> held;
  for (int i = 0; i < 2; ++i) {
    LEMO_ASSERT_OK_AND_ASSIGN(PrincipalLimiter::Slot s,
                              limiter->Acquire(alice, kPeerA, Kind::kStream));
    held.push_back(std::move(s));
  }
  EXPECT_EQ(limiter->InUse(alice, kPeerA, Kind::kStream), 2);
  EXPECT_THAT(limiter->Acquire(alice, kPeerA, Kind::kStream).status(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       AllOf(HasSubstr("client principal \"alice\""),
                             HasSubstr("already has 2 streaming RPCs open"),
                             HasSubstr("--max-streams-per-principal=2"))));
  // A refusal takes nothing.
  EXPECT_EQ(limiter->InUse(alice, kPeerA, Kind::kStream), 2);
  // A named principal is one budget from any host.
  EXPECT_THAT(limiter->Acquire(alice, kPeerB, Kind::kStream).status(),
              StatusIs(absl::StatusCode::kResourceExhausted, ::testing::_));
  // Freed by scope, and the place is usable again.
  held.pop_back();
  EXPECT_EQ(limiter->InUse(alice, kPeerA, Kind::kStream), 1);
  EXPECT_THAT(limiter->Acquire(alice, kPeerA, Kind::kStream).status(), IsOk());
}

TEST(PrincipalLimiter, UnaryAndStreamsAreSeparateBudgets) {
  auto limiter = Make(1, 1);
  const Principal alice = Named("alice");
  LEMO_ASSERT_OK_AND_ASSIGN(PrincipalLimiter::Slot stream,
                            limiter->Acquire(alice, kPeerA, Kind::kStream));
  LEMO_ASSERT_OK_AND_ASSIGN(PrincipalLimiter::Slot unary,
                            limiter->Acquire(alice, kPeerA, Kind::kUnary));
  EXPECT_THAT(
      limiter->Acquire(alice, kPeerA, Kind::kUnary).status(),
      StatusIs(absl::StatusCode::kResourceExhausted,
               AllOf(HasSubstr("already has 1 unary RPCs in flight"),
                     HasSubstr("--max-inflight-rpcs-per-principal=1"))));
}

TEST(PrincipalLimiter, AnotherPrincipalIsUnaffected) {
  auto limiter = Make(1, 1);
  LEMO_ASSERT_OK_AND_ASSIGN(
      PrincipalLimiter::Slot a,
      limiter->Acquire(Named("alice"), kPeerA, Kind::kStream));
  EXPECT_THAT(limiter->Acquire(Named("alice"), kPeerA, Kind::kStream).status(),
              StatusIs(absl::StatusCode::kResourceExhausted, ::testing::_));
  EXPECT_THAT(limiter->Acquire(Named("bob"), kPeerA, Kind::kStream).status(),
              IsOk());
  // Same name, other role: another principal (auth refuses such a token file,
  // but the budget must not depend on that).
  EXPECT_THAT(
      limiter->Acquire(Named("alice", Role::kWorker), kPeerA, Kind::kStream)
          .status(),
      IsOk());
}

TEST(PrincipalLimiter, WorkersWithTheirOwnTokensEachHaveABudget) {
  auto limiter = Make(1, 1);
  std::vector<PrincipalLimiter::Slot> held;
  for (int i = 0; i < 1000; ++i) {
    LEMO_ASSERT_OK_AND_ASSIGN(
        PrincipalLimiter::Slot s,
        limiter->Acquire(Named(absl::StrCat("w", i), Role::kWorker), kPeerA,
                         Kind::kStream));
    held.push_back(std::move(s));
  }
}

TEST(PrincipalLimiter, AnAdminGetsTheMultiple) {
  auto limiter = Make(2, 3);
  const Principal root = Named("root", Role::kAdmin);
  std::vector<PrincipalLimiter::Slot> held;
  for (int i = 0; i < 2 * PrincipalLimiter::kAdminMultiple; ++i) {
    LEMO_ASSERT_OK_AND_ASSIGN(PrincipalLimiter::Slot s,
                              limiter->Acquire(root, kPeerA, Kind::kStream));
    held.push_back(std::move(s));
  }
  EXPECT_THAT(limiter->Acquire(root, kPeerA, Kind::kStream).status(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       AllOf(HasSubstr("admin principal \"root\""),
                             HasSubstr("already has 8 streaming RPCs open"),
                             HasSubstr("4 x --max-streams-per-principal=2 "
                                       "for an admin"))));
  for (int i = 0; i < 3 * PrincipalLimiter::kAdminMultiple; ++i) {
    LEMO_ASSERT_OK_AND_ASSIGN(PrincipalLimiter::Slot s,
                              limiter->Acquire(root, kPeerA, Kind::kUnary));
    held.push_back(std::move(s));
  }
  EXPECT_THAT(limiter->Acquire(root, kPeerA, Kind::kUnary).status(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("--max-inflight-rpcs-per-principal")));
}

TEST(PrincipalLimiter, ASharedPrincipalIsCountedPerHost) {
  auto limiter = Make(1, 1);
  for (const Principal& p : {Shared(), Principal::Anonymous(Role::kWorker),
                             Principal::Anonymous(Role::kClient)}) {
    SCOPED_TRACE(PrincipalLimiter::Key(p, kPeerA));
    LEMO_ASSERT_OK_AND_ASSIGN(PrincipalLimiter::Slot a,
                              limiter->Acquire(p, kPeerA, Kind::kStream));
    // Another port of the same host is the same budget...
    const int per_host =
        p.role == Role::kAdmin ? PrincipalLimiter::kAdminMultiple : 1;
    std::vector<PrincipalLimiter::Slot> more;
    for (int i = 1; i < per_host; ++i) {
      LEMO_ASSERT_OK_AND_ASSIGN(PrincipalLimiter::Slot s,
                                limiter->Acquire(p, kPeerA2, Kind::kStream));
      more.push_back(std::move(s));
    }
    EXPECT_THAT(limiter->Acquire(p, kPeerA2, Kind::kStream).status(),
                StatusIs(absl::StatusCode::kResourceExhausted,
                         HasSubstr("from 10.0.0.5")));
    // ...another host is not.
    EXPECT_THAT(limiter->Acquire(p, kPeerB, Kind::kStream).status(), IsOk());
  }
  EXPECT_THAT(limiter->Acquire(Principal::Anonymous(Role::kWorker), kPeerA,
                               Kind::kStream),
              IsOk());  // every slot above went out of scope
}

TEST(PrincipalLimiter, RefusalsNameASharedPrincipalAndItsHost) {
  auto limiter = Make(1, 1);
  LEMO_ASSERT_OK_AND_ASSIGN(PrincipalLimiter::Slot a,
                            limiter->Acquire(Shared(), kPeerA, Kind::kStream));
  EXPECT_THAT(limiter->Acquire(Shared(), kPeerA, Kind::kStream).status(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("worker principal \"worker-0123456789ab\" "
                                 "(a shared token, counted per host) from "
                                 "10.0.0.5")));
  LEMO_ASSERT_OK_AND_ASSIGN(
      PrincipalLimiter::Slot b,
      limiter->Acquire(Principal::Anonymous(Role::kWorker), "ipv6:[::1]:7",
                       Kind::kStream));
  EXPECT_THAT(limiter
                  ->Acquire(Principal::Anonymous(Role::kWorker), "ipv6:[::1]:8",
                            Kind::kStream)
                  .status(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("anonymous worker principal from ::1")));
}

TEST(PrincipalLimiter, PeerHostOfEachGrpcPeerForm) {
  struct Case {
    const char* peer;
    const char* host;
  };
  for (const Case& c : std::vector<Case>{
           {"ipv4:127.0.0.1:5000", "127.0.0.1"},
           {"ipv6:[::1]:5000", "::1"},
           {"ipv6:[fe80::1%eth0]:1", "fe80::1%eth0"},
           {"unix:/run/lemo.sock", "/run/lemo.sock"},
           {"unix-abstract:lemo", "lemo"},
           {"ipv4:noport", "noport"},
           {"", ""},
           {"something-else", "something-else"},
       }) {
    EXPECT_EQ(PrincipalLimiter::PeerHost(c.peer), c.host) << c.peer;
  }
}

TEST(PrincipalLimiter, AMovedSlotFreesOnceAndTheEntryGoes) {
  auto limiter = Make(1, 1);
  const Principal alice = Named("alice");
  {
    LEMO_ASSERT_OK_AND_ASSIGN(PrincipalLimiter::Slot a,
                              limiter->Acquire(alice, kPeerA, Kind::kStream));
    PrincipalLimiter::Slot b = std::move(a);
    PrincipalLimiter::Slot c;
    c = std::move(b);
    EXPECT_EQ(limiter->InUse(alice, kPeerA, Kind::kStream), 1);
  }
  EXPECT_EQ(limiter->InUse(alice, kPeerA, Kind::kStream), 0);
  // Freed exactly once: one place again, not two.
  LEMO_ASSERT_OK_AND_ASSIGN(PrincipalLimiter::Slot d,
                            limiter->Acquire(alice, kPeerA, Kind::kStream));
  EXPECT_THAT(limiter->Acquire(alice, kPeerA, Kind::kStream).status(),
              StatusIs(absl::StatusCode::kResourceExhausted, ::testing::_));
}

TEST(PrincipalLimiter, ConcurrentCallersNeverExceedTheLimit) {
  constexpr int kLimit = 3;
  auto limiter = Make(kLimit, kLimit);
  const Principal alice = Named("alice");
  std::atomic<int> holding{0};
  std::atomic<int> most{0};
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        auto slot = limiter->Acquire(alice, kPeerA, Kind::kUnary);
        if (!slot.ok()) {
          ++refused;
          continue;
        }
        const int now = ++holding;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        --holding;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_LE(most.load(), kLimit);
  EXPECT_EQ(limiter->InUse(alice, kPeerA, Kind::kUnary), 0);
}

}  // namespace
}  // namespace lemo::server
