// The HTML report of a coport-bench run (see report_html.hpp).
//
// The page is built as one string: a header with the verdict on the aims, an
// SVG chart of the ratios against their aims, a table per kind of figure, the
// machine and run, and a footer. Every piece of text from the results goes
// through escape(); numbers go through format_number(), which never prints
// NaN because a missing or non-finite figure never becomes a double here.

#include "report_html.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

namespace coport_bench {

namespace {

namespace json = boost::json;

// ------------------------------------------------------------ reading lines

std::optional<double> number_at(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || !v->is_number()) return std::nullopt;
  const double d = v->to_number<double>();
  if (!std::isfinite(d)) return std::nullopt;
  return d;
}

std::string string_at(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || !v->is_string()) return {};
  return std::string(v->get_string());
}

enum class verdict { informative, met, missed };

/// One result line, read once; absent or null numbers stay empty.
struct figure {
  const json::object* line = nullptr;
  std::string name;
  std::string kind;
  std::string unit;
  std::string description;
  std::optional<double> value;
  std::optional<double> min;
  std::optional<double> max;
  std::optional<double> aim;
  bool at_least = false;
  verdict judged = verdict::informative;
};

figure read_figure(const json::object& o) {
  figure f;
  f.line = &o;
  f.name = string_at(o, "name");
  f.kind = string_at(o, "kind");
  f.unit = string_at(o, "unit");
  f.description = string_at(o, "description");
  f.value = number_at(o, "value");
  f.min = number_at(o, "min");
  f.max = number_at(o, "max");
  f.aim = number_at(o, "aim");
  f.at_least = string_at(o, "aim_is") == "at least";
  if (f.aim) {
    // The line's own "met" decides; a line without one is judged on its
    // figure, and a line with an aim but no figure has missed it.
    const json::value* met = o.if_contains("met");
    bool ok = false;
    if (met != nullptr && met->is_bool()) {
      ok = met->get_bool();
    } else if (f.value) {
      ok = f.at_least ? *f.value >= *f.aim : *f.value <= *f.aim;
    }
    f.judged = ok ? verdict::met : verdict::missed;
  }
  return f;
}

/// A figure that is itself a ratio is charted as it is; any other figure
/// with an aim (bytes per request, say) is charted as value / aim.
bool is_ratio(const figure& f) {
  return f.kind == "ratio" || f.unit == "ratio" || f.unit == "x" || f.unit == "\u00d7";
}

// ------------------------------------------------------------------ text

std::string escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (const char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

constexpr std::string_view dash = "\u2013";

/// Three significant digits below 1000 (12.5, 0.523), whole numbers with
/// thousands separators from there on (1,234,567).
std::string format_number(double v) {
  char buf[64];
  if (std::fabs(v) < 999.5) {
    std::snprintf(buf, sizeof buf, "%.3g", v);
    return buf;
  }
  std::snprintf(buf, sizeof buf, "%.0f", std::fabs(v));
  const std::string digits = buf;
  std::string out = v < 0 ? "-" : "";
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string format_number(const std::optional<double>& v) { return v ? format_number(*v) : std::string(dash); }

std::string format_range(const figure& f) {
  if (!f.min && !f.max) return std::string(dash);
  return format_number(f.min) + " .. " + format_number(f.max);
}

/// "≤ 5" or "≥ 1.7"; a dash without an aim.
std::string format_aim(const figure& f) {
  if (!f.aim) return std::string(dash);
  return std::string(f.at_least ? "\u2265 " : "\u2264 ") + format_number(*f.aim);
}

/// A figure as the chart and the summary show it: "12.5×", "1,180 bytes".
std::string format_value(const figure& f) {
  if (!f.value) return "no figure";
  if (is_ratio(f)) return format_number(*f.value) + "\u00d7";
  return f.unit.empty() ? format_number(*f.value) : format_number(*f.value) + " " + f.unit;
}

/// A machine value as written: strings as they are, numbers in their
/// shortest exact form, anything else as JSON.
std::string format_json(const json::value& v) {
  if (v.is_string()) return std::string(v.get_string());
  if (v.is_bool()) return v.get_bool() ? "yes" : "no";
  if (v.is_null()) return std::string(dash);
  if (v.is_double()) {
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof buf, v.get_double());
    return std::string(buf, r.ptr);
  }
  return json::serialize(v);
}

// --------------------------------------------------------------- colours

struct palette {
  const char* bar;   // bar fill
  const char* text;  // the figure's label, darker for contrast on white
};

palette colours(verdict v) {
  switch (v) {
    case verdict::met: return {"#2f9e44", "#1e7a31"};
    case verdict::missed: return {"#e8590c", "#c2410c"};
    case verdict::informative: break;
  }
  return {"#8ea4bd", "#4a5d73"};
}

constexpr const char* ink = "#1f2933";

// ----------------------------------------------------------------- chart

/// A row of the chart: the figure and where it is drawn (its value and aim,
/// divided by the aim for figures that are not ratios).
struct chart_row {
  const figure* f;
  bool normalised;
  std::optional<double> value;
  std::optional<double> min;
  std::optional<double> max;
  std::optional<double> aim;
};

/// A logarithmic x axis on the steps 1-2-5 of each decade, always
/// containing 1.
class log_axis {
 public:
  log_axis(double lo, double hi, double x0, double x1) : x0_(x0), x1_(x1) {
    lo = std::clamp(lo, 1e-3, 1.0);
    hi = std::clamp(hi, 1.0, 1e6);
    const int first = static_cast<int>(std::floor(std::log10(lo))) - 1;
    const int last = static_cast<int>(std::ceil(std::log10(hi))) + 1;
    std::vector<double> steps;
    for (int e = first; e <= last; ++e) {
      for (const double m : {1.0, 2.0, 5.0}) steps.push_back(m * std::pow(10.0, e));
    }
    // The largest step at or below lo and the smallest at or above hi; the
    // slack keeps a figure of exactly 2 (say) from opening a new step.
    lo_ = *std::find_if(steps.rbegin(), steps.rend(), [&](double s) { return s <= lo * (1 + 1e-9); });
    hi_ = *std::find_if(steps.begin(), steps.end(), [&](double s) { return s >= hi * (1 - 1e-9); });
    for (const double s : steps) {
      if (s >= lo_ && s <= hi_) ticks_.push_back(s);
    }
    // Over many decades the 2 and 5 steps would crowd the labels.
    if (ticks_.size() > 12) {
      std::erase_if(ticks_, [](double s) {
        const double m = s / std::pow(10.0, std::floor(std::log10(s) + 1e-9));
        return std::fabs(m - 1.0) > 1e-6;
      });
    }
  }

  /// The x coordinate of v, clamped to the axis.
  double x(double v) const {
    if (v <= lo_) return x0_;
    if (v >= hi_) return x1_;
    return x0_ + (x1_ - x0_) * std::log(v / lo_) / std::log(hi_ / lo_);
  }

  const std::vector<double>& ticks() const { return ticks_; }

 private:
  double x0_;
  double x1_;
  double lo_ = 1;
  double hi_ = 1;
  std::vector<double> ticks_;
};

std::string fixed(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

/// A name that fits the label column, shortened in the middle if need be
/// (names share their prefixes, so both ends are kept). Counts bytes, which
/// is close enough for the ASCII names the benchmark uses; the cuts are moved
/// off UTF-8 continuation bytes so that the label stays valid text.
std::string fit_label(const std::string& s, std::size_t max_chars) {
  if (s.size() <= max_chars) return s;
  const auto continuation = [&](std::size_t i) { return (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80; };
  std::size_t head = (max_chars - 1) / 2;
  std::size_t tail = s.size() - (max_chars - 1 - head);
  while (head > 0 && continuation(head)) --head;
  while (tail < s.size() && continuation(tail)) ++tail;
  return s.substr(0, head) + "\u2026" + s.substr(tail);
}

void append_chart(std::string& out, const std::vector<chart_row>& rows) {
  // Layout in viewBox units; the SVG scales to the page width.
  constexpr double width = 1200;
  constexpr double label_right = 372;  // names end here, right-aligned
  constexpr double x0 = 384;            // plot area
  constexpr double x1 = 960;
  constexpr double value_x = 976;       // figure and aim, left-aligned
  constexpr double top = 64;            // legend and upper tick labels above
  constexpr double row_h = 30;
  constexpr double bar_h = 14;
  constexpr std::size_t label_chars = 48;
  const double plot_bottom = top + row_h * static_cast<double>(rows.size());
  const double height = plot_bottom + 52;

  double lo = 1;
  double hi = 1;
  for (const chart_row& r : rows) {
    for (const auto& v : {r.value, r.min, r.max, r.aim}) {
      if (v && *v > 0) {
        lo = std::min(lo, *v);
        hi = std::max(hi, *v);
      }
    }
  }
  const log_axis axis(lo, hi, x0, x1);

  out += "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 " + fixed(width) + " " + fixed(height) +
         "\" width=\"100%\" role=\"img\" aria-labelledby=\"chart-title\" class=\"chart\">\n";
  out += "<title id=\"chart-title\">Ratios and their aims, log scale</title>\n";

  // Legend: swatches, then the aim tick and the min..max whisker.
  {
    double x = x0;
    const double y = 20;
    for (const verdict v : {verdict::met, verdict::missed, verdict::informative}) {
      const char* label = v == verdict::met ? "aim met" : v == verdict::missed ? "aim missed" : "no aim (informative)";
      out += "<rect x=\"" + fixed(x) + "\" y=\"" + fixed(y - 10) + "\" width=\"14\" height=\"12\" rx=\"2\" fill=\"" +
             colours(v).bar + "\"/>";
      out += "<text x=\"" + fixed(x + 20) + "\" y=\"" + fixed(y) + "\" class=\"legend\">" + label + "</text>\n";
      x += 20 + 7.2 * static_cast<double>(std::string_view(label).size()) + 24;
    }
    out += "<line x1=\"" + fixed(x + 6) + "\" y1=\"" + fixed(y - 13) + "\" x2=\"" + fixed(x + 6) + "\" y2=\"" +
           fixed(y + 4) + "\" stroke=\"" + ink + "\" stroke-width=\"3\"/>";
    out += "<text x=\"" + fixed(x + 16) + "\" y=\"" + fixed(y) + "\" class=\"legend\">aim</text>\n";
    x += 16 + 7.2 * 3 + 24;
    out += "<path d=\"M" + fixed(x) + " " + fixed(y - 8) + "v8M" + fixed(x) + " " + fixed(y - 4) + "h22M" +
           fixed(x + 22) + " " + fixed(y - 8) + "v8\" stroke=\"" + ink + "\" stroke-width=\"1.3\" fill=\"none\"/>";
    out += "<text x=\"" + fixed(x + 30) + "\" y=\"" + fixed(y) + "\" class=\"legend\">min..max of the repeats</text>\n";
  }

  // Zebra bands first, so that grid lines, bars and ticks lie on top.
  for (std::size_t i = 0; i < rows.size(); i += 2) {
    out += "<rect x=\"0\" y=\"" + fixed(top + row_h * static_cast<double>(i)) + "\" width=\"" + fixed(width) +
           "\" height=\"" + fixed(row_h) + "\" fill=\"#f4f6f8\"/>\n";
  }

  // Grid and tick labels, above and below the rows; 1 (parity) is stronger.
  for (const double t : axis.ticks()) {
    const std::string x = fixed(axis.x(t));
    const bool parity = std::fabs(t - 1.0) < 1e-9;
    out += "<line x1=\"" + x + "\" y1=\"" + fixed(top - 4) + "\" x2=\"" + x + "\" y2=\"" + fixed(plot_bottom + 4) +
           "\" stroke=\"" + (parity ? "#7b8794" : "#d5dae0") + "\" stroke-width=\"" + (parity ? "1.5" : "1") +
           "\"/>";
    const std::string label = format_number(t);
    out += "<text x=\"" + x + "\" y=\"" + fixed(top - 10) + "\" class=\"tick\">" + label + "</text>";
    out += "<text x=\"" + x + "\" y=\"" + fixed(plot_bottom + 20) + "\" class=\"tick\">" + label + "</text>\n";
  }
  out += "<text x=\"" + fixed((x0 + x1) / 2) + "\" y=\"" + fixed(plot_bottom + 42) +
         "\" class=\"axis\">ratio, log scale (rows marked \u00f7 aim: figure \u00f7 aim)</text>\n";

  for (std::size_t i = 0; i < rows.size(); ++i) {
    const chart_row& r = rows[i];
    const figure& f = *r.f;
    const palette p = colours(f.judged);
    const double y = top + row_h * static_cast<double>(i);
    const double mid = y + row_h / 2;

    std::string tip = f.name + ": " + format_value(f);
    if (f.min || f.max) tip += " (min..max " + format_range(f) + ")";
    if (f.aim) tip += ", aim " + format_aim(f);
    out += "<g><title>" + escape(tip) + "</title>\n";
    out += "<rect x=\"0\" y=\"" + fixed(y) + "\" width=\"" + fixed(width) + "\" height=\"" + fixed(row_h) +
           "\" fill=\"transparent\"/>";

    const std::size_t room = r.normalised ? label_chars - 8 : label_chars;
    out += "<text x=\"" + fixed(label_right) + "\" y=\"" + fixed(mid + 4.5) + "\" class=\"name\">" +
           escape(fit_label(f.name, room));
    if (r.normalised) out += "<tspan class=\"note\"> \u00f7 aim</tspan>";
    out += "</text>\n";

    if (r.value) {
      const double xv = axis.x(*r.value);
      out += "<rect x=\"" + fixed(x0) + "\" y=\"" + fixed(mid - bar_h / 2) + "\" width=\"" +
             fixed(std::max(xv - x0, 1.5)) + "\" height=\"" + fixed(bar_h) + "\" rx=\"2\" fill=\"" + p.bar +
             "\"/>\n";
    } else {
      out += "<text x=\"" + fixed(x0 + 8) + "\" y=\"" + fixed(mid + 4.5) + "\" class=\"missing\">no figure</text>\n";
    }
    if (r.min && r.max) {
      const double a = axis.x(*r.min);
      const double b = axis.x(*r.max);
      out += "<path d=\"M" + fixed(a) + " " + fixed(mid - 4) + "v8M" + fixed(a) + " " + fixed(mid) + "H" + fixed(b) +
             "M" + fixed(b) + " " + fixed(mid - 4) + "v8\" stroke=\"" + ink +
             "\" stroke-opacity=\"0.7\" stroke-width=\"1.3\" fill=\"none\"/>\n";
    }
    if (r.aim) {
      const std::string xa = fixed(axis.x(*r.aim));
      out += "<line x1=\"" + xa + "\" y1=\"" + fixed(y + 4) + "\" x2=\"" + xa + "\" y2=\"" + fixed(y + row_h - 4) +
             "\" stroke=\"" + ink + "\" stroke-width=\"3\"/>\n";
    }

    out += "<text x=\"" + fixed(value_x) + "\" y=\"" + fixed(mid + 4.5) + "\" class=\"value\" fill=\"" + p.text +
           "\">" + escape(format_value(f));
    if (f.aim) out += "<tspan class=\"aim\" dx=\"10\">aim " + escape(format_aim(f)) + "</tspan>";
    out += "</text>\n</g>\n";
  }
  out += "</svg>\n";
}

// ---------------------------------------------------------------- tables

struct column {
  std::string_view title;
  bool numeric = false;
};

void open_table(std::string& out, std::string_view id, std::string_view heading, std::string_view note,
                std::initializer_list<column> columns) {
  out += "<section id=\"";
  out += id;
  out += "\">\n<h2>";
  out += heading;
  out += "</h2>\n";
  if (!note.empty()) {
    out += "<p class=\"caption\">";
    out += note;
    out += "</p>\n";
  }
  out += "<table>\n<thead><tr>";
  for (const column& c : columns) {
    out += c.numeric ? "<th class=\"num\">" : "<th>";
    out += c.title;
    out += "</th>";
  }
  out += "</tr></thead>\n<tbody>\n";
}

void close_table(std::string& out) { out += "</tbody>\n</table>\n</section>\n"; }

/// One cell; `html` is already escaped.
void cell(std::string& out, const std::string& html, bool numeric = false) {
  out += numeric ? "<td class=\"num\">" : "<td>";
  out += html;
  out += "</td>";
}

void open_row(std::string& out, const figure& f) {
  out += f.value ? "<tr>" : "<tr class=\"nofig\">";
}

/// The name cell: the name, a "no figure" mark when the value is null, then
/// `more` (escaped HTML).
void name_cell(std::string& out, const figure& f, const std::string& more = {}) {
  std::string html = "<code>" + escape(f.name) + "</code>";
  if (!f.value) html += " <span class=\"badge nofig-badge\">no figure</span>";
  cell(out, html + more);
}

void verdict_cell(std::string& out, const figure& f) {
  switch (f.judged) {
    case verdict::met: cell(out, "<span class=\"badge met\">met</span>"); return;
    case verdict::missed: cell(out, "<span class=\"badge missed\">missed</span>"); return;
    case verdict::informative: break;
  }
  cell(out, std::string(dash));
}

/// The figure with its unit, the unit set small; a ratio as "12.5×".
std::string value_html(const figure& f) {
  if (!f.value) return std::string(dash);
  if (is_ratio(f)) return escape(format_value(f));
  std::string html = escape(format_number(*f.value));
  if (!f.unit.empty()) html += " <span class=\"unit\">" + escape(f.unit) + "</span>";
  return html;
}

void ratio_table(std::string& out, const std::vector<const figure*>& rows) {
  open_table(out, "ratios", "Ratios",
             "Numerator and denominator are the medians (ns/op) of the two sides as measured in this "
             "ratio's pairs; the ratio is the median of the per-repeat ratios, not their quotient.",
             {{"ratio"}, {"numerator ns", true}, {"denominator ns", true}, {"ratio", true}, {"min..max", true},
              {"aim", true}, {"met"}});
  for (const figure* f : rows) {
    const std::string num = string_at(*f->line, "numerator_name");
    const std::string den = string_at(*f->line, "denominator_name");
    // The sides are named when the ratio's own name does not already say them.
    std::string sides;
    if (!num.empty() && !den.empty() && f->name != num + "/" + den) {
      sides = "<div class=\"sub\">" + escape(num) + " \u00f7 " + escape(den) + "</div>";
    }
    open_row(out, *f);
    name_cell(out, *f, sides);
    cell(out, escape(format_number(number_at(*f->line, "numerator"))), true);
    cell(out, escape(format_number(number_at(*f->line, "denominator"))), true);
    cell(out, f->value ? "<strong>" + escape(format_number(*f->value)) + "\u00d7</strong>" : std::string(dash), true);
    cell(out, escape(format_range(*f)), true);
    cell(out, escape(format_aim(*f)), true);
    verdict_cell(out, *f);
    out += "</tr>\n";
  }
  close_table(out);
}

void measurement_table(std::string& out, std::string_view id, std::string_view heading, std::string_view note,
                       const std::vector<const figure*>& rows) {
  open_table(out, id, heading, note,
             {{"name"}, {"description"}, {"median", true}, {"min..max", true}, {"samples", true}});
  for (const figure* f : rows) {
    open_row(out, *f);
    name_cell(out, *f);
    cell(out, escape(f->description));
    cell(out, value_html(*f), true);
    cell(out, escape(format_range(*f)), true);
    cell(out, escape(format_number(number_at(*f->line, "samples"))), true);
    out += "</tr>\n";
  }
  close_table(out);
}

void memory_table(std::string& out, const std::vector<const figure*>& rows) {
  open_table(out, "memory", "Memory",
             "Resident bytes per parked request, measured in a fresh process holding the given number of "
             "requests parked.",
             {{"name"}, {"description"}, {"per request", true}, {"parked", true}, {"aim", true}, {"met"}});
  for (const figure* f : rows) {
    open_row(out, *f);
    name_cell(out, *f);
    cell(out, escape(f->description));
    cell(out, value_html(*f), true);
    cell(out, escape(format_number(number_at(*f->line, "parked"))), true);
    cell(out, escape(format_aim(*f)), true);
    verdict_cell(out, *f);
    out += "</tr>\n";
  }
  close_table(out);
}

void throughput_table(std::string& out, const std::vector<const figure*>& rows) {
  open_table(out, "throughput", "Throughput and external figures",
             "External figures come from outside this process, against a peer that is not coport.",
             {{"name"}, {"description"}, {"value", true}, {"min..max", true}, {"p50 \u00b5s", true},
              {"p99 \u00b5s", true}, {"aim", true}, {"met"}});
  for (const figure* f : rows) {
    std::string description = escape(f->description);
    const auto num = number_at(*f->line, "numerator");
    const auto den = number_at(*f->line, "denominator");
    if (num || den) {
      const auto side = [&](std::string_view key, std::string_view fallback, const std::optional<double>& v) {
        std::string name = string_at(*f->line, key);
        return escape(name.empty() ? fallback : name) + " " + escape(format_number(v));
      };
      description += "<div class=\"sub\">" + side("numerator_name", "numerator", num) + " \u00f7 " +
                     side("denominator_name", "denominator", den) + "</div>";
    }
    open_row(out, *f);
    name_cell(out, *f);
    cell(out, description);
    cell(out, value_html(*f), true);
    cell(out, escape(format_range(*f)), true);
    cell(out, escape(format_number(number_at(*f->line, "p50_us"))), true);
    cell(out, escape(format_number(number_at(*f->line, "p99_us"))), true);
    cell(out, escape(format_aim(*f)), true);
    verdict_cell(out, *f);
    out += "</tr>\n";
  }
  close_table(out);
}

/// Lines of a kind this report does not know: every key is shown.
void other_table(std::string& out, const std::vector<const figure*>& rows) {
  open_table(out, "other", "Other figures", "Lines of a kind this report does not know, shown as they are.",
             {{"name"}, {"kind"}, {"value", true}, {"description"}, {"other keys"}});
  for (const figure* f : rows) {
    std::string rest;
    for (const auto& kv : *f->line) {
      const std::string_view key = kv.key();
      if (key == "name" || key == "kind" || key == "value" || key == "unit" || key == "description") continue;
      if (!rest.empty()) rest += "; ";
      rest += escape(key) + ": " + escape(format_json(kv.value()));
    }
    open_row(out, *f);
    name_cell(out, *f);
    cell(out, "<code>" + escape(f->kind) + "</code>");
    cell(out, value_html(*f), true);
    cell(out, escape(f->description));
    cell(out, "<span class=\"sub\">" + rest + "</span>");
    out += "</tr>\n";
  }
  close_table(out);
}

void machine_table(std::string& out, const json::object& machine) {
  out += "<section id=\"machine\">\n<h2>Machine and run</h2>\n<table class=\"machine\">\n<tbody>\n";
  for (const auto& kv : machine) {
    out += "<tr><th>" + escape(kv.key()) + "</th><td>" + escape(format_json(kv.value())) + "</td></tr>\n";
  }
  out += "</tbody>\n</table>\n</section>\n";
}

// ------------------------------------------------------------------ page

constexpr std::string_view style = R"css(
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #fff; color: #1f2933;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 28px 24px 40px; }
h1 { font-size: 28px; margin: 0 0 2px; letter-spacing: -0.01em; }
h2 { font-size: 19px; margin: 36px 0 8px; padding-bottom: 4px; border-bottom: 1px solid #d5dae0; }
.run { color: #52606d; margin: 0 0 16px; }
.summary { border-left: 5px solid; padding: 10px 16px; border-radius: 4px; background: #f4f6f8; }
.summary.ok { border-color: #2f9e44; }
.summary.bad { border-color: #e8590c; }
.summary .verdict { font-size: 18px; font-weight: 600; margin: 0; }
.summary ul { margin: 6px 0 0; padding-left: 20px; }
.summary .note { color: #52606d; margin: 4px 0 0; }
.caption { color: #52606d; font-size: 13.5px; margin: 4px 0 10px; }
code { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.88em; }
td code { overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; font-size: 14px; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 10px; text-align: left; vertical-align: top; border-bottom: 1px solid #e4e7eb; }
thead th { background: #eef1f4; font-weight: 600; white-space: nowrap; border-bottom: 2px solid #cbd2d9; }
tbody tr:nth-child(even) { background: #f9fafb; }
td.num, th.num { text-align: right; white-space: nowrap; }
.unit, .sub { color: #7b8794; font-size: 12.5px; }
.sub { margin-top: 1px; }
tr.nofig td { color: #9aa5b1; }
.badge { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px; font-weight: 600;
  line-height: 18px; white-space: nowrap; }
.badge.met { background: #d3f9d8; color: #1e7a31; }
.badge.missed { background: #ffe8d9; color: #c2410c; }
.badge.nofig-badge { background: #e4e7eb; color: #52606d; }
table.machine { width: auto; min-width: 50%; }
table.machine th { font-weight: 600; background: none; white-space: nowrap; }
.chart { display: block; margin-top: 4px; }
.chart text { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
.chart .name { font-size: 13px; text-anchor: end; fill: #1f2933; }
.chart .note { fill: #7b8794; font-size: 11.5px; }
.chart .value { font-size: 13px; font-weight: 700; }
.chart .aim { font-weight: 400; fill: #52606d; }
.chart .tick { font-size: 12px; text-anchor: middle; fill: #52606d; }
.chart .axis { font-size: 12.5px; text-anchor: middle; fill: #52606d; }
.chart .legend { font-size: 12.5px; fill: #1f2933; }
.chart .missing { font-size: 12.5px; font-style: italic; fill: #7b8794; }
.chart g:hover rect[fill="transparent"] { fill: rgba(31, 41, 51, 0.05); }
footer { margin-top: 40px; padding-top: 10px; border-top: 1px solid #d5dae0; color: #52606d; font-size: 13.5px; }
footer p { margin: 2px 0; }
)css";

void append_summary(std::string& out, const std::vector<figure>& figures) {
  std::size_t aims = 0;
  std::size_t met = 0;
  std::size_t no_figure = 0;
  std::vector<const figure*> missed;
  for (const figure& f : figures) {
    if (!f.value) ++no_figure;
    if (f.judged == verdict::informative) continue;
    ++aims;
    if (f.judged == verdict::met) {
      ++met;
    } else {
      missed.push_back(&f);
    }
  }
  out += std::string("<div class=\"summary ") + (missed.empty() && no_figure == 0 ? "ok" : "bad") + "\">\n";
  if (aims == 0) {
    out += "<p class=\"verdict\">No aims in this run</p>\n";
  } else {
    out += "<p class=\"verdict\">" + std::to_string(met) + " of " + std::to_string(aims) + " aims met</p>\n";
  }
  if (!missed.empty()) {
    out += "<ul>\n";
    for (const figure* f : missed) {
      out += "<li><code>" + escape(f->name) + "</code>: " + escape(format_value(*f)) + ", aim " +
             escape(format_aim(*f)) + "</li>\n";
    }
    out += "</ul>\n";
  }
  if (no_figure > 0) {
    out += "<p class=\"note\">" + std::to_string(no_figure) + " of " + std::to_string(figures.size()) +
           (no_figure == 1 ? " lines has" : " lines have") + " no figure (a failed measurement).</p>\n";
  }
  out += "</div>\n";
}

std::string build_page(const std::vector<figure>& figures, const json::object& machine) {
  std::vector<chart_row> chart;
  std::vector<const figure*> ratios;
  std::vector<const figure*> floors;
  std::vector<const figure*> measurements;
  std::vector<const figure*> memory;
  std::vector<const figure*> throughput;
  std::vector<const figure*> other;
  for (const figure& f : figures) {
    if (f.kind == "ratio") {
      ratios.push_back(&f);
    } else if (f.kind == "measurement") {
      (f.name.starts_with("floor.") ? floors : measurements).push_back(&f);
    } else if (f.kind == "memory") {
      memory.push_back(&f);
    } else if (f.kind == "throughput" || f.kind == "external") {
      throughput.push_back(&f);
    } else {
      other.push_back(&f);
    }

    // Every ratio is charted, the external ones too (coport over the broker
    // against oslo.messaging and against rabbitmq-c alone).
    if (is_ratio(f)) {
      chart.push_back({&f, false, f.value, f.min, f.max, f.aim});
    } else if (f.aim && *f.aim > 0) {
      const auto scaled = [&](const std::optional<double>& v) -> std::optional<double> {
        if (!v) return std::nullopt;
        return *v / *f.aim;
      };
      chart.push_back({&f, true, scaled(f.value), scaled(f.min), scaled(f.max), 1.0});
    }
  }

  std::string out;
  out.reserve(64 * 1024);
  out += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
         "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
         "<title>coport-bench report</title>\n<style>";
  out += style;
  out += "</style>\n</head>\n<body>\n<main>\n<h1>coport-bench report</h1>\n";

  std::string run;
  const json::value* date = machine.if_contains("date");
  const json::value* mode = machine.if_contains("mode");
  if (date != nullptr && !date->is_null()) run += "Run of " + escape(format_json(*date));
  if (mode != nullptr && !mode->is_null()) {
    run += (run.empty() ? "" : " \u00b7 ") + escape(format_json(*mode)) + " mode";
  }
  if (!run.empty()) out += "<p class=\"run\">" + run + "</p>\n";
  append_summary(out, figures);

  out += "<section id=\"chart\">\n<h2>Ratios and their aims</h2>\n";
  if (chart.empty()) {
    out += "<p class=\"caption\">No ratios in this run.</p>\n";
  } else {
    out += "<p class=\"caption\">One bar per ratio: the median of the per-repeat ratios, on a log scale, with the "
           "spread of the repeats and the aim. Figures with an aim that are not ratios (bytes per parked "
           "request, say) are drawn as figure \u00f7 aim, so that their aim sits at 1; they are marked "
           "\u201c\u00f7 aim\u201d and labelled with their own figure and aim.</p>\n";
    append_chart(out, chart);
  }
  out += "</section>\n";

  if (!ratios.empty()) ratio_table(out, ratios);
  if (!floors.empty()) {
    measurement_table(out, "floors", "Floors",
                      "The physical floors: the cheapest operation of each kind on this machine, which the "
                      "ratios are measured against.",
                      floors);
  }
  if (!measurements.empty()) {
    measurement_table(out, "measurements", "Measurements",
                      "Time per operation: the median over the repeats, with their spread.", measurements);
  }
  if (!memory.empty()) memory_table(out, memory);
  if (!throughput.empty()) throughput_table(out, throughput);
  if (!other.empty()) other_table(out, other);
  machine_table(out, machine);

  out += "<footer>\n<p>Every figure is a ratio of two measurements made in the same run; absolute times are for "
         "orientation only.</p>\n<p>Raw results: <a href=\"results.json\">results.json</a></p>\n</footer>\n"
         "</main>\n</body>\n</html>\n";
  return out;
}

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (f) f << text;
  if (f) f.close();
  if (!f) throw std::runtime_error("cannot write " + path.string());
}

}  // namespace

void write_html_report(const std::filesystem::path& dir, const std::vector<json::object>& lines,
                       const json::object& machine) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw std::runtime_error("cannot create " + dir.string() + ": " + ec.message());

  std::vector<figure> figures;
  figures.reserve(lines.size());
  for (const auto& line : lines) figures.push_back(read_figure(line));

  std::string results;
  for (const auto& line : lines) results += json::serialize(line) + '\n';
  write_file(dir / "results.json", results);
  write_file(dir / "index.html", build_page(figures, machine));
}

}  // namespace coport_bench
