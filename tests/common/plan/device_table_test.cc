// Tests for common/plan/device_table.h: the built-in table, the parser of a
// user's table (every wrong entry named by index, name and key) and the
// device a worker's registration maps to; the built-in table is parsed once
// per process and every call must still see it as written. To add a case: add a
// {table text, expected words} row to
// ParseDeviceTable.BadTablesNameTheEntryAndKey, or a registration to
// DeviceFromRegistration's tests.
#include "common/plan/device_table.h"

#include <limits>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace lemo::plan {

// common/plan/devices.json's text (device_table.cc's generated source), to
// compare the cached table with a fresh parse.
extern const char kBuiltinDevicesJson[];

namespace {

using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

TEST(BuiltinDevices, HoldTheMeasuredGpus) {
  absl::StatusOr<std::vector<DeviceDescription>> devices = BuiltinDevices();
  ASSERT_THAT(devices.status(), IsOk());
  ASSERT_GE(devices->size(), 2u);
  absl::StatusOr<DeviceDescription> h100 = FindDevice("h100-80gb");
  ASSERT_THAT(h100.status(), IsOk());
  // The H100's measured rates
  // (bench/results/2026-12-06-h100-grid/h100-rates.json): torch's total_memory,
  // the bf16 GEMM and flash-attention rates, MemTotal.
  EXPECT_EQ(h100->memory_bytes, 85017493504);
  EXPECT_DOUBLE_EQ(h100->matmul_flops_per_s, 785.9e12);
  EXPECT_DOUBLE_EQ(h100->attention_flops_per_s, 481.0e12);
  EXPECT_EQ(h100->host_memory_bytes, 135129059328);
  EXPECT_THAT(h100->measured, HasSubstr("h100-rates.json"));
  EXPECT_FALSE(h100->measured.empty());
  absl::StatusOr<DeviceDescription> h200 = FindDevice("h200-141gb");
  ASSERT_THAT(h200.status(), IsOk());
  EXPECT_NEAR(h200->memory_bytes / double(int64_t{1} << 30), 139.8, 0.01);
  for (const DeviceDescription& d : *devices) {
    SCOPED_TRACE(d.name);
    EXPECT_GT(d.attention_flops_per_s, 0);
    EXPECT_GT(d.host_copy_bytes_per_s, 0);
  }
}

void ExpectSameDevice(const DeviceDescription& a, const DeviceDescription& b) {
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.description, b.description);
  EXPECT_EQ(a.memory_bytes, b.memory_bytes) << a.name;
  EXPECT_EQ(a.host_memory_bytes, b.host_memory_bytes) << a.name;
  EXPECT_EQ(a.matmul_flops_per_s, b.matmul_flops_per_s) << a.name;
  EXPECT_EQ(a.attention_flops_per_s, b.attention_flops_per_s) << a.name;
  EXPECT_EQ(a.host_copy_bytes_per_s, b.host_copy_bytes_per_s) << a.name;
  EXPECT_EQ(a.measured, b.measured) << a.name;
}

// The table is parsed once per process and shared by every caller: each call
// must still see the embedded table as written, whatever earlier callers did
// with their copies or their registrations, and from any thread.
TEST(BuiltinDevices, EveryCallSeesTheEmbeddedTableUnchanged) {
  absl::StatusOr<std::vector<DeviceDescription>> fresh =
      ParseDeviceTable(kBuiltinDevicesJson);
  ASSERT_THAT(fresh.status(), IsOk());
  absl::StatusOr<std::vector<DeviceDescription>> first = BuiltinDevices();
  ASSERT_THAT(first.status(), IsOk());
  // A caller's copy is its own.
  (*first)[0].memory_bytes = 1;
  (*first)[0].name = "changed";
  // A registration with its own memory and host sizes overrides them in its
  // result only.
  const DeviceDescription registered =
      DeviceFromRegistration((*fresh)[0].name, 12345, 67890);
  EXPECT_EQ(registered.memory_bytes, 12345);
  EXPECT_EQ(registered.host_memory_bytes, 67890);
  std::vector<absl::StatusOr<std::vector<DeviceDescription>>> seen(8);
  {
    std::vector<std::thread> threads;
    for (auto& s : seen) {
      threads.emplace_back([&s] { s = BuiltinDevices(); });
    }
    for (std::thread& th : threads) th.join();
  }
  seen.push_back(BuiltinDevices());
  for (const auto& again : seen) {
    ASSERT_THAT(again.status(), IsOk());
    ASSERT_EQ(again->size(), fresh->size());
    for (size_t i = 0; i < fresh->size(); ++i) {
      ExpectSameDevice((*again)[i], (*fresh)[i]);
    }
  }
  absl::StatusOr<DeviceDescription> found = FindDevice((*fresh)[0].name);
  ASSERT_THAT(found.status(), IsOk());
  ExpectSameDevice(*found, (*fresh)[0]);
  ExpectSameDevice(DeviceFromRegistration((*fresh)[0].name, 0, 0), (*fresh)[0]);
}

TEST(FindDevice, UnknownNameListsTheKnownOnes) {
  EXPECT_THAT(FindDevice("a100-40gb").status(),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(HasSubstr("a100-40gb"), HasSubstr("h100-80gb"),
                             HasSubstr("h200-141gb"))));
}

TEST(ParseDeviceTable, ReadsAUsersTable) {
  absl::StatusOr<std::vector<DeviceDescription>> t = ParseDeviceTable(R"({
    "_comment": "mine",
    "devices": [{"name": "l40s", "description": "NVIDIA L40S", "memory_bytes": 47698477056,
                 "host_memory_bytes": 68719476736, "matmul_flops_per_s": 3.0e14,
                 "host_copy_bytes_per_s": 2.0e10, "measured": "my bench"}]})");
  ASSERT_THAT(t.status(), IsOk());
  ASSERT_EQ(t->size(), 1u);
  EXPECT_EQ((*t)[0].name, "l40s");
  EXPECT_EQ((*t)[0].memory_bytes, 47698477056);
  EXPECT_EQ((*t)[0].attention_flops_per_s,
            0);  // absent: the planner uses the matmul rate
}

TEST(ParseDeviceTable, BadTablesNameTheEntryAndKey) {
  const std::string ok_rest =
      R"("host_memory_bytes": 1, "matmul_flops_per_s": 1, "host_copy_bytes_per_s": 1)";
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"not json", {"not JSON"}},
      {"[]", {"\"devices\" array"}},
      {R"({"devices": {}})", {"\"devices\" array"}},
      {R"({"devices": []})", {"empty"}},
      {R"({"devices": [3]})", {"devices[0]", "object"}},
      {R"({"devices": [{"memory_bytes": 1, )" + ok_rest + "}]}",
       {"devices[0]", "\"name\""}},
      {R"({"devices": [{"name": "", "memory_bytes": 1, )" + ok_rest + "}]}",
       {"devices[0]", "\"name\"", "empty"}},
      {R"({"devices": [{"name": "x", )" + ok_rest + "}]}",
       {"devices[0] (x)", "\"memory_bytes\"", "missing"}},
      {R"({"devices": [{"name": "x", "memory_bytes": "80GB", )" + ok_rest +
           "}]}",
       {"devices[0] (x)", "\"memory_bytes\"", "number"}},
      {R"({"devices": [{"name": "x", "memory_bytes": -1, )" + ok_rest + "}]}",
       {"devices[0] (x)", "\"memory_bytes\"", "> 0"}},
      {R"({"devices": [{"name": "x", "memory_bytes": 1, "host_memory_bytes": 1,
           "matmul_flops_per_s": 0, "host_copy_bytes_per_s": 1}]})",
       {"\"matmul_flops_per_s\"", "> 0"}},
      {R"({"devices": [{"name": "x", "memory_bytes": 1, "attention_flops_per_s": -5, )" +
           ok_rest + "}]}",
       {"\"attention_flops_per_s\"", ">= 0"}},
      {R"({"devices": [{"name": "x", "memory_bytes": 1, "measured": 7, )" +
           ok_rest + "}]}",
       {"\"measured\"", "string"}},
      {R"({"devices": [{"name": "x", "memory_bytes": 1e30, )" + ok_rest + "}]}",
       {"\"memory_bytes\""}},
      {R"({"devices": [{"name": "x", "memory_bytes": 1, )" + ok_rest +
           R"(}, {"name": "x", "memory_bytes": 2, )" + ok_rest + "}]}",
       {"devices[1] (x)", "twice"}},
  };
  for (const auto& [text, words] : cases) {
    SCOPED_TRACE(text);
    absl::Status st = ParseDeviceTable(text).status();
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    for (const std::string& w : words)
      EXPECT_THAT(std::string(st.message()), HasSubstr(w));
  }
}

TEST(DeviceFromRegistration, KnownNamesGetTheTableEntry) {
  const DeviceDescription by_name = DeviceFromRegistration("h100-80gb", 0, 0);
  EXPECT_EQ(by_name.name, "h100-80gb");
  EXPECT_EQ(by_name.memory_bytes, 85017493504);
  // What torch calls the card (a worker registers that), in any case.
  const DeviceDescription by_description = DeviceFromRegistration(
      "nvidia h100 80gb hbm3", 85028569088, int64_t{64} << 30);
  EXPECT_EQ(by_description.name, "h100-80gb");
  EXPECT_EQ(by_description.host_memory_bytes,
            int64_t{64} << 30);  // the worker's own host
}

TEST(DeviceFromRegistration, UnknownNamesTakeTheNearestRates) {
  const DeviceDescription big =
      DeviceFromRegistration("NVIDIA B200", int64_t{180} << 30, 0);
  EXPECT_EQ(big.name, "NVIDIA B200");
  EXPECT_EQ(big.memory_bytes, int64_t{180} << 30);
  EXPECT_THAT(big.measured, HasSubstr("h200-141gb"));
  const DeviceDescription small =
      DeviceFromRegistration("NVIDIA A10", int64_t{24} << 30, 0);
  EXPECT_THAT(small.measured, HasSubstr("h100-80gb"));
  EXPECT_GT(small.matmul_flops_per_s, 0);
  // Nonsense registrations still give a usable description.
  const DeviceDescription odd =
      DeviceFromRegistration("", std::numeric_limits<int64_t>::min(), -1);
  EXPECT_GT(odd.memory_bytes, 0);
}

}  // namespace
}  // namespace lemo::plan
