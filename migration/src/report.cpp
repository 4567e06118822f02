#include <coport/migration/report.hpp>

#include <boost/json/serialize.hpp>

#include <algorithm>
#include <cstdio>
#include <ctime>

namespace json = boost::json;

namespace coport::migration {

namespace {

std::string format_duration(std::chrono::nanoseconds d, std::uint64_t calls) {
  if (calls == 0) return "-";
  char buf[32];
  const double us = static_cast<double>(d.count()) / 1000.0;
  if (us < 1000) std::snprintf(buf, sizeof buf, "%.0f us", us);
  else if (us < 1e6) std::snprintf(buf, sizeof buf, "%.1f ms", us / 1000);
  else std::snprintf(buf, sizeof buf, "%.2f s", us / 1e6);
  return buf;
}

std::string pad(std::string s, std::size_t width, bool right = false) {
  if (s.size() >= width) return s + " ";
  std::string fill(width - s.size(), ' ');
  return (right ? fill + s : s + fill) + " ";
}

std::string iso_time(std::chrono::system_clock::time_point t) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

void report::judge() {
  not_ready.clear();
  std::vector<std::string> fiber_only_methods, fiber_only_points, not_ported, yields, hosted, mismatched, stalled;
  for (const auto& row : methods) {
    const std::string full = row.full_name();
    if (row.kinds == "fiber") {
      (row.unit == "point" ? fiber_only_points : fiber_only_methods).push_back(full);
    } else if (row.kinds == "both" && row.policy != "ported") {
      not_ported.push_back(full + " is served under policy " + row.policy + ", not ported");
    }
    for (const auto& fr : row.forms) {
      if (fr.kind != form_kind::coroutine) continue;
      if (fr.implicit_yields > 0) {
        yields.push_back(full + ": its coroutine form blocked fibers " + std::to_string(fr.implicit_yields) +
                         " time(s) (implicit yields: it still calls unported fiber code)");
      } else if (fr.mode == "hosted") {
        hosted.push_back(full + " runs hosted; run it native (fiber_executor_options::modes) to prove it "
                                "no longer needs a fiber");
      }
      if (fr.stalls > 0) {
        stalled.push_back(full + ": its coroutine form stalled the loop " + std::to_string(fr.stalls) + " time(s)");
      }
    }
    if (row.shadow_mismatches > 0) {
      mismatched.push_back(full + ": " + std::to_string(row.shadow_mismatches) + " of " +
                           std::to_string(row.shadow_calls) + " shadow call(s) answered differently");
    }
  }
  auto list_of = [](const std::vector<std::string>& names) {
    std::string list;
    for (const auto& f : names) list += (list.empty() ? "" : ", ") + f;
    return list;
  };
  if (!fiber_only_methods.empty()) {
    not_ready.push_back(std::to_string(fiber_only_methods.size()) +
                        " method(s) have only a fiber form: " + list_of(fiber_only_methods));
  }
  if (!fiber_only_points.empty()) {
    not_ready.push_back(std::to_string(fiber_only_points.size()) +
                        " migration point(s) have only a fiber form: " + list_of(fiber_only_points));
  }
  for (auto* v : {&not_ported, &yields, &hosted, &mismatched, &stalled}) {
    not_ready.insert(not_ready.end(), v->begin(), v->end());
  }
}

void report::add(const report& other) {
  if (executor.empty()) executor = other.executor;
  else if (!other.executor.empty() && other.executor != executor) executor += " + " + other.executor;
  methods.insert(methods.end(), other.methods.begin(), other.methods.end());
  mismatches.insert(mismatches.end(), other.mismatches.begin(), other.mismatches.end());
  judge();
}

std::string report::verdict() const {
  if (ready()) return "ready for " + goal;
  return "not ready for " + goal + ": " + std::to_string(not_ready.size()) + " reason(s)";
}

std::string report::to_text() const {
  std::string out = "migration report (" + executor + ")\n";
  const std::size_t name_w = [&] {
    std::size_t w = 6;
    for (const auto& m : methods) w = std::max(w, m.full_name().size());
    return w;
  }();
  out += pad("method", name_w) + pad("kinds", 9) + pad("policy", 10) + pad("form", 9) + pad("mode", 11) +
         pad("calls", 8, true) + pad("errors", 7, true) + pad("p50", 9, true) + pad("p99", 9, true) +
         pad("yields", 7, true) + pad("stalls", 7, true) + "shadow\n";
  for (const auto& m : methods) {
    bool first = true;
    for (const auto& f : m.forms) {
      std::string line = first ? pad(m.full_name(), name_w) + pad(m.kinds, 9) + pad(m.policy, 10)
                               : pad("", name_w) + pad("", 9) + pad("", 10);
      line += pad(f.kind == form_kind::fiber ? "legacy" : "ported", 9) + pad(f.mode.empty() ? "-" : f.mode, 11) +
              pad(std::to_string(f.calls), 8, true) + pad(std::to_string(f.errors), 7, true) +
              pad(format_duration(f.p50, f.calls), 9, true) + pad(format_duration(f.p99, f.calls), 9, true) +
              pad(f.kind == form_kind::coroutine ? std::to_string(f.implicit_yields) : "-", 7, true) +
              pad(std::to_string(f.stalls), 7, true);
      if (first && m.shadow_calls > 0) {
        line += std::to_string(m.shadow_mismatches) + "/" + std::to_string(m.shadow_calls) + " differ";
      }
      while (!line.empty() && line.back() == ' ') line.pop_back();
      out += line + "\n";
      first = false;
    }
  }
  if (!mismatches.empty()) {
    out += "\nshadow mismatches (the first ones of each method; the table counts them all):\n";
    for (const auto& mm : mismatches) {
      out += "  " + (mm.endpoint.empty() ? mm.method : mm.endpoint + "." + mm.method) + " " +
             json::serialize(mm.args) + "\n    legacy: " + mm.legacy + "\n    ported: " + mm.ported + "\n";
    }
  }
  out += "\nverdict: " + verdict() + "\n";
  for (const auto& reason : not_ready) out += "  - " + reason + "\n";
  return out;
}

json::object report::to_json() const {
  json::object o;
  o["executor"] = executor;
  o["ready"] = ready();
  o["verdict"] = verdict();
  json::array reasons;
  for (const auto& r : not_ready) reasons.emplace_back(r);
  o["reasons"] = std::move(reasons);
  json::array ms;
  for (const auto& m : methods) {
    json::object mo;
    mo["endpoint"] = m.endpoint;
    mo["method"] = m.method;
    mo["kinds"] = m.kinds;
    mo["policy"] = m.policy;
    json::array forms;
    for (const auto& f : m.forms) {
      json::object fo;
      fo["kind"] = std::string(to_string(f.kind));
      fo["mode"] = f.mode;
      fo["calls"] = f.calls;
      fo["errors"] = f.errors;
      fo["cancelled"] = f.cancelled;
      fo["p50_us"] = static_cast<double>(f.p50.count()) / 1000.0;
      fo["p99_us"] = static_cast<double>(f.p99.count()) / 1000.0;
      fo["implicit_yields"] = f.implicit_yields;
      fo["stalls"] = f.stalls;
      forms.emplace_back(std::move(fo));
    }
    mo["forms"] = std::move(forms);
    json::object shadow;
    shadow["calls"] = m.shadow_calls;
    shadow["mismatches"] = m.shadow_mismatches;
    mo["shadow"] = std::move(shadow);
    mo["unit"] = m.unit;
    ms.emplace_back(std::move(mo));
  }
  o["methods"] = std::move(ms);
  json::array mm;
  for (const auto& x : mismatches) {
    json::object xo;
    xo["endpoint"] = x.endpoint;
    xo["method"] = x.method;
    xo["args"] = x.args;
    xo["legacy"] = x.legacy;
    xo["ported"] = x.ported;
    xo["time"] = iso_time(x.when);
    mm.emplace_back(std::move(xo));
  }
  o["mismatches"] = std::move(mm);
  o["goal"] = goal;
  return o;
}

namespace {

[[noreturn]] void fail(const std::string& what) { throw report_decode_error("migration report: " + what); }

const json::value& field(const json::object& o, std::string_view key, const char* where) {
  const json::value* v = o.if_contains(key);
  if (!v) fail(std::string(where) + " has no '" + std::string(key) + "'");
  return *v;
}
std::string str(const json::object& o, std::string_view key, const char* where) {
  const auto& v = field(o, key, where);
  if (!v.is_string()) fail(std::string(where) + "." + std::string(key) + " is not a string");
  return std::string(v.get_string());
}
std::string str_or(const json::object& o, std::string_view key, const char* where, std::string fallback) {
  return o.contains(key) ? str(o, key, where) : fallback;
}
std::uint64_t count(const json::object& o, std::string_view key, const char* where) {
  const auto& v = field(o, key, where);
  if (v.is_uint64()) return v.get_uint64();
  if (v.is_int64() && v.get_int64() >= 0) return static_cast<std::uint64_t>(v.get_int64());
  fail(std::string(where) + "." + std::string(key) + " is not a count");
}
const json::object& obj(const json::value& v, const char* where) {
  if (!v.is_object()) fail(std::string(where) + " is not an object");
  return v.get_object();
}
const json::array& arr(const json::object& o, std::string_view key, const char* where) {
  const auto& v = field(o, key, where);
  if (!v.is_array()) fail(std::string(where) + "." + std::string(key) + " is not an array");
  return v.get_array();
}
std::chrono::nanoseconds micros(const json::object& o, std::string_view key, const char* where) {
  const auto& v = field(o, key, where);
  if (!v.is_number()) fail(std::string(where) + "." + std::string(key) + " is not a number");
  return std::chrono::nanoseconds(static_cast<std::int64_t>(v.to_number<double>() * 1000.0));
}

}  // namespace

report report::from_json(const json::value& v) {
  const auto& o = obj(v, "the report");
  report r;
  r.executor = str(o, "executor", "the report");
  r.goal = str_or(o, "goal", "the report", "coro_executor");
  for (const auto& reason : arr(o, "reasons", "the report")) {
    if (!reason.is_string()) fail("a reason is not a string");
    r.not_ready.emplace_back(reason.get_string());
  }
  for (const auto& mv : arr(o, "methods", "the report")) {
    const auto& mo = obj(mv, "a method");
    method_row m;
    m.endpoint = str(mo, "endpoint", "a method");
    m.method = str(mo, "method", "a method");
    m.unit = str_or(mo, "unit", "a method", "method");
    m.kinds = str(mo, "kinds", "a method");
    m.policy = str(mo, "policy", "a method");
    const auto& shadow = obj(field(mo, "shadow", "a method"), "a method's shadow");
    m.shadow_calls = count(shadow, "calls", "shadow");
    m.shadow_mismatches = count(shadow, "mismatches", "shadow");
    for (const auto& fv : arr(mo, "forms", "a method")) {
      const auto& fo = obj(fv, "a form");
      form_row f;
      const std::string kind = str(fo, "kind", "a form");
      if (kind == "fiber") f.kind = form_kind::fiber;
      else if (kind == "coroutine") f.kind = form_kind::coroutine;
      else fail("unknown form kind '" + kind + "'");
      f.mode = str(fo, "mode", "a form");
      f.calls = count(fo, "calls", "a form");
      f.errors = count(fo, "errors", "a form");
      f.cancelled = count(fo, "cancelled", "a form");
      f.p50 = micros(fo, "p50_us", "a form");
      f.p99 = micros(fo, "p99_us", "a form");
      f.implicit_yields = count(fo, "implicit_yields", "a form");
      f.stalls = count(fo, "stalls", "a form");
      m.forms.push_back(std::move(f));
    }
    r.methods.push_back(std::move(m));
  }
  for (const auto& xv : arr(o, "mismatches", "the report")) {
    const auto& xo = obj(xv, "a mismatch");
    shadow_mismatch x;
    x.endpoint = str(xo, "endpoint", "a mismatch");
    x.method = str(xo, "method", "a mismatch");
    x.args = obj(field(xo, "args", "a mismatch"), "a mismatch's args");
    x.legacy = str(xo, "legacy", "a mismatch");
    x.ported = str(xo, "ported", "a mismatch");
    r.mismatches.push_back(std::move(x));
  }
  return r;
}

}  // namespace coport::migration
