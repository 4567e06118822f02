// Reads a Markdown file and writes one C++ translation unit holding every
// ```cpp block: #include lines are hoisted to the top, each block's body is
// wrapped in a namespace of its own, so that all blocks compile together
// (once) and may reuse names. ```cmake blocks go, one after the other, to a
// second file when asked for.
//
//   extract_snippets <guide.md> <out.cpp> [--cmake <out.cmake>] [--expect-at-least <n>]
//
// Every fence must name its language, and only the languages below are
// accepted: a block written ```c++, ```C++ or without a language would
// otherwise be skipped silently and its code never compiled. Fences may be
// indented (a block inside a list item); the indentation is removed.
// --expect-at-least fails when fewer ```cpp blocks are found, which catches
// blocks lost to an edit (a deleted fence line merging a block into the
// next, a block turned into another language).

#include <algorithm>
#include <charconv>
#include <fstream>
#include <iostream>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace {

// Languages a fence may name; only cpp is compiled, cmake is extracted.
const std::set<std::string, std::less<>> known_languages = {"cpp", "cmake", "sh", "text", "json", "yaml"};

struct fence {
  std::size_t indent = 0;
  std::string info;
};

// The fence on `line`, if it is one: up to the block's indentation, three
// backquotes, an optional info string.
bool parse_fence(const std::string& line, fence& f) {
  const std::size_t indent = line.find_first_not_of(' ');
  if (indent == std::string::npos || line.compare(indent, 3, "```") != 0) return false;
  f.indent = indent;
  f.info = line.substr(indent + 3);
  while (!f.info.empty() && (f.info.back() == ' ' || f.info.back() == '\r')) f.info.pop_back();
  return true;
}

struct block {
  int first_line = 0;  // of the block's first code line
  std::vector<std::string> lines;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: extract_snippets <guide.md> <out.cpp> [--cmake <out.cmake>] [--expect-at-least <n>]\n";
    return 2;
  }
  const std::string guide = argv[1];
  const std::string out_cpp = argv[2];
  std::string out_cmake;
  std::size_t expected = 0;
  for (int i = 3; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--cmake" && i + 1 < argc) {
      out_cmake = argv[++i];
    } else if (a == "--expect-at-least" && i + 1 < argc) {
      const std::string_view n = argv[++i];
      if (std::from_chars(n.data(), n.data() + n.size(), expected).ec != std::errc{}) {
        std::cerr << "extract_snippets: --expect-at-least takes a number\n";
        return 2;
      }
    } else {
      std::cerr << "extract_snippets: unexpected argument '" << a << "'\n";
      return 2;
    }
  }

  std::ifstream in(guide);
  if (!in) {
    std::cerr << "extract_snippets: cannot read " << guide << "\n";
    return 2;
  }
  std::vector<block> cpp_blocks;
  std::vector<block> cmake_blocks;
  std::string line;
  int line_no = 0;
  bool in_block = false;
  int opened_at = 0;
  fence open;
  block* current = nullptr;  // null inside a block that is not extracted
  int errors = 0;
  while (std::getline(in, line)) {
    ++line_no;
    fence f;
    const bool is_fence = parse_fence(line, f);
    if (!in_block) {
      if (!is_fence) continue;
      in_block = true;
      opened_at = line_no;
      open = f;
      current = nullptr;
      if (!known_languages.contains(f.info)) {
        std::cerr << guide << ":" << line_no << ": a code block fenced ```" << f.info
                  << ": C++ blocks are ```cpp (compiled); other blocks name one of cmake, sh, text, json, yaml\n";
        ++errors;
      } else if (f.info == "cpp") {
        cpp_blocks.push_back({line_no + 1, {}});
        current = &cpp_blocks.back();
      } else if (f.info == "cmake") {
        cmake_blocks.push_back({line_no + 1, {}});
        current = &cmake_blocks.back();
      }
      continue;
    }
    if (is_fence && f.info.empty() && f.indent <= open.indent) {
      in_block = false;
      continue;
    }
    if (!current) continue;
    // Remove the fence's indentation (no more than the line has).
    const std::size_t lead = line.find_first_not_of(' ');
    line.erase(0, std::min(open.indent, lead == std::string::npos ? line.size() : lead));
    current->lines.push_back(line);
  }
  if (in_block) {
    std::cerr << guide << ":" << opened_at << ": code block never closed\n";
    ++errors;
  }
  if (errors) return 1;
  if (cpp_blocks.size() < std::max<std::size_t>(expected, 1)) {
    std::cerr << "extract_snippets: " << cpp_blocks.size() << " ```cpp blocks in " << guide << ", expected at least "
              << std::max<std::size_t>(expected, 1) << "\n";
    return 1;
  }

  std::vector<std::string> includes;
  std::set<std::string> seen_includes;
  for (auto& b : cpp_blocks) {
    std::vector<std::string> body;
    for (auto& l : b.lines) {
      if (l.rfind("#include", 0) == 0) {
        if (seen_includes.insert(l).second) includes.push_back(l);
        body.emplace_back();  // keeps #line numbering exact
      } else {
        body.push_back(std::move(l));
      }
    }
    b.lines = std::move(body);
  }
  std::ofstream out(out_cpp);
  out << "// Generated from " << guide << " by extract_snippets; do not edit.\n";
  for (const auto& inc : includes) out << inc << "\n";
  for (std::size_t i = 0; i < cpp_blocks.size(); ++i) {
    out << "\nnamespace guide_snippet_" << i << " {\n";
    out << "#line " << cpp_blocks[i].first_line << " \"" << guide << "\"\n";
    for (const auto& l : cpp_blocks[i].lines) out << l << "\n";
    out << "}  // namespace guide_snippet_" << i << "\n";
  }
  if (!out) return 1;
  if (!out_cmake.empty()) {
    std::ofstream cm(out_cmake);
    cm << "# Generated from " << guide << " by extract_snippets; do not edit.\n";
    for (const auto& b : cmake_blocks) {
      cm << "# " << guide << ":" << b.first_line << "\n";
      for (const auto& l : b.lines) cm << l << "\n";
    }
    if (!cm) return 1;
  }
  std::cout << "extract_snippets: " << cpp_blocks.size() << " C++ blocks, " << cmake_blocks.size()
            << " CMake blocks\n";
  return 0;
}
