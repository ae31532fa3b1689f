// Tests for worker/engine/data/dataset.h. To add a case: build a dataset with
// Jsonl()/FromTokens() (or write a token file), draw batches with Draw(), and
// compare them, or check the Create / Seek status.
#include "worker/engine/data/dataset.h"

#include <cstdlib>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "tests/testing/status_matchers.h"
#include "tests/worker/engine/data_test_util.h"

namespace lemo::engine {
namespace {

using ::lemo::engine::testing::MakeTempDir;
using ::lemo::engine::testing::WriteFile;
using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

constexpr int64_t kByteVocab = 259;

DataOptions Options(const std::string& path, int64_t seq_len,
                    int64_t batch_size = 1, uint64_t seed = 0) {
  DataOptions o;
  o.path = path;
  o.tokenizer = "byte";  // no model here to take the tokenizer from
  o.seq_len = seq_len;
  o.batch_size = batch_size;
  o.seed = seed;
  return o;
}

// 0, 1, ..., n-1: every sample of a FromTokens dataset is then recognisable by
// its first id.
std::vector<int32_t> Iota(int64_t n) {
  std::vector<int32_t> v(n);
  std::iota(v.begin(), v.end(), 0);
  return v;
}

// Draws `n` batches as nested vectors, so gmock prints them on failure.
std::vector<std::vector<int64_t>> Draw(PackedDataset& data, int n) {
  std::vector<std::vector<int64_t>> out;
  for (int i = 0; i < n; ++i) {
    absl::StatusOr<torch::Tensor> batch = data.Next();
    EXPECT_THAT(batch, IsOk());
    if (!batch.ok()) break;
    EXPECT_EQ(batch->dtype(), torch::kLong);
    EXPECT_EQ(batch->sizes(),
              (std::vector<int64_t>{data.batch_size(), data.seq_len()}));
    torch::Tensor flat = batch->contiguous().view({-1});
    out.emplace_back(flat.data_ptr<int64_t>(),
                     flat.data_ptr<int64_t>() + flat.numel());
  }
  return out;
}

std::unique_ptr<PackedDataset> MustFromTokens(int64_t n, int64_t seq_len,
                                              int64_t batch, uint64_t seed) {
  auto data = PackedDataset::FromTokens(
      Iota(n), Options("iota", seq_len, batch, seed), n);
  EXPECT_THAT(data, IsOk());
  return data.ok() ? std::move(*data) : nullptr;
}

TEST(PackedDataset, FramesEachDocumentWithBosAndEos) {
  const std::string path = MakeTempDir() + "/d.jsonl";
  WriteFile(path, "{\"text\": \"ab\"}\n\n{\"text\": \"c\"}\n");
  // <s> a b </s> <s> c </s> is 7 tokens: one sample holds the whole stream.
  LEMO_ASSERT_OK_AND_ASSIGN(
      auto data, PackedDataset::Create(Options(path, 7), kByteVocab));
  EXPECT_EQ(data->num_tokens(), 7);
  EXPECT_EQ(data->num_samples(), 1);
  EXPECT_THAT(Draw(*data, 1),
              ElementsAre(ElementsAre(1, 'a' + 3, 'b' + 3, 2, 1, 'c' + 3, 2)));
}

// A model directory as the tokenizer spec: its tokenizer.json encodes and its
// tokenizer_config.json names the bos/eos that frame each document.
TEST(PackedDataset, ModelDirectoryTokenizerJsonFramesWithItsBosAndEos) {
  const std::string model_dir = MakeTempDir();
  WriteFile(model_dir + "/tokenizer.json", R"({
    "added_tokens": [
      {"id": 3, "content": "<s>", "special": true, "normalized": false},
      {"id": 4, "content": "</s>", "special": true, "normalized": false}],
    "normalizer": null,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false},
    "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2},
              "merges": [["a", "b"]]}})");
  WriteFile(model_dir + "/tokenizer_config.json",
            R"({"bos_token": "<s>", "eos_token": "</s>"})");
  const std::string path = MakeTempDir() + "/d.jsonl";
  WriteFile(path, "{\"text\": \"ab\"}\n{\"text\": \"ba\"}\n");
  DataOptions o = Options(path, 7);
  o.tokenizer = model_dir;
  LEMO_ASSERT_OK_AND_ASSIGN(auto data, PackedDataset::Create(o, 5));
  EXPECT_EQ(data->num_tokens(), 7);
  EXPECT_THAT(Draw(*data, 1), ElementsAre(ElementsAre(3, 2, 4, 3, 1, 0, 4)));
}

TEST(PackedDataset, CutsSamplesAndDropsTheRaggedTail) {
  const std::string path = MakeTempDir() + "/d.jsonl";
  WriteFile(path, "{\"text\": \"ab\"}\n{\"text\": \"c\"}\n");
  LEMO_ASSERT_OK_AND_ASSIGN(
      auto data, PackedDataset::Create(Options(path, 3), kByteVocab));
  EXPECT_EQ(data->num_samples(), 2);  // 7 tokens: the last </s> is dropped
  auto epoch = Draw(*data, 2);
  std::sort(epoch.begin(), epoch.end());
  EXPECT_THAT(epoch, ElementsAre(ElementsAre(1, 'a' + 3, 'b' + 3),
                                 ElementsAre(2, 1, 'c' + 3)));
}

TEST(PackedDataset, EveryEpochVisitsEverySampleOnceInANewOrder) {
  auto data = MustFromTokens(40 * 4 + 3, 4, 1, 7);
  ASSERT_NE(data, nullptr);
  ASSERT_EQ(data->num_samples(), 40);
  std::vector<std::vector<int64_t>> firsts(3);
  for (int epoch = 0; epoch < 3; ++epoch) {
    for (const auto& sample : Draw(*data, 40)) {
      EXPECT_EQ(sample[0] % 4, 0);
      EXPECT_THAT(sample, ElementsAre(sample[0], sample[0] + 1, sample[0] + 2,
                                      sample[0] + 3));
      firsts[epoch].push_back(sample[0] / 4);
    }
    std::vector<int64_t> sorted = firsts[epoch];
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> all(40);
    std::iota(all.begin(), all.end(), 0);
    EXPECT_EQ(sorted, all) << "epoch " << epoch;
  }
  EXPECT_NE(firsts[0], firsts[1]);
  EXPECT_NE(firsts[1], firsts[2]);
  EXPECT_EQ(data->epoch(), 2);
}

TEST(PackedDataset, EpochOrderMatchesTheIndependentReference) {
  // From testdata/epoch_order_reference.py: the order is fixed across platforms
  // and versions, so a cursor saved by one build resumes the same stream on
  // another.
  EXPECT_THAT(PackedDataset::EpochOrder(42, 0, 10),
              ElementsAre(9, 6, 2, 0, 1, 4, 3, 8, 5, 7));
  EXPECT_THAT(PackedDataset::EpochOrder(42, 1, 10),
              ElementsAre(5, 4, 1, 3, 0, 2, 7, 8, 6, 9));
  EXPECT_THAT(
      PackedDataset::EpochOrder(0, 0, 16),
      ElementsAre(13, 3, 6, 15, 7, 4, 11, 1, 9, 10, 12, 5, 2, 0, 8, 14));
  EXPECT_THAT(PackedDataset::EpochOrder(5, 3, 1), ElementsAre(0));
}

TEST(PackedDataset, SameSeedGivesTheSameBatches) {
  auto a = MustFromTokens(1000, 8, 3, 123);
  auto b = MustFromTokens(1000, 8, 3, 123);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(Draw(*a, 100),
            Draw(*b, 100));  // 300 samples: over two epochs of 125
}

TEST(PackedDataset, DifferentSeedsGiveDifferentOrders) {
  auto a = MustFromTokens(1000, 8, 3, 1);
  auto b = MustFromTokens(1000, 8, 3, 2);
  ASSERT_TRUE(a && b);
  EXPECT_NE(Draw(*a, 10), Draw(*b, 10));
}

TEST(PackedDataset, SeekToACursorResumesTheSameStream) {
  // 10 samples in batches of 3: batches straddle epoch ends, the hard case for
  // a cursor.
  constexpr int kTotal = 12;
  auto straight = MustFromTokens(10 * 5, 5, 3, 99);
  ASSERT_NE(straight, nullptr);
  const auto want = Draw(*straight, kTotal);
  for (int k : {0, 1, 3, 4, 7}) {
    auto first = MustFromTokens(10 * 5, 5, 3, 99);
    Draw(*first, k);
    const nlohmann::json cursor = first->Cursor();
    // A fresh dataset, even one built with another seed, continues from the
    // cursor.
    auto resumed = MustFromTokens(10 * 5, 5, 3, 5555);
    ASSERT_THAT(resumed->Seek(nlohmann::json::parse(cursor.dump())), IsOk());
    EXPECT_EQ(resumed->Cursor(), cursor);
    const auto rest = Draw(*resumed, kTotal - k);
    EXPECT_THAT(rest, ElementsAreArray(want.begin() + k, want.end()))
        << "after " << k;
  }
}

TEST(PackedDataset, CursorHasTheAgreedFields) {
  auto data = MustFromTokens(10 * 5, 5, 3, 99);
  Draw(*data, 4);  // 12 samples: epoch 1, index 2
  const nlohmann::json c = data->Cursor();
  EXPECT_EQ(c["epoch"], 1);
  EXPECT_EQ(c["index"], 2);
  EXPECT_EQ(c["seed"], 99);
  EXPECT_EQ(c["num_samples"], 10);
  EXPECT_EQ(c["seq_len"], 5);
}

TEST(PackedDataset, SeekAcceptsACursorWithOnlyTheFourAgreedFields) {
  auto a = MustFromTokens(100, 5, 2, 3);
  Draw(*a, 3);
  nlohmann::json c = a->Cursor();
  c.erase("seq_len");
  auto b = MustFromTokens(100, 5, 2, 3);
  ASSERT_THAT(b->Seek(c), IsOk());
  EXPECT_EQ(Draw(*a, 5), Draw(*b, 5));
}

TEST(PackedDataset, SeekRejectsACursorOfAnotherDataset) {
  auto data = MustFromTokens(100, 5, 2, 3);
  nlohmann::json c = data->Cursor();
  c["num_samples"] = 21;
  EXPECT_THAT(data->Seek(c),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("21 samples"), HasSubstr("has 20"))));
  c = data->Cursor();
  c["seq_len"] = 4;
  EXPECT_THAT(data->Seek(c), StatusIs(absl::StatusCode::kFailedPrecondition,
                                      HasSubstr("seq_len 4")));
}

TEST(PackedDataset, SeekRejectsMalformedCursors) {
  auto data = MustFromTokens(100, 5, 2, 3);
  const nlohmann::json good = data->Cursor();
  EXPECT_THAT(
      data->Seek(nlohmann::json::array()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("JSON object")));
  for (const char* field : {"epoch", "index", "seed", "num_samples"}) {
    nlohmann::json c = good;
    c.erase(field);
    EXPECT_THAT(data->Seek(c),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(field)));
    c[field] = -1;
    EXPECT_THAT(data->Seek(c),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("not a non-negative integer")));
    c[field] = "3";
    EXPECT_THAT(data->Seek(c),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(field)));
  }
  nlohmann::json c = good;
  c["index"] = 21;
  EXPECT_THAT(data->Seek(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr("index 21")));
  // A failed Seek leaves the dataset where it was.
  EXPECT_EQ(data->Cursor(), good);
}

TEST(PackedDataset, TokenFilesOfBothWidthsGiveTheSameBatches) {
  const std::string dir = MakeTempDir();
  std::vector<int32_t> ids;
  for (int i = 0; i < 500; ++i) ids.push_back((i * 7919) % 40000);
  ASSERT_THAT(WriteTokenFile(dir + "/t.u16", ids, DataFormat::kU16), IsOk());
  ASSERT_THAT(WriteTokenFile(dir + "/t.u32", ids, DataFormat::kU32), IsOk());
  ASSERT_THAT(WriteTokenFile(dir + "/t.bin", ids, DataFormat::kU32), IsOk());
  LEMO_ASSERT_OK_AND_ASSIGN(
      auto u16,
      PackedDataset::Create(Options(dir + "/t.u16", 16, 2, 4), 40000));
  LEMO_ASSERT_OK_AND_ASSIGN(
      auto u32,
      PackedDataset::Create(Options(dir + "/t.u32", 16, 2, 4), 40000));
  DataOptions bin_options = Options(dir + "/t.bin", 16, 2, 4);
  bin_options.format = DataFormat::kU32;
  LEMO_ASSERT_OK_AND_ASSIGN(auto bin,
                            PackedDataset::Create(bin_options, 40000));
  LEMO_ASSERT_OK_AND_ASSIGN(auto mem,
                            PackedDataset::FromTokens(ids, bin_options, 40000));
  EXPECT_EQ(u16->num_samples(), 31);  // 500 / 16, ragged 4 dropped
  const auto want = Draw(*mem, 20);
  EXPECT_EQ(Draw(*u16, 20), want);
  EXPECT_EQ(Draw(*u32, 20), want);
  EXPECT_EQ(Draw(*bin, 20), want);
  // A token file's ids are used as they are: no bos/eos framing.
  EXPECT_EQ(want[0][0], ids[PackedDataset::EpochOrder(4, 0, 31)[0] * 16]);
}

TEST(PackedDataset, BadTokenFilesAreErrors) {
  const std::string dir = MakeTempDir();
  WriteFile(dir + "/odd.u16", std::string(5, '\1'));
  EXPECT_THAT(
      PackedDataset::Create(Options(dir + "/odd.u16", 1), 1000),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("multiple of 2")));
  WriteFile(dir + "/empty.u32", "");
  EXPECT_THAT(PackedDataset::Create(Options(dir + "/empty.u32", 1), 1000),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  ASSERT_THAT(WriteTokenFile(dir + "/big.u16", {1, 2, 259}, DataFormat::kU16),
              IsOk());
  EXPECT_THAT(PackedDataset::Create(Options(dir + "/big.u16", 1), kByteVocab),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("token 2 has id 259")));
  WriteFile(dir + "/t.bin", std::string(8, '\0'));
  EXPECT_THAT(
      PackedDataset::Create(Options(dir + "/t.bin", 1), 1000),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("u16 or u32")));
  EXPECT_THAT(
      PackedDataset::Create(Options(dir + "/none.u16", 1), 1000),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr(dir + "/none.u16")));
}

TEST(PackedDataset, DirectoryAsDataIsAnError) {
  const std::string dir = MakeTempDir();
  for (const char* name : {"/d.jsonl", "/d.u16"}) {
    ASSERT_TRUE(std::filesystem::create_directory(dir + name));
    EXPECT_THAT(PackedDataset::Create(Options(dir + name, 1), kByteVocab),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr(dir + name + " is a directory")));
  }
}

TEST(PackedDataset, TooFewTokensSaysHowMany) {
  const std::string path = MakeTempDir() + "/d.jsonl";
  WriteFile(path, "{\"text\": \"abc\"}\n");
  EXPECT_THAT(PackedDataset::Create(Options(path, 6), kByteVocab),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(path), HasSubstr("has 5 tokens"),
                             HasSubstr("seq_len 6"))));
  EXPECT_THAT(PackedDataset::Create(Options(path, 5), kByteVocab), IsOk());
}

TEST(PackedDataset, BadJsonlIsAnErrorNamingFileAndLine) {
  const std::string dir = MakeTempDir();
  WriteFile(dir + "/bad.jsonl", "{\"text\": \"a\"}\n\n{\"text\": 3}\n");
  EXPECT_THAT(PackedDataset::Create(Options(dir + "/bad.jsonl", 1), kByteVocab),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(dir + "/bad.jsonl:3")));
  WriteFile(dir + "/blank.jsonl", "\n \n");
  EXPECT_THAT(
      PackedDataset::Create(Options(dir + "/blank.jsonl", 1), kByteVocab),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no documents")));
}

TEST(PackedDataset, BadOptionsAreErrors) {
  const std::string path = MakeTempDir() + "/d.jsonl";
  WriteFile(path, "{\"text\": \"abcdef\"}\n");
  EXPECT_THAT(
      PackedDataset::Create(Options(path, 0), kByteVocab),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("seq_len")));
  EXPECT_THAT(
      PackedDataset::Create(Options(path, 2, 0), kByteVocab),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("batch_size")));
  // The byte tokenizer's 259 ids do not fit a 100-id model.
  EXPECT_THAT(
      PackedDataset::Create(Options(path, 2), 100),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("only 100")));
  DataOptions o = Options(path, 2);
  o.tokenizer = "/nonexistent/tokenizer.model";
  EXPECT_THAT(
      PackedDataset::Create(o, kByteVocab),
      StatusIs(absl::StatusCode::kNotFound,
               AllOf(HasSubstr("loading tokenizer"), HasSubstr(o.tokenizer))));
  EXPECT_THAT(PackedDataset::FromTokens({1, 2, -3, 4}, Options("mem", 2), 10),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("token 2 has id -3")));
}

TEST(PackedDataset, LoadsTheBenchCorpus) {
  const char* source = std::getenv("LEMO_SOURCE_DIR");
  if (source == nullptr)
    GTEST_SKIP() << "LEMO_SOURCE_DIR unset: run through ctest";
  LEMO_ASSERT_OK_AND_ASSIGN(
      auto data,
      PackedDataset::Create(
          Options(std::string(source) + "/bench/data/corpus.jsonl", 2048, 2),
          kByteVocab));
  // About 4 MB of text, one byte token per byte: roughly 2000 samples of 2048
  // tokens.
  EXPECT_GT(data->num_samples(), 1500);
  const auto batches = Draw(*data, 2);
  ASSERT_EQ(batches.size(), 2u);
  for (int64_t id : batches[0]) ASSERT_TRUE(id >= 0 && id < kByteVocab);
}

// ---- Example formats: whole examples packed, labels from the loss mask. ----

std::vector<int64_t> Row(const torch::Tensor& t, int64_t row) {
  torch::Tensor r = t[row].contiguous();
  return std::vector<int64_t>(r.data_ptr<int64_t>(),
                              r.data_ptr<int64_t>() + r.numel());
}

TEST(PackedDataset, PacksWholeExamplesAndMasksEachFirstToken) {
  // seq_len 6: the first two examples fill sample 0; the third does not fit
  // after them and starts sample 1, which the fourth fills; the fifth goes
  // to sample 2, padded.
  std::vector<MaskedTokens> examples = {
      {{10, 11, 12}, {1, 1, 1}},
      {{20, 21, 22}, {0, 1, 1}},
      {{30, 31, 32, 33}, {0, 0, 1, 1}},
      {{40, 41}, {1, 1}},
      {{50, 51}, {1, 1}},
  };
  LEMO_ASSERT_OK_AND_ASSIGN(auto data,
                            PackedDataset::FromExamples(examples, /*pad_id=*/2,
                                                        Options("ex", 6), 100));
  EXPECT_TRUE(data->masked());
  ASSERT_EQ(data->num_samples(), 3);
  LEMO_ASSERT_OK_AND_ASSIGN(DataBatch b, data->SampleBatch(0, 3));
  EXPECT_THAT(Row(b.ids, 0), ElementsAre(10, 11, 12, 20, 21, 22));
  // The first token of each example never has a loss: it would be predicted
  // from the previous example's end.
  EXPECT_THAT(Row(b.labels, 0), ElementsAre(-100, 11, 12, -100, 21, 22));
  EXPECT_THAT(Row(b.ids, 1), ElementsAre(30, 31, 32, 33, 40, 41));
  EXPECT_THAT(Row(b.labels, 1), ElementsAre(-100, -100, 32, 33, -100, 41));
  EXPECT_THAT(Row(b.ids, 2), ElementsAre(50, 51, 2, 2, 2, 2));
  EXPECT_THAT(Row(b.labels, 2), ElementsAre(-100, 51, -100, -100, -100, -100));
  // Next() hands out the same rows, ids and labels together.
  LEMO_ASSERT_OK_AND_ASSIGN(DataBatch next, data->NextBatch());
  const int64_t first = next.ids[0][0].item<int64_t>();
  const int64_t sample = first == 10 ? 0 : first == 30 ? 1 : 2;
  EXPECT_EQ(Row(next.labels, 0), Row(b.labels, sample));
}

TEST(PackedDataset, SampleWithoutTrainedTokensIsDropped) {
  // Its only trained token is an example's first, which the packing rule
  // masks: the sample would give a NaN loss.
  std::vector<MaskedTokens> examples = {{{5, 6, 7}, {1, 0, 0}},
                                        {{8, 9}, {0, 1}}};
  LEMO_ASSERT_OK_AND_ASSIGN(auto data, PackedDataset::FromExamples(
                                           examples, 0, Options("ex", 3), 100));
  ASSERT_EQ(data->num_samples(), 1);
  LEMO_ASSERT_OK_AND_ASSIGN(DataBatch b, data->SampleBatch(0, 1));
  EXPECT_THAT(Row(b.ids, 0), ElementsAre(8, 9, 0));
}

TEST(PackedDataset, TextDataLabelsEveryToken) {
  LEMO_ASSERT_OK_AND_ASSIGN(
      auto data, PackedDataset::FromTokens(Iota(8), Options("t", 4), 8));
  EXPECT_FALSE(data->masked());
  LEMO_ASSERT_OK_AND_ASSIGN(DataBatch b, data->SampleBatch(1, 1));
  EXPECT_THAT(Row(b.labels, 0), ElementsAre(4, 5, 6, 7));
}

TEST(PackedDataset, CreateReadsChatExamplesWithTheirMask) {
  const std::string path = MakeTempDir() + "/chat.jsonl";
  WriteFile(
      path,
      R"({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "ok"}]})"
      "\n");
  DataOptions o = Options(path, 64);
  o.chat_template = "chatml";  // kAuto: the format comes from the first line
  LEMO_ASSERT_OK_AND_ASSIGN(auto data, PackedDataset::Create(o, kByteVocab));
  EXPECT_TRUE(data->masked());
  EXPECT_EQ(data->example_stats().examples, 1);
  LEMO_ASSERT_OK_AND_ASSIGN(DataBatch b, data->SampleBatch(0, 1));
  std::string trained;
  for (int64_t t = 0; t < 64; ++t) {
    const int64_t label = b.labels[0][t].item<int64_t>();
    if (label != -100) trained += static_cast<char>(label - 3);
  }
  EXPECT_EQ(trained, "ok<|im_end|>");
}

TEST(PackedDataset, EverySampleSkippedIsAnError) {
  const std::string path = MakeTempDir() + "/tokens.jsonl";
  WriteFile(path, R"({"input_ids": [5, 6], "loss_mask": [1, 0]})"
                  "\n");
  DataOptions o = Options(path, 8);
  o.on_bad_sample = BadSamplePolicy::kSkip;
  EXPECT_THAT(PackedDataset::Create(o, kByteVocab),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("no example to train on"),
                             HasSubstr("1 without trained tokens"))));
}

}  // namespace
}  // namespace lemo::engine
