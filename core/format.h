// Number formatting shared by the text summaries (Tree::summary, nn tabulate).
#pragma once
#include <cstdint>
#include <string>

namespace loom {

/// n with thousands separators: 1234567 -> "1,234,567", -1234 -> "-1,234".
std::string with_commas(int64_t n);
/// A byte count in binary units: "512 B", "1.25 KiB", "3.00 MiB" (up to TiB).
std::string human_bytes(double bytes);

}  // namespace loom
