// The pipeline mirrors the Rust `tokenizers` crate step by step (added-token
// split on the raw text, normalizer per piece, normalized added tokens,
// pre-tokenizers, BPE per pre-token), because exact id parity with Python is
// the contract: every quirk below that looks odd is the crate's behaviour.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "worker/engine/data/hf_tokenizer.h"

#include <pcre2.h>
#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>

#include <algorithm>
#include <array>
#include <deque>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "worker/engine/data/data_file.h"
#include "worker/engine/formats/json_depth.h"

namespace lemo::engine {
namespace internal {
// Named rather than anonymous: HfTokenizerState (declared in the header) holds
// these types, and GCC warns about anonymous types in a linked struct.
namespace hf {

using json = nlohmann::json;

// ---------------------------------------------------------------- UTF-8 --

// Length of the UTF-8 sequence that starts with `lead` (input is validated).
inline int Utf8Len(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  return 4;
}

uint32_t DecodeAt(absl::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  switch (Utf8Len(b(i))) {
    case 1:
      return b(i);
    case 2:
      return ((b(i) & 0x1F) << 6) | (b(i + 1) & 0x3F);
    case 3:
      return ((b(i) & 0x0F) << 12) | ((b(i + 1) & 0x3F) << 6) |
             (b(i + 2) & 0x3F);
    default:
      return ((b(i) & 0x07) << 18) | ((b(i + 1) & 0x3F) << 12) |
             ((b(i + 2) & 0x3F) << 6) | (b(i + 3) & 0x3F);
  }
}

// Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF), the
// set of strings a Python str can encode to.
bool IsValidUtf8(absl::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len;
    uint32_t min;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      min = 0x10000;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (int k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    const uint32_t cp = DecodeAt(s, i);
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

// Rust's char::is_whitespace (the Unicode White_Space property), which the
// crate uses for added tokens' lstrip/rstrip.
bool IsWhitespace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
         cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// Replaces invalid UTF-8 by U+FFFD as Rust's String::from_utf8_lossy does
// (one replacement per maximal invalid prefix).
std::string Utf8Lossy(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    // The WHATWG/Rust rule: accept the longest prefix of a valid sequence,
    // bounding the second byte by the lead byte's range.
    int len = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    }
    if (len == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    size_t k = 1;
    bool ok = true;
    for (; k < static_cast<size_t>(len); ++k) {
      if (i + k >= s.size()) {
        ok = false;
        break;
      }
      const unsigned char d = s[i + k];
      const unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
      if (d < l || d > h) {
        ok = false;
        break;
      }
    }
    if (ok) {
      out.append(s.data() + i, len);
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      i += k;
    }
  }
  return out;
}

// GPT-2's byte <-> printable-character table (bytes_to_unicode): printable
// Latin-1 bytes map to themselves, the other 68 to U+0100 onwards.
struct ByteLevelTable {
  std::array<uint32_t, 256> byte_to_cp;
  absl::flat_hash_map<uint32_t, uint8_t> cp_to_byte;
  ByteLevelTable() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable =
          (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      byte_to_cp[b] = printable ? b : 256 + n++;
      cp_to_byte[byte_to_cp[b]] = static_cast<uint8_t>(b);
    }
  }
};
const ByteLevelTable& ByteLevel() {
  static const ByteLevelTable* table = new ByteLevelTable();
  return *table;
}

// Byte-level text (vocabulary entries) -> raw bytes; false when a character
// is outside the table (such an entry is unreachable through BPE).
bool ByteLevelToBytes(absl::string_view s, std::string* out) {
  out->clear();
  const auto& table = ByteLevel().cp_to_byte;
  for (size_t i = 0; i < s.size(); i += Utf8Len(s[i])) {
    auto it = table.find(DecodeAt(s, i));
    if (it == table.end()) return false;
    out->push_back(static_cast<char>(it->second));
  }
  return true;
}

// ---------------------------------------------------------------- regex --

// The GPT-2 split pattern, what ByteLevel(use_regex=true) applies.
constexpr char kGpt2Pattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// The crate's regexes are Oniguruma's, whose \s also matches U+0085 (NEL);
// PCRE2's \s (with UCP) does not. Rewrites \s and \S so the two agree.
std::string OnigToPcre2(absl::string_view pattern) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char d = pattern[i + 1];
      if (d == 's') {
        out += in_class ? "\\s\\x{85}" : "[\\s\\x{85}]";
      } else if (d == 'S' && !in_class) {
        out += "[^\\s\\x{85}]";
      } else {
        out.push_back(c);
        out.push_back(d);
      }
      ++i;
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out.push_back(c);
      // A ']' or '^]' right after '[' is a literal, not the end.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^')
        out.push_back('^'), ++i;
      if (i + 1 < pattern.size() && pattern[i + 1] == ']')
        out.push_back(']'), ++i;
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out.push_back(c);
  }
  return out;
}

class Regex {
 public:
  static absl::StatusOr<std::unique_ptr<Regex>> Compile(
      absl::string_view onig_pattern, absl::string_view field) {
    const std::string pattern = OnigToPcre2(onig_pattern);
    int error = 0;
    PCRE2_SIZE offset = 0;
    pcre2_code* code = pcre2_compile(
        reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
        PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &error, &offset, nullptr);
    if (code == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof(message));
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": regex \"", onig_pattern, "\" does not compile at offset ",
          offset, ": ", reinterpret_cast<const char*>(message)));
    }
    // JIT is several times faster; without it (an unsupported CPU) the
    // interpreter gives the same matches.
    const bool jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
    return std::unique_ptr<Regex>(new Regex(code, jit));
  }
  ~Regex() { pcre2_code_free(code_); }

  // Calls fn(start, end) for each non-empty match, left to right. `text` must
  // be valid UTF-8.
  template <typename Fn>
  absl::Status ForEachMatch(absl::string_view text, Fn fn) const {
    pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
    const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    size_t pos = 0;
    absl::Status status;
    uint32_t options = PCRE2_NO_UTF_CHECK;
    while (pos < text.size()) {
      int rc = jit_ ? pcre2_jit_match(code_, subject, text.size(), pos, options,
                                      md, nullptr)
                    : pcre2_match(code_, subject, text.size(), pos, options, md,
                                  nullptr);
      if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
        // A pathological backtrack in the JIT's small default stack: the
        // interpreter keeps its frames on the heap.
        rc = pcre2_match(code_, subject, text.size(), pos,
                         options | PCRE2_NO_JIT, md, nullptr);
      }
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        PCRE2_UCHAR message[256];
        pcre2_get_error_message(rc, message, sizeof(message));
        status = absl::InternalError(absl::StrCat(
            "regex match failed: ", reinterpret_cast<const char*>(message)));
        break;
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      const size_t start = ov[0], end = ov[1];
      if (end == start) {
        // Empty matches split nothing; step over one character.
        pos = start + Utf8Len(text[start]);
        continue;
      }
      fn(start, end);
      pos = end;
    }
    pcre2_match_data_free(md);
    return status;
  }

 private:
  Regex(pcre2_code* code, bool jit) : code_(code), jit_(jit) {}
  pcre2_code* code_;
  bool jit_;
};

// ------------------------------------------------------ splitting pieces --

// A piece of text on its way through the pipeline. `at_start` says it starts
// at offset 0 of the original text (Metaspace's prepend_scheme "first").
struct Piece {
  absl::string_view text;
  bool at_start;
};

// The crate's SplitDelimiterBehavior, minus Contiguous.
enum class SplitBehavior {
  kIsolated,
  kRemoved,
  kMergedWithPrevious,
  kMergedWithNext
};

struct Segment {
  size_t start, end;
  bool is_match;
};

// `matches` (sorted, non-overlapping) over a text of `size` bytes -> pieces,
// as the crate's NormalizedString::split folds them.
std::vector<Segment> ApplyBehavior(const std::vector<Segment>& matches,
                                   size_t size, SplitBehavior behavior) {
  std::vector<Segment> all;
  size_t prev = 0;
  for (const Segment& m : matches) {
    if (prev != m.start) all.push_back({prev, m.start, false});
    all.push_back(m);
    prev = m.end;
  }
  if (prev != size) all.push_back({prev, size, false});
  std::vector<Segment> out;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      return all;
    case SplitBehavior::kRemoved:
      for (const Segment& s : all)
        if (!s.is_match) out.push_back(s);
      return out;
    case SplitBehavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const Segment& s : all) {
        if (s.is_match && !previous_match && !out.empty()) {
          out.back().end = s.end;
        } else {
          out.push_back({s.start, s.end, false});
        }
        previous_match = s.is_match;
      }
      return out;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous_match = false;
      for (auto it = all.rbegin(); it != all.rend(); ++it) {
        if (it->is_match && !previous_match && !out.empty()) {
          out.back().start = it->start;
        } else {
          out.push_back({it->start, it->end, false});
        }
        previous_match = it->is_match;
      }
      std::reverse(out.begin(), out.end());
      return out;
    }
  }
  return all;
}

// Owned strings for pieces that a step rewrote; a deque keeps the views into
// earlier strings valid as it grows.
using Arena = std::deque<std::string>;

// ------------------------------------------------------------ normalizer --

struct NormalizerStep {
  enum Kind { kPrepend, kReplace, kReplaceRegex, kUnicode } kind = kPrepend;
  std::string a;  // prepend text, or the pattern
  std::string b;  // replacement content
  std::shared_ptr<Regex> regex;
  const icu::Normalizer2* unicode = nullptr;  // kUnicode: NFC, NFKC, NFD, NFKD
};

std::string ReplaceAll(absl::string_view s, absl::string_view from,
                       absl::string_view to) {
  std::string out;
  if (from.empty()) return std::string(s);
  size_t pos = 0;
  while (true) {
    const size_t hit = s.find(from, pos);
    if (hit == absl::string_view::npos) break;
    out.append(s.data() + pos, hit - pos);
    out.append(to.data(), to.size());
    pos = hit + from.size();
  }
  out.append(s.data() + pos, s.size() - pos);
  return out;
}

// ---------------------------------------------------------- pre-tokenizer --

struct PreTokenizerStep {
  enum Kind { kSplit, kByteLevel, kMetaspace } kind = kSplit;
  std::shared_ptr<Regex> regex;  // kSplit; kByteLevel with use_regex
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool add_prefix_space = false;  // kByteLevel
  std::string replacement;        // kMetaspace
  enum Prepend { kAlways, kFirst, kNever } prepend = kAlways;
  bool split = true;  // kMetaspace
};

// ---------------------------------------------------------------- decoder --

struct DecoderStep {
  enum Kind {
    kByteLevel,
    kReplace,
    kByteFallback,
    kFuse,
    kStrip,
    kMetaspace
  } kind = kFuse;
  std::string a, b;  // Replace: pattern, content; Strip/Metaspace: the char
  int start = 0, stop = 0;
  bool prepend = true;  // Metaspace: prepend_scheme != never
};

// ------------------------------------------------------------ added tokens --

struct AddedToken {
  std::string content;
  int32_t id;
  bool special, lstrip, rstrip, single_word, normalized;
};

// Leftmost-longest matching over a handful of literal patterns, as the
// crate's Aho-Corasick (MatchKind::LeftmostLongest). Real tokenizers have at
// most a few hundred added tokens, so bucketing by first byte is enough.
class AddedMatcher {
 public:
  void Add(std::string pattern, int token) {
    if (pattern.empty()) return;
    const unsigned char first = pattern[0];
    by_first_[first].push_back({std::move(pattern), token});
    has_any_ = true;
  }
  void Finish() {
    for (auto& bucket : by_first_) {
      std::stable_sort(bucket.begin(), bucket.end(),
                       [](const auto& x, const auto& y) {
                         return x.first.size() > y.first.size();
                       });
    }
  }
  bool empty() const { return !has_any_; }
  struct Match {
    size_t start, end;
    int token;
  };
  std::vector<Match> FindAll(absl::string_view s) const {
    std::vector<Match> out;
    size_t i = 0;
    while (i < s.size()) {
      const auto& bucket = by_first_[static_cast<unsigned char>(s[i])];
      bool found = false;
      for (const auto& [pattern, token] : bucket) {
        if (s.substr(i, pattern.size()) == pattern) {
          out.push_back({i, i + pattern.size(), token});
          i += pattern.size();
          found = true;
          break;
        }
      }
      if (!found) ++i;
    }
    return out;
  }

 private:
  std::array<std::vector<std::pair<std::string, int>>, 256> by_first_;
  bool has_any_ = false;
};

}  // namespace hf

using namespace hf;  // NOLINT: this file's own helpers

// ------------------------------------------------------------------ state --

struct HfTokenizerState {
  // Added tokens and their two matchers (raw text, normalized text).
  std::vector<AddedToken> added;
  AddedMatcher raw_matcher, normalized_matcher;
  std::unique_ptr<Regex> word_char;  // single_word's "is alphanumeric"

  std::vector<NormalizerStep> normalizer;
  std::vector<PreTokenizerStep> pre_tokenizer;
  std::vector<DecoderStep> decoder;
  bool has_decoder = false;

  // BPE. With a ByteLevel pre-tokenizer the model sees GPT-2's printable
  // stand-ins for bytes; `vocab` is then keyed by the raw bytes instead, so
  // encoding never builds the mapped strings (the mapping is one-to-one, so
  // the ids are the same).
  bool byte_level = false;
  absl::flat_hash_map<std::string, int32_t> vocab;
  // (left id << 32 | right id) -> (rank, merged id).
  absl::flat_hash_map<uint64_t, std::pair<int32_t, int32_t>> merges;
  // Ids of the one-unit tokens BPE starts from: by byte (byte-level, or an
  // ASCII character) and by code point (other characters), so the start
  // needs no string hashing; it dominates Llama-2's layout, whose "words" are
  // whole paragraphs.
  std::array<int32_t, 256> byte_unit_id;
  absl::flat_hash_map<uint32_t, int32_t> char_unit_id;
  std::array<int32_t, 256> byte_fallback_id;  // <0xXX>, or -1
  bool byte_fallback = false;
  int32_t unk_id = -1;
  bool fuse_unk = false;
  bool ignore_merges = false;

  // Decoding.
  std::vector<std::string> id_to_token;  // "" where no token has the id
  std::vector<bool> id_present, id_special;

  int32_t bos = -1, eos = -1;

  // Words shorter than kMaxCachedWord bytes -> ids. The crate caches the same
  // way (its MAX_LENGTH is 256): long words are rare and would bloat it.
  static constexpr size_t kMaxCachedWord = 256;
  static constexpr size_t kMaxCacheEntries = 1 << 17;
  mutable absl::Mutex cache_mu;
  mutable absl::flat_hash_map<std::string, std::vector<int32_t>> cache
      ABSL_GUARDED_BY(cache_mu);

  absl::Status Encode(absl::string_view text, std::vector<int32_t>* ids) const;
  absl::Status EncodeText(Piece piece, std::vector<int32_t>* ids) const;
  void EncodeWord(absl::string_view word, std::vector<int32_t>* ids) const;
  void MergeWord(absl::string_view word, std::vector<int32_t>* ids) const;
  std::string Normalize(absl::string_view s) const;
  std::vector<std::pair<std::optional<int>, Piece>> SplitAdded(
      Piece piece, const AddedMatcher& matcher) const;
  absl::Status PreTokenize(Piece piece, Arena* arena,
                           std::vector<Piece>* out) const;
};

namespace {

// ------------------------------------------------------------------- BPE --

struct Symbol {
  int32_t id;
  int32_t prev, next;
  uint32_t len;  // 0 once merged into its left neighbour
};

struct MergeCandidate {
  int32_t rank;
  int32_t pos;
  int32_t new_id;
  // A min-heap on (rank, pos): the crate's Merge ordering.
  bool operator<(const MergeCandidate& o) const {
    return rank != o.rank ? rank > o.rank : pos > o.pos;
  }
};

}  // namespace

void HfTokenizerState::MergeWord(absl::string_view w,
                                 std::vector<int32_t>* ids) const {
  std::vector<Symbol> symbols;
  symbols.reserve(w.size());
  auto add = [&](int32_t id, uint32_t len) {
    const int32_t n = static_cast<int32_t>(symbols.size());
    if (n > 0) symbols.back().next = n;
    symbols.push_back({id, n - 1, -1, len});
  };
  // The crate's merge_word: one symbol per character (per byte for
  // byte-level), byte fallback, then <unk> (fused runs when fuse_unk). Its
  // quirk is kept: a pending <unk> is flushed only before a known character,
  // so it lands after byte-fallback symbols that follow it.
  int32_t pending_unk_len = -1;
  for (size_t i = 0; i < w.size();) {
    const size_t len = byte_level ? 1 : Utf8Len(w[i]);
    const absl::string_view unit = w.substr(i, len);
    int32_t id = -1;
    if (len == 1) {
      id = byte_unit_id[static_cast<unsigned char>(w[i])];
    } else {
      auto it = char_unit_id.find(DecodeAt(w, i));
      if (it != char_unit_id.end()) id = it->second;
    }
    i += len;
    if (id >= 0) {
      if (pending_unk_len >= 0) add(unk_id, pending_unk_len);
      pending_unk_len = -1;
      add(id, static_cast<uint32_t>(len));
      continue;
    }
    if (byte_fallback) {
      bool all = true;
      for (unsigned char b : unit) all = all && byte_fallback_id[b] >= 0;
      if (all) {
        for (unsigned char b : unit) add(byte_fallback_id[b], 1);
        continue;
      }
    }
    if (unk_id >= 0) {
      if (pending_unk_len >= 0 && fuse_unk) {
        pending_unk_len += static_cast<int32_t>(len);
      } else {
        if (pending_unk_len >= 0) add(unk_id, pending_unk_len);
        pending_unk_len = static_cast<int32_t>(len);
      }
    }
    // Without <unk> the crate drops the character silently; so do we.
  }
  if (pending_unk_len >= 0) add(unk_id, pending_unk_len);

  auto lookup = [&](int32_t a,
                    int32_t b) -> const std::pair<int32_t, int32_t>* {
    auto it =
        merges.find((static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) |
                    static_cast<uint32_t>(b));
    return it == merges.end() ? nullptr : &it->second;
  };
  std::vector<MergeCandidate> heap;
  heap.reserve(symbols.size());
  for (size_t k = 0; k + 1 < symbols.size(); ++k) {
    if (auto* m = lookup(symbols[k].id, symbols[k + 1].id))
      heap.push_back({m->first, static_cast<int32_t>(k), m->second});
  }
  std::make_heap(heap.begin(), heap.end());
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    const MergeCandidate top = heap.back();
    heap.pop_back();
    Symbol& cur = symbols[top.pos];
    if (cur.len == 0 || cur.next < 0) continue;
    const Symbol right = symbols[cur.next];
    // Stale entry: one side has merged since it was queued.
    const auto* m = lookup(cur.id, right.id);
    if (m == nullptr || m->second != top.new_id) continue;
    const int32_t next_pos = cur.next;
    cur.id = top.new_id;
    cur.len += right.len;
    cur.next = right.next;
    symbols[next_pos].len = 0;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (cur.prev >= 0) {
      if (auto* pm = lookup(symbols[cur.prev].id, cur.id)) {
        heap.push_back({pm->first, cur.prev, pm->second});
        std::push_heap(heap.begin(), heap.end());
      }
    }
    if (cur.next >= 0) {
      if (auto* nm = lookup(cur.id, symbols[cur.next].id)) {
        heap.push_back({nm->first, top.pos, nm->second});
        std::push_heap(heap.begin(), heap.end());
      }
    }
  }
  for (const Symbol& s : symbols)
    if (s.len != 0) ids->push_back(s.id);
}

void HfTokenizerState::EncodeWord(absl::string_view word,
                                  std::vector<int32_t>* ids) const {
  if (word.empty()) return;
  if (ignore_merges) {
    auto it = vocab.find(word);
    if (it != vocab.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  if (word.size() >= kMaxCachedWord) {
    MergeWord(word, ids);
    return;
  }
  {
    absl::ReaderMutexLock lock(&cache_mu);
    auto it = cache.find(word);
    if (it != cache.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = ids->size();
  MergeWord(word, ids);
  absl::MutexLock lock(&cache_mu);
  // A full cache stops growing rather than evicting: the crate does the same,
  // and the words seen first in a corpus are its most frequent anyway.
  if (cache.size() < kMaxCacheEntries) {
    cache.emplace(word, std::vector<int32_t>(ids->begin() + first, ids->end()));
  }
}

std::string HfTokenizerState::Normalize(absl::string_view s) const {
  std::string out(s);
  for (const NormalizerStep& step : normalizer) {
    switch (step.kind) {
      case NormalizerStep::kPrepend:
        if (!out.empty()) out = step.a + out;
        break;
      case NormalizerStep::kReplace:
        out = ReplaceAll(out, step.a, step.b);
        break;
      case NormalizerStep::kReplaceRegex: {
        std::string replaced;
        size_t prev = 0;
        // Matching never fails on validated UTF-8 short of a resource limit,
        // and then the text is left as it was.
        (void)step.regex->ForEachMatch(out, [&](size_t start, size_t end) {
          replaced.append(out, prev, start - prev);
          replaced += step.b;
          prev = end;
        });
        replaced.append(out, prev, std::string::npos);
        out = std::move(replaced);
        break;
      }
      case NormalizerStep::kUnicode: {
        UErrorCode error = U_ZERO_ERROR;
        // Most text is already normalized: ICU's quick check skips the copy.
        const icu::StringPiece piece(out.data(),
                                     static_cast<int32_t>(out.size()));
        if (step.unicode->isNormalizedUTF8(piece, error) && U_SUCCESS(error))
          break;
        error = U_ZERO_ERROR;
        std::string normalized;
        icu::StringByteSink<std::string> sink(&normalized);
        step.unicode->normalizeUTF8(0, piece, sink, nullptr, error);
        // Only an allocation failure fails here; the text then stays as it
        // was rather than failing the document.
        if (U_SUCCESS(error)) out = std::move(normalized);
        break;
      }
    }
  }
  return out;
}

std::vector<std::pair<std::optional<int>, Piece>> HfTokenizerState::SplitAdded(
    Piece piece, const AddedMatcher& matcher) const {
  std::vector<std::pair<std::optional<int>, Piece>> out;
  const absl::string_view s = piece.text;
  if (matcher.empty()) {
    out.push_back({std::nullopt, piece});
    return out;
  }
  size_t start_offset = 0;
  auto is_word_char = [&](size_t at) {
    bool word = false;
    (void)word_char->ForEachMatch(s.substr(at, Utf8Len(s[at])),
                                  [&](size_t, size_t) { word = true; });
    return word;
  };
  for (const AddedMatcher::Match& m : matcher.FindAll(s)) {
    size_t start = m.start, stop = m.end;
    const AddedToken& token = added[m.token];
    if (token.single_word) {
      size_t last = start;
      if (start > 0) {
        do --last;
        while (last > 0 &&
               (static_cast<unsigned char>(s[last]) & 0xC0) == 0x80);
      }
      const bool start_space = start == 0 || !is_word_char(last);
      const bool stop_space = stop == s.size() || !is_word_char(stop);
      if (!start_space || !stop_space) continue;
    }
    if (token.lstrip) {
      size_t new_start = start;
      while (new_start > 0) {
        size_t k = new_start - 1;
        while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
        if (!IsWhitespace(DecodeAt(s, k))) break;
        new_start = k;
      }
      start = std::max(new_start, start_offset);
    }
    if (token.rstrip) {
      while (stop < s.size() && IsWhitespace(DecodeAt(s, stop)))
        stop += Utf8Len(s[stop]);
    }
    if (start_offset < start) {
      out.push_back(
          {std::nullopt, Piece{s.substr(start_offset, start - start_offset),
                               piece.at_start && start_offset == 0}});
    }
    out.push_back({token.id, Piece{s.substr(start, stop - start), false}});
    start_offset = stop;
  }
  if (start_offset < s.size()) {
    out.push_back({std::nullopt, Piece{s.substr(start_offset),
                                       piece.at_start && start_offset == 0}});
  }
  return out;
}

absl::Status HfTokenizerState::PreTokenize(Piece piece, Arena* arena,
                                           std::vector<Piece>* out) const {
  std::vector<Piece> cur = {piece}, next;
  for (const PreTokenizerStep& step : pre_tokenizer) {
    next.clear();
    for (const Piece& p : cur) {
      switch (step.kind) {
        case PreTokenizerStep::kSplit:
        case PreTokenizerStep::kByteLevel: {
          absl::string_view text = p.text;
          if (step.kind == PreTokenizerStep::kByteLevel &&
              step.add_prefix_space && (text.empty() || text[0] != ' ')) {
            arena->push_back(absl::StrCat(" ", text));
            text = arena->back();
          }
          if (step.regex == nullptr) {
            next.push_back({text, p.at_start});
            break;
          }
          std::vector<Segment> matches;
          LEMO_RETURN_IF_ERROR(
              step.regex->ForEachMatch(text, [&](size_t a, size_t b) {
                matches.push_back({a, b, true});
              }));
          for (const Segment& s :
               ApplyBehavior(matches, text.size(), step.behavior)) {
            if (s.end > s.start) {
              next.push_back({text.substr(s.start, s.end - s.start),
                              p.at_start && s.start == 0});
            }
          }
          break;
        }
        case PreTokenizerStep::kMetaspace: {
          std::string replaced = ReplaceAll(p.text, " ", step.replacement);
          const bool starts =
              absl::string_view(replaced).substr(0, step.replacement.size()) ==
              step.replacement;
          if (!starts &&
              (step.prepend == PreTokenizerStep::kAlways ||
               (step.prepend == PreTokenizerStep::kFirst && p.at_start))) {
            replaced = step.replacement + replaced;
          }
          arena->push_back(std::move(replaced));
          const absl::string_view text = arena->back();
          if (!step.split) {
            next.push_back({text, p.at_start});
            break;
          }
          std::vector<Segment> matches;
          for (size_t pos = text.find(step.replacement);
               pos != absl::string_view::npos;
               pos =
                   text.find(step.replacement, pos + step.replacement.size())) {
            matches.push_back({pos, pos + step.replacement.size(), true});
          }
          for (const Segment& s : ApplyBehavior(
                   matches, text.size(), SplitBehavior::kMergedWithNext)) {
            if (s.end > s.start) {
              next.push_back({text.substr(s.start, s.end - s.start),
                              p.at_start && s.start == 0});
            }
          }
          break;
        }
      }
    }
    std::swap(cur, next);
  }
  out->insert(out->end(), cur.begin(), cur.end());
  return absl::OkStatus();
}

absl::Status HfTokenizerState::EncodeText(Piece piece,
                                          std::vector<int32_t>* ids) const {
  Arena arena;
  std::vector<Piece> words;
  LEMO_RETURN_IF_ERROR(PreTokenize(piece, &arena, &words));
  for (const Piece& w : words) EncodeWord(w.text, ids);
  return absl::OkStatus();
}

absl::Status HfTokenizerState::Encode(absl::string_view text,
                                      std::vector<int32_t>* ids) const {
  for (const auto& [token, piece] :
       SplitAdded(Piece{text, true}, raw_matcher)) {
    if (token.has_value()) {
      ids->push_back(*token);
      continue;
    }
    if (piece.text.empty()) continue;
    // The normalizer runs on each piece between raw added tokens, as in the
    // crate (so Prepend("▁") applies after every special token too).
    std::string normalized;
    Piece norm_piece = piece;
    if (!normalizer.empty()) {
      normalized = Normalize(piece.text);
      norm_piece.text = normalized;
    }
    for (const auto& [token2, sub] :
         SplitAdded(norm_piece, normalized_matcher)) {
      if (token2.has_value()) {
        ids->push_back(*token2);
      } else if (!sub.text.empty()) {
        LEMO_RETURN_IF_ERROR(EncodeText(sub, ids));
      }
    }
  }
  return absl::OkStatus();
}

namespace {

// ------------------------------------------------------------------ load --

std::string Where(const std::string& path, absl::string_view field) {
  return absl::StrCat("tokenizer ", path, ": ", field);
}

absl::Status Unsupported(const std::string& path, absl::string_view field,
                         absl::string_view value) {
  return absl::InvalidArgumentError(absl::StrCat(
      Where(path, field), " = \"", value,
      "\" is not supported (supported: a BPE model with byte-level "
      "or Metaspace/byte-fallback pre-processing)"));
}

std::string TypeOf(const json& j) {
  if (j.is_object() && j.contains("type") && j["type"].is_string())
    return j["type"].get<std::string>();
  return j.is_object() ? "(no type)" : j.type_name();
}

absl::StatusOr<std::string> PatternString(const json& pattern,
                                          const std::string& path,
                                          absl::string_view field,
                                          bool* is_regex) {
  if (pattern.is_object() && pattern.contains("String") &&
      pattern["String"].is_string()) {
    *is_regex = false;
    return pattern["String"].get<std::string>();
  }
  if (pattern.is_object() && pattern.contains("Regex") &&
      pattern["Regex"].is_string()) {
    *is_regex = true;
    return pattern["Regex"].get<std::string>();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      Where(path, field), " must be {\"String\": ...} or {\"Regex\": ...}"));
}

std::string QuoteRegex(absl::string_view literal) {
  std::string out = "\\Q";
  // \E inside \Q...\E would end the quote early.
  out += ReplaceAll(literal, "\\E", "\\E\\\\E\\Q");
  out += "\\E";
  return out;
}

absl::Status ParseNormalizer(const json& j, const std::string& path,
                             const std::string& field, HfTokenizerState* st) {
  if (j.is_null()) return absl::OkStatus();
  const std::string type = TypeOf(j);
  if (type == "Sequence") {
    if (!j.contains("normalizers") || !j["normalizers"].is_array())
      return absl::InvalidArgumentError(
          Where(path, field + ".normalizers must be a list"));
    for (size_t i = 0; i < j["normalizers"].size(); ++i) {
      LEMO_RETURN_IF_ERROR(
          ParseNormalizer(j["normalizers"][i], path,
                          absl::StrCat(field, ".normalizers[", i, "]"), st));
    }
    return absl::OkStatus();
  }
  if (type == "Prepend") {
    NormalizerStep step;
    step.a = j.value("prepend", "");
    st->normalizer.push_back(std::move(step));
    return absl::OkStatus();
  }
  if (type == "Replace") {
    bool is_regex = false;
    LEMO_ASSIGN_OR_RETURN(std::string pattern,
                          PatternString(j.value("pattern", json()), path,
                                        field + ".pattern", &is_regex));
    NormalizerStep step;
    step.kind =
        is_regex ? NormalizerStep::kReplaceRegex : NormalizerStep::kReplace;
    step.a = pattern;
    step.b = j.value("content", "");
    if (is_regex) {
      LEMO_ASSIGN_OR_RETURN(step.regex,
                            Regex::Compile(pattern, Where(path, field)));
    }
    st->normalizer.push_back(std::move(step));
    return absl::OkStatus();
  }
  if (type == "NFC" || type == "NFKC" || type == "NFD" || type == "NFKD") {
    UErrorCode error = U_ZERO_ERROR;
    const icu::Normalizer2* n =
        type == "NFC"    ? icu::Normalizer2::getNFCInstance(error)
        : type == "NFKC" ? icu::Normalizer2::getNFKCInstance(error)
        : type == "NFD"  ? icu::Normalizer2::getNFDInstance(error)
                         : icu::Normalizer2::getNFKDInstance(error);
    if (U_FAILURE(error) || n == nullptr) {
      return absl::InternalError(absl::StrCat(Where(path, field),
                                              ": ICU has no ", type,
                                              " data: ", u_errorName(error)));
    }
    NormalizerStep step;
    step.kind = NormalizerStep::kUnicode;
    step.unicode = n;
    st->normalizer.push_back(std::move(step));
    return absl::OkStatus();
  }
  return Unsupported(path, field + ".type", type);
}

absl::StatusOr<SplitBehavior> ParseBehavior(const json& j,
                                            const std::string& path,
                                            const std::string& field) {
  const std::string b = j.is_string() ? j.get<std::string>() : "";
  if (b == "Isolated") return SplitBehavior::kIsolated;
  if (b == "Removed") return SplitBehavior::kRemoved;
  if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  return Unsupported(path, field, b);
}

absl::StatusOr<PreTokenizerStep::Prepend> ParsePrependScheme(
    const json& j, const std::string& path, const std::string& field) {
  // Files from before prepend_scheme say add_prefix_space instead.
  if (!j.contains("prepend_scheme")) {
    return j.value("add_prefix_space", true) ? PreTokenizerStep::kAlways
                                             : PreTokenizerStep::kNever;
  }
  const std::string s = j["prepend_scheme"].is_string()
                            ? j["prepend_scheme"].get<std::string>()
                            : "";
  if (s == "always") return PreTokenizerStep::kAlways;
  if (s == "first") return PreTokenizerStep::kFirst;
  if (s == "never") return PreTokenizerStep::kNever;
  return Unsupported(path, field + ".prepend_scheme", s);
}

absl::Status ParsePreTokenizer(const json& j, const std::string& path,
                               const std::string& field, HfTokenizerState* st) {
  if (j.is_null()) return absl::OkStatus();
  const std::string type = TypeOf(j);
  if (type == "Sequence") {
    if (!j.contains("pretokenizers") || !j["pretokenizers"].is_array())
      return absl::InvalidArgumentError(
          Where(path, field + ".pretokenizers must be a list"));
    for (size_t i = 0; i < j["pretokenizers"].size(); ++i) {
      LEMO_RETURN_IF_ERROR(ParsePreTokenizer(
          j["pretokenizers"][i], path,
          absl::StrCat(field, ".pretokenizers[", i, "]"), st));
    }
    return absl::OkStatus();
  }
  if (type == "Split") {
    if (j.value("invert", false))
      return Unsupported(path, field + ".invert", "true");
    PreTokenizerStep step;
    step.kind = PreTokenizerStep::kSplit;
    bool is_regex = false;
    LEMO_ASSIGN_OR_RETURN(std::string pattern,
                          PatternString(j.value("pattern", json()), path,
                                        field + ".pattern", &is_regex));
    LEMO_ASSIGN_OR_RETURN(
        step.regex, Regex::Compile(is_regex ? pattern : QuoteRegex(pattern),
                                   Where(path, field + ".pattern")));
    LEMO_ASSIGN_OR_RETURN(
        step.behavior,
        ParseBehavior(j.value("behavior", json()), path, field + ".behavior"));
    st->pre_tokenizer.push_back(std::move(step));
    return absl::OkStatus();
  }
  if (type == "ByteLevel") {
    PreTokenizerStep step;
    step.kind = PreTokenizerStep::kByteLevel;
    step.add_prefix_space = j.value("add_prefix_space", true);
    if (j.value("use_regex", true)) {
      LEMO_ASSIGN_OR_RETURN(step.regex,
                            Regex::Compile(kGpt2Pattern, Where(path, field)));
    }
    st->pre_tokenizer.push_back(std::move(step));
    st->byte_level = true;
    return absl::OkStatus();
  }
  if (type == "Metaspace") {
    PreTokenizerStep step;
    step.kind = PreTokenizerStep::kMetaspace;
    step.replacement = j.value("replacement", "\xE2\x96\x81");
    LEMO_ASSIGN_OR_RETURN(step.prepend, ParsePrependScheme(j, path, field));
    step.split = j.value("split", true);
    if (step.replacement.empty())
      return absl::InvalidArgumentError(
          Where(path, field + ".replacement is empty"));
    st->pre_tokenizer.push_back(std::move(step));
    return absl::OkStatus();
  }
  return Unsupported(path, field + ".type", type);
}

absl::Status ParseDecoder(const json& j, const std::string& path,
                          const std::string& field, HfTokenizerState* st) {
  if (j.is_null()) return absl::OkStatus();
  st->has_decoder = true;
  const std::string type = TypeOf(j);
  if (type == "Sequence") {
    if (!j.contains("decoders") || !j["decoders"].is_array())
      return absl::InvalidArgumentError(
          Where(path, field + ".decoders must be a list"));
    for (size_t i = 0; i < j["decoders"].size(); ++i) {
      LEMO_RETURN_IF_ERROR(
          ParseDecoder(j["decoders"][i], path,
                       absl::StrCat(field, ".decoders[", i, "]"), st));
    }
    return absl::OkStatus();
  }
  DecoderStep step;
  if (type == "ByteLevel") {
    step.kind = DecoderStep::kByteLevel;
  } else if (type == "ByteFallback") {
    step.kind = DecoderStep::kByteFallback;
  } else if (type == "Fuse") {
    step.kind = DecoderStep::kFuse;
  } else if (type == "Replace") {
    bool is_regex = false;
    LEMO_ASSIGN_OR_RETURN(step.a,
                          PatternString(j.value("pattern", json()), path,
                                        field + ".pattern", &is_regex));
    if (is_regex) return Unsupported(path, field + ".pattern", "Regex");
    step.kind = DecoderStep::kReplace;
    step.b = j.value("content", "");
  } else if (type == "Strip") {
    step.kind = DecoderStep::kStrip;
    step.a = j.value("content", " ");
    step.start = j.value("start", 0);
    step.stop = j.value("stop", 0);
  } else if (type == "Metaspace") {
    step.kind = DecoderStep::kMetaspace;
    step.a = j.value("replacement", "\xE2\x96\x81");
    LEMO_ASSIGN_OR_RETURN(PreTokenizerStep::Prepend scheme,
                          ParsePrependScheme(j, path, field));
    step.prepend = scheme != PreTokenizerStep::kNever;
  } else {
    return Unsupported(path, field + ".type", type);
  }
  st->decoder.push_back(std::move(step));
  return absl::OkStatus();
}

// One merge, as "a b" (files before tokenizers 0.20) or ["a", "b"].
absl::StatusOr<std::pair<std::string, std::string>> ParseMerge(
    const json& m, const std::string& path, size_t i) {
  if (m.is_string()) {
    const std::string s = m.get<std::string>();
    const size_t space = s.find(' ');
    if (space != std::string::npos &&
        s.find(' ', space + 1) == std::string::npos)
      return std::make_pair(s.substr(0, space), s.substr(space + 1));
  } else if (m.is_array() && m.size() == 2 && m[0].is_string() &&
             m[1].is_string()) {
    return std::make_pair(m[0].get<std::string>(), m[1].get<std::string>());
  }
  return absl::InvalidArgumentError(absl::StrCat(
      Where(path, "model.merges["), i,
      "] is neither \"a b\" nor [\"a\", \"b\"]: ", m.dump().substr(0, 80)));
}

absl::Status ParseModel(const json& model, const std::string& path,
                        HfTokenizerState* st) {
  if (!model.is_object())
    return absl::InvalidArgumentError(Where(path, "model is missing"));
  // The crate accepts an untagged BPE (no "type" but vocab + merges).
  const std::string type = model.contains("type")
                               ? TypeOf(model)
                               : (model.contains("merges") ? "BPE" : "(none)");
  if (type != "BPE") return Unsupported(path, "model.type", type);
  if (model.contains("dropout") && model["dropout"].is_number() &&
      model["dropout"].get<double>() > 0) {
    // Random merges make parity meaningless; training data wants the
    // deterministic encoding anyway.
    return Unsupported(path, "model.dropout", model["dropout"].dump());
  }
  for (const char* field :
       {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(field) && model[field].is_string() &&
        !model[field].get<std::string>().empty()) {
      return Unsupported(path, absl::StrCat("model.", field),
                         model[field].get<std::string>());
    }
  }
  if (!model.contains("vocab") || !model["vocab"].is_object())
    return absl::InvalidArgumentError(
        Where(path, "model.vocab must be an object"));
  if (!model.contains("merges") || !model["merges"].is_array())
    return absl::InvalidArgumentError(
        Where(path, "model.merges must be a list"));
  st->byte_fallback = model.value("byte_fallback", false);
  st->fuse_unk = model.value("fuse_unk", false);
  st->ignore_merges = model.value("ignore_merges", false);

  // Vocabulary in the model's own strings (for merges and decoding).
  absl::flat_hash_map<std::string, int32_t> vocab;
  for (const auto& [token, id_json] : model["vocab"].items()) {
    if (!id_json.is_number_integer() || id_json.get<int64_t>() < 0 ||
        id_json.get<int64_t>() >= (int64_t{1} << 31) - 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          Where(path, "model.vocab[\""), token, "\"] is not a valid id"));
    }
    const int32_t id = id_json.get<int32_t>();
    vocab[token] = id;
    if (static_cast<size_t>(id) >= st->id_to_token.size()) {
      st->id_to_token.resize(id + 1);
      st->id_present.resize(id + 1, false);
      st->id_special.resize(id + 1, false);
    }
    st->id_to_token[id] = token;
    st->id_present[id] = true;
  }
  const json& merges = model["merges"];
  st->merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    LEMO_ASSIGN_OR_RETURN(auto pair, ParseMerge(merges[i], path, i));
    auto a = vocab.find(pair.first), b = vocab.find(pair.second);
    auto merged = vocab.find(pair.first + pair.second);
    if (a == vocab.end() || b == vocab.end() || merged == vocab.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          Where(path, "model.merges["), i, "] (\"", pair.first, "\", \"",
          pair.second, "\") uses a token that is not in model.vocab"));
    }
    st->merges[(static_cast<uint64_t>(static_cast<uint32_t>(a->second)) << 32) |
               static_cast<uint32_t>(b->second)] = {static_cast<int32_t>(i),
                                                    merged->second};
  }
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    auto it = vocab.find(model["unk_token"].get<std::string>());
    if (it == vocab.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          Where(path, "model.unk_token \""),
          model["unk_token"].get<std::string>(), "\" is not in model.vocab"));
    }
    st->unk_id = it->second;
  }
  st->byte_fallback_id.fill(-1);
  for (int b = 0; b < 256; ++b) {
    // Rust's format!("<{:#04X}>", b): "<0x0A>".
    static constexpr char kHex[] = "0123456789ABCDEF";
    const std::string name = absl::StrCat("<0x", std::string(1, kHex[b >> 4]),
                                          std::string(1, kHex[b & 15]), ">");
    auto it = vocab.find(name);
    if (it != vocab.end()) st->byte_fallback_id[b] = it->second;
  }
  // The encoding vocabulary: raw bytes for byte-level, the strings otherwise.
  st->byte_unit_id.fill(-1);
  if (st->byte_level) {
    std::string raw;
    for (const auto& [token, id] : vocab) {
      if (ByteLevelToBytes(token, &raw)) {
        st->vocab[raw] = id;
        if (raw.size() == 1)
          st->byte_unit_id[static_cast<unsigned char>(raw[0])] = id;
      }
    }
  } else {
    for (const auto& [token, id] : vocab) {
      if (token.empty() ||
          static_cast<size_t>(Utf8Len(token[0])) != token.size())
        continue;
      if (token.size() == 1) {
        st->byte_unit_id[static_cast<unsigned char>(token[0])] = id;
      } else {
        st->char_unit_id[DecodeAt(token, 0)] = id;
      }
    }
    st->vocab = std::move(vocab);
  }
  return absl::OkStatus();
}

absl::Status ParseAddedTokens(const json& list, const std::string& path,
                              HfTokenizerState* st) {
  if (list.is_null()) return absl::OkStatus();
  if (!list.is_array())
    return absl::InvalidArgumentError(
        Where(path, "added_tokens must be a list"));
  for (size_t i = 0; i < list.size(); ++i) {
    const json& t = list[i];
    if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() ||
        !t.contains("content") || !t["content"].is_string() ||
        t["id"].get<int64_t>() < 0 ||
        t["id"].get<int64_t>() >= (int64_t{1} << 31) - 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          Where(path, "added_tokens["), i, "] needs an id and a content"));
    }
    AddedToken token{t["content"].get<std::string>(),
                     t["id"].get<int32_t>(),
                     t.value("special", false),
                     t.value("lstrip", false),
                     t.value("rstrip", false),
                     t.value("single_word", false),
                     t.value("normalized", !t.value("special", false))};
    const size_t id = token.id;
    if (id >= st->id_to_token.size()) {
      st->id_to_token.resize(id + 1);
      st->id_present.resize(id + 1, false);
      st->id_special.resize(id + 1, false);
    }
    st->id_present[id] = true;
    st->id_special[id] = token.special;
    // A normalized token decodes as its normalized content (the crate keeps
    // that text for it), e.g. "▁<tag>" under Prepend("▁").
    st->id_to_token[id] =
        token.normalized ? st->Normalize(token.content) : token.content;
    st->added.push_back(std::move(token));
  }
  // Which matcher a token joins, and on what text, as the crate's
  // AddedVocabulary: normalized tokens are matched on normalized text against
  // their own normalized content.
  for (size_t k = 0; k < st->added.size(); ++k) {
    const AddedToken& t = st->added[k];
    if (t.normalized) {
      st->normalized_matcher.Add(st->Normalize(t.content), static_cast<int>(k));
    } else {
      st->raw_matcher.Add(t.content, static_cast<int>(k));
    }
  }
  st->raw_matcher.Finish();
  st->normalized_matcher.Finish();
  return absl::OkStatus();
}

absl::StatusOr<json> ReadJson(const std::string& path) {
  LEMO_ASSIGN_OR_RETURN(std::ifstream in, OpenDataFile(path), "tokenizer");
  std::ostringstream bytes;
  bytes << in.rdbuf();
  if (in.bad())
    return absl::DataLossError(absl::StrCat("reading tokenizer ", path));
  json j = json::parse(bytes.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer ", path, " is not a JSON object"));
  }
  // The parsers below copy fields (json::value): a deep one would overflow
  // the stack.
  LEMO_RETURN_IF_ERROR(
      CheckJsonDepth(j, kMaxJsonDepth, absl::StrCat("tokenizer ", path)));
  return j;
}

// The id of a special token named by tokenizer_config.json (a string, or an
// AddedToken object with "content").
absl::StatusOr<int32_t> ConfigTokenId(const json& config, const char* field,
                                      const std::string& config_path,
                                      const HfTokenizerState& st) {
  if (!config.contains(field) || config[field].is_null()) return -1;
  const json& v = config[field];
  std::string content;
  if (v.is_string()) {
    content = v.get<std::string>();
  } else if (v.is_object() && v.contains("content") &&
             v["content"].is_string()) {
    content = v["content"].get<std::string>();
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        config_path, ": ", field, " must be a string or {\"content\": ...}"));
  }
  for (const AddedToken& t : st.added)
    if (t.content == content) return t.id;
  for (size_t id = 0; id < st.id_to_token.size(); ++id)
    if (st.id_present[id] && st.id_to_token[id] == content)
      return static_cast<int32_t>(id);
  return absl::InvalidArgumentError(
      absl::StrCat(config_path, ": ", field, " \"", content,
                   "\" is not a token of the tokenizer"));
}

}  // namespace
}  // namespace internal

using internal::HfTokenizerState;

HfTokenizer::HfTokenizer(std::string path,
                         std::unique_ptr<HfTokenizerState> state)
    : path_(std::move(path)), state_(std::move(state)) {}

HfTokenizer::~HfTokenizer() = default;

namespace {

// HfTokenizer::Load's work; nlohmann's accessors throw on a field of the
// wrong JSON type, which Load turns into INVALID_ARGUMENT.
absl::StatusOr<std::unique_ptr<HfTokenizerState>> LoadState(
    const std::string& path) {
  using internal::json;
  LEMO_ASSIGN_OR_RETURN(json j, internal::ReadJson(path));
  auto st = std::make_unique<HfTokenizerState>();
  // The crate's single_word boundary is a regex \w: letters, marks, decimal
  // digits, connector punctuation ('_') and the joiners.
  LEMO_ASSIGN_OR_RETURN(
      st->word_char, internal::Regex::Compile(
                         R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}])",
                         "single_word"));
  // Normalizer and pre-tokenizer first: the model's vocabulary depends on
  // whether the text is byte-level, and added tokens on the normalizer.
  LEMO_RETURN_IF_ERROR(internal::ParseNormalizer(j.value("normalizer", json()),
                                                 path, "normalizer", st.get()));
  LEMO_RETURN_IF_ERROR(internal::ParsePreTokenizer(
      j.value("pre_tokenizer", json()), path, "pre_tokenizer", st.get()));
  LEMO_RETURN_IF_ERROR(internal::ParseDecoder(j.value("decoder", json()), path,
                                              "decoder", st.get()));
  LEMO_RETURN_IF_ERROR(
      internal::ParseModel(j.value("model", json()), path, st.get()));
  LEMO_RETURN_IF_ERROR(internal::ParseAddedTokens(
      j.value("added_tokens", json()), path, st.get()));
  // The post-processor (bos/eos templates), truncation and padding do not
  // change Encode's ids: PackedDataset frames documents itself and cuts
  // sequences to seq_len.

  const std::filesystem::path config_path =
      std::filesystem::path(path).parent_path() / "tokenizer_config.json";
  std::error_code ec;
  if (std::filesystem::exists(config_path, ec)) {
    LEMO_ASSIGN_OR_RETURN(json config,
                          internal::ReadJson(config_path.string()));
    LEMO_ASSIGN_OR_RETURN(st->bos,
                          internal::ConfigTokenId(config, "bos_token",
                                                  config_path.string(), *st));
    LEMO_ASSIGN_OR_RETURN(st->eos,
                          internal::ConfigTokenId(config, "eos_token",
                                                  config_path.string(), *st));
    // Models trained without a leading bos (add_bos_token false) get none.
    if (config.contains("add_bos_token") &&
        config["add_bos_token"].is_boolean() &&
        !config["add_bos_token"].get<bool>()) {
      st->bos = -1;
    }
  } else {
    // Without a config, the post-processor's template names the bos a
    // model's documents start with: TemplateProcessing's "single".
    const json pp = j.value("post_processor", json());
    if (pp.is_object() && internal::TypeOf(pp) == "TemplateProcessing" &&
        pp.contains("single") && pp["single"].is_array() &&
        !pp["single"].empty() && pp["single"][0].contains("SpecialToken")) {
      const std::string name = pp["single"][0]["SpecialToken"].value("id", "");
      for (const auto& t : st->added)
        if (t.content == name) st->bos = t.id;
    }
  }
  return st;
}

}  // namespace

absl::StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::Load(
    const std::string& path) {
  absl::StatusOr<std::unique_ptr<HfTokenizerState>> st;
  try {
    st = LoadState(path);
  } catch (const nlohmann::json::exception& e) {
    // A field of the wrong type, e.g. "special": "yes": bad input, never a
    // crash.
    return absl::InvalidArgumentError(absl::StrCat(
        "tokenizer ", path, ": a field has the wrong type: ", e.what()));
  }
  if (!st.ok()) return st.status();
  return std::unique_ptr<HfTokenizer>(new HfTokenizer(path, std::move(*st)));
}

absl::StatusOr<std::vector<int32_t>> HfTokenizer::Encode(
    absl::string_view text) const {
  if (!internal::IsValidUtf8(text)) {
    return absl::InvalidArgumentError(
        absl::StrCat("encoding with ", path_, ": the text is not valid UTF-8"));
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  LEMO_RETURN_IF_ERROR(state_->Encode(text, &ids),
                       absl::StrCat("encoding with ", path_));
  return ids;
}

std::string HfTokenizer::Decode(absl::Span<const int32_t> ids) const {
  using internal::DecoderStep;
  const HfTokenizerState& st = *state_;
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= st.id_to_token.size() ||
        !st.id_present[id] || st.id_special[id]) {
      continue;
    }
    tokens.push_back(st.id_to_token[id]);
  }
  if (!st.has_decoder) {
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0) out += ' ';
      out += tokens[i];
    }
    return out;
  }
  for (const DecoderStep& step : st.decoder) {
    switch (step.kind) {
      case DecoderStep::kByteLevel: {
        std::string bytes, raw;
        for (const std::string& t : tokens) {
          // A token with characters outside the table (an added token)
          // decodes as its own text, as in the crate.
          if (internal::ByteLevelToBytes(t, &raw)) {
            bytes += raw;
          } else {
            bytes += t;
          }
        }
        tokens = {internal::Utf8Lossy(bytes)};
        break;
      }
      case DecoderStep::kReplace:
        for (std::string& t : tokens)
          t = internal::ReplaceAll(t, step.a, step.b);
        break;
      case DecoderStep::kByteFallback: {
        std::vector<std::string> out;
        std::string pending;
        size_t pending_count = 0;
        auto flush = [&] {
          if (pending_count == 0) return;
          // Invalid UTF-8 turns into one U+FFFD per byte token.
          if (internal::IsValidUtf8(pending)) {
            out.push_back(pending);
          } else {
            for (size_t k = 0; k < pending_count; ++k)
              out.push_back("\xEF\xBF\xBD");
          }
          pending.clear();
          pending_count = 0;
        };
        for (const std::string& t : tokens) {
          int byte = -1;
          if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') {
            auto hex = [](char c) {
              return c >= '0' && c <= '9'   ? c - '0'
                     : c >= 'A' && c <= 'F' ? c - 'A' + 10
                     : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                            : -1;
            };
            const int hi = hex(t[3]), lo = hex(t[4]);
            if (hi >= 0 && lo >= 0) byte = hi * 16 + lo;
          }
          if (byte >= 0) {
            pending.push_back(static_cast<char>(byte));
            ++pending_count;
          } else {
            flush();
            out.push_back(t);
          }
        }
        flush();
        tokens = std::move(out);
        break;
      }
      case DecoderStep::kFuse: {
        std::string all;
        for (const std::string& t : tokens) all += t;
        tokens = {all};
        break;
      }
      case DecoderStep::kStrip: {
        for (std::string& t : tokens) {
          for (int k = 0;
               k < step.start &&
               absl::string_view(t).substr(0, step.a.size()) == step.a &&
               !step.a.empty();
               ++k) {
            t.erase(0, step.a.size());
          }
          for (int k = 0;
               k < step.stop && !step.a.empty() && t.size() >= step.a.size() &&
               t.compare(t.size() - step.a.size(), step.a.size(), step.a) == 0;
               ++k) {
            t.erase(t.size() - step.a.size());
          }
        }
        break;
      }
      case DecoderStep::kMetaspace: {
        for (size_t i = 0; i < tokens.size(); ++i) {
          tokens[i] = internal::ReplaceAll(tokens[i], step.a,
                                           i == 0 && step.prepend ? "" : " ");
        }
        break;
      }
    }
  }
  std::string out;
  for (const std::string& t : tokens) out += t;
  return out;
}

int64_t HfTokenizer::vocab_size() const {
  return static_cast<int64_t>(state_->id_to_token.size());
}
int32_t HfTokenizer::bos_id() const { return state_->bos; }
int32_t HfTokenizer::eos_id() const { return state_->eos; }

}  // namespace lemo::engine
