// docs/linen_to_loom.md shows only code that runs: each C++ block there follows a
// "<!-- snippet: FILE#NAME -->" line and must equal (up to indentation) the lines between
// "// [doc:NAME]" and "// [end]" in FILE, a test.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "tests/support/testing.h"

namespace loom {
namespace {

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw IOError("cannot open " + path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

/// Lines without their common leading indentation, joined with '\n'.
std::string dedent(const std::vector<std::string>& lines) {
  size_t indent = std::string::npos;
  for (const auto& l : lines)
    if (!trim(l).empty()) indent = std::min(indent, l.find_first_not_of(' '));
  std::string out;
  for (const auto& l : lines) out += (trim(l).empty() ? "" : l.substr(indent)) + "\n";
  return out;
}

TEST(SeedDocs, EveryCppBlockIsCopiedFromATest) {
  const std::string root = LOOM_SOURCE_DIR;
  std::vector<std::string> doc = read_lines(root + "/docs/linen_to_loom.md");
  int snippets = 0, cpp_blocks = 0;
  for (size_t i = 0; i < doc.size(); ++i) {
    if (doc[i] == "```cpp") ++cpp_blocks;
    const std::string tag = "<!-- snippet: ";
    if (doc[i].rfind(tag, 0) != 0) continue;
    std::string ref = doc[i].substr(tag.size(), doc[i].size() - tag.size() - 4);
    std::string file = ref.substr(0, ref.find('#')), name = ref.substr(ref.find('#') + 1);
    SCOPED_TRACE(ref);
    ASSERT_LT(i + 1, doc.size());
    ASSERT_EQ(doc[i + 1], "```cpp");
    std::vector<std::string> block;
    size_t j = i + 2;
    for (; j < doc.size() && doc[j] != "```"; ++j) block.push_back(doc[j]);
    std::vector<std::string> src = read_lines(root + "/" + file), marked;
    bool inside = false, found = false;
    for (const auto& l : src) {
      if (trim(l) == "// [doc:" + name + "]") {
        inside = found = true;
      } else if (inside && trim(l) == "// [end]") {
        inside = false;
      } else if (inside) {
        marked.push_back(l);
      }
    }
    ASSERT_TRUE(found) << "no // [doc:" << name << "] in " << file;
    EXPECT_EQ(dedent(block), dedent(marked));
    ++snippets;
  }
  EXPECT_EQ(snippets, cpp_blocks) << "a C++ block without a snippet reference";
  EXPECT_GE(snippets, 15);
}

}  // namespace
}  // namespace loom
