#include "client/proto_json_check.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/yaml_json.h"

namespace lemo::client {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumDescriptor;
using google::protobuf::FieldDescriptor;

struct Checker {
  std::string* error_path;

  absl::Status Fail(const std::string& path, const std::string& problem) {
    if (error_path != nullptr) *error_path = path;
    return absl::InvalidArgumentError(
        absl::StrCat(path.empty() ? "top level" : path, ": ", problem));
  }

  static std::string Show(const nlohmann::json& j) {
    // Replaces bytes that are not UTF-8 instead of throwing (yaml-cpp decoded
    // UTF-32 input into such bytes; see the fuzz corpus): this only shows the
    // value in an error.
    std::string s =
        j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return s.size() > 40 ? s.substr(0, 37) + "..." : s;
  }

  absl::StatusOr<nlohmann::json> Message(const nlohmann::json& j,
                                         const Descriptor& type,
                                         const std::string& path) {
    if (j.is_null()) return j;
    // Well-known types have their own JSON spellings; protobuf's parser checks
    // them.
    if (type.file()->package() == "google.protobuf") return j;
    if (!j.is_object()) {
      return Fail(path, absl::StrCat("expected a mapping of ", type.name(),
                                     " fields, got ", Show(j)));
    }
    nlohmann::json out = nlohmann::json::object();
    for (const auto& [key, value] : j.items()) {
      const std::string child = FieldPath(path, key);
      const FieldDescriptor* field = FindField(type, key);
      if (field == nullptr) return Fail(child, UnknownFieldHint(type, key));
      auto checked = Field(value, *field, child);
      if (!checked.ok()) return checked.status();
      out[key] = *std::move(checked);
    }
    return out;
  }

  absl::StatusOr<nlohmann::json> Field(const nlohmann::json& j,
                                       const FieldDescriptor& field,
                                       const std::string& path) {
    if (j.is_null()) return j;
    if (field.is_map()) {
      if (!j.is_object()) return Fail(path, "expected a mapping of key: value");
      const FieldDescriptor& value_field = *field.message_type()->map_value();
      nlohmann::json out = nlohmann::json::object();
      for (const auto& [key, value] : j.items()) {
        auto checked = Single(value, value_field, FieldPath(path, key));
        if (!checked.ok()) return checked.status();
        out[key] = *std::move(checked);
      }
      return out;
    }
    if (field.is_repeated()) {
      if (!j.is_array())
        return Fail(path, absl::StrCat("expected a list, got ", Show(j)));
      nlohmann::json out = nlohmann::json::array();
      for (size_t i = 0; i < j.size(); ++i) {
        auto checked = Single(j[i], field, IndexPath(path, i));
        if (!checked.ok()) return checked.status();
        out.push_back(*std::move(checked));
      }
      return out;
    }
    return Single(j, field, path);
  }

  absl::StatusOr<nlohmann::json> Single(const nlohmann::json& j,
                                        const FieldDescriptor& field,
                                        const std::string& path) {
    switch (field.cpp_type()) {
      case FieldDescriptor::CPPTYPE_MESSAGE:
        return Message(j, *field.message_type(), path);
      case FieldDescriptor::CPPTYPE_ENUM:
        return Enum(j, *field.enum_type(), path);
      case FieldDescriptor::CPPTYPE_BOOL:
        if (!j.is_boolean())
          return Fail(path,
                      absl::StrCat("expected true or false, got ", Show(j)));
        return j;
      case FieldDescriptor::CPPTYPE_STRING:
        if (j.is_string()) return j;
        // `displayName: 2024` in YAML is a number; the user meant the text.
        if (j.is_number() || j.is_boolean()) return j.dump();
        return Fail(path, absl::StrCat("expected a string, got ", Show(j)));
      case FieldDescriptor::CPPTYPE_FLOAT:
      case FieldDescriptor::CPPTYPE_DOUBLE:
        if (j.is_number()) return j;
        if (j.is_string()) {
          const std::string& s = j.get_ref<const std::string&>();
          if (s == "NaN" || s == "Infinity" || s == "-Infinity") return j;
          char* end = nullptr;
          double v = std::strtod(s.c_str(), &end);
          if (!s.empty() && *end == '\0') return v;
        }
        return Fail(path, absl::StrCat("expected a number, got ", Show(j)));
      default:
        return Integer(j, field, path);
    }
  }

  absl::StatusOr<nlohmann::json> Integer(const nlohmann::json& j,
                                         const FieldDescriptor& field,
                                         const std::string& path) {
    const bool is_unsigned =
        field.cpp_type() == FieldDescriptor::CPPTYPE_UINT32 ||
        field.cpp_type() == FieldDescriptor::CPPTYPE_UINT64;
    const bool is_32 = field.cpp_type() == FieldDescriptor::CPPTYPE_INT32 ||
                       field.cpp_type() == FieldDescriptor::CPPTYPE_UINT32;
    const std::string want =
        is_unsigned ? "a non-negative integer" : "an integer";
    // Integers arrive as numbers, or as strings (protobuf's JSON spelling of
    // 64-bit values).
    long double v = 0;
    if (j.is_number_integer()) {
      v = j.is_number_unsigned() ? static_cast<long double>(j.get<uint64_t>())
                                 : static_cast<long double>(j.get<int64_t>());
    } else if (j.is_number_float() && std::isfinite(j.get<double>()) &&
               std::trunc(j.get<double>()) == j.get<double>()) {
      v = j.get<double>();  // 1e3 is a fine step count.
    } else if (j.is_string()) {
      const std::string& s = j.get_ref<const std::string&>();
      char* end = nullptr;
      errno = 0;
      v = std::strtold(s.c_str(), &end);
      if (s.empty() || *end != '\0' || errno != 0 || std::truncl(v) != v) {
        return Fail(path, absl::StrCat("expected ", want, ", got ", Show(j)));
      }
    } else {
      return Fail(path, absl::StrCat("expected ", want, ", got ", Show(j)));
    }
    const long double lo = is_unsigned ? 0
                           : is_32     ? std::numeric_limits<int32_t>::min()
                                       : std::numeric_limits<int64_t>::min();
    const long double hi =
        is_32 ? (is_unsigned ? std::numeric_limits<uint32_t>::max()
                             : std::numeric_limits<int32_t>::max())
              : (is_unsigned ? std::numeric_limits<uint64_t>::max()
                             : std::numeric_limits<int64_t>::max());
    if (v < lo || v > hi) {
      return Fail(path,
                  absl::StrCat("expected ", want, " in range, got ", Show(j)));
    }
    return j;
  }

  absl::StatusOr<nlohmann::json> Enum(const nlohmann::json& j,
                                      const EnumDescriptor& type,
                                      const std::string& path) {
    std::vector<std::string> names;
    for (int i = 0; i < type.value_count(); ++i) {
      if (type.value(i)->number() != 0) names.push_back(type.value(i)->name());
    }
    if (j.is_string()) {
      // "cuda" or "Cuda" mean CUDA; the wire spelling is the declared one.
      const std::string upper = absl::AsciiStrToUpper(j.get<std::string>());
      for (int i = 0; i < type.value_count(); ++i) {
        if (type.value(i)->name() == upper) return upper;
      }
    } else if (j.is_number_integer() &&
               type.FindValueByNumber(j.get<int>()) != nullptr) {
      return j;
    }
    return Fail(path,
                absl::StrCat("expected one of ", absl::StrJoin(names, ", "),
                             ", got ", Show(j)));
  }

  static const FieldDescriptor* FindField(const Descriptor& type,
                                          const std::string& key) {
    for (int i = 0; i < type.field_count(); ++i) {
      const FieldDescriptor* f = type.field(i);
      if (f->name() == key || f->json_name() == key) return f;
    }
    return nullptr;
  }

  static size_t Distance(const std::string& a, const std::string& b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
      size_t diag = row[0];
      row[0] = i;
      for (size_t j = 1; j <= b.size(); ++j) {
        size_t up = row[j];
        row[j] =
            std::min({row[j] + 1, row[j - 1] + 1,
                      diag + (absl::AsciiStrToLower(a.substr(i - 1, 1)) ==
                                      absl::AsciiStrToLower(b.substr(j - 1, 1))
                                  ? 0
                                  : 1)});
        diag = up;
      }
    }
    return row[b.size()];
  }

  static std::string UnknownFieldHint(const Descriptor& type,
                                      const std::string& key) {
    std::vector<std::string> names;
    std::string best;
    size_t best_distance = 3;  // Two edits or fewer is a typo worth suggesting.
    for (int i = 0; i < type.field_count(); ++i) {
      const FieldDescriptor* f = type.field(i);
      names.push_back(f->json_name());
      for (const std::string& candidate : {f->name(), f->json_name()}) {
        const size_t d = Distance(key, candidate);
        if (d < best_distance) {
          best_distance = d;
          best = f->json_name();
        }
      }
    }
    std::string hint = absl::StrCat("unknown field of ", type.name());
    if (!best.empty()) return absl::StrCat(hint, " (did you mean ", best, "?)");
    return absl::StrCat(hint, "; known fields: ", absl::StrJoin(names, ", "));
  }
};

}  // namespace

absl::StatusOr<nlohmann::json> CheckJsonForMessage(const nlohmann::json& json,
                                                   const Descriptor& type,
                                                   std::string* error_path) {
  Checker checker{error_path};
  return checker.Message(json, type, "");
}

}  // namespace lemo::client
