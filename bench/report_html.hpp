#ifndef COPORT_BENCH_REPORT_HTML_HPP
#define COPORT_BENCH_REPORT_HTML_HPP

// The HTML report of a coport-bench run: one self-contained page (inline CSS
// and SVG, no script, nothing fetched) with the ratios charted against their
// aims, a table per kind of figure and the machine the run was made on.

#include <boost/json/object.hpp>

#include <filesystem>
#include <vector>

namespace coport_bench {

/// Writes DIR/index.html (self-contained: inline CSS and inline SVG, no
/// script, no network reference of any kind) and DIR/results.json (the
/// lines, one JSON object per line, as given). Creates DIR if missing.
/// Throws std::runtime_error naming the path when it cannot write.
///
/// Each line has "name", "kind" ("measurement", "ratio", "memory",
/// "throughput", "external"; any other kind is listed as it is), "value"
/// (a number, or null for a failed measurement) and "unit"; optionally
/// "description", "min", "max", "samples", and an "aim" with "aim_is"
/// ("at most", the default, or "at least") and "met". `machine` is shown
/// key by key; its "date" and "mode" also head the page.
void write_html_report(const std::filesystem::path& dir, const std::vector<boost::json::object>& lines,
                       const boost::json::object& machine);

}  // namespace coport_bench

#endif
