// Mutation "fuzzing" of the torch-free parsers: truncated, bit-flipped and
// spliced variants of a valid safetensors file and config.json must give a
// status, never a crash (CI runs this binary under ASan + UBSan, see
// scripts/test). Bounded count, fixed seed: failures reproduce. To add a
// parser: feed it from Mutants() in a new TEST and assert what it promises.
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "tests/testing/status_matchers.h"
#include "worker/engine/formats/model_config.h"
#include "worker/engine/formats/safetensors_header.h"

namespace lemo::engine {
namespace {

constexpr int kMutantsPerSeed = 3000;

// A copy of `s` in a buffer of exactly its size, so ASan flags any read past
// the end (std::string would hide one with its terminator and slack).
class ExactBuffer {
 public:
  explicit ExactBuffer(const std::string& s)
      : size_(s.size()), data_(new char[s.size() == 0 ? 1 : s.size()]) {
    std::memcpy(data_.get(), s.data(), s.size());
  }
  absl::string_view view() const { return {data_.get(), size_}; }

 private:
  size_t size_;
  std::unique_ptr<char[]> data_;
};

std::string Mutate(const std::string& valid, std::mt19937_64& rng) {
  std::string s = valid;
  auto pick = [&](size_t n) { return n == 0 ? 0 : rng() % n; };
  static const char kInteresting[] = "{}[]\":,-0123456789eE.\\ \0\xff";
  const int rounds = 1 + static_cast<int>(pick(4));
  for (int i = 0; i < rounds; ++i) {
    switch (pick(5)) {
      case 0:  // truncate
        s.resize(pick(s.size() + 1));
        break;
      case 1:  // flip one bit
        if (!s.empty()) s[pick(s.size())] ^= static_cast<char>(1 << pick(8));
        break;
      case 2:  // overwrite with a JSON-significant byte
        if (!s.empty()) {
          s[pick(s.size())] = kInteresting[pick(sizeof(kInteresting) - 1)];
        }
        break;
      case 3: {  // duplicate a slice somewhere else
        const size_t from = pick(s.size() + 1);
        const size_t len = pick(std::min<size_t>(64, s.size() - from) + 1);
        s.insert(pick(s.size() + 1), s.substr(from, len));
        break;
      }
      default:  // delete a slice
        if (!s.empty()) s.erase(pick(s.size()), 1 + pick(16));
        break;
    }
  }
  return s;
}

std::string ValidSafetensors() {
  std::vector<TensorEntry> entries = {
      {"model.embed_tokens.weight", DType::kBF16, {8, 4}},
      {"model.norm.weight", DType::kF32, {4}},
      {"ids", DType::kI64, {3}},
      {"mask", DType::kBool, {5}},
      {"empty", DType::kF16, {0, 2}}};
  entries = PlanSafetensorsLayout(entries);
  std::string file = EncodeSafetensorsHeader(entries, {{"format", "pt"}});
  return file + std::string(entries.back().end, '\x3f');
}

// Mutating the JSON alone (then fixing the length prefix) reaches deeper into
// the parser than mutating the whole file, where most flips hit the prefix.
std::string MutateHeaderJson(const std::string& file, std::mt19937_64& rng) {
  const std::string json = file.substr(8, file.find('\x3f') - 8);
  const std::string data = file.substr(8 + json.size());
  std::string mutated = Mutate(json, rng);
  std::string prefix(8, '\0');
  for (int i = 0; i < 8; ++i) {
    prefix[i] = static_cast<char>((mutated.size() >> (8 * i)) & 0xff);
  }
  return prefix + mutated + data;
}

TEST(FuzzSafetensorsHeader, MutantsGiveAStatusAndValidatedOffsets) {
  const std::string valid = ValidSafetensors();
  LEMO_ASSERT_OK_AND_ASSIGN(SafetensorsHeader h,
                            ParseSafetensorsHeader(valid, "valid"));
  ASSERT_EQ(h.tensors.size(), 5u);
  std::mt19937_64 rng(20261121);
  int accepted = 0;
  for (int i = 0; i < kMutantsPerSeed; ++i) {
    const std::string m =
        i % 2 == 0 ? Mutate(valid, rng) : MutateHeaderJson(valid, rng);
    ExactBuffer buf(m);
    absl::StatusOr<SafetensorsHeader> r =
        ParseSafetensorsHeader(buf.view(), "fuzz.safetensors");
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(r.status().message(), ::testing::HasSubstr("fuzz"));
      continue;
    }
    ++accepted;
    // What an accepted header promises to mmap readers.
    const uint64_t data_size = m.size() - r->data_offset;
    uint64_t prev_end = 0;
    for (const TensorEntry& t : r->tensors) {
      ASSERT_LE(t.end, data_size) << t.name;
      ASSERT_GE(t.begin, prev_end) << t.name;
      ASSERT_EQ(t.end - t.begin, t.NumBytes()) << t.name;
      ASSERT_EQ(t.begin % DTypeSize(t.dtype), 0u) << t.name;
      prev_end = t.end;
    }
  }
  // Some mutants (e.g. a flipped data byte) stay valid; all of them would mean
  // the mutator never reached the header.
  EXPECT_GT(accepted, 0);
  EXPECT_LT(accepted, kMutantsPerSeed);
}

constexpr char kConfig[] = R"({
  "architectures": ["LlamaForCausalLM"], "bos_token_id": 128000,
  "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
  "hidden_size": 4096, "intermediate_size": 14336, "head_dim": 128,
  "max_position_embeddings": 131072, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "tie_word_embeddings": false,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0,
                   "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192,
                   "rope_type": "llama3"},
  "vocab_size": 128256})";

TEST(FuzzModelConfig, MutantsGiveAStatusAndSaneConfigs) {
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig valid,
                            ParseModelConfig(kConfig, "valid"));
  ASSERT_EQ(valid.num_key_value_heads, 8);
  std::mt19937_64 rng(42);
  for (int i = 0; i < kMutantsPerSeed; ++i) {
    ExactBuffer buf(Mutate(kConfig, rng));
    absl::StatusOr<ModelConfig> r = ParseModelConfig(buf.view(), "fuzz.json");
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(r.status().message(), ::testing::HasSubstr("fuzz.json"));
      continue;
    }
    // What an accepted config promises to the model code.
    ASSERT_GT(r->hidden_size, 0);
    ASSERT_GT(r->num_key_value_heads, 0);
    ASSERT_EQ(r->num_attention_heads % r->num_key_value_heads, 0);
    ASSERT_EQ(r->head_dim % 2, 0);
    ASSERT_GE(r->rope_scaling.factor, 1.0);
    // Whatever we accept must survive our own writer.
    EXPECT_THAT(ParseModelConfig(ModelConfigToJson(*r), "again"),
                ::lemo::testing::IsOk());
  }
}

}  // namespace
}  // namespace lemo::engine
