// Tests for worker/engine/data/tokenizer.h. To add a SentencePiece case, append
// a string to kSentencePieceCases: Python's sentencepiece encodes it and the
// C++ ids must match exactly.
#include "worker/engine/data/tokenizer.h"

#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/testing/status_matchers.h"
#include "tests/worker/engine/data_test_util.h"

namespace lemo::engine {
namespace {

using ::lemo::engine::testing::MakeTempDir;
using ::lemo::engine::testing::ReadFile;
using ::lemo::engine::testing::WriteFile;
using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ByteTokenizer, MapsByteBToBPlusThree) {
  ByteTokenizer tok;
  LEMO_ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids,
                            tok.Encode(std::string("Hi\0\xff", 4)));
  EXPECT_THAT(ids, ElementsAre('H' + 3, 'i' + 3, 3, 258));
  EXPECT_EQ(tok.vocab_size(), 259);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.name(), "byte");
}

TEST(ByteTokenizer, RoundTripsEveryByte) {
  ByteTokenizer tok;
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  LEMO_ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, tok.Encode(all));
  EXPECT_EQ(tok.Decode(ids), all);
}

TEST(ByteTokenizer, DecodeSkipsSpecialAndOutOfRangeIds) {
  ByteTokenizer tok;
  EXPECT_EQ(tok.Decode({1, 'a' + 3, 0, 2, -5, 259, 100000, 'b' + 3}), "ab");
}

TEST(LoadTokenizer, ByteSpec) {
  LEMO_ASSERT_OK_AND_ASSIGN(auto tok, LoadTokenizer("byte"));
  EXPECT_EQ(tok->vocab_size(), 259);
}

TEST(LoadTokenizer, EmptySpecIsInvalid) {
  EXPECT_THAT(LoadTokenizer(""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("byte")));
}

// A model whose piece holds a NUL byte makes libsentencepiece's trie builder
// throw, which used to end the process
// (tests/fuzz/sentencepiece_model/crash-darts-nul-piece, found by the fuzzer).
TEST(LoadTokenizer, ModelThatThrowsInsideSentencePieceIsInvalidArgument) {
  const std::string path = MakeTempDir() + "/tokenizer.model";
  WriteFile(path,
            std::string("\x0a\x0e\x0a\x05<uno>\x15\x00\x00\x00\x00\x18\x02"
                        "\x0a\x0c\x0a\x03<s>\x15\x00\x00\x00\x00\x18\x03"
                        "\x0a\x10\x0a\x09\x00\x18\x02\x0a\x0c\x0a\x03<\xce]"
                        "\xc0i\x12\x00",
                        48));
  EXPECT_THAT(LoadTokenizer(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(path),
                             HasSubstr("not a valid SentencePiece model"))));
}

TEST(LoadTokenizer, MissingModelIsNotFoundAndNamesThePath) {
  EXPECT_THAT(LoadTokenizer("/nonexistent/dir/tokenizer.model"),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("/nonexistent/dir/tokenizer.model")));
}

TEST(LoadTokenizer, CorruptModelIsInvalidArgument) {
  const std::string path = MakeTempDir() + "/tokenizer.model";
  WriteFile(path, "this is not a protobuf \xff\xff\xff\xff\x01\x02");
  EXPECT_THAT(LoadTokenizer(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(path),
                             HasSubstr("not a valid SentencePiece model"))));
}

TEST(LoadTokenizer, EmptyModelFileIsInvalidArgument) {
  const std::string path = MakeTempDir() + "/tokenizer.model";
  WriteFile(path, "");
  EXPECT_THAT(LoadTokenizer(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(path), HasSubstr("empty"))));
}

TEST(LoadTokenizer, DirectoryWithoutModelIsNotFound) {
  const std::string dir = MakeTempDir();
  EXPECT_THAT(LoadTokenizer(dir),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr(dir + "/tokenizer.model")));
}

// A model directory's own tokenizer is the default: tokenizer.json first (as
// in transformers), else tokenizer.model; "byte" only when named, or for a
// random-weight directory, which has neither.
TEST(ResolveTokenizerSpec, PrefersTheModelsTokenizerJson) {
  const std::string dir = MakeTempDir();
  WriteFile(dir + "/tokenizer.json", "{}");
  WriteFile(dir + "/tokenizer.model", "");
  LEMO_ASSERT_OK_AND_ASSIGN(std::string spec,
                            ResolveTokenizerSpec("", dir, false, "--tok"));
  EXPECT_EQ(spec, dir + "/tokenizer.json");
}

TEST(ResolveTokenizerSpec, FallsBackToTokenizerModel) {
  const std::string dir = MakeTempDir();
  WriteFile(dir + "/tokenizer.model", "");
  LEMO_ASSERT_OK_AND_ASSIGN(std::string spec,
                            ResolveTokenizerSpec("", dir, true, "--tok"));
  EXPECT_EQ(spec, dir + "/tokenizer.model");
}

TEST(ResolveTokenizerSpec, NoTokenizerIsAnErrorNamingDirAndSetting) {
  const std::string dir = MakeTempDir();
  EXPECT_THAT(ResolveTokenizerSpec("", dir, false, "--tok"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(dir), HasSubstr("set --tok"),
                             HasSubstr("\"byte\""))));
  // Random weights ship no tokenizer: the byte tokenizer is theirs.
  LEMO_ASSERT_OK_AND_ASSIGN(std::string spec,
                            ResolveTokenizerSpec("", dir, true, "--tok"));
  EXPECT_EQ(spec, "byte");
}

TEST(ResolveTokenizerSpec, NamedSpecWins) {
  const std::string dir = MakeTempDir();
  WriteFile(dir + "/tokenizer.json", "{}");
  LEMO_ASSERT_OK_AND_ASSIGN(std::string spec,
                            ResolveTokenizerSpec("byte", dir, false, "--tok"));
  EXPECT_EQ(spec, "byte");
}

// A tokenizer with chosen sizes, to put bos/eos where a real file would not.
class FakeTokenizer final : public Tokenizer {
 public:
  FakeTokenizer(int64_t vocab, int32_t bos, int32_t eos)
      : vocab_(vocab), bos_(bos), eos_(eos) {}
  absl::StatusOr<std::vector<int32_t>> Encode(
      absl::string_view) const override {
    return std::vector<int32_t>{};
  }
  std::string Decode(absl::Span<const int32_t>) const override { return ""; }
  int64_t vocab_size() const override { return vocab_; }
  int32_t bos_id() const override { return bos_; }
  int32_t eos_id() const override { return eos_; }
  std::string name() const override { return "fake"; }

 private:
  int64_t vocab_;
  int32_t bos_, eos_;
};

TEST(CheckTokenizerFitsVocab, RefusesALargerVocabularyOrSpecialIds) {
  EXPECT_THAT(CheckTokenizerFitsVocab(ByteTokenizer(), 259), IsOk());
  EXPECT_THAT(CheckTokenizerFitsVocab(ByteTokenizer(), 100),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("259 ids"), HasSubstr("only 100"))));
  EXPECT_THAT(CheckTokenizerFitsVocab(FakeTokenizer(10, 500, 2), 10),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("bos id 500"), HasSubstr("[0, 10)"))));
  EXPECT_THAT(
      CheckTokenizerFitsVocab(FakeTokenizer(10, 1, 10), 10),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("eos id 10")));
  // -1: the model defines none.
  EXPECT_THAT(CheckTokenizerFitsVocab(FakeTokenizer(10, -1, -1), 10), IsOk());
}

// Strings that stress normalization, whitespace, unknown characters and byte
// fallback.
const char* const kSentencePieceCases[] = {
    "It is a truth universally acknowledged, that a single man in possession "
    "of a good fortune, "
    "must be in want of a wife.",
    "",
    "x",
    "  leading, inner   and trailing spaces  ",
    "Mr. Darcy paid \xc2\xa3"
    "10,000 a year!\nA new line,\ta tab.",
    "na\xc3\xafve caf\xc3\xa9 \xe2\x80\x94 \xe2\x80\x9cquotes\xe2\x80\x9d",
    "\xef\xbc\xa6\xef\xbd\x95\xef\xbd\x8c\xef\xbd\x8c\xef\xbd\x97\xef\xbd\x89"
    "\xef\xbd\x84\xef\xbd"
    "\x94\xef\xbd\x88 letters (NFKC folds them)",
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e and emoji \xf0\x9f\x99\x82",
    "Elizabeth's    CAPITALS 12345 67.89%",
};

// Trains the models once for the suite: Python's sentencepiece takes a few
// seconds.
class SentencePieceTokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const char* python = std::getenv("LEMO_PYTHON");
    const char* source = std::getenv("LEMO_SOURCE_DIR");
    if (python == nullptr || source == nullptr || *python == '\0') {
      skip_reason_ = "LEMO_PYTHON / LEMO_SOURCE_DIR unset: run through ctest";
      return;
    }
    dir_ = new std::string(MakeTempDir());
    nlohmann::json strings = nlohmann::json::array();
    for (const char* s : kSentencePieceCases) strings.push_back(s);
    WriteFile(*dir_ + "/strings.json", strings.dump());
    const std::string src(source);
    const std::string cmd =
        std::string("'") + python + "' '" + src +
        "/tests/worker/engine/testdata/sentencepiece_reference.py' '" + src +
        "/bench/data/corpus.jsonl' '" + *dir_ + "' '" + *dir_ +
        "/strings.json' > '" + *dir_ + "/python.log' 2>&1";
    if (std::system(cmd.c_str()) != 0) {
      setup_error_ =
          "python reference failed: " + ReadFile(*dir_ + "/python.log");
      return;
    }
    expected_ = new nlohmann::json(
        nlohmann::json::parse(ReadFile(*dir_ + "/expected.json")));
  }

  void SetUp() override {
    if (skip_reason_ != nullptr) GTEST_SKIP() << skip_reason_;
    ASSERT_TRUE(setup_error_.empty()) << setup_error_;
  }

  // Checks that the C++ tokenizer reproduces Python's ids, decode and specials
  // for `kind`.
  static void ExpectMatchesPython(const std::string& kind) {
    const nlohmann::json& want = (*expected_)[kind];
    LEMO_ASSERT_OK_AND_ASSIGN(auto tok,
                              LoadTokenizer(*dir_ + "/" + kind + ".model"));
    EXPECT_EQ(tok->vocab_size(), want["vocab_size"].get<int64_t>());
    EXPECT_EQ(tok->bos_id(), want["bos_id"].get<int32_t>());
    EXPECT_EQ(tok->eos_id(), want["eos_id"].get<int32_t>());
    ASSERT_EQ(want["cases"].size(), std::size(kSentencePieceCases));
    for (const nlohmann::json& c : want["cases"]) {
      const std::string text = c["text"].get<std::string>();
      LEMO_ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, tok->Encode(text));
      EXPECT_EQ(ids, c["ids"].get<std::vector<int32_t>>())
          << kind << " encoding \"" << text << "\"";
      EXPECT_EQ(tok->Decode(ids), c["decoded"].get<std::string>())
          << kind << " decoding";
    }
  }

  static inline const char* skip_reason_ = nullptr;
  static inline std::string setup_error_;
  static inline std::string* dir_ = nullptr;
  static inline nlohmann::json* expected_ = nullptr;
};

TEST_F(SentencePieceTokenizerTest, UnigramMatchesPython) {
  ExpectMatchesPython("unigram");
}

TEST_F(SentencePieceTokenizerTest, BpeWithByteFallbackMatchesPython) {
  ExpectMatchesPython("bpe");
}

TEST_F(SentencePieceTokenizerTest, DirectorySpecLoadsTokenizerModelInside) {
  const std::string dir = MakeTempDir();
  WriteFile(dir + "/tokenizer.model", ReadFile(*dir_ + "/unigram.model"));
  LEMO_ASSERT_OK_AND_ASSIGN(auto tok, LoadTokenizer(dir));
  EXPECT_EQ(tok->name(), dir + "/tokenizer.model");
  EXPECT_EQ(tok->vocab_size(),
            (*expected_)["unigram"]["vocab_size"].get<int64_t>());
}

TEST_F(SentencePieceTokenizerTest, TruncatedModelIsInvalidArgument) {
  const std::string model = ReadFile(*dir_ + "/unigram.model");
  const std::string path = MakeTempDir() + "/tokenizer.model";
  WriteFile(path, model.substr(0, model.size() / 2));
  EXPECT_THAT(LoadTokenizer(path),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(path)));
}

TEST_F(SentencePieceTokenizerTest, DecodeSkipsControlAndOutOfRangeIds) {
  LEMO_ASSERT_OK_AND_ASSIGN(auto tok, LoadTokenizer(*dir_ + "/unigram.model"));
  LEMO_ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids,
                            tok->Encode("a good fortune"));
  std::vector<int32_t> noisy = {tok->bos_id(), -1, 1 << 20};
  noisy.insert(noisy.end(), ids.begin(), ids.end());
  noisy.push_back(tok->eos_id());
  EXPECT_EQ(tok->Decode(noisy), "a good fortune");
}

}  // namespace
}  // namespace lemo::engine
