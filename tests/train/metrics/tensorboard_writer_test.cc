#include "train/metrics/tensorboard_writer.h"

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>

#include "tests/support/testing.h"
#include "tests/train/io/io_test_util.h"
#include "train/metrics/crc32c.h"
#include "train/metrics/jsonl_writer.h"

namespace loom::train {
namespace {

using loom::testing::read_bytes;
using loom::testing::TempDir;

// --- An independent reader: TFRecord framing and the protobuf fields TensorBoard reads. ---

uint64_t le(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Masking written out from the TFRecord definition rather than calling mask_crc32c.
uint32_t masked(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

struct ParsedValue {
  std::string tag;
  float simple_value = 0;
};
struct ParsedEvent {
  double wall_time = 0;
  int64_t step = 0;
  std::string file_version;
  std::vector<ParsedValue> values;
};

struct Cursor {
  const uint8_t* p;
  const uint8_t* end;
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p >= end) throw std::runtime_error("varint past end");
      uint8_t b = *p++;
      v |= uint64_t(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    throw std::runtime_error("varint too long");
  }
  std::string bytes() {
    uint64_t n = varint();
    if (uint64_t(end - p) < n) throw std::runtime_error("field past end");
    std::string s(reinterpret_cast<const char*>(p), n);
    p += n;
    return s;
  }
  uint64_t fixed(int n) {
    if (end - p < n) throw std::runtime_error("fixed past end");
    uint64_t v = le(p, n);
    p += n;
    return v;
  }
};

ParsedValue parse_value(const std::string& s) {
  ParsedValue v;
  Cursor c{reinterpret_cast<const uint8_t*>(s.data()),
           reinterpret_cast<const uint8_t*>(s.data()) + s.size()};
  while (c.p < c.end) {
    uint64_t key = c.varint();
    if (key == (1 << 3 | 2)) {
      v.tag = c.bytes();
    } else if (key == (2 << 3 | 5)) {
      uint32_t bits = uint32_t(c.fixed(4));
      std::memcpy(&v.simple_value, &bits, 4);
    } else {
      throw std::runtime_error("unexpected Value field key " + std::to_string(key));
    }
  }
  return v;
}

ParsedEvent parse_event(const std::string& s) {
  ParsedEvent e;
  Cursor c{reinterpret_cast<const uint8_t*>(s.data()),
           reinterpret_cast<const uint8_t*>(s.data()) + s.size()};
  while (c.p < c.end) {
    uint64_t key = c.varint();
    if (key == (1 << 3 | 1)) {
      uint64_t bits = c.fixed(8);
      std::memcpy(&e.wall_time, &bits, 8);
    } else if (key == (2 << 3 | 0)) {
      e.step = int64_t(c.varint());
    } else if (key == (3 << 3 | 2)) {
      e.file_version = c.bytes();
    } else if (key == (5 << 3 | 2)) {
      std::string summary = c.bytes();
      Cursor sc{reinterpret_cast<const uint8_t*>(summary.data()),
                reinterpret_cast<const uint8_t*>(summary.data()) + summary.size()};
      while (sc.p < sc.end) {
        if (sc.varint() != (1 << 3 | 2)) throw std::runtime_error("unexpected Summary field");
        e.values.push_back(parse_value(sc.bytes()));
      }
    } else {
      throw std::runtime_error("unexpected Event field key " + std::to_string(key));
    }
  }
  return e;
}

// Checks every record's framing and both CRCs; returns the events.
std::vector<ParsedEvent> read_events(const std::string& path) {
  std::vector<uint8_t> b = read_bytes(path);
  std::vector<ParsedEvent> events;
  size_t at = 0;
  while (at < b.size()) {
    EXPECT_GE(b.size() - at, 16u) << "short record header at " << at;
    if (b.size() - at < 16) break;
    uint64_t len = le(&b[at], 8);
    EXPECT_EQ(le(&b[at + 8], 4), masked(crc32c(&b[at], 8))) << "length CRC at " << at;
    EXPECT_LE(at + 12 + len + 4, b.size()) << "record past end at " << at;
    if (at + 12 + len + 4 > b.size()) break;
    std::string data(reinterpret_cast<const char*>(&b[at + 12]), len);
    EXPECT_EQ(le(&b[at + 12 + len], 4), masked(crc32c(data.data(), data.size())))
        << "data CRC at " << at;
    events.push_back(parse_event(data));
    at += 12 + len + 4;
  }
  return events;
}

TEST(Crc32c, StandardCheckValueAndKnownVectors) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c("", 0), 0u);
  // RFC 3720 (iSCSI) B.4 test vectors: 32 zero bytes, 32 0xFF bytes, 0..31.
  uint8_t zeros[32] = {}, ones[32], inc[32];
  std::memset(ones, 0xFF, 32);
  for (int i = 0; i < 32; ++i) inc[i] = uint8_t(i);
  EXPECT_EQ(crc32c(zeros, 32), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones, 32), 0x62A8AB43u);
  EXPECT_EQ(crc32c(inc, 32), 0x46DD794Eu);
  // Incremental computation equals one pass.
  EXPECT_EQ(crc32c("6789", 4, crc32c("12345", 5)), 0xE3069283u);
  EXPECT_EQ(mask_crc32c(0), 0xa282ead8u);
  EXPECT_EQ(masked_crc32c("123456789", 9), masked(0xE3069283u));
}

TEST(TensorBoardWriter, FileNameFirstRecordAndScalarsParseBack) {
  TempDir dir;
  const std::string log_dir = dir.file("run/tb");
  std::string path;
  {
    TensorBoardWriter tb(log_dir, 1700000000.25);
    path = tb.path();
    tb.add_scalar("train/loss", 2.5, 1, 1700000001.5);
    tb.add_scalars(10, {{"eval/loss", 0.125}, {"eval/accuracy", 0.9}}, 1700000002.0);
    tb.add_scalar("train/loss", -1e30, -3, 1700000003.0);  // negative step: 10-byte varint
    tb.add_scalar("big", 1.0, int64_t(1) << 40, 1700000004.0);
  }
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  EXPECT_EQ(std::filesystem::path(path).parent_path(), std::filesystem::path(log_dir));
  EXPECT_EQ(std::filesystem::path(path).filename().string(),
            std::string("events.out.tfevents.1700000000.") + host);

  std::vector<ParsedEvent> ev = read_events(path);
  ASSERT_EQ(ev.size(), 5u);
  EXPECT_EQ(ev[0].file_version, "brain.Event:2");
  EXPECT_DOUBLE_EQ(ev[0].wall_time, 1700000000.25);
  EXPECT_TRUE(ev[0].values.empty());

  EXPECT_DOUBLE_EQ(ev[1].wall_time, 1700000001.5);
  EXPECT_EQ(ev[1].step, 1);
  EXPECT_EQ(ev[1].file_version, "");
  ASSERT_EQ(ev[1].values.size(), 1u);
  EXPECT_EQ(ev[1].values[0].tag, "train/loss");
  EXPECT_EQ(ev[1].values[0].simple_value, 2.5f);

  EXPECT_EQ(ev[2].step, 10);
  ASSERT_EQ(ev[2].values.size(), 2u);
  EXPECT_EQ(ev[2].values[0].tag, "eval/loss");
  EXPECT_EQ(ev[2].values[0].simple_value, 0.125f);
  EXPECT_EQ(ev[2].values[1].tag, "eval/accuracy");
  EXPECT_EQ(ev[2].values[1].simple_value, 0.9f);

  EXPECT_EQ(ev[3].step, -3);
  EXPECT_EQ(ev[3].values[0].simple_value, -1e30f);
  EXPECT_EQ(ev[4].step, int64_t(1) << 40);
}

TEST(TensorBoardWriter, KnownBytesOfOneEvent) {
  // Hand-assembled Event{wall_time=1.0, step=5, summary{value{tag="a", simple_value=1.0}}}.
  const uint8_t expected[] = {0x09, 0,    0,   0,    0,   0, 0, 0xF0, 0x3F,  // field 1, fixed64 1.0
                              0x10, 0x05,                                    // field 2, varint 5
                              0x2A, 0x0A,                                    // field 5, 10 bytes
                              0x0A, 0x08,                    // Summary.value, 8 bytes
                              0x0A, 0x01, 'a',               // tag "a"
                              0x15, 0,    0,   0x80, 0x3F};  // simple_value 1.0f
  std::string got = encode_scalar_event(1.0, 5, {{"a", 1.0}});
  ASSERT_EQ(got.size(), sizeof(expected));
  EXPECT_EQ(std::memcmp(got.data(), expected, sizeof(expected)), 0);

  std::string framed = tfrecord_frame(got);
  ASSERT_EQ(framed.size(), 8 + 4 + got.size() + 4);
  EXPECT_EQ(le(reinterpret_cast<const uint8_t*>(framed.data()), 8), got.size());
}

TEST(TensorBoardWriter, TwoWritersInOneSecondGetDistinctFiles) {
  TempDir dir;
  TensorBoardWriter a(dir.file("tb"), 1700000000.0);
  TensorBoardWriter b(dir.file("tb"), 1700000000.5);
  EXPECT_NE(a.path(), b.path());
  EXPECT_NE(b.path().find("tfevents"), std::string::npos);
  a.add_scalar("x", 1, 1);
  b.add_scalar("x", 2, 1);
  a.close();
  b.close();
  EXPECT_EQ(read_events(a.path()).size(), 2u);
  EXPECT_EQ(read_events(b.path()).size(), 2u);
}

TEST(TensorBoardWriter, EachRecordIsOnDiskBeforeClose) {
  TempDir dir;
  TensorBoardWriter tb(dir.file("tb"));
  tb.add_scalar("train/loss", 1.0, 1);
  // Read while the writer is still open: TensorBoard follows live runs this way.
  std::vector<ParsedEvent> ev = read_events(tb.path());
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[1].values[0].tag, "train/loss");
}

TEST(TensorBoardWriter, Errors) {
  TempDir dir;
  TensorBoardWriter tb(dir.file("tb"));
  EXPECT_THROW_WITH(tb.add_scalar("", 1.0, 3), ValueError, "TensorBoardWriter", "empty", "3");
  tb.close();
  EXPECT_THROW_WITH(tb.add_scalar("x", 1.0, 1), IOError, "closed", tb.path());
  // A log directory that cannot be created: a regular file is in the way.
  loom::testing::write_bytes(dir.file("blocker"), {1});
  EXPECT_THROW_WITH(TensorBoardWriter(dir.file("blocker/tb")), IOError, "TensorBoardWriter",
                    "blocker");
}

// A small training run's scalars written both as JSON lines and as TensorBoard events, read
// back and compared. With LOOM_TB_SAMPLE_DIR set, the run is kept there for
// scripts/check_tensorboard.py, which checks it with TensorBoard's own reader.
TEST(TensorBoardWriter, SampleRunMatchesItsJsonl) {
  TempDir tmp;
  const char* keep = std::getenv("LOOM_TB_SAMPLE_DIR");
  const std::string dir = keep != nullptr && *keep != '\0' ? keep : tmp.file("run");
  std::string events_path;
  {
    std::filesystem::create_directories(dir);
    for (const auto& e : std::filesystem::directory_iterator(dir))  // a fresh run each time
      if (e.path().filename().string().find("tfevents") != std::string::npos)
        std::filesystem::remove(e.path());
    JsonlWriter log(dir + "/metrics.jsonl", /*append=*/false);
    TensorBoardWriter tb(dir);
    events_path = tb.path();
    for (int step = 10; step <= 300; step += 10) {
      double loss = 0.3 + 2.0 * std::exp(-step / 80.0), acc = 0.92 - 0.8 * std::exp(-step / 60.0);
      log.write(MetricsRecord{.step = step, .loss = loss, .accuracy = acc, .lr = 1e-3});
      tb.add_scalars(step, {{"train/loss", loss}, {"train/accuracy", acc}, {"train/lr", 1e-3}});
      if (step % 100 == 0) {
        double eval_loss = loss + 0.05, eval_acc = acc - 0.01;
        log.write(
            MetricsRecord{.step = step, .split = "eval", .loss = eval_loss, .accuracy = eval_acc});
        tb.add_scalars(step, {{"eval/loss", eval_loss}, {"eval/accuracy", eval_acc}});
      }
    }
  }
  std::map<std::pair<std::string, int64_t>, float> scalars;
  for (const ParsedEvent& e : read_events(events_path))
    for (const ParsedValue& v : e.values) scalars[{v.tag, e.step}] = v.simple_value;
  int compared = 0;
  for (const nlohmann::json& r : read_jsonl(dir + "/metrics.jsonl")) {
    for (const char* key : {"loss", "accuracy"}) {
      auto it = scalars.find({r["split"].get<std::string>() + "/" + key, r["step"].get<int64_t>()});
      ASSERT_NE(it, scalars.end()) << r.dump();
      EXPECT_EQ(it->second, float(r[key].get<double>())) << r.dump();
      ++compared;
    }
  }
  EXPECT_EQ(compared, 2 * (30 + 3));
  EXPECT_EQ(scalars.size(), size_t(3 * 30 + 2 * 3));
}

}  // namespace
}  // namespace loom::train
