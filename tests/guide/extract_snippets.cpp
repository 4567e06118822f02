// Reads a Markdown file and writes one C++ translation unit holding every
// ```cpp block: #include lines are hoisted to the top, each block's body is
// wrapped in a namespace of its own, so that all blocks compile together
// (once) and may reuse names.
//
//   extract_snippets <guide.md> <out.cpp>

#include <fstream>
#include <iostream>
#include <set>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: extract_snippets <guide.md> <out.cpp>\n";
    return 2;
  }
  std::ifstream in(argv[1]);
  if (!in) {
    std::cerr << "extract_snippets: cannot read " << argv[1] << "\n";
    return 2;
  }
  std::vector<std::string> includes;
  std::set<std::string> seen_includes;
  std::vector<std::vector<std::string>> bodies;
  std::string line;
  bool in_block = false;
  int line_no = 0;
  std::vector<int> block_lines;
  while (std::getline(in, line)) {
    ++line_no;
    if (!in_block) {
      if (line == "```cpp") {
        in_block = true;
        bodies.emplace_back();
        block_lines.push_back(line_no);
      }
      continue;
    }
    if (line == "```") {
      in_block = false;
      continue;
    }
    if (line.rfind("#include", 0) == 0) {
      if (seen_includes.insert(line).second) includes.push_back(line);
    } else {
      bodies.back().push_back(line);
    }
  }
  if (in_block) {
    std::cerr << "extract_snippets: unterminated ```cpp block starting at line "
              << block_lines.back() << "\n";
    return 1;
  }
  if (bodies.empty()) {
    std::cerr << "extract_snippets: no ```cpp block in " << argv[1] << "\n";
    return 1;
  }
  std::ofstream out(argv[2]);
  out << "// Generated from " << argv[1] << " by extract_snippets; do not edit.\n";
  for (const auto& inc : includes) out << inc << "\n";
  for (std::size_t i = 0; i < bodies.size(); ++i) {
    out << "\n#line " << block_lines[i] + 1 << " \"" << argv[1] << "\"\n";
    out << "namespace guide_snippet_" << i << " {\n";
    for (const auto& l : bodies[i]) out << l << "\n";
    out << "}  // namespace guide_snippet_" << i << "\n";
  }
  std::cout << "extract_snippets: " << bodies.size() << " blocks\n";
  return out ? 0 : 1;
}
