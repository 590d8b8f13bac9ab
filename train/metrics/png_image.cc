#include "train/metrics/png_image.h"

#include <zlib.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "core/error.h"
#include "train/io/atomic_file.h"
#include "train/metrics/bitmap_font.h"

namespace loom::train {
namespace {

void put_be32(std::vector<uint8_t>& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(uint8_t(v >> shift));
}

// length, type, data, CRC-32 of type and data.
void put_chunk(std::vector<uint8_t>& out, const char type[4], const std::vector<uint8_t>& data) {
  put_be32(out, uint32_t(data.size()));
  const size_t type_at = out.size();
  out.insert(out.end(), type, type + 4);
  out.insert(out.end(), data.begin(), data.end());
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, out.data() + type_at, uInt(4 + data.size()));
  put_be32(out, uint32_t(crc));
}

}  // namespace

Image::Image(int width, int height, Rgb background) : width_(width), height_(height) {
  LOOM_CHECK(width >= 1 && height >= 1 && width <= 16384 && height <= 16384, ValueError,
             "Image: size ", width, "x", height, " is outside 1..16384");
  pixels_.resize(size_t(width) * size_t(height) * 3);
  for (size_t i = 0; i < pixels_.size(); i += 3) {
    pixels_[i] = background.r;
    pixels_[i + 1] = background.g;
    pixels_[i + 2] = background.b;
  }
}

Rgb Image::at(int x, int y) const {
  LOOM_CHECK(x >= 0 && y >= 0 && x < width_ && y < height_, IndexError, "Image::at: pixel (", x,
             ", ", y, ") is outside the ", width_, "x", height_, " image");
  size_t i = (size_t(y) * size_t(width_) + size_t(x)) * 3;
  return {pixels_[i], pixels_[i + 1], pixels_[i + 2]};
}

void Image::set(int x, int y, Rgb c) {
  if (x < 0 || y < 0 || x >= width_ || y >= height_) return;
  size_t i = (size_t(y) * size_t(width_) + size_t(x)) * 3;
  pixels_[i] = c.r;
  pixels_[i + 1] = c.g;
  pixels_[i + 2] = c.b;
}

void Image::fill_rect(int x0, int y0, int x1, int y1, Rgb c) {
  if (x0 > x1) std::swap(x0, x1);
  if (y0 > y1) std::swap(y0, y1);
  x0 = std::max(x0, 0), y0 = std::max(y0, 0);
  x1 = std::min(x1, width_ - 1), y1 = std::min(y1, height_ - 1);
  for (int y = y0; y <= y1; ++y)
    for (int x = x0; x <= x1; ++x) set(x, y, c);
}

void Image::draw_rect(int x0, int y0, int x1, int y1, Rgb c) {
  draw_line(x0, y0, x1, y0, c);
  draw_line(x1, y0, x1, y1, c);
  draw_line(x1, y1, x0, y1, c);
  draw_line(x0, y1, x0, y0, c);
}

void Image::draw_line(int x0, int y0, int x1, int y1, Rgb c, int thickness) {
  // A square brush of `thickness` pixels centred on each Bresenham point.
  const int lo = -(thickness - 1) / 2, hi = thickness / 2;
  const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
  const int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
  int err = dx + dy;
  // Guard against absurd coordinates (a NaN cast to int upstream): stop after the longest line
  // that can cross the image.
  long long budget = 4LL * (width_ + height_) + 16;
  for (long long n = 0;; ++n) {
    if (thickness <= 1)
      set(x0, y0, c);
    else
      fill_rect(x0 + lo, y0 + lo, x0 + hi, y0 + hi, c);
    if ((x0 == x1 && y0 == y1) || n > budget) break;
    const int e2 = 2 * err;
    if (e2 >= dy) err += dy, x0 += sx;
    if (e2 <= dx) err += dx, y0 += sy;
  }
}

void Image::draw_text(int x, int y, const std::string& text, Rgb c, int scale) {
  scale = std::max(scale, 1);
  for (char ch : text) {
    const Glyph& g = glyph(ch);
    for (int r = 0; r < kGlyphHeight; ++r)
      for (int col = 0; col < kGlyphWidth; ++col)
        if (g.rows[r] & (1u << (kGlyphWidth - 1 - col)))
          fill_rect(x + col * scale, y + r * scale, x + col * scale + scale - 1,
                    y + r * scale + scale - 1, c);
    x += kGlyphAdvance * scale;
  }
}

std::vector<uint8_t> encode_png(const Image& image) {
  const size_t row_bytes = size_t(image.width()) * 3;
  // Each scanline starts with its filter type; 0 (none) compresses a flat-coloured plot well.
  std::vector<uint8_t> raw;
  raw.reserve((row_bytes + 1) * size_t(image.height()));
  for (int y = 0; y < image.height(); ++y) {
    raw.push_back(0);
    auto row = image.pixels().begin() + std::ptrdiff_t(size_t(y) * row_bytes);
    raw.insert(raw.end(), row, row + std::ptrdiff_t(row_bytes));
  }
  uLongf packed_size = compressBound(uLong(raw.size()));
  std::vector<uint8_t> packed(packed_size);
  int rc = compress2(packed.data(), &packed_size, raw.data(), uLong(raw.size()), 6);
  LOOM_CHECK(rc == Z_OK, IOError, "encode_png: zlib compress2 failed with code ", rc);
  packed.resize(packed_size);

  std::vector<uint8_t> ihdr;
  put_be32(ihdr, uint32_t(image.width()));
  put_be32(ihdr, uint32_t(image.height()));
  ihdr.insert(ihdr.end(),
              {8, 2, 0, 0, 0});  // 8-bit, truecolour RGB, deflate, filter 0, no interlace

  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  put_chunk(png, "IHDR", ihdr);
  put_chunk(png, "IDAT", packed);
  put_chunk(png, "IEND", {});
  return png;
}

void write_png(const std::string& path, const Image& image) {
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  LOOM_CHECK(!ec, IOError, "write_png: cannot create directory ", parent.string(), ": ",
             ec.message());
  write_file_atomic(path, encode_png(image));
}

}  // namespace loom::train
