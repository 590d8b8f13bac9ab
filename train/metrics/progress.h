// Training progress display. On a terminal it redraws one line in place:
//   step 1200/5000 [#####...............]  24% | epoch 3 | loss 0.4321 | acc 0.874 | 10.2k
//   samples/s | 0:12 < 0:37
// When the output is not a terminal (a log file, CI) it prints that line without the bar every
// `print_every` steps instead, so logs stay readable. finish() ends the redrawn line with a
// newline so that later output starts on a fresh line.
//
// It never synchronises with a device: callers pass doubles they already have on the host (a
// training loop fetches the loss only every few steps and passes std::nullopt in between; the
// last known loss stays on display). Throughput and ETA come from an exponential moving
// average of the time per step (as llm.c's tok/s), so one slow step (evaluation, a
// checkpoint, compilation at step 1) does not swing the estimate for long.
//
// Example:
//   ProgressBar bar({.total_steps = 5000, .unit = "samples"});
//   for (...) { ...; bar.update({.step = s, .epoch = e, .loss = l, .items = batch_size}); }
//   bar.println("eval: accuracy 0.91");   // printed above the bar
//   bar.finish();
#pragma once
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace loom::train {

struct ProgressOptions {
  int64_t total_steps = 0;          // 0: unknown (no bar, no ETA)
  int64_t initial_step = 0;         // a resumed run's starting step (rates count from here)
  std::string unit = "samples";     // throughput unit: "samples/s", "tokens/s", ...
  int64_t print_every = 100;        // non-terminal mode: a line every N steps (and the last)
  std::optional<bool> terminal{};   // default: the stream is std::cout/std::cerr on a tty
  int width = 0;                    // terminal columns; 0: ask the terminal (80 if unknown)
  double min_redraw_seconds = 0.1;  // terminal mode: at most ~10 redraws a second
  double ema_decay = 0.9;           // weight of the past in the step-time average
  /// Seconds on a monotonic clock; tests replace it to get deterministic output.
  std::function<double()> clock{};
};

/// Values of one step, all already on the host.
struct ProgressUpdate {
  int64_t step = 0;  // steps completed, counted from the start of training
  std::optional<int64_t> epoch{};
  std::optional<double> loss{};  // nullopt: keep showing the last one
  int64_t items = 0;             // samples or tokens processed since the previous update
  std::vector<std::pair<std::string, double>> extra{};  // e.g. {"acc", 0.87}, {"lr", 1e-3}
};

class ProgressBar {
 public:
  explicit ProgressBar(ProgressOptions options = {});
  ProgressBar(ProgressOptions options, std::ostream& os);
  ~ProgressBar();  // finish()
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  void update(const ProgressUpdate& u);
  /// Prints a message on its own line (above the bar on a terminal) and redraws the bar.
  void println(const std::string& message);
  /// Draws the final state and ends the line (terminal) or prints the last line if it was not
  /// printed yet (plain). Idempotent.
  void finish();

  bool terminal() const { return terminal_; }
  /// Smoothed throughput in units per second (0 before the first timed step).
  double items_per_second() const;
  /// Estimated seconds to total_steps; nullopt when unknown.
  std::optional<double> eta_seconds() const;
  /// The current status line (no bar, no control characters): what plain mode prints.
  std::string status_line() const;

 private:
  void redraw();
  std::string bar_line(int width) const;
  double now() const;

  ProgressOptions opts_;
  std::ostream& os_;
  bool terminal_ = false;
  bool finished_ = false;
  bool drawn_ = false;  // terminal: a bar line is on screen (cursor at its end)
  int64_t last_printed_step_ = -1;
  double start_time_ = 0, last_time_ = 0, last_draw_time_ = -1e300;
  int64_t first_step_ = -1, step_ = 0, last_step_ = 0;
  std::optional<int64_t> epoch_;
  std::optional<double> loss_;
  std::vector<std::pair<std::string, double>> extra_;
  // Bias-corrected EMAs of seconds per step and items per second.
  double ema_step_s_ = 0, ema_items_s_ = 0, ema_weight_ = 0;
};

/// "0:07", "12:34", "1:02:03"; "--:--" for a negative or non-finite value.
std::string format_duration(double seconds);
/// Throughput with an SI suffix: "950", "12.3k", "1.05M".
std::string format_rate(double per_second);

}  // namespace loom::train
