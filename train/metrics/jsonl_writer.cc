#include "train/metrics/jsonl_writer.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace loom::train {
namespace {

nlohmann::ordered_json number(double v) {
  return std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json();
}

template <typename Json>
void write_line(std::FILE* file, const std::string& path, const Json& object) {
  LOOM_CHECK(object.is_object(), ValueError,
             "JsonlWriter: a metrics line must be a JSON object, got ", object.type_name(), " (",
             path, ")");
  LOOM_CHECK(file != nullptr, IOError, "JsonlWriter: ", path, " is closed");
  // Replace invalid UTF-8 instead of throwing mid-run over an odd tag or split name.
  std::string line = object.dump(-1, ' ', false, Json::error_handler_t::replace);
  line.push_back('\n');
  size_t n = std::fwrite(line.data(), 1, line.size(), file);
  LOOM_CHECK(n == line.size() && std::fflush(file) == 0, IOError, "JsonlWriter: cannot write ",
             path, ": ", std::strerror(errno));
}

}  // namespace

nlohmann::ordered_json to_json(const MetricsRecord& r) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  j["step"] = r.step;
  j["split"] = r.split;
  if (r.epoch) j["epoch"] = *r.epoch;
  const std::pair<const char*, const std::optional<double>*> fields[] = {
      {"loss", &r.loss},
      {"accuracy", &r.accuracy},
      {"lr", &r.lr},
      {"step_time_ms", &r.step_time_ms},
      {"samples_per_sec", &r.samples_per_sec},
      {"tokens_per_sec", &r.tokens_per_sec},
  };
  for (const auto& [name, value] : fields)
    if (value->has_value()) j[name] = number(**value);
  LOOM_CHECK(r.extra.is_object() || r.extra.is_null(), ValueError,
             "MetricsRecord: extra must be a JSON object, got ", r.extra.type_name());
  if (r.extra.is_object())
    for (const auto& [key, value] : r.extra.items())
      j[key] = value.is_number_float() ? number(value.get<double>()) : value;
  return j;
}

JsonlWriter::JsonlWriter(const std::string& path, bool append) : path_(path) {
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  LOOM_CHECK(!ec, IOError, "JsonlWriter: cannot create directory ", parent.string(), ": ",
             ec.message());
  file_ = std::fopen(path.c_str(), append ? "ab" : "wb");
  LOOM_CHECK(file_ != nullptr, IOError, "JsonlWriter: cannot open ", path, ": ",
             std::strerror(errno));
}

JsonlWriter::~JsonlWriter() {
  try {
    close();
  } catch (...) {  // nothing useful to do with a failed close in a destructor
  }
}

void JsonlWriter::close() {
  if (file_ == nullptr) return;
  int rc = std::fclose(file_);
  file_ = nullptr;
  LOOM_CHECK(rc == 0, IOError, "JsonlWriter: cannot close ", path_, ": ", std::strerror(errno));
}

void JsonlWriter::write(const MetricsRecord& record) { write(to_json(record)); }

void JsonlWriter::write(const nlohmann::json& object) { write_line(file_, path_, object); }

void JsonlWriter::write(const nlohmann::ordered_json& object) { write_line(file_, path_, object); }

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  LOOM_CHECK(in.good(), IOError, "read_jsonl: cannot open ", path, ": ", std::strerror(errno));
  std::vector<nlohmann::json> records;
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    const bool last_without_newline = in.eof();
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) {
      if (last_without_newline) break;  // the tail of a run killed while writing
      LOOM_THROW(FormatError, "read_jsonl: ", path, " line ", line_no,
                 " is not valid JSON: ", line.substr(0, 80));
    }
    LOOM_CHECK(j.is_object(), FormatError, "read_jsonl: ", path, " line ", line_no,
               " is not a JSON object");
    records.push_back(std::move(j));
  }
  return records;
}

}  // namespace loom::train
