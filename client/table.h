// Aligned text columns for lemoctl's `-o table` output.
//
//   Table t({"ID", "STATE"});
//   t.AddRow({"job-1", "RUNNING"});
//   std::fputs(t.Render().c_str(), stdout);  // "ID     STATE\njob-1 RUNNING\n"
#ifndef LEMO_CLIENT_TABLE_H_
#define LEMO_CLIENT_TABLE_H_

#include <string>
#include <vector>

namespace lemo::client {

class Table {
 public:
  explicit Table(std::vector<std::string> header) : rows_{std::move(header)} {}
  // Missing cells print empty; extra cells are dropped.
  void AddRow(std::vector<std::string> row);
  // Columns are separated by two spaces; the last column is not padded.
  std::string Render() const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace lemo::client

#endif  // LEMO_CLIENT_TABLE_H_
