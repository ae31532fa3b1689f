// The one definition of the absl::Status propagation macros (tensorstore
// style).
//
//   absl::StatusOr<Config> LoadConfig(const std::string& path) {
//     LEMO_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
//     LEMO_RETURN_IF_ERROR(Validate(text), _.Prefix("config " + path));
//     ...
//   }
//
// The optional second argument of LEMO_RETURN_IF_ERROR / third of
// LEMO_ASSIGN_OR_RETURN is a context string prepended to the message as
// "context: message", so an error travelling up reads "loading layer 3: tensor
// q_proj.weight: ...".
#ifndef LEMO_PROTO_STATUS_STATUS_MACROS_H_
#define LEMO_PROTO_STATUS_STATUS_MACROS_H_

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace lemo {

// Returns `status` with "context: " prepended to its message; OK stays OK.
inline absl::Status WithContext(const absl::Status& status,
                                absl::string_view context) {
  if (status.ok() || context.empty()) return status;
  absl::Status out(status.code(),
                   absl::StrCat(context, ": ", status.message()));
  status.ForEachPayload([&](absl::string_view url, const absl::Cord& payload) {
    out.SetPayload(url, payload);
  });
  return out;
}

namespace internal_status {
inline const absl::Status& AsStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& AsStatus(const absl::StatusOr<T>& s) {
  return s.status();
}
}  // namespace internal_status

}  // namespace lemo

#define LEMO_STATUS_CONCAT_INNER_(a, b) a##b
#define LEMO_STATUS_CONCAT_(a, b) LEMO_STATUS_CONCAT_INNER_(a, b)

#define LEMO_RETURN_IF_ERROR_1_(expr)              \
  do {                                             \
    const absl::Status lemo_status_ =              \
        ::lemo::internal_status::AsStatus((expr)); \
    if (!lemo_status_.ok()) return lemo_status_;   \
  } while (0)
#define LEMO_RETURN_IF_ERROR_2_(expr, context)             \
  do {                                                     \
    const absl::Status lemo_status_ =                      \
        ::lemo::internal_status::AsStatus((expr));         \
    if (!lemo_status_.ok())                                \
      return ::lemo::WithContext(lemo_status_, (context)); \
  } while (0)
#define LEMO_STATUS_PICK_(_1, _2, NAME, ...) NAME
// LEMO_RETURN_IF_ERROR(expr) or LEMO_RETURN_IF_ERROR(expr, "context").
#define LEMO_RETURN_IF_ERROR(...)                         \
  LEMO_STATUS_PICK_(__VA_ARGS__, LEMO_RETURN_IF_ERROR_2_, \
                    LEMO_RETURN_IF_ERROR_1_, )            \
  (__VA_ARGS__)

#define LEMO_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr, context)          \
  auto tmp = (expr);                                                  \
  if (!tmp.ok()) return ::lemo::WithContext(tmp.status(), (context)); \
  lhs = std::move(tmp).value()
#define LEMO_ASSIGN_OR_RETURN_2_(lhs, expr)                                  \
  LEMO_ASSIGN_OR_RETURN_IMPL_(LEMO_STATUS_CONCAT_(lemo_statusor_, __LINE__), \
                              lhs, expr, "")
#define LEMO_ASSIGN_OR_RETURN_3_(lhs, expr, context)                         \
  LEMO_ASSIGN_OR_RETURN_IMPL_(LEMO_STATUS_CONCAT_(lemo_statusor_, __LINE__), \
                              lhs, expr, context)
#define LEMO_ASSIGN_PICK_(_1, _2, _3, NAME, ...) NAME
// LEMO_ASSIGN_OR_RETURN(lhs, expr) or LEMO_ASSIGN_OR_RETURN(lhs, expr,
// "context").
#define LEMO_ASSIGN_OR_RETURN(...)                         \
  LEMO_ASSIGN_PICK_(__VA_ARGS__, LEMO_ASSIGN_OR_RETURN_3_, \
                    LEMO_ASSIGN_OR_RETURN_2_, )            \
  (__VA_ARGS__)

#endif  // LEMO_PROTO_STATUS_STATUS_MACROS_H_
