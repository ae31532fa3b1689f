#include "proto/validation/spec_validation.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <set>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/safe_path.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace lemo::proto {
namespace {

// Bounds that keep a typo from asking for absurd resources; raise them with the
// engine.
constexpr int64_t kMaxSeqLen = int64_t{1} << 21;
constexpr int32_t kMaxWorldSize = 1024;
constexpr int32_t kMaxLoraRank = 4096;
constexpr int32_t kMaxRestarts = 100;
constexpr int32_t kMaxPriority = 1000;
constexpr size_t kMaxDisplayName = 128;
constexpr int kMaxLabels = 32;
constexpr size_t kMaxLabelKey = 63;
constexpr size_t kMaxLabelValue = 256;
constexpr size_t kMaxPath = 4096;

const std::set<std::string>& KnownTargetModules() {
  static const auto* modules =
      new std::set<std::string>{"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                "gate_proj", "up_proj", "down_proj"};
  return *modules;
}

absl::Status Bad(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("spec.", field, ": ", what));
}

template <typename T>
absl::Status Positive(absl::string_view field, T v) {
  if (v > 0) return absl::OkStatus();
  return Bad(field, absl::StrCat("must be > 0, got ", v));
}

template <typename T>
absl::Status NonNegative(absl::string_view field, T v) {
  if (v >= 0) return absl::OkStatus();
  return Bad(field, absl::StrCat("must be >= 0, got ", v));
}

// lo < v <= hi, or lo <= v < hi, or lo <= v <= hi, as the brackets say.
absl::Status InRange(absl::string_view field, double v, double lo, bool lo_open,
                     double hi, bool hi_open) {
  bool ok = (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
  if (ok) return absl::OkStatus();
  return Bad(field, absl::StrCat("must be in ", lo_open ? "(" : "[", lo, ", ",
                                 hi, hi_open ? ")" : "]", ", got ", v));
}

absl::Status Path(absl::string_view field, const std::string& path) {
  if (path.empty()) return Bad(field, "is required");
  if (path.size() > kMaxPath) return Bad(field, "is longer than 4096 bytes");
  if (path.find('\0') != std::string::npos) return Bad(field, "contains NUL");
  // Refused outright: a lexical root check of "/models/../etc" would pass,
  // and nothing legitimate needs one (docs/security.md).
  if (HasDotDotComponent(path)) return Bad(field, "has a \"..\" component");
  return absl::OkStatus();
}

v1::DataFormat GuessFormat(const std::string& path) {
  if (absl::EndsWith(path, ".jsonl")) return v1::JSONL;
  if (absl::EndsWith(path, ".u16")) return v1::U16;
  if (absl::EndsWith(path, ".u32")) return v1::U32;
  return v1::DATA_FORMAT_UNSPECIFIED;
}

absl::Status ValidateTop(const v1::JobSpec& s) {
  if (s.display_name().size() > kMaxDisplayName) {
    return Bad("display_name", "is longer than 128 characters");
  }
  if (s.labels_size() > kMaxLabels) return Bad("labels", "more than 32");
  for (const auto& [key, value] : s.labels()) {
    if (key.empty() || key.size() > kMaxLabelKey) {
      return Bad("labels",
                 absl::StrCat("key \"", key, "\" must be 1-63 chars"));
    }
    if (value.size() > kMaxLabelValue) {
      return Bad(absl::StrCat("labels.", key), "longer than 256 chars");
    }
  }
  LEMO_RETURN_IF_ERROR(Positive("seq_len", s.seq_len()));
  if (s.seq_len() > kMaxSeqLen) return Bad("seq_len", "must be <= 2097152");
  LEMO_RETURN_IF_ERROR(Positive("steps", s.steps()));
  LEMO_RETURN_IF_ERROR(Positive("batch_size", s.batch_size()));
  LEMO_RETURN_IF_ERROR(Positive("grad_accum", s.grad_accum()));
  if (s.max_restarts() < 0 || s.max_restarts() > kMaxRestarts) {
    return Bad("max_restarts", "must be in [0, 100]");
  }
  if (s.priority() < -kMaxPriority || s.priority() > kMaxPriority) {
    return Bad("priority", "must be in [-1000, 1000]");
  }
  return absl::OkStatus();
}

// The long-context switches (the worker resolves their automatic values,
// worker/engine/train/memory_switches.h).
absl::Status ValidateMemorySwitches(const v1::JobSpec& s) {
  const v1::ModelSpec& m = s.model();
  const std::string& offload = m.offload();
  if (!offload.empty() && offload != "auto" && offload != "none" &&
      offload != "uniform" && offload != "sparsity") {
    return Bad("model.offload",
               absl::StrCat("must be auto, none, uniform or sparsity, got \"",
                            offload, "\""));
  }
  if ((offload == "uniform" || offload == "sparsity") &&
      !m.gradient_checkpointing()) {
    return Bad("model.offload",
               "moves checkpointed layer inputs: set "
               "model.gradientCheckpointing");
  }
  if (m.has_offload_gpu_budget_gib()) {
    LEMO_RETURN_IF_ERROR(NonNegative("model.offload_gpu_budget_gib",
                                     m.offload_gpu_budget_gib()));
  }
  if (m.has_tile_tokens()) {
    LEMO_RETURN_IF_ERROR(NonNegative("model.tile_tokens", m.tile_tokens()));
  }
  if (m.has_attention_head_groups()) {
    LEMO_RETURN_IF_ERROR(
        NonNegative("model.attention_head_groups", m.attention_head_groups()));
    if (m.attention_head_groups() > 1 && m.checkpoint_keep_attention()) {
      return Bad("model.attention_head_groups",
                 "does not combine with model.checkpoint_keep_attention");
    }
    if (m.attention_head_groups() > 1 && s.lora().dropout() > 0) {
      return Bad("model.attention_head_groups", "needs lora.dropout 0");
    }
  }
  return absl::OkStatus();
}

// model.rope_scaling, as transformers reads config.json's (the engine parses
// it with the same code as the file: formats/model_config.h), so a bad one is
// refused at submit rather than on a worker.
absl::Status ValidateRopeScaling(const v1::ModelSpec& m) {
  if (!m.has_rope_scaling()) return absl::OkStatus();
  const v1::RopeScaling& r = m.rope_scaling();
  const std::string& type = r.rope_type();
  if (type != "default" && type != "linear" && type != "dynamic" &&
      type != "yarn" && type != "llama3") {
    return Bad("model.rope_scaling.rope_type",
               absl::StrCat("must be linear, dynamic, yarn, llama3 or default, "
                            "got \"",
                            type, "\""));
  }
  if (type == "default") return absl::OkStatus();
  if (type != "yarn" && !r.has_factor()) {
    return Bad("model.rope_scaling.factor",
               absl::StrCat("is required for ", type));
  }
  if (r.has_factor() && !(r.factor() >= 1)) {
    return Bad("model.rope_scaling.factor",
               absl::StrCat("must be >= 1, got ", r.factor()));
  }
  if (r.has_original_max_position_embeddings()) {
    LEMO_RETURN_IF_ERROR(
        Positive("model.rope_scaling.original_max_position_embeddings",
                 r.original_max_position_embeddings()));
  }
  if (type == "llama3") {
    if (!r.has_low_freq_factor() || !r.has_high_freq_factor()) {
      return Bad("model.rope_scaling",
                 "llama3 needs low_freq_factor and high_freq_factor");
    }
    if (!(r.high_freq_factor() > r.low_freq_factor())) {
      return Bad("model.rope_scaling.high_freq_factor",
                 "must be greater than low_freq_factor");
    }
  }
  if (r.has_beta_fast() && !(r.beta_fast() > 0)) {
    return Bad("model.rope_scaling.beta_fast", "must be > 0");
  }
  if (r.has_beta_slow() && !(r.beta_slow() > 0)) {
    return Bad("model.rope_scaling.beta_slow", "must be > 0");
  }
  return absl::OkStatus();
}

absl::Status ValidateModelAndData(const v1::JobSpec& s) {
  LEMO_RETURN_IF_ERROR(Path("model.path", s.model().path()));
  if (!v1::DType_IsValid(s.model().dtype()) ||
      s.model().dtype() == v1::DTYPE_UNSPECIFIED) {
    return Bad("model.dtype", "unknown value");
  }
  LEMO_RETURN_IF_ERROR(ValidateMemorySwitches(s));
  LEMO_RETURN_IF_ERROR(ValidateRopeScaling(s.model()));
  LEMO_RETURN_IF_ERROR(Path("data.path", s.data().path()));
  if (!v1::DataFormat_IsValid(s.data().format()) ||
      s.data().format() == v1::DATA_FORMAT_UNSPECIFIED) {
    return Bad("data.format",
               "must be JSONL, U16, U32, INSTRUCTION, CHAT or TOKENS_JSONL "
               "(cannot guess it from the path)");
  }
  // An empty tokenizer means the model's own (tokenizer.json, else
  // tokenizer.model in model.path). The coordinator never reads model
  // directories (they are paths on the workers), so whether one is there, and
  // whether its ids fit the model's vocabulary, is checked by the worker before
  // training starts.
  const v1::DataFormat format = s.data().format();
  if ((format == v1::JSONL || format == v1::INSTRUCTION ||
       format == v1::CHAT) &&
      !s.data().tokenizer().empty()) {
    LEMO_RETURN_IF_ERROR(Path("data.tokenizer", s.data().tokenizer()));
  }
  const std::string& chat_template = s.data().chat_template();
  if (!chat_template.empty() && chat_template != "llama3" &&
      chat_template != "chatml" && chat_template != "mistral") {
    return Bad("data.chat_template",
               absl::StrCat("unknown template \"", chat_template,
                            "\" (llama3, chatml or mistral)"));
  }
  if (!chat_template.empty() && format != v1::CHAT) {
    return Bad("data.chat_template", "is only used with format CHAT");
  }
  if (format == v1::CHAT && chat_template.empty() &&
      s.data().tokenizer() == "byte") {
    return Bad("data.chat_template",
               "is required with the byte tokenizer, which has no chat "
               "template to detect");
  }
  const std::string& on_bad = s.data().on_bad_sample();
  if (!on_bad.empty() && on_bad != "error" && on_bad != "skip") {
    return Bad("data.on_bad_sample",
               absl::StrCat("unknown policy \"", on_bad, "\" (error or skip)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateLora(const v1::LoraSpec& l) {
  LEMO_RETURN_IF_ERROR(Positive("lora.r", l.r()));
  if (l.r() > kMaxLoraRank) return Bad("lora.r", "must be <= 4096");
  LEMO_RETURN_IF_ERROR(Positive("lora.alpha", l.alpha()));
  LEMO_RETURN_IF_ERROR(InRange("lora.dropout", l.dropout(), 0, false, 1, true));
  std::set<std::string> seen;
  for (const std::string& m : l.target_modules()) {
    if (KnownTargetModules().count(m) == 0) {
      return Bad("lora.target_modules",
                 absl::StrCat("unknown module \"", m,
                              "\" (q_proj k_proj v_proj o_proj gate_proj "
                              "up_proj down_proj)"));
    }
    if (!seen.insert(m).second) {
      return Bad("lora.target_modules", absl::StrCat("\"", m, "\" twice"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateLemo(const v1::JobSpec& s) {
  const v1::LemoSpec& l = s.lemo();
  if (!v1::LemoMode_IsValid(l.mode()) ||
      l.mode() == v1::LEMO_MODE_UNSPECIFIED) {
    return Bad("lemo.mode", "unknown value");
  }
  for (int i = 0; i < l.keep_ratio().per_layer_size(); ++i) {
    LEMO_RETURN_IF_ERROR(
        InRange(absl::StrCat("lemo.keep_ratio.per_layer[", i, "]"),
                l.keep_ratio().per_layer(i), 0, true, 1, false));
  }
  // 0 is "unset": the worker runs the paper's default schedule when per_layer
  // is empty too, and dense layers past per_layer otherwise.
  if (l.keep_ratio().default_ratio() != 0) {
    LEMO_RETURN_IF_ERROR(InRange("lemo.keep_ratio.default_ratio",
                                 l.keep_ratio().default_ratio(), 0, true, 1,
                                 false));
  }
  const v1::AdaptiveKeep& a = l.adaptive();
  LEMO_RETURN_IF_ERROR(
      InRange("lemo.adaptive.tau", a.tau(), 0, true, 1, false));
  LEMO_RETURN_IF_ERROR(
      InRange("lemo.adaptive.min_keep", a.min_keep(), 0, true, 1, false));
  LEMO_RETURN_IF_ERROR(InRange("lemo.adaptive.max_keep", a.max_keep(),
                               a.min_keep(), false, 1, false));
  if (l.mode() == v1::PREDICTOR) {
    LEMO_RETURN_IF_ERROR(Path("lemo.predictor_path", l.predictor_path()));
  }
  LEMO_RETURN_IF_ERROR(
      NonNegative("lemo.predictor_recall_every", l.predictor_recall_every()));
  // Recall compares the predictor's choice with the oracle's; other modes run
  // no predictor (the trainer would ignore the field), so it is a mistake.
  if (l.predictor_recall_every() > 0 && l.mode() != v1::PREDICTOR) {
    return Bad("lemo.predictor_recall_every",
               "is used only with lemo.mode PREDICTOR");
  }
  LEMO_RETURN_IF_ERROR(InRange("lemo.mlp_sparsity.prune_ratio",
                               l.mlp_sparsity().prune_ratio(), 0, false, 1,
                               true));
  LEMO_RETURN_IF_ERROR(
      Positive("lemo.loss_segment_tokens", l.loss_segment_tokens()));
  if (l.offload() && s.resources().device_kind() != v1::CUDA) {
    return Bad("lemo.offload", "needs resources.device_kind CUDA");
  }
  // The engine's fused MLP node (MLP sparsity, norm recomputation) saves no
  // dropped adapter input, so it cannot run LoRA dropout on MLP projections.
  if ((l.mlp_sparsity().enabled() || l.recompute_norm() || l.recompute_mlp()) &&
      s.lora().dropout() > 0) {
    for (const std::string& m : s.lora().target_modules()) {
      if (m == "gate_proj" || m == "up_proj" || m == "down_proj") {
        return Bad(l.mlp_sparsity().enabled() ? "lemo.mlp_sparsity"
                   : l.recompute_norm()       ? "lemo.recompute_norm"
                                              : "lemo.recompute_mlp",
                   absl::StrCat("not supported with lora.dropout > 0 on ", m));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateOptimizer(const v1::JobSpec& s) {
  const v1::OptimizerSpec& o = s.optimizer();
  LEMO_RETURN_IF_ERROR(Positive("optimizer.lr", o.lr()));
  LEMO_RETURN_IF_ERROR(NonNegative("optimizer.weight_decay", o.weight_decay()));
  LEMO_RETURN_IF_ERROR(
      InRange("optimizer.beta1", o.beta1(), 0, false, 1, true));
  LEMO_RETURN_IF_ERROR(
      InRange("optimizer.beta2", o.beta2(), 0, false, 1, true));
  LEMO_RETURN_IF_ERROR(Positive("optimizer.eps", o.eps()));
  LEMO_RETURN_IF_ERROR(NonNegative("optimizer.warmup_steps", o.warmup_steps()));
  if (o.warmup_steps() > s.steps()) {
    return Bad("optimizer.warmup_steps", "must be <= steps");
  }
  LEMO_RETURN_IF_ERROR(
      InRange("optimizer.min_lr_ratio", o.min_lr_ratio(), 0, false, 1, false));
  return NonNegative("optimizer.max_grad_norm", o.max_grad_norm());
}

// With a memory budget the worker chooses these switches (job_spec.proto,
// ResourceSpec.memory_budget). A proto3 bool cannot tell "false" from "unset",
// so a switch counts as set when it is on (or present, for the optional
// fields); one that is set conflicts with the budget, and the spec is refused
// naming both rather than one of them silently losing: the user either lets
// the budget choose or chooses.
absl::Status CheckBudgetSwitches(const v1::JobSpec& s) {
  const v1::ModelSpec& m = s.model();
  const v1::LemoSpec& l = s.lemo();
  const char* set = nullptr;
  if (m.gradient_checkpointing()) {
    set = "model.gradient_checkpointing";
  } else if (m.checkpoint_keep_attention()) {
    set = "model.checkpoint_keep_attention";
  } else if (!m.offload().empty() && m.offload() != "auto") {
    set = "model.offload";
  } else if (m.has_offload_gpu_budget_gib()) {
    set = "model.offload_gpu_budget_gib";
  } else if (m.has_tile_tokens()) {
    set = "model.tile_tokens";
  } else if (m.has_attention_head_groups()) {
    set = "model.attention_head_groups";
  } else if (l.recompute_mlp()) {
    set = "lemo.recompute_mlp";
  } else if (l.recompute_norm()) {
    set = "lemo.recompute_norm";
  } else if (l.offload()) {
    set = "lemo.offload";
  }
  if (set == nullptr) return absl::OkStatus();
  return Bad(set,
             "is chosen by resources.memory_budget; set one or the other "
             "(remove this field to let the budget choose, or the budget to "
             "choose it yourself)");
}

absl::Status ValidateResources(const v1::JobSpec& s) {
  const v1::ResourceSpec& r = s.resources();
  LEMO_RETURN_IF_ERROR(Positive("resources.world_size", r.world_size()));
  if (r.world_size() > kMaxWorldSize) {
    return Bad("resources.world_size", "must be <= 1024");
  }
  if (!v1::DeviceKind_IsValid(r.device_kind()) ||
      r.device_kind() == v1::DEVICE_KIND_UNSPECIFIED) {
    return Bad("resources.device_kind", "unknown value");
  }
  LEMO_RETURN_IF_ERROR(NonNegative("resources.min_device_memory_bytes",
                                   r.min_device_memory_bytes()));
  LEMO_ASSIGN_OR_RETURN(int64_t budget, MemoryBudgetBytes(s));
  if (budget > 0) LEMO_RETURN_IF_ERROR(CheckBudgetSwitches(s));
  if (budget == 0 && r.memory_budget_allow_inexact()) {
    return Bad("resources.memory_budget_allow_inexact",
               "needs resources.memory_budget");
  }
  LEMO_RETURN_IF_ERROR(
      NonNegative("checkpoint.every_n_steps", s.checkpoint().every_n_steps()));
  return NonNegative("checkpoint.keep_last", s.checkpoint().keep_last());
}

// A model_type value as it may appear in an error: printable ASCII, at most 64
// characters (the value is quoted so the user sees what the file says, and
// nothing else of the file is).
std::string Printable(const std::string& value) {
  constexpr size_t kMax = 64;
  std::string out;
  for (char c : value.substr(0, kMax)) {
    out += absl::ascii_isprint(static_cast<unsigned char>(c)) && c != '"' ? c
                                                                          : '?';
  }
  if (value.size() > kMax) out += "...";
  return out;
}

// Reads `path` when it is a regular file of at most max_bytes. NOT_FOUND when
// it cannot be opened or read here (the caller accepts that); INVALID_ARGUMENT
// naming spec.model.path when it is anything but a small regular file.
absl::StatusOr<std::string> ReadBoundedRegularFile(const std::string& path,
                                                   int64_t max_bytes) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer; the fstat below
  // refuses it anyway. Symlinks are followed (HF caches link to blobs).
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    return absl::NotFoundError(absl::StrCat("cannot open ", path));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Bad("model.path", "config.json is not a regular file");
  }
  if (st.st_size > max_bytes) {
    ::close(fd);
    return Bad("model.path", absl::StrCat("config.json is larger than ",
                                          max_bytes, " bytes"));
  }
  std::string text;
  char buf[1 << 14];
  // Reads at most max_bytes + 1 whatever st_size said (the file may grow).
  while (static_cast<int64_t>(text.size()) <= max_bytes) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      return absl::NotFoundError(absl::StrCat("cannot read ", path));
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  if (static_cast<int64_t>(text.size()) > max_bytes) {
    return Bad("model.path", absl::StrCat("config.json is larger than ",
                                          max_bytes, " bytes"));
  }
  return text;
}

struct QuantityUnit {
  const char* suffix;
  int64_t bytes;
};

// Kubernetes' memory suffixes, plus the "iB"/"B" spellings people also write.
constexpr int64_t kKi = int64_t{1} << 10;
constexpr QuantityUnit kQuantityUnits[] = {
    {"", 1},
    {"B", 1},
    {"Ki", kKi},
    {"KiB", kKi},
    {"Mi", kKi << 10},
    {"MiB", kKi << 10},
    {"Gi", kKi << 20},
    {"GiB", kKi << 20},
    {"Ti", kKi << 30},
    {"TiB", kKi << 30},
    {"Pi", kKi << 40},
    {"PiB", kKi << 40},
    {"Ei", kKi << 50},
    {"EiB", kKi << 50},
    {"k", 1000},
    {"K", 1000},
    {"kB", 1000},
    {"KB", 1000},
    {"M", 1000000},
    {"MB", 1000000},
    {"G", 1000000000},
    {"GB", 1000000000},
    {"T", 1000000000000},
    {"TB", 1000000000000},
    {"P", 1000000000000000},
    {"PB", 1000000000000000},
    {"E", 1000000000000000000},
    {"EB", 1000000000000000000},
};

}  // namespace

absl::StatusOr<int64_t> ParseMemoryQuantity(absl::string_view field,
                                            absl::string_view text) {
  auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": ", what, ", got \"", Printable(std::string(text)), "\""));
  };
  if (text.empty()) return bad("is empty");
  if (text.front() == '-') return bad("must be > 0");
  size_t i = 0;
  if (text.front() == '+') ++i;
  // Integer and fraction digits, kept apart so that the integer part is
  // exact; the fraction only adds less than one unit.
  uint64_t whole = 0;
  bool digits = false;
  bool too_big = false;
  for (; i < text.size() && absl::ascii_isdigit(text[i]); ++i) {
    digits = true;
    if (whole > (static_cast<uint64_t>(INT64_MAX) - 9) / 10) too_big = true;
    if (!too_big) whole = whole * 10 + static_cast<uint64_t>(text[i] - '0');
  }
  long double fraction = 0;
  if (i < text.size() && text[i] == '.') {
    ++i;
    long double scale = 0.1L;
    for (; i < text.size() && absl::ascii_isdigit(text[i]); ++i) {
      digits = true;
      fraction += scale * static_cast<long double>(text[i] - '0');
      scale /= 10;
    }
  }
  if (!digits) {
    return bad("want a number and a unit such as 70Gi, 72GiB, 75G or 80000Mi");
  }
  const absl::string_view suffix = text.substr(i);
  int64_t unit = 0;
  for (const QuantityUnit& u : kQuantityUnits) {
    if (suffix == u.suffix) unit = u.bytes;
  }
  if (unit == 0) {
    return bad(absl::StrCat(
        "unknown unit \"", Printable(std::string(suffix)),
        "\" (Ki, Mi, Gi, Ti, Pi, Ei or KiB ... EiB: powers of 1024; k, M, "
        "G, T, P, E or KB ... EB: powers of 1000; B or none: bytes)"));
  }
  const uint64_t max = static_cast<uint64_t>(INT64_MAX);
  const uint64_t u = static_cast<uint64_t>(unit);
  if (too_big || (whole > 0 && whole > max / u)) {
    return bad("is more than 2^63 - 1 bytes");
  }
  uint64_t bytes = whole * u;
  const long double extra = fraction * static_cast<long double>(unit);
  if (extra >= static_cast<long double>(max - bytes)) {
    return bad("is more than 2^63 - 1 bytes");
  }
  bytes += static_cast<uint64_t>(extra);
  if (bytes == 0) return bad("must be > 0 bytes");
  return static_cast<int64_t>(bytes);
}

absl::StatusOr<int64_t> MemoryBudgetBytes(const v1::JobSpec& spec) {
  const std::string& budget = spec.resources().memory_budget();
  if (budget.empty()) return 0;
  return ParseMemoryQuantity("spec.resources.memory_budget", budget);
}

const std::vector<std::string>& SupportedModelTypes() {
  static const auto* types =
      new std::vector<std::string>{"llama", "mistral", "qwen2", "qwen3"};
  return *types;
}

absl::StatusOr<ModelConfigCheck> CheckModelConfig(
    const v1::JobSpec& spec, const SpecCheckOptions& options) {
  ModelConfigCheck check;
  const std::string& dir = spec.model().path();
  if (dir.empty() || dir.size() > kMaxPath ||
      dir.find('\0') != std::string::npos) {
    return check;  // ValidateJobSpec names these.
  }
  absl::StatusOr<std::string> text = ReadBoundedRegularFile(
      absl::StrCat(dir, "/config.json"), options.max_model_config_bytes);
  if (absl::IsNotFound(text.status())) return check;  // The worker's to check.
  LEMO_RETURN_IF_ERROR(text.status());
  // No exceptions and no parser message: both would quote the file.
  nlohmann::json root = nlohmann::json::parse(*text, nullptr,
                                              /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    return Bad("model.path", "config.json is not a JSON object");
  }
  const std::string supported = absl::StrJoin(SupportedModelTypes(), ", ");
  auto it = root.find("model_type");
  if (it == root.end() || !it->is_string()) {
    return Bad("model.path",
               absl::StrCat("config.json has no model_type string; supported: ",
                            supported));
  }
  check.model_type = it->get<std::string>();
  bool known = false;
  for (const std::string& t : SupportedModelTypes())
    known |= t == check.model_type;
  if (!known) {
    return Bad(
        "model.path",
        absl::StrCat("config.json model_type \"", Printable(check.model_type),
                     "\" is not supported; supported: ", supported));
  }
  check.read = true;
  check.config_json = *std::move(text);
  return check;
}

void ApplySpecDefaults(v1::JobSpec* s) {
  if (s->resources().world_size() == 0)
    s->mutable_resources()->set_world_size(1);
  if (s->resources().device_kind() == v1::DEVICE_KIND_UNSPECIFIED) {
    s->mutable_resources()->set_device_kind(v1::CPU);
  }
  if (s->model().dtype() == v1::DTYPE_UNSPECIFIED) {
    bool cuda = s->resources().device_kind() == v1::CUDA;
    s->mutable_model()->set_dtype(cuda ? v1::BF16 : v1::FP32);
  }
  v1::DataSpec* data = s->mutable_data();
  if (data->format() == v1::DATA_FORMAT_UNSPECIFIED) {
    data->set_format(GuessFormat(data->path()));
  }
  // data.tokenizer stays empty ("the model's own"): only a worker can look in
  // the model directory.
  v1::LoraSpec* lora = s->mutable_lora();
  if (lora->r() == 0) lora->set_r(8);
  if (lora->alpha() == 0) lora->set_alpha(16);
  if (lora->target_modules_size() == 0) {
    for (const char* m : {"q_proj", "k_proj", "v_proj", "o_proj"}) {
      lora->add_target_modules(m);
    }
  }
  v1::LemoSpec* lemo = s->mutable_lemo();
  if (lemo->mode() == v1::LEMO_MODE_UNSPECIFIED) lemo->set_mode(v1::DENSE);
  // keep_ratio stays as given: unset means the paper's default schedule
  // (engine::DefaultKeepSchedule, the same as lemo-train's), which needs the
  // model's layer count, so the worker expands it.
  lemo->mutable_keep_ratio();
  v1::AdaptiveKeep* adaptive = lemo->mutable_adaptive();
  if (adaptive->tau() == 0) adaptive->set_tau(0.9);
  if (adaptive->min_keep() == 0) adaptive->set_min_keep(0.1);
  if (adaptive->max_keep() == 0) adaptive->set_max_keep(1.0);
  v1::MlpSparsity* mlp = lemo->mutable_mlp_sparsity();
  if (mlp->prune_ratio() == 0) mlp->set_prune_ratio(0.8);
  if (lemo->loss_segment_tokens() == 0) lemo->set_loss_segment_tokens(2048);
  v1::OptimizerSpec* opt = s->mutable_optimizer();
  if (opt->lr() == 0) opt->set_lr(2e-4);
  if (!opt->has_beta1()) opt->set_beta1(0.9);
  if (!opt->has_beta2()) opt->set_beta2(0.999);
  if (opt->eps() == 0) opt->set_eps(1e-8);
  if (!opt->has_min_lr_ratio()) opt->set_min_lr_ratio(0.1);
  if (!opt->has_max_grad_norm()) opt->set_max_grad_norm(1.0);
  if (s->batch_size() == 0) s->set_batch_size(1);
  if (s->grad_accum() == 0) s->set_grad_accum(1);
  if (!s->has_max_restarts()) s->set_max_restarts(3);
  s->mutable_checkpoint();
}

absl::Status ValidateJobSpec(const v1::JobSpec& spec) {
  LEMO_RETURN_IF_ERROR(ValidateTop(spec));
  LEMO_RETURN_IF_ERROR(ValidateModelAndData(spec));
  LEMO_RETURN_IF_ERROR(ValidateLora(spec.lora()));
  LEMO_RETURN_IF_ERROR(ValidateLemo(spec));
  LEMO_RETURN_IF_ERROR(ValidateOptimizer(spec));
  return ValidateResources(spec);
}

absl::StatusOr<v1::JobSpec> NormalizeJobSpec(const v1::JobSpec& spec,
                                             const SpecCheckOptions& options) {
  v1::JobSpec out = spec;
  ApplySpecDefaults(&out);
  LEMO_RETURN_IF_ERROR(ValidateJobSpec(out));
  if (options.check_model_config) {
    LEMO_RETURN_IF_ERROR(CheckModelConfig(out, options).status());
  }
  return out;
}

}  // namespace lemo::proto
