// Metrics as JSON lines: one object per line, e.g.
//   {"step":100,"split":"train","loss":0.43,"accuracy":0.84,"lr":0.001,"step_time_ms":12.5,
//    "samples_per_sec":10240.0}
// Each line is written and flushed in one call, so `tail -f` and plotting scripts see complete
// lines while training runs, and a killed run leaves at most one truncated last line, which
// read_jsonl skips. The file is opened in append mode so a resumed run continues it; readers
// that want one value per step keep the last record for that step (see png_plot.h).
//
// Example:
//   JsonlWriter log("runs/fashion/metrics.jsonl");
//   log.write({.step = 100, .split = "train", .loss = 0.43, .lr = 1e-3});
//   log.write(nlohmann::ordered_json{{"step", 100}, {"split", "eval"}, {"accuracy", 0.91}});
#pragma once
#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace loom::train {

/// The usual fields of one metrics line; unset optionals are left out of the line.
struct MetricsRecord {
  int64_t step = 0;
  std::string split = "train";  // "train", "eval", "test", ...
  // Every member has an initializer so designated initializers may leave any out (GCC's
  // -Wmissing-field-initializers warns for members without one).
  std::optional<int64_t> epoch{};
  std::optional<double> loss{}, accuracy{}, lr{}, step_time_ms{}, samples_per_sec{},
      tokens_per_sec{};
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();  // more keys, in order
};

/// The line's JSON object, keys in this order: step, split, the set fields in declaration order,
/// then `extra`. Non-finite numbers become null (JSON has no NaN or infinity).
nlohmann::ordered_json to_json(const MetricsRecord& record);

class JsonlWriter {
 public:
  /// Opens `path` for appending (truncating instead when `append` is false), creating parent
  /// directories. IOError naming the path when it cannot be opened.
  explicit JsonlWriter(const std::string& path, bool append = true);
  ~JsonlWriter();
  JsonlWriter(const JsonlWriter&) = delete;
  JsonlWriter& operator=(const JsonlWriter&) = delete;

  void write(const MetricsRecord& record);
  /// Writes any JSON object as one line (ValueError for a non-object). nlohmann::json sorts its
  /// keys; ordered_json keeps them in insertion order.
  void write(const nlohmann::json& object);
  void write(const nlohmann::ordered_json& object);
  void close();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

/// Every complete line of a JSON-lines file as parsed objects, in file order. Blank lines and a
/// truncated last line (no newline and not valid JSON: a run killed mid-write) are skipped; any
/// other malformed line is a FormatError naming the file and line number. A missing file is an
/// IOError.
std::vector<nlohmann::json> read_jsonl(const std::string& path);

}  // namespace loom::train
