#include "worker/engine/runtime/torch_status.h"

#include <c10/util/Exception.h>

#include "absl/strings/str_cat.h"

namespace lemo::engine {
namespace {

// c10 messages carry a C++ backtrace after the first line; users need only the
// first lines.
std::string FirstLines(const char* what) {
  std::string s(what);
  const size_t cut = s.find("\nException raised from");
  if (cut != std::string::npos) s.resize(cut);
  return s;
}

}  // namespace

absl::Status StatusFromCurrentException(absl::string_view what_doing) {
  try {
    throw;
  } catch (const c10::OutOfMemoryError& e) {
    return absl::ResourceExhaustedError(absl::StrCat(
        what_doing,
        ": out of device memory: ", FirstLines(e.what_without_backtrace())));
  } catch (const c10::ValueError& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(what_doing, ": ", FirstLines(e.what_without_backtrace())));
  } catch (const c10::IndexError& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(what_doing, ": ", FirstLines(e.what_without_backtrace())));
  } catch (const c10::TypeError& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(what_doing, ": ", FirstLines(e.what_without_backtrace())));
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat(what_doing, ": ", FirstLines(e.what_without_backtrace())));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        absl::StrCat(what_doing, ": out of host memory"));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(what_doing, ": ", e.what()));
  } catch (...) {
    return absl::InternalError(absl::StrCat(what_doing, ": unknown exception"));
  }
}

}  // namespace lemo::engine
