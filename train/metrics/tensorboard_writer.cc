#include "train/metrics/tensorboard_writer.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "train/metrics/crc32c.h"

namespace loom::train {
namespace {

// Protobuf wire types.
constexpr uint32_t kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5;

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(char(uint8_t(v) | 0x80));
    v >>= 7;
  }
  out.push_back(char(uint8_t(v)));
}

void put_key(std::string& out, uint32_t field, uint32_t wire_type) {
  put_varint(out, (uint64_t(field) << 3) | wire_type);
}

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(char(uint8_t(v >> (8 * i))));
}

void put_bytes_field(std::string& out, uint32_t field, const std::string& bytes) {
  put_key(out, field, kLengthDelimited);
  put_varint(out, bytes.size());
  out += bytes;
}

void put_double_field(std::string& out, uint32_t field, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, 8);
  put_key(out, field, kFixed64);
  put_le(out, bits, 8);
}

double now_seconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

std::string hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

}  // namespace

std::string encode_file_version_event(double wall_time) {
  std::string event;
  put_double_field(event, 1, wall_time);
  put_bytes_field(event, 3, "brain.Event:2");
  return event;
}

std::string encode_scalar_event(double wall_time, int64_t step,
                                const std::vector<std::pair<std::string, double>>& values) {
  std::string summary;
  for (const auto& [tag, value] : values) {
    LOOM_CHECK(!tag.empty(), ValueError, "TensorBoardWriter: empty scalar tag at step ", step);
    std::string v;
    put_bytes_field(v, 1, tag);
    float f = float(value);
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    put_key(v, 2, kFixed32);
    put_le(v, bits, 4);
    put_bytes_field(summary, 1, v);
  }
  std::string event;
  put_double_field(event, 1, wall_time);
  // int64 is a plain varint: negative steps take ten bytes of two's complement, as in protobuf.
  put_key(event, 2, kVarint);
  put_varint(event, uint64_t(step));
  put_bytes_field(event, 5, summary);
  return event;
}

std::string tfrecord_frame(const std::string& data) {
  std::string out;
  put_le(out, data.size(), 8);
  put_le(out, masked_crc32c(out.data(), 8), 4);
  out += data;
  put_le(out, masked_crc32c(data.data(), data.size()), 4);
  return out;
}

TensorBoardWriter::TensorBoardWriter(const std::string& log_dir, std::optional<double> wall_time) {
  double t = wall_time.value_or(now_seconds());
  std::error_code ec;
  std::filesystem::create_directories(log_dir, ec);
  LOOM_CHECK(!ec, IOError, "TensorBoardWriter: cannot create log directory ", log_dir, ": ",
             ec.message());
  const std::string base =
      (std::filesystem::path(log_dir) /
       ("events.out.tfevents." + std::to_string(int64_t(std::floor(t))) + "." + hostname()))
          .string();
  // "x" (O_EXCL) so that two writers started in the same second never share a file; TensorBoard
  // reads every file whose name contains "tfevents", suffix or not.
  for (int attempt = 0; attempt < 1000 && file_ == nullptr; ++attempt) {
    path_ = attempt == 0 ? base : base + "." + std::to_string(attempt);
    file_ = std::fopen(path_.c_str(), "wbx");
    if (file_ == nullptr && errno != EEXIST) break;
  }
  LOOM_CHECK(file_ != nullptr, IOError, "TensorBoardWriter: cannot create events file ", path_,
             ": ", std::strerror(errno));
  write_record(encode_file_version_event(t));
}

TensorBoardWriter::~TensorBoardWriter() {
  try {
    close();
  } catch (...) {  // a destructor must not throw; close() reported nothing worth a crash
  }
}

void TensorBoardWriter::close() {
  if (file_ == nullptr) return;
  int rc = std::fclose(file_);
  file_ = nullptr;
  LOOM_CHECK(rc == 0, IOError, "TensorBoardWriter: cannot close ", path_, ": ",
             std::strerror(errno));
}

void TensorBoardWriter::write_record(const std::string& data) {
  LOOM_CHECK(file_ != nullptr, IOError, "TensorBoardWriter: ", path_, " is closed");
  std::string record = tfrecord_frame(data);
  size_t n = std::fwrite(record.data(), 1, record.size(), file_);
  LOOM_CHECK(n == record.size() && std::fflush(file_) == 0, IOError,
             "TensorBoardWriter: cannot write ", path_, ": ", std::strerror(errno));
}

void TensorBoardWriter::add_scalar(const std::string& tag, double value, int64_t step,
                                   std::optional<double> wall_time) {
  add_scalars(step, {{tag, value}}, wall_time);
}

void TensorBoardWriter::add_scalars(int64_t step,
                                    const std::vector<std::pair<std::string, double>>& values,
                                    std::optional<double> wall_time) {
  if (values.empty()) return;
  write_record(encode_scalar_event(wall_time.value_or(now_seconds()), step, values));
}

}  // namespace loom::train
