#include "train/metrics/png_plot.h"

#include <zlib.h>

#include <cmath>
#include <cstring>

#include "tests/support/testing.h"
#include "tests/train/io/io_test_util.h"
#include "train/metrics/bitmap_font.h"

namespace loom::train {
namespace {

using loom::testing::read_bytes;
using loom::testing::TempDir;

uint32_t be32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}

struct DecodedPng {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;  // rows top to bottom
  std::vector<std::string> chunk_types;
  Rgb at(int x, int y) const {
    size_t i = (size_t(y) * size_t(width) + size_t(x)) * 3;
    return {rgb[i], rgb[i + 1], rgb[i + 2]};
  }
};

// A PNG reader independent of the writer: signature, chunk CRCs, IHDR, inflated IDAT with the
// filter types the writer may use (it uses 0; any other is reported).
DecodedPng decode_png(const std::vector<uint8_t>& b) {
  DecodedPng out;
  const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  EXPECT_GE(b.size(), 8u);
  EXPECT_EQ(std::memcmp(b.data(), sig, 8), 0) << "PNG signature";
  std::vector<uint8_t> idat;
  size_t at = 8;
  while (at + 12 <= b.size()) {
    uint32_t len = be32(&b[at]);
    EXPECT_LE(at + 12 + len, b.size()) << "chunk past end";
    if (at + 12 + len > b.size()) break;
    std::string type(reinterpret_cast<const char*>(&b[at + 4]), 4);
    out.chunk_types.push_back(type);
    uLong crc = crc32(crc32(0L, Z_NULL, 0), &b[at + 4], uInt(4 + len));
    EXPECT_EQ(be32(&b[at + 8 + len]), uint32_t(crc)) << "CRC of chunk " << type;
    const uint8_t* data = &b[at + 8];
    if (type == "IHDR") {
      EXPECT_EQ(len, 13u);
      out.width = int(be32(data));
      out.height = int(be32(data + 4));
      EXPECT_EQ(data[8], 8) << "bit depth";
      EXPECT_EQ(data[9], 2) << "colour type RGB";
      EXPECT_EQ(data[10], 0);
      EXPECT_EQ(data[11], 0);
      EXPECT_EQ(data[12], 0) << "interlace";
    } else if (type == "IDAT") {
      idat.insert(idat.end(), data, data + len);
    }
    at += 12 + len;
  }
  EXPECT_EQ(at, b.size()) << "bytes after the last chunk";
  const size_t stride = size_t(out.width) * 3 + 1;
  std::vector<uint8_t> raw(stride * size_t(out.height));
  uLongf raw_size = uLongf(raw.size());
  EXPECT_EQ(uncompress(raw.data(), &raw_size, idat.data(), uLong(idat.size())), Z_OK);
  EXPECT_EQ(raw_size, raw.size());
  for (int y = 0; y < out.height; ++y) {
    EXPECT_EQ(raw[size_t(y) * stride], 0) << "filter type of row " << y;
    out.rgb.insert(out.rgb.end(), raw.begin() + std::ptrdiff_t(size_t(y) * stride + 1),
                   raw.begin() + std::ptrdiff_t(size_t(y + 1) * stride));
  }
  return out;
}

int count_color(const DecodedPng& png, Rgb c, int x0, int y0, int x1, int y1) {
  int n = 0;
  for (int y = y0; y < y1; ++y)
    for (int x = x0; x < x1; ++x) n += png.at(x, y) == c;
  return n;
}

TrainingPlot sample_plot() {
  TrainingPlot plot;
  plot.title = "fashion-mnist cnn";
  PlotSeries train{"train", {}, {}}, eval{"eval", {}, {}}, acc_train{"train", {}, {}},
      acc_eval{"eval", {}, {}};
  for (int s = 0; s <= 2000; s += 20) {
    train.steps.push_back(s);
    train.values.push_back(0.25 + 2.0 * std::exp(-s / 300.0) + 0.03 * std::sin(s * 0.1));
    acc_train.steps.push_back(s);
    acc_train.values.push_back(0.93 - 0.8 * std::exp(-s / 250.0));
  }
  for (int s = 250; s <= 2000; s += 250) {
    eval.steps.push_back(s);
    eval.values.push_back(0.3 + 1.5 * std::exp(-s / 300.0));
    acc_eval.steps.push_back(s);
    acc_eval.values.push_back(0.91 - 0.7 * std::exp(-s / 250.0));
  }
  plot.loss = {train, eval};
  plot.accuracy = {acc_train, acc_eval};
  return plot;
}

TEST(BitmapFont, HasTheCharactersPlotsNeed) {
  for (char c :
       std::string("0123456789.-%abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ :/()"))
    EXPECT_TRUE(has_glyph(c)) << "'" << c << "'";
  EXPECT_FALSE(has_glyph('~'));
  // Unknown characters draw as '?'.
  EXPECT_EQ(std::memcmp(glyph('~').rows, glyph('?').rows, kGlyphHeight), 0);
  // '1' is a vertical stroke in the middle column with a foot: spot-check its art.
  EXPECT_EQ(glyph('1').rows[3], 0b00100);
  EXPECT_EQ(glyph('1').rows[6], 0b01110);
  EXPECT_EQ(glyph('-').rows[3], 0b11111);
  EXPECT_EQ(text_width("ab", 2), (2 * kGlyphAdvance - 1) * 2);
  // Every glyph but the space has ink; no two digits look alike.
  for (char c = '0'; c <= '9'; ++c)
    for (char d = char(c + 1); d <= '9'; ++d)
      EXPECT_NE(std::memcmp(glyph(c).rows, glyph(d).rows, kGlyphHeight), 0) << c << d;
}

TEST(PngImage, EncodesPixelsExactly) {
  Image img(7, 5, {10, 20, 30});
  img.set(0, 0, {255, 0, 0});
  img.set(6, 4, {0, 255, 0});
  img.set(100, 100, {1, 1, 1});  // clipped, no crash
  img.draw_line(0, 2, 6, 2, {0, 0, 255});
  DecodedPng png = decode_png(encode_png(img));
  ASSERT_EQ(png.width, 7);
  ASSERT_EQ(png.height, 5);
  EXPECT_EQ(png.chunk_types, (std::vector<std::string>{"IHDR", "IDAT", "IEND"}));
  EXPECT_EQ(png.rgb, img.pixels());
  EXPECT_EQ(png.at(0, 0), (Rgb{255, 0, 0}));
  EXPECT_EQ(png.at(6, 4), (Rgb{0, 255, 0}));
  EXPECT_EQ(png.at(3, 2), (Rgb{0, 0, 255}));
  EXPECT_EQ(png.at(3, 1), (Rgb{10, 20, 30}));
  EXPECT_THROW_WITH(img.at(7, 0), IndexError, "(7, 0)", "7x5");
  EXPECT_THROW_WITH(Image(0, 5), ValueError, "0x5");
}

TEST(PngImage, TextDrawsTheGlyphPixels) {
  Image img(20, 10);
  img.draw_text(1, 1, "1", {0, 0, 0});
  // Column 2 of '1' is inked in every row; columns 0 and 4 only in the last (the foot: .###.).
  for (int r = 0; r < kGlyphHeight; ++r) EXPECT_EQ(img.at(1 + 2, 1 + r), (Rgb{0, 0, 0})) << r;
  EXPECT_EQ(img.at(1 + 0, 1 + 3), (Rgb{255, 255, 255}));
  EXPECT_EQ(img.at(1 + 1, 1 + 6), (Rgb{0, 0, 0}));
}

TEST(TrainingPlot, WritesAValidPngWithCurvesInBothPanels) {
  TempDir dir;
  const std::string path = dir.file("plots/training.png");
  TrainingPlot plot = sample_plot();
  write_training_plot(path, plot);
  DecodedPng png = decode_png(read_bytes(path));
  ASSERT_EQ(png.width, plot.width);
  ASSERT_EQ(png.height, plot.height);
  const Rgb train = series_color(0), eval = series_color(1);
  EXPECT_NE(train, eval);
  // The loss panel is the top half and the accuracy panel the bottom half: both colours must
  // appear in each, as curves (many pixels), not just as legend swatches.
  const int w = png.width, h = png.height;
  EXPECT_GT(count_color(png, train, 0, 0, w, h / 2), 500);
  EXPECT_GT(count_color(png, eval, 0, 0, w, h / 2), 300);
  EXPECT_GT(count_color(png, train, 0, h / 2, w, h), 500);
  EXPECT_GT(count_color(png, eval, 0, h / 2, w, h), 300);
  // Black text (title, tick labels) exists, and most of the image is white background.
  EXPECT_GT(count_color(png, {0, 0, 0}, 0, 0, w, 60), 100);
  EXPECT_GT(count_color(png, {255, 255, 255}, 0, 0, w, h), w * h / 2);

  // The first training point (step 0, the highest loss) sits at the left edge near the top of
  // the loss plot: the left quarter of the top half holds train-coloured pixels above its middle.
  EXPECT_GT(count_color(png, train, 0, 0, w / 4, h / 4), 20);
}

TEST(TrainingPlot, EmptyPanelsAndNonFiniteValuesStillRender) {
  TrainingPlot plot;
  plot.width = 400;
  plot.height = 300;
  plot.loss = {{"train", {1, 2, 3, 4}, {1.0, NAN, 0.5, INFINITY}}, {"eval", {5}, {0.7}}};
  DecodedPng png = decode_png(encode_png(render_training_plot(plot)));
  EXPECT_EQ(png.width, 400);
  EXPECT_GT(count_color(png, series_color(1), 0, 0, 400, 150), 4);  // the single eval marker
  EXPECT_THROW_WITH(render_training_plot(TrainingPlot{.width = 100}), ValueError, "100x");
  plot.loss[0].values.pop_back();
  EXPECT_THROW_WITH(render_training_plot(plot), ValueError, "train", "4 steps", "3 values");
}

TEST(TrainingPlot, SeriesFromJsonlKeepTheLastRecordOfAStep) {
  std::vector<nlohmann::json> records = {
      {{"step", 1}, {"split", "train"}, {"loss", 2.0}},
      {{"step", 2}, {"split", "train"}, {"loss", 1.5}, {"accuracy", 0.5}},
      {{"step", 2}, {"split", "eval"}, {"loss", 1.7}, {"accuracy", 0.45}},
      {{"step", 3}, {"split", "train"}, {"loss", 1.2}},
      // A resumed run restarting after step 2 repeats step 3 with a different value.
      {{"step", 3}, {"split", "train"}, {"loss", 1.1}},
      {{"step", 4}, {"split", "train"}, {"loss", nullptr}},
      {{"note", "no step"}},
  };
  TrainingPlot plot = training_plot_from_jsonl(records, "run");
  EXPECT_EQ(plot.title, "run");
  ASSERT_EQ(plot.loss.size(), 2u);
  EXPECT_EQ(plot.loss[0].label, "train");
  EXPECT_EQ(plot.loss[0].steps, (std::vector<double>{1, 2, 3, 4}));
  EXPECT_EQ(plot.loss[0].values[2], 1.1);
  EXPECT_TRUE(std::isnan(plot.loss[0].values[3]));
  EXPECT_EQ(plot.loss[1].label, "eval");
  ASSERT_EQ(plot.accuracy.size(), 2u);
  EXPECT_EQ(plot.accuracy[0].values, (std::vector<double>{0.5}));
  EXPECT_EQ(plot.accuracy[1].values, (std::vector<double>{0.45}));
}

}  // namespace
}  // namespace loom::train
