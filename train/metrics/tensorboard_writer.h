// TensorBoard scalar logging without TensorFlow or protobuf: an events file
// `<log_dir>/events.out.tfevents.<unix seconds>.<hostname>` that TensorBoard (and its
// EventAccumulator) opens like one written by tf.summary or tensorboardX.
//
// The file is a sequence of TFRecords
//   u64 length (little-endian) | u32 masked CRC-32C of those 8 bytes | data | u32 masked CRC-32C of
//   data
// whose data are Event protobufs, encoded here by hand:
//   Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
//   Summary { repeated Value value = 1; }
//   Value   { string tag = 1; float simple_value = 2; }
// The first record carries only wall_time and file_version = "brain.Event:2".
//
// Every add_* call writes and flushes its record, so a run that is killed loses nothing that was
// logged and TensorBoard can follow the file live; callers log every N steps, so the cost is one
// small write per log step. Values are taken as host doubles: the writer never touches a device.
//
// Example:
//   TensorBoardWriter tb("runs/fashion");
//   tb.add_scalar("train/loss", 0.43, step);
//   tb.add_scalars(step, {{"eval/loss", 0.31}, {"eval/accuracy", 0.91}});   // one event
#pragma once
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace loom::train {

class TensorBoardWriter {
 public:
  /// Creates `log_dir` (with parents) and a new events file in it; when a file of that name
  /// already exists (two writers in the same second) a numeric suffix keeps both. `wall_time`
  /// (seconds since the epoch) defaults to now and names the file. IOError when the directory or
  /// file cannot be created.
  explicit TensorBoardWriter(const std::string& log_dir, std::optional<double> wall_time = {});
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  /// One scalar event. `wall_time` defaults to now. The value is stored as a float32, as
  /// TensorBoard's simple_value is. ValueError for an empty tag.
  void add_scalar(const std::string& tag, double value, int64_t step,
                  std::optional<double> wall_time = {});
  /// Several scalars of one step in a single event.
  void add_scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values,
                   std::optional<double> wall_time = {});
  /// Flushes and closes the file; later add_* calls throw IOError. Called by the destructor.
  void close();

  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& data);
  std::string path_;
  std::FILE* file_ = nullptr;
};

/// The Event protobuf bytes of a scalar event (exposed for tests and other writers).
std::string encode_scalar_event(double wall_time, int64_t step,
                                const std::vector<std::pair<std::string, double>>& values);
/// The Event protobuf bytes of the file_version event that opens every events file.
std::string encode_file_version_event(double wall_time);
/// One TFRecord: length, masked CRC-32C of the length, data, masked CRC-32C of the data.
std::string tfrecord_frame(const std::string& data);

}  // namespace loom::train
