#include "worker/engine/data/jsonl_reader.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

#include "worker/engine/data/data_file.h"

namespace lemo::engine {

absl::StatusOr<int64_t> ForEachJsonlText(
    const std::string& path,
    const std::function<absl::Status(absl::string_view text)>& fn) {
  LEMO_ASSIGN_OR_RETURN(std::ifstream in, OpenDataFile(path));
  std::string line;
  int64_t line_no = 0;
  int64_t docs = 0;
  while (std::getline(in, line)) {
    ++line_no;
    const std::string where = absl::StrCat(path, ":", line_no);
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    nlohmann::json doc;
    try {
      doc = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": malformed JSON: ", e.what()));
    }
    if (!doc.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": expected a JSON object, got ", doc.type_name()));
    }
    const auto text = doc.find("text");
    if (text == doc.end()) {
      // An example file read as text (the job spec guesses JSONL from the
      // .jsonl extension): say which format it looks like.
      std::string hint;
      if (doc.contains("messages")) {
        hint = " (it has \"messages\": set data.format to CHAT)";
      } else if (doc.contains("prompt") && doc.contains("completion")) {
        hint =
            " (it has \"prompt\" and \"completion\": set data.format to "
            "INSTRUCTION)";
      } else if (doc.contains("input_ids")) {
        hint = " (it has \"input_ids\": set data.format to TOKENS_JSONL)";
      }
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": no \"text\" field", hint));
    }
    if (!text->is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": \"text\" is a ", text->type_name(), ", not a string"));
    }
    LEMO_RETURN_IF_ERROR(fn(text->get_ref<const std::string&>()), where);
    ++docs;
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat("reading ", path));
  return docs;
}

}  // namespace lemo::engine
