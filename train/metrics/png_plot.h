// The end-of-training plot: a PNG with two panels, loss curves on top and accuracy curves below
// (train and eval series in matching colours), with axes, grid, numeric tick labels, a title
// and a legend in the built-in bitmap font.
//
// Example:
//   TrainingPlot plot = training_plot_from_jsonl(read_jsonl("runs/x/metrics.jsonl"), "cnn");
//   write_training_plot("runs/x/training.png", plot);
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "train/metrics/png_image.h"

namespace loom::train {

struct PlotSeries {
  std::string label{};           // legend text, e.g. "train", "eval"
  std::vector<double> steps{};   // x values
  std::vector<double> values{};  // y values; non-finite values break the curve
};

struct TrainingPlot {
  std::string title = "training";
  std::vector<PlotSeries> loss{};
  std::vector<PlotSeries> accuracy{};  // fractions in [0, 1] are labelled as percentages
  int width = 960, height = 760;
};

/// The i-th colour of the palette; a plot gives each distinct label (in order of first
/// appearance, loss panel first) its own colour, the same in both panels.
Rgb series_color(size_t index);

/// Draws the plot. ValueError when a series' steps and values differ in length or the size is
/// too small (under 320x240) to lay out.
Image render_training_plot(const TrainingPlot& plot);
/// Renders and writes the PNG atomically.
void write_training_plot(const std::string& path, const TrainingPlot& plot);

/// Loss and accuracy series per "split" (in order of first appearance) from metrics lines
/// (JsonlWriter's format). Records without a numeric "step" are skipped; when a step appears
/// more than once in a split (a resumed run repeats the steps after its checkpoint) the last
/// record wins. Series are sorted by step.
TrainingPlot training_plot_from_jsonl(const std::vector<nlohmann::json>& records,
                                      const std::string& title = "training");

}  // namespace loom::train
