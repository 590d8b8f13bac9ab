// A small RGB raster with the drawing the training plot needs (rectangles, thick lines, bitmap
// text) and a PNG encoder (8-bit RGB, no interlace, zlib-compressed IDAT with filter 0, chunk
// CRCs from zlib's crc32), so loom writes plots without an image library.
//
// Example:
//   Image img(320, 200);                       // white
//   img.draw_line(10, 190, 310, 10, {31, 119, 180}, 2);
//   img.draw_text(10, 10, "loss 0.25", {0, 0, 0});
//   write_png("plot.png", img);
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace loom::train {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
  bool operator==(const Rgb&) const = default;
};

class Image {
 public:
  /// ValueError unless 1 <= width, height <= 16384.
  Image(int width, int height, Rgb background = {255, 255, 255});
  int width() const { return width_; }
  int height() const { return height_; }
  /// Pixel (x, y), x to the right and y down from the top-left corner; IndexError outside.
  Rgb at(int x, int y) const;
  /// Drawing clips to the image silently: plots draw partly outside near their edges.
  void set(int x, int y, Rgb c);
  /// Fills x0 <= x <= x1, y0 <= y <= y1 (corners in any order).
  void fill_rect(int x0, int y0, int x1, int y1, Rgb c);
  /// Outline of the same rectangle, one pixel wide.
  void draw_rect(int x0, int y0, int x1, int y1, Rgb c);
  /// A straight line between the two points (Bresenham), `thickness` pixels wide.
  void draw_line(int x0, int y0, int x1, int y1, Rgb c, int thickness = 1);
  /// `text` in the built-in 5x7 font with its top-left corner at (x, y), each font pixel a
  /// scale x scale square.
  void draw_text(int x, int y, const std::string& text, Rgb c, int scale = 1);
  /// Rows top to bottom, 3 bytes per pixel.
  const std::vector<uint8_t>& pixels() const { return pixels_; }

 private:
  int width_, height_;
  std::vector<uint8_t> pixels_;
};

/// The PNG file's bytes.
std::vector<uint8_t> encode_png(const Image& image);
/// Writes the PNG atomically (write_file_atomic): a viewer never sees a half-written plot.
void write_png(const std::string& path, const Image& image);

}  // namespace loom::train
