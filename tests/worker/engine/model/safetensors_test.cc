// Tests for worker/engine/model/safetensors.h. To add a case: write tensors
// with WriteSafetensors into MakeTempDir(), then read them back (or corrupt the
// file / index first) and check values or the error text.
#include "worker/engine/model/safetensors.h"

#include <torch/torch.h>

#include <fstream>

#include "common/atomic_file.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"
#include "tests/worker/engine/engine_test_util.h"

namespace lemo::engine {
namespace {

using ::lemo::engine::testing::MakeTempDir;
using ::lemo::engine::testing::RunPython;
using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

// Same values as expected() in safetensors_interop.py.
NamedTensors ExpectedTensors() {
  torch::Tensor base =
      torch::arange(30, torch::kFloat64).reshape({2, 3, 5}).remainder(251);
  torch::Tensor vals = base * 0.25 - 31;
  return {{"w.bf16", vals.to(torch::kBFloat16)},
          {"w.f16", vals.to(torch::kFloat16)},
          {"w.f32", vals.to(torch::kFloat32)},
          {"ids.i64", torch::arange(7, torch::kInt64) * 7 - 1000},
          {"mask.bool", torch::tensor({true, false, true})},
          {"scalar.f32", torch::tensor(2.5f)}};
}

void ExpectSame(const NamedTensors& got, const NamedTensors& want) {
  ASSERT_EQ(got.size(), want.size());
  std::map<std::string, torch::Tensor> by_name(got.begin(), got.end());
  for (const auto& [name, w] : want) {
    ASSERT_TRUE(by_name.count(name)) << name;
    const torch::Tensor& g = by_name[name];
    EXPECT_EQ(g.scalar_type(), w.scalar_type()) << name;
    EXPECT_EQ(g.sizes(), w.sizes()) << name;
    EXPECT_TRUE(torch::equal(g, w)) << name;
  }
}

TEST(WriteSafetensors, RoundTripsEveryFloatDTypeAndMetadata) {
  const std::string path = MakeTempDir("st") + "/a.safetensors";
  NamedTensors tensors = {
      {"bf16", torch::randn({17, 3}).to(torch::kBFloat16)},
      {"fp16", torch::randn({5}).to(torch::kFloat16)},
      {"fp32", torch::randn({2, 3, 4})},
      // A non-contiguous view must be written in logical order.
      {"fp32.t", torch::randn({4, 6}).t()},
      {"empty", torch::zeros({0, 4})}};
  ASSERT_THAT(WriteSafetensors(path, tensors, {{"step", "12"}}), IsOk());
  LEMO_ASSERT_OK_AND_ASSIGN(NamedTensors back, ReadSafetensors(path));
  ExpectSame(back, tensors);
  LEMO_ASSERT_OK_AND_ASSIGN(auto file, SafetensorsFile::Open(path));
  EXPECT_EQ(file->header().metadata.at("step"), "12");
  EXPECT_EQ(file->header().data_offset % 8, 0u);
}

TEST(SafetensorsFile, TensorsAreViewsThatOutliveTheFileObject) {
  const std::string path = MakeTempDir("st") + "/a.safetensors";
  torch::Tensor w = torch::randn({64, 32});
  ASSERT_THAT(WriteSafetensors(path, {{"w", w}}), IsOk());
  torch::Tensor view;
  {
    LEMO_ASSERT_OK_AND_ASSIGN(auto file, SafetensorsFile::Open(path));
    LEMO_ASSERT_OK_AND_ASSIGN(view, file->Tensor("w"));
    LEMO_ASSERT_OK_AND_ASSIGN(torch::Tensor again, file->Tensor("w"));
    EXPECT_EQ(view.data_ptr(), again.data_ptr());  // no copy
  }
  EXPECT_TRUE(torch::equal(view, w));
  // Copy-on-write: an in-place op is private to this process.
  view.mul_(2);
  LEMO_ASSERT_OK_AND_ASSIGN(NamedTensors back, ReadSafetensors(path));
  EXPECT_TRUE(torch::equal(back[0].second, w));
}

TEST(SafetensorsFile, UnalignedDataSectionFromForeignWriterIsCopied) {
  // A 9-byte header puts the data section at file offset 17, so the F32
  // tensor's bytes are misaligned in the mapping.
  const std::string json = R"({"w":{"dtype":"F32","shape":[3],)"
                           R"("data_offsets":[0,12]}})";
  std::string padded = json + std::string((8 - (json.size() - 1) % 8) % 8, ' ');
  ASSERT_EQ(padded.size() % 8, 1u);
  std::string file(8, '\0');
  file[0] = static_cast<char>(padded.size());
  const float values[3] = {1.5f, -2.0f, 3.25f};
  file += padded + std::string(reinterpret_cast<const char*>(values), 12);
  const std::string path = MakeTempDir("st") + "/odd.safetensors";
  ASSERT_THAT(WriteFileAtomically(path, file), IsOk());
  LEMO_ASSERT_OK_AND_ASSIGN(auto st, SafetensorsFile::Open(path));
  LEMO_ASSERT_OK_AND_ASSIGN(torch::Tensor w, st->Tensor("w"));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(w.data_ptr()) % 4, 0u);
  EXPECT_TRUE(torch::equal(w, torch::tensor({1.5f, -2.0f, 3.25f})));
}

TEST(SafetensorsFile, ErrorsNameFileAndTensor) {
  const std::string dir = MakeTempDir("st");
  const std::string path = dir + "/a.safetensors";
  ASSERT_THAT(WriteSafetensors(path, {{"w", torch::ones({8})}}), IsOk());
  LEMO_ASSERT_OK_AND_ASSIGN(auto file, SafetensorsFile::Open(path));
  EXPECT_THAT(file->Tensor("nope").status(),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(HasSubstr("'nope'"), HasSubstr(path))));
  // Truncate the data section: the header now points past the end.
  LEMO_ASSERT_OK_AND_ASSIGN(std::string bytes, ReadFileToString(path));
  ASSERT_THAT(WriteFileAtomically(path, bytes.substr(0, bytes.size() - 4)),
              IsOk());
  EXPECT_THAT(SafetensorsFile::Open(path).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(path), HasSubstr("tensor 'w'"))));
  ASSERT_THAT(WriteFileAtomically(path, ""), IsOk());
  EXPECT_THAT(SafetensorsFile::Open(path).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(path)));
  EXPECT_THAT(SafetensorsFile::Open(dir + "/missing").status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing")));
}

TEST(SafetensorsWriter, RejectsWrongDTypeOverflowAndIncompleteFiles) {
  const std::string dir = MakeTempDir("st");
  std::vector<TensorEntry> entries = {{"a", DType::kF32, {4}}};
  {
    LEMO_ASSERT_OK_AND_ASSIGN(
        auto w, SafetensorsWriter::Create(dir + "/x.safetensors", entries));
    EXPECT_THAT(w->Append(torch::ones({4}, torch::kFloat16)),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("declared F32 but got F16")));
    EXPECT_THAT(w->Append(torch::ones({5})),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("more than its 16")));
    ASSERT_THAT(w->Append(torch::ones({3})), IsOk());
    EXPECT_THAT(w->Commit(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                      HasSubstr("incomplete")));
  }
  EXPECT_FALSE(std::ifstream(dir + "/x.safetensors").good());
  entries.push_back({"a", DType::kF32, {1}});
  EXPECT_THAT(SafetensorsWriter::Create(dir + "/y", entries).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("twice")));
}

// Writes {"a": .., "b": ..} to shard 1 and {"c": ..} to shard 2 plus an index.
std::string WriteShardedModel(const nlohmann::json& weight_map) {
  const std::string dir = MakeTempDir("sharded");
  EXPECT_THAT(WriteSafetensors(
                  dir + "/model-00001-of-00002.safetensors",
                  {{"a", torch::full({2}, 1.0)}, {"b", torch::full({3}, 2.0)}}),
              IsOk());
  EXPECT_THAT(WriteSafetensors(dir + "/model-00002-of-00002.safetensors",
                               {{"c", torch::full({4}, 3.0)}}),
              IsOk());
  nlohmann::json index = {{"metadata", {{"total_size", 36}}},
                          {"weight_map", weight_map}};
  EXPECT_THAT(
      WriteFileAtomically(dir + "/model.safetensors.index.json", index.dump()),
      IsOk());
  return dir;
}

const nlohmann::json kGoodMap = {{"a", "model-00001-of-00002.safetensors"},
                                 {"b", "model-00001-of-00002.safetensors"},
                                 {"c", "model-00002-of-00002.safetensors"}};

TEST(ModelWeights, LoadsShardedCheckpoint) {
  const std::string dir = WriteShardedModel(kGoodMap);
  LEMO_ASSERT_OK_AND_ASSIGN(auto weights, ModelWeights::Open(dir));
  EXPECT_EQ(weights->num_files(), 2u);
  EXPECT_EQ(weights->Names(), (std::vector<std::string>{"a", "b", "c"}));
  LEMO_ASSERT_OK_AND_ASSIGN(torch::Tensor c, weights->Get("c"));
  EXPECT_TRUE(torch::equal(c, torch::full({4}, 3.0)));
  EXPECT_TRUE(weights->Has("b"));
  EXPECT_FALSE(weights->Has("d"));
  EXPECT_THAT(weights->Get("d").status(),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(HasSubstr("'d'"), HasSubstr(dir))));
}

TEST(ModelWeights, MissingShardNamesShardAndTensor) {
  nlohmann::json map = kGoodMap;
  map["c"] = "model-00003-of-00002.safetensors";
  EXPECT_THAT(ModelWeights::Open(WriteShardedModel(map)).status(),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(HasSubstr("model-00003-of-00002.safetensors"),
                             HasSubstr("'c'"), HasSubstr("missing"))));
}

TEST(ModelWeights, IndexAndShardsMustAgree) {
  nlohmann::json map = kGoodMap;
  map["z"] = "model-00001-of-00002.safetensors";
  EXPECT_THAT(ModelWeights::Open(WriteShardedModel(map)).status(),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(HasSubstr("tensor 'z'"),
                             HasSubstr("missing from model-00001"))));
  map = kGoodMap;
  map.erase("b");
  EXPECT_THAT(ModelWeights::Open(WriteShardedModel(map)).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("tensor 'b'"),
                             HasSubstr("missing from the index"))));
  map = kGoodMap;
  map["c"] = "../model-00002-of-00002.safetensors";
  EXPECT_THAT(ModelWeights::Open(WriteShardedModel(map)).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not a file name")));
}

TEST(ModelWeights, SingleFileAndEmptyDirectory) {
  const std::string dir = MakeTempDir("single");
  EXPECT_THAT(
      ModelWeights::Open(dir).status(),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("no model.safetensors")));
  ASSERT_THAT(
      WriteSafetensors(dir + "/model.safetensors", {{"x", torch::ones({2})}}),
      IsOk());
  LEMO_ASSERT_OK_AND_ASSIGN(auto weights, ModelWeights::Open(dir));
  EXPECT_EQ(weights->num_files(), 1u);
  EXPECT_THAT(weights->Get("x"), IsOk());
}

TEST(SafetensorsInterop, PythonWritesCppReads) {
  LEMO_SKIP_WITHOUT_PYTHON();
  const std::string path = MakeTempDir("interop") + "/py.safetensors";
  auto r =
      RunPython("tests/worker/engine/safetensors_interop.py write " + path);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  LEMO_ASSERT_OK_AND_ASSIGN(NamedTensors back, ReadSafetensors(path));
  ExpectSame(back, ExpectedTensors());
  LEMO_ASSERT_OK_AND_ASSIGN(auto file, SafetensorsFile::Open(path));
  EXPECT_EQ(file->header().metadata.at("writer"), "lemo-test");
}

TEST(SafetensorsInterop, CppWritesPythonReads) {
  LEMO_SKIP_WITHOUT_PYTHON();
  const std::string path = MakeTempDir("interop") + "/cpp.safetensors";
  ASSERT_THAT(WriteSafetensors(path, ExpectedTensors(),
                               {{"format", "pt"}, {"writer", "lemo-test"}}),
              IsOk());
  auto r =
      RunPython("tests/worker/engine/safetensors_interop.py check " + path);
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

}  // namespace
}  // namespace lemo::engine
