#include "train/metrics/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>

namespace loom::train {
namespace {

double steady_seconds() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

// The file descriptor behind the standard streams; -1 for any other stream.
int stream_fd(const std::ostream& os) {
  if (&os == &std::cout) return STDOUT_FILENO;
  if (&os == &std::cerr || &os == &std::clog) return STDERR_FILENO;
  return -1;
}

bool is_terminal(const std::ostream& os) {
  int fd = stream_fd(os);
  if (fd < 0 || !::isatty(fd)) return false;
  const char* term = std::getenv("TERM");
  return term == nullptr || std::strcmp(term, "dumb") != 0;  // a dumb terminal cannot redraw
}

int terminal_width(const std::ostream& os) {
  int fd = stream_fd(os);
  struct winsize ws {};
  if (fd >= 0 && ::ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  if (const char* cols = std::getenv("COLUMNS")) {
    int c = std::atoi(cols);
    if (c > 0) return c;
  }
  return 80;
}

std::string format_value(double v) {
  char buf[48];
  double a = std::fabs(v);
  if (!std::isfinite(v)) return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
  if (a != 0 && (a < 1e-3 || a >= 1e5))
    std::snprintf(buf, sizeof(buf), "%.3e", v);
  else
    std::snprintf(buf, sizeof(buf), "%.4f", v);
  return buf;
}

}  // namespace

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  auto s = int64_t(std::llround(seconds));
  char buf[48];
  if (s >= 3600)
    std::snprintf(buf, sizeof(buf), "%lld:%02lld:%02lld", (long long)(s / 3600),
                  (long long)(s / 60 % 60), (long long)(s % 60));
  else
    std::snprintf(buf, sizeof(buf), "%lld:%02lld", (long long)(s / 60), (long long)(s % 60));
  return buf;
}

std::string format_rate(double v) {
  char buf[48];
  if (!std::isfinite(v) || v < 0) return "?";
  if (v >= 1e9)
    std::snprintf(buf, sizeof(buf), "%.3gG", v / 1e9);
  else if (v >= 1e6)
    std::snprintf(buf, sizeof(buf), "%.3gM", v / 1e6);
  else if (v >= 1e4)
    std::snprintf(buf, sizeof(buf), "%.3gk", v / 1e3);
  else if (v >= 100)
    std::snprintf(buf, sizeof(buf), "%.0f", v);
  else
    std::snprintf(buf, sizeof(buf), "%.3g", v);
  return buf;
}

ProgressBar::ProgressBar(ProgressOptions options) : ProgressBar(std::move(options), std::cout) {}

ProgressBar::ProgressBar(ProgressOptions options, std::ostream& os)
    : opts_(std::move(options)), os_(os) {
  if (!opts_.clock) opts_.clock = steady_seconds;
  terminal_ = opts_.terminal.value_or(is_terminal(os_));
  if (opts_.width <= 0) opts_.width = terminal_width(os_);
  opts_.print_every = std::max<int64_t>(opts_.print_every, 1);
  opts_.ema_decay = std::clamp(opts_.ema_decay, 0.0, 0.999);
  start_time_ = last_time_ = now();
  step_ = last_step_ = last_printed_step_ = opts_.initial_step;
}

ProgressBar::~ProgressBar() {
  try {
    finish();
  } catch (...) {  // a stream that throws must not escape a destructor
  }
}

double ProgressBar::now() const { return opts_.clock(); }

void ProgressBar::update(const ProgressUpdate& u) {
  if (finished_) return;
  const double t = now();
  const int64_t dsteps = u.step - last_step_;
  const double dt = t - last_time_;
  if (dsteps > 0 && dt >= 0) {
    const double d = opts_.ema_decay;
    ema_step_s_ = d * ema_step_s_ + (1 - d) * (dt / double(dsteps));
    // With a zero interval (a coarse clock) the rate is unknown, not infinite: it keeps the
    // previous average by giving the sample the average's own value.
    double rate =
        dt > 0 ? double(u.items) / dt : (ema_weight_ > 0 ? ema_items_s_ / ema_weight_ : 0);
    ema_items_s_ = d * ema_items_s_ + (1 - d) * rate;
    ema_weight_ = d * ema_weight_ + (1 - d);
    last_time_ = t;
    last_step_ = u.step;
  }
  step_ = u.step;
  if (u.epoch) epoch_ = u.epoch;
  if (u.loss) loss_ = u.loss;
  if (!u.extra.empty()) extra_ = u.extra;

  const bool last = opts_.total_steps > 0 && step_ >= opts_.total_steps;
  if (terminal_) {
    if (last || t - last_draw_time_ >= opts_.min_redraw_seconds) {
      redraw();
      last_draw_time_ = t;
    }
  } else if (step_ != last_printed_step_ &&
             (last || step_ / opts_.print_every > last_printed_step_ / opts_.print_every)) {
    os_ << status_line() << '\n' << std::flush;
    last_printed_step_ = step_;
  }
}

void ProgressBar::println(const std::string& message) {
  if (terminal_ && drawn_) {
    os_ << "\r\x1b[K" << message << '\n';
    drawn_ = false;
    if (!finished_) redraw();
    os_ << std::flush;
  } else {
    os_ << message << '\n' << std::flush;
  }
}

void ProgressBar::finish() {
  if (finished_) return;
  finished_ = true;
  const bool updated = step_ != opts_.initial_step || drawn_;
  if (terminal_) {
    if (updated) {
      redraw();
      os_ << '\n' << std::flush;
      drawn_ = false;
    }
  } else if (updated && last_printed_step_ != step_) {
    os_ << status_line() << '\n' << std::flush;
    last_printed_step_ = step_;
  }
}

double ProgressBar::items_per_second() const {
  return ema_weight_ > 0 ? ema_items_s_ / ema_weight_ : 0.0;
}

std::optional<double> ProgressBar::eta_seconds() const {
  if (opts_.total_steps <= 0 || ema_weight_ <= 0) return std::nullopt;
  return double(std::max<int64_t>(opts_.total_steps - step_, 0)) * (ema_step_s_ / ema_weight_);
}

std::string ProgressBar::status_line() const {
  // Built with append(): GCC 12 reports false -Wrestrict errors for "literal" + std::string.
  std::string s = "step ";
  s.append(std::to_string(step_));
  if (opts_.total_steps > 0) {
    double frac = std::clamp(double(step_) / double(opts_.total_steps), 0.0, 1.0);
    s.append("/").append(std::to_string(opts_.total_steps));
    s.append(" (").append(std::to_string(int(frac * 100))).append("%)");
  }
  if (epoch_) s.append(" | epoch ").append(std::to_string(*epoch_));
  if (loss_) s.append(" | loss ").append(format_value(*loss_));
  for (const auto& [name, value] : extra_)
    s.append(" | ").append(name).append(" ").append(format_value(value));
  if (ema_weight_ > 0 && items_per_second() > 0)
    s.append(" | ")
        .append(format_rate(items_per_second()))
        .append(" ")
        .append(opts_.unit)
        .append("/s");
  s.append(" | ").append(format_duration(now() - start_time_)).append(" elapsed");
  if (auto eta = eta_seconds()) s.append(", eta ").append(format_duration(*eta));
  return s;
}

std::string ProgressBar::bar_line(int width) const {
  std::string status = status_line();
  std::string line;
  // The bar takes what room is left, between 10 and 30 cells; no bar without a total.
  int room = width - 1 - int(status.size()) - 3;
  if (opts_.total_steps > 0 && room >= 10) {
    int cells = std::min(room, 30);
    double frac = std::clamp(double(step_) / double(opts_.total_steps), 0.0, 1.0);
    int full = int(frac * cells);
    line.append("[").append(size_t(full), '#').append(size_t(cells - full), '.').append("] ");
  }
  line += status;
  // A line as wide as the terminal wraps, and '\r' then returns only to the wrapped part.
  if (int(line.size()) > width - 1) line.resize(size_t(std::max(width - 1, 0)));
  return line;
}

void ProgressBar::redraw() {
  os_ << '\r' << bar_line(opts_.width) << "\x1b[K" << std::flush;
  drawn_ = true;
}

}  // namespace loom::train
