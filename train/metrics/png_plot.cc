#include "train/metrics/png_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>

#include "core/error.h"
#include "train/metrics/bitmap_font.h"

namespace loom::train {
namespace {

constexpr Rgb kBlack{0, 0, 0};
constexpr Rgb kAxis{60, 60, 60};
constexpr Rgb kGrid{228, 228, 228};
constexpr Rgb kLegendBorder{170, 170, 170};

struct Range {
  double lo = std::numeric_limits<double>::infinity();
  double hi = -std::numeric_limits<double>::infinity();
  void add(double v) {
    if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  }
  bool empty() const { return lo > hi; }
};

// 1, 2 or 5 times a power of ten near range / target: tick spacing people read easily.
double nice_step(double range, int target) {
  double raw = range / target;
  double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double f = raw / mag;
  return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

std::vector<double> ticks(double lo, double hi, double step) {
  std::vector<double> out;
  for (double k = std::ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9 && out.size() < 50; ++k)
    out.push_back(std::fabs(k * step) < step * 1e-9 ? 0.0 : k * step);
  return out;
}

std::string format_fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, v);
  std::string s = buf;
  if (s.find_first_not_of("-0.") == std::string::npos) s = std::string(buf + (buf[0] == '-'));
  return s;
}

int decimals_for(double step) { return std::max(0, int(-std::floor(std::log10(step) + 1e-9))); }

std::string tick_label(double v, double step, bool percent) {
  if (percent) return format_fixed(v * 100, decimals_for(step * 100)) + "%";
  if (step >= 1e6 && std::fmod(step, 1e6) == 0) return format_fixed(v / 1e6, 0) + "M";
  if (step >= 1e3 && std::fmod(step, 1e3) == 0) return format_fixed(v / 1e3, 0) + "k";
  int d = decimals_for(step);
  if (d > 6) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.1e", v);
    return buf;
  }
  return format_fixed(v, d);
}

std::string value_label(double v, bool percent) {
  char buf[64];
  if (percent)
    std::snprintf(buf, sizeof(buf), "%.2f%%", v * 100);
  else
    std::snprintf(buf, sizeof(buf), "%.4g", v);
  return buf;
}

struct Panel {
  int x0, y0, x1, y1;  // plot area, inclusive
};

void draw_panel(Image& img, const Panel& p, const std::string& name,
                const std::vector<PlotSeries>& series, const std::vector<Rgb>& colors,
                bool allow_percent, int scale) {
  const int text_h = kGlyphHeight * scale;
  img.draw_text(p.x0, p.y0 - text_h - 4 * scale - 4, name, kBlack, scale);

  Range xr, yr;
  bool percent = allow_percent;
  for (const PlotSeries& s : series) {
    for (size_t i = 0; i < s.steps.size(); ++i) {
      if (!std::isfinite(s.values[i]) || !std::isfinite(s.steps[i])) continue;
      xr.add(s.steps[i]);
      yr.add(s.values[i]);
      if (s.values[i] < 0 || s.values[i] > 1) percent = false;
    }
  }
  img.draw_rect(p.x0, p.y0, p.x1, p.y1, kAxis);
  if (xr.empty()) {
    const std::string msg = "no data";
    img.draw_text((p.x0 + p.x1 - text_width(msg, scale)) / 2, (p.y0 + p.y1 - text_h) / 2, msg,
                  kAxis, scale);
    return;
  }
  if (xr.hi == xr.lo) xr.lo -= 1, xr.hi += 1;
  if (yr.hi == yr.lo) {
    double pad = yr.lo == 0 ? 1 : std::fabs(yr.lo) * 0.1;
    yr.lo -= pad, yr.hi += pad;
  }
  const double ypad = (yr.hi - yr.lo) * 0.04;
  const double ystep = nice_step(yr.hi - yr.lo + 2 * ypad, 5);
  double ylo = std::floor((yr.lo - ypad) / ystep) * ystep,
         yhi = std::ceil((yr.hi + ypad) / ystep) * ystep;
  if (percent) ylo = std::max(ylo, 0.0), yhi = std::min(yhi, std::max(1.0, yr.hi));
  const double xstep = nice_step(xr.hi - xr.lo, 8);

  auto px = [&](double x) {
    double f = (x - xr.lo) / (xr.hi - xr.lo);
    return p.x0 + int(std::lround(std::clamp(f, 0.0, 1.0) * (p.x1 - p.x0)));
  };
  auto py = [&](double y) {
    double f = (y - ylo) / (yhi - ylo);
    return p.y1 - int(std::lround(std::clamp(f, 0.0, 1.0) * (p.y1 - p.y0)));
  };

  const int tick_len = 3 * scale;
  for (double y : ticks(ylo, yhi, ystep)) {
    int yy = py(y);
    if (yy > p.y0 && yy < p.y1) img.draw_line(p.x0 + 1, yy, p.x1 - 1, yy, kGrid);
    img.draw_line(p.x0 - tick_len, yy, p.x0, yy, kAxis);
    std::string label = tick_label(y, ystep, percent);
    img.draw_text(p.x0 - tick_len - 4 - text_width(label, scale), yy - text_h / 2, label, kBlack,
                  scale);
  }
  for (double x : ticks(xr.lo, xr.hi, xstep)) {
    int xx = px(x);
    if (xx > p.x0 && xx < p.x1) img.draw_line(xx, p.y0 + 1, xx, p.y1 - 1, kGrid);
    img.draw_line(xx, p.y1, xx, p.y1 + tick_len, kAxis);
    std::string label = tick_label(x, xstep, false);
    img.draw_text(xx - text_width(label, scale) / 2, p.y1 + tick_len + 4, label, kBlack, scale);
  }
  img.draw_text((p.x0 + p.x1 - text_width("step", scale)) / 2, p.y1 + tick_len + 8 + text_h, "step",
                kAxis, scale);

  // Curves, with markers where points are sparse (eval curves) so single points show.
  std::vector<std::string> legend;
  for (size_t k = 0; k < series.size(); ++k) {
    const PlotSeries& s = series[k];
    const Rgb c = colors[k];
    const bool markers = s.steps.size() <= 60;
    bool have_prev = false;
    int prev_x = 0, prev_y = 0;
    double last = std::numeric_limits<double>::quiet_NaN();
    for (size_t i = 0; i < s.steps.size(); ++i) {
      if (!std::isfinite(s.values[i]) || !std::isfinite(s.steps[i])) {
        have_prev = false;
        continue;
      }
      int x = px(s.steps[i]), y = py(s.values[i]);
      if (have_prev) img.draw_line(prev_x, prev_y, x, y, c, scale);
      if (markers) img.fill_rect(x - scale - 1, y - scale - 1, x + scale + 1, y + scale + 1, c);
      have_prev = true, prev_x = x, prev_y = y, last = s.values[i];
    }
    legend.push_back(std::isfinite(last) ? s.label + " " + value_label(last, percent) : s.label);
  }

  // Legend in the top-right corner: a colour swatch and "label last-value" per series.
  const int swatch = 8 * scale, gap = 3 * scale, row_h = text_h + 4 * scale;
  int text_w = 0;
  for (const std::string& l : legend) text_w = std::max(text_w, text_width(l, scale));
  const int box_w = gap + swatch + gap + text_w + gap;
  const int box_h = gap + row_h * int(legend.size()) - 4 * scale + gap;
  // Placed where it hides the least of the curves (as matplotlib's loc="best"): the candidate
  // box covering the fewest already-drawn curve pixels, top-right first on ties.
  const int m = 4 * scale;
  const int xs[] = {p.x1 - m - box_w, p.x0 + m, (p.x0 + p.x1 - box_w) / 2};
  const int ys[] = {p.y0 + m, p.y1 - m - box_h, (p.y0 + p.y1 - box_h) / 2};
  const std::pair<int, int> candidates[] = {{0, 0}, {0, 1}, {1, 0}, {1, 1},
                                            {0, 2}, {2, 0}, {2, 1}, {1, 2}};
  int bx0 = xs[0], by0 = ys[0];
  long best = -1;
  for (auto [xi, yi] : candidates) {
    long covered = 0;
    for (int y = std::max(ys[yi], p.y0 + 1); y <= std::min(ys[yi] + box_h, p.y1 - 1); ++y)
      for (int x = std::max(xs[xi], p.x0 + 1); x <= std::min(xs[xi] + box_w, p.x1 - 1); ++x) {
        Rgb c = img.at(x, y);
        covered += !(c == Rgb{255, 255, 255}) && !(c == kGrid);
      }
    if (best < 0 || covered < best) best = covered, bx0 = xs[xi], by0 = ys[yi];
  }
  const int bx1 = bx0 + box_w;
  img.fill_rect(bx0, by0, bx1, by0 + box_h, {255, 255, 255});
  img.draw_rect(bx0, by0, bx1, by0 + box_h, kLegendBorder);
  for (size_t k = 0; k < legend.size(); ++k) {
    int ty = by0 + gap + row_h * int(k);
    img.fill_rect(bx0 + gap, ty + text_h / 2 - scale / 2 - 1, bx0 + gap + swatch,
                  ty + text_h / 2 + scale / 2 + 1, colors[k]);
    img.draw_text(bx0 + gap + swatch + gap, ty, legend[k], kBlack, scale);
  }
}

}  // namespace

Rgb series_color(size_t index) {
  // matplotlib's tab10 order: blue, orange, green, red, purple, brown.
  static const Rgb palette[] = {{31, 119, 180}, {255, 127, 14},  {44, 160, 44},
                                {214, 39, 40},  {148, 103, 189}, {140, 86, 75}};
  return palette[index % (sizeof(palette) / sizeof(palette[0]))];
}

Image render_training_plot(const TrainingPlot& plot) {
  LOOM_CHECK(plot.width >= 320 && plot.height >= 240 && plot.width <= 8192 && plot.height <= 8192,
             ValueError, "write_training_plot: size ", plot.width, "x", plot.height,
             " is outside 320x240..8192x8192");
  for (const auto* panel : {&plot.loss, &plot.accuracy})
    for (const PlotSeries& s : *panel)
      LOOM_CHECK(s.steps.size() == s.values.size(), ValueError, "write_training_plot: series '",
                 s.label, "' has ", s.steps.size(), " steps but ", s.values.size(), " values");

  Image img(plot.width, plot.height);
  const int scale = plot.width >= 720 && plot.height >= 540 ? 2 : 1;
  const int title_scale = scale + 1;
  const int title_h = kGlyphHeight * title_scale;
  img.draw_text((plot.width - text_width(plot.title, title_scale)) / 2, 10 * scale, plot.title,
                kBlack, title_scale);

  const int text_h = kGlyphHeight * scale;
  const int top = 10 * scale + title_h + 6 * scale;
  const int panel_h = (plot.height - top) / 2;
  const int left = 12 * scale + text_width("00.00%", scale) + 8 * scale;
  const int right = plot.width - 12 * scale;
  // One colour per label across both panels, so "eval" has the same colour in each even when
  // only one panel has a "train" series.
  std::vector<std::string> labels;
  auto color_of = [&](const std::string& label) {
    auto it = std::find(labels.begin(), labels.end(), label);
    if (it == labels.end()) it = labels.insert(labels.end(), label);
    return series_color(size_t(it - labels.begin()));
  };
  std::vector<Rgb> colors[2];
  for (const PlotSeries& s : plot.loss) colors[0].push_back(color_of(s.label));
  for (const PlotSeries& s : plot.accuracy) colors[1].push_back(color_of(s.label));
  for (int k = 0; k < 2; ++k) {
    const int py0 = top + k * panel_h;
    Panel p{left, py0 + text_h + 10 * scale, right, py0 + panel_h - (2 * text_h + 20 * scale)};
    draw_panel(img, p, k == 0 ? "loss" : "accuracy", k == 0 ? plot.loss : plot.accuracy, colors[k],
               /*allow_percent=*/k == 1, scale);
  }
  return img;
}

void write_training_plot(const std::string& path, const TrainingPlot& plot) {
  write_png(path, render_training_plot(plot));
}

TrainingPlot training_plot_from_jsonl(const std::vector<nlohmann::json>& records,
                                      const std::string& title) {
  std::vector<std::string> splits;
  std::map<std::string, std::map<double, double>> loss, accuracy;
  for (const nlohmann::json& r : records) {
    if (!r.is_object() || !r.contains("step") || !r["step"].is_number()) continue;
    const std::string split =
        r.contains("split") && r["split"].is_string() ? r["split"].get<std::string>() : "train";
    const double step = r["step"].get<double>();
    bool used = false;
    // null (a NaN when written) is kept as NaN so the curve shows the gap.
    for (auto [key, table] : {std::pair{"loss", &loss}, std::pair{"accuracy", &accuracy}}) {
      if (!r.contains(key)) continue;
      const nlohmann::json& v = r[key];
      if (!v.is_number() && !v.is_null()) continue;
      (*table)[split][step] = v.is_number() ? v.get<double>() : std::nan("");
      used = true;
    }
    if (used && std::find(splits.begin(), splits.end(), split) == splits.end())
      splits.push_back(split);
  }
  TrainingPlot plot;
  plot.title = title;
  for (const std::string& split : splits) {
    for (auto [table, out] : {std::pair{&loss, &plot.loss}, std::pair{&accuracy, &plot.accuracy}}) {
      auto it = table->find(split);
      if (it == table->end()) continue;
      PlotSeries s{split, {}, {}};
      for (const auto& [step, value] : it->second)
        s.steps.push_back(step), s.values.push_back(value);
      out->push_back(std::move(s));
    }
  }
  return plot;
}

}  // namespace loom::train
