#include "train/metrics/progress.h"

#include <sstream>

#include "tests/support/testing.h"

namespace loom::train {
namespace {

// A clock the test advances by hand.
struct FakeClock {
  double t = 1000.0;
  std::function<double()> fn() {
    return [this] { return t; };
  }
};

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

TEST(ProgressFormat, DurationsAndRates) {
  EXPECT_EQ(format_duration(7.4), "0:07");
  EXPECT_EQ(format_duration(754), "12:34");
  EXPECT_EQ(format_duration(3723), "1:02:03");
  EXPECT_EQ(format_duration(-1), "--:--");
  EXPECT_EQ(format_duration(NAN), "--:--");
  EXPECT_EQ(format_rate(950), "950");
  EXPECT_EQ(format_rate(12345), "12.3k");
  EXPECT_EQ(format_rate(1.05e6), "1.05M");
  EXPECT_EQ(format_rate(2.5), "2.5");
}

TEST(ProgressBar, PlainModePrintsALineEveryNStepsAndTheLast) {
  FakeClock clock;
  std::ostringstream os;
  {
    ProgressBar bar({.total_steps = 10,
                     .print_every = 4,
                     .terminal = false,
                     .ema_decay = 0.0,
                     .clock = clock.fn()},
                    os);
    EXPECT_FALSE(bar.terminal());
    for (int s = 1; s <= 10; ++s) {
      clock.t += 0.5;  // 0.5 s per step of 64 samples: 128 samples/s
      bar.update({.step = s, .epoch = 1 + (s - 1) / 5, .loss = 1.0 / s, .items = 64});
    }
    bar.finish();
    bar.finish();  // idempotent
  }
  std::vector<std::string> lines = lines_of(os.str());
  ASSERT_EQ(lines.size(), 3u) << os.str();
  EXPECT_EQ(lines[0],
            "step 4/10 (40%) | epoch 1 | loss 0.2500 | 128 samples/s | 0:02 elapsed, eta 0:03");
  EXPECT_EQ(lines[1],
            "step 8/10 (80%) | epoch 2 | loss 0.1250 | 128 samples/s | 0:04 elapsed, eta 0:01");
  EXPECT_EQ(lines[2],
            "step 10/10 (100%) | epoch 2 | loss 0.1000 | 128 samples/s | 0:05 elapsed, eta 0:00");
  EXPECT_EQ(os.str().find('\r'), std::string::npos);
  EXPECT_EQ(os.str().find('\x1b'), std::string::npos);
}

TEST(ProgressBar, PlainModeFinishPrintsAnUnprintedLastStep) {
  FakeClock clock;
  std::ostringstream os;
  ProgressBar bar({.print_every = 100, .terminal = false, .clock = clock.fn()}, os);
  clock.t += 2;
  bar.update({.step = 7, .loss = 0.5, .items = 70});
  EXPECT_EQ(os.str(), "");
  bar.finish();
  EXPECT_EQ(os.str(), "step 7 | loss 0.5000 | 35 samples/s | 0:02 elapsed\n");
}

TEST(ProgressBar, TerminalModeRedrawsOneLineAndEndsItCleanly) {
  FakeClock clock;
  std::ostringstream os;
  ProgressBar bar({.total_steps = 4,
                   .unit = "tokens",
                   .terminal = true,
                   .width = 140,
                   .min_redraw_seconds = 0,
                   .ema_decay = 0.0,
                   .clock = clock.fn()},
                  os);
  EXPECT_TRUE(bar.terminal());
  for (int s = 1; s <= 4; ++s) {
    clock.t += 1;
    bar.update({.step = s, .loss = 2.0, .items = 1000, .extra = {{"lr", 0.001}}});
  }
  const std::string out = os.str();
  EXPECT_EQ(out.find('\n'), std::string::npos) << "no newline before finish";
  EXPECT_EQ(std::count(out.begin(), out.end(), '\r'), 4);
  bar.finish();
  const std::string done = os.str();
  ASSERT_EQ(done.back(), '\n');
  EXPECT_EQ(std::count(done.begin(), done.end(), '\n'), 1);
  // The last redraw: carriage return, bar, status, clear-to-end-of-line.
  std::string last = done.substr(done.rfind('\r') + 1);
  EXPECT_EQ(last,
            "[##############################] step 4/4 (100%) | loss 2.0000 | lr 0.0010 | "
            "1000 tokens/s | 0:04 elapsed, eta 0:00\x1b[K\n");
}

TEST(ProgressBar, TerminalModeFitsTheWidthAndThrottlesRedraws) {
  FakeClock clock;
  std::ostringstream os;
  ProgressBar bar({.total_steps = 1000,
                   .terminal = true,
                   .width = 60,
                   .min_redraw_seconds = 0.1,
                   .clock = clock.fn()},
                  os);
  for (int s = 1; s <= 100; ++s) {
    clock.t += 0.01;  // 100 steps in 1 s: about 10 redraws
    bar.update({.step = s, .loss = 1.0, .items = 32});
  }
  const std::string out = os.str();
  long redraws = std::count(out.begin(), out.end(), '\r');
  EXPECT_GE(redraws, 9);
  EXPECT_LE(redraws, 11);
  // Every drawn line fits in 59 columns, so the terminal never wraps it.
  size_t at = 0;
  while ((at = out.find('\r', at)) != std::string::npos) {
    size_t end = out.find('\x1b', at);
    EXPECT_LE(end - at - 1, 59u);
    at = end;
  }
}

TEST(ProgressBar, PrintlnGoesAboveTheBar) {
  FakeClock clock;
  std::ostringstream os;
  ProgressBar bar({.total_steps = 10,
                   .terminal = true,
                   .width = 120,
                   .min_redraw_seconds = 0,
                   .clock = clock.fn()},
                  os);
  clock.t += 1;
  bar.update({.step = 1, .loss = 1.0, .items = 8});
  bar.println("eval: accuracy 0.91");
  const std::string out = os.str();
  // The bar line is cleared, the message ends with a newline, and the bar is drawn again.
  size_t msg = out.find("\r\x1b[Keval: accuracy 0.91\n");
  ASSERT_NE(msg, std::string::npos) << out;
  EXPECT_NE(out.find("\r[", msg), std::string::npos);

  std::ostringstream plain;
  ProgressBar pbar({.terminal = false, .clock = clock.fn()}, plain);
  pbar.println("hello");
  EXPECT_EQ(plain.str(), "hello\n");
}

TEST(ProgressBar, ThroughputAndEtaAverageOverSteps) {
  FakeClock clock;
  std::ostringstream os;
  ProgressBar bar({.total_steps = 100, .terminal = false, .ema_decay = 0.5, .clock = clock.fn()},
                  os);
  EXPECT_EQ(bar.items_per_second(), 0.0);
  EXPECT_FALSE(bar.eta_seconds().has_value());
  clock.t += 1;  // 100 items/s, 1 s/step
  bar.update({.step = 1, .items = 100});
  EXPECT_DOUBLE_EQ(bar.items_per_second(), 100.0);  // bias-corrected: the first sample exactly
  EXPECT_DOUBLE_EQ(*bar.eta_seconds(), 99.0);
  clock.t += 0.5;  // 200 items/s, 0.5 s/step
  bar.update({.step = 2, .items = 100});
  // EMA with decay 0.5: (0.25 * 100 + 0.5 * 200) / 0.75.
  EXPECT_NEAR(bar.items_per_second(), (0.25 * 100 + 0.5 * 200) / 0.75, 1e-9);
  EXPECT_NEAR(*bar.eta_seconds(), 98 * (0.25 * 1 + 0.5 * 0.5) / 0.75, 1e-9);
  // Several steps in one update (a loop that reports every 10 steps).
  clock.t += 5;
  bar.update({.step = 12, .items = 1000});
  EXPECT_NEAR(bar.items_per_second(), (0.5 * 125 + 0.5 * 200) / 0.875, 1e-9);
}

TEST(ProgressBar, ResumedRunCountsFromItsInitialStep) {
  FakeClock clock;
  std::ostringstream os;
  ProgressBar bar({.total_steps = 1000,
                   .initial_step = 900,
                   .print_every = 50,
                   .terminal = false,
                   .clock = clock.fn()},
                  os);
  clock.t += 2;
  bar.update({.step = 901, .loss = 0.3, .items = 10});
  EXPECT_DOUBLE_EQ(bar.items_per_second(), 5.0);
  EXPECT_DOUBLE_EQ(*bar.eta_seconds(), 99 * 2.0);
  EXPECT_EQ(os.str(), "");  // the next line is due at step 950
  bar.finish();
  EXPECT_EQ(lines_of(os.str()).size(), 1u);
  EXPECT_EQ(lines_of(os.str())[0].rfind("step 901/1000 (90%)", 0), 0u);
}

TEST(ProgressBar, LossKeepsTheLastKnownValueAndNothingPrintsWithoutUpdates) {
  FakeClock clock;
  std::ostringstream os;
  { ProgressBar bar({.terminal = true, .clock = clock.fn()}, os); }
  EXPECT_EQ(os.str(), "");  // no update, no output, even on a terminal
  ProgressBar bar({.print_every = 1, .terminal = false, .clock = clock.fn()}, os);
  bar.update({.step = 1, .loss = 0.75});
  bar.update({.step = 2});  // the loss of step 2 was not fetched from the device
  std::vector<std::string> lines = lines_of(os.str());
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[1].find("loss 0.7500"), std::string::npos) << lines[1];
}

}  // namespace
}  // namespace loom::train
