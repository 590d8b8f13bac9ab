// A tiny built-in 5x7 pixel font for labelling plots without a font library: digits, upper- and
// lower-case letters and ". - % : / ( ) _ + , = ? <space>". Characters it lacks draw as '?'.
//
// Example:
//   const Glyph& g = glyph('7');
//   if (g.rows[0] & (1u << (kGlyphWidth - 1))) { /* top-left pixel is set */ }
#pragma once
#include <cstdint>
#include <string>

namespace loom::train {

inline constexpr int kGlyphWidth = 5;
inline constexpr int kGlyphHeight = 7;
inline constexpr int kGlyphAdvance = 6;  // one column of spacing between characters

struct Glyph {
  // Row r (0 = top): bit (kGlyphWidth - 1 - c) is column c (0 = left).
  uint8_t rows[kGlyphHeight] = {};
};

/// The glyph for `c`; the '?' glyph for characters the font lacks.
const Glyph& glyph(char c);
/// Whether the font has a glyph of its own for `c`.
bool has_glyph(char c);
/// Width in pixels of `text` drawn at `scale` (no trailing spacing column).
int text_width(const std::string& text, int scale = 1);

}  // namespace loom::train
