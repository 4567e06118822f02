#include <coport/bridge/report.hpp>

#include <boost/json/array.hpp>

#include <algorithm>
#include <cstdio>

namespace json = boost::json;

namespace coport::bridge {

namespace {

std::string format_duration(std::chrono::nanoseconds d) {
  if (d.count() == 0) return "-";
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

std::string count(std::uint64_t n) { return n == 0 ? "-" : std::to_string(n); }

bool empty_row(const report::row& r) {
  return r.calls == 0 && r.fiber_time.count() == 0 && r.implicit_yields == 0 && r.stalls == 0 &&
         r.loop_blocks == 0 && r.raw_fibers == 0 && r.awaits == 0 && r.runs_in_fiber == 0 &&
         r.use_fiber_waits == 0 && r.hosted_steps == 0;
}

std::string quoted(const std::string& work) { return "'" + work + "'"; }

}  // namespace

report report::of(const diagnostics& registry) { return of(registry.snapshot()); }

report report::of(const std::vector<work_counters>& counters) {
  report r;
  for (const auto& c : counters) {
    row w;
    w.work = c.name;
    w.calls = c.calls;
    w.fiber_time = c.fiber_time;
    w.implicit_yields = c.implicit_yields;
    w.stalls = c.stalls;
    w.longest_stall = c.longest_stall;
    w.loop_blocks = c.loop_blocks;
    w.raw_fibers = c.raw_fibers;
    w.awaits = c.awaits;
    w.runs_in_fiber = c.runs_in_fiber;
    w.use_fiber_waits = c.use_fiber_waits;
    w.hosted_steps = c.hosted_steps;
    if (!empty_row(w)) r.rows.push_back(std::move(w));
  }
  std::sort(r.rows.begin(), r.rows.end(), [](const row& a, const row& b) { return a.work < b.work; });
  r.judge();
  return r;
}

// Every reason is about fiber activity, which only fibers and the bridge's
// crossings produce; the internal tags ("<loop>", "<asio handler>") carry
// none of it unless fiber code really ran under them, and then they belong
// in the list like any other work.
void report::judge() {
  not_ready.clear();
  std::vector<std::string> fiber_time, raw, awaits, runs, use_fiber, hosted, yields, blocks;
  for (const auto& r : rows) {
    const std::string w = quoted(r.work);
    if (r.fiber_time.count() > 0) {
      fiber_time.push_back(w + " ran in fibers for " + format_duration(r.fiber_time) +
                           " (fiber code still runs under this name)");
    }
    if (r.raw_fibers > 0) {
      raw.push_back(w + ": " + std::to_string(r.raw_fibers) +
                    " raw fiber(s) created with Boost.Fiber calls");
    }
    if (r.awaits > 0) {
      awaits.push_back(w + ": " + std::to_string(r.awaits) +
                       " bridge::await call(s) (a fiber still waits for coroutines)");
    }
    if (r.runs_in_fiber > 0) {
      runs.push_back(w + ": " + std::to_string(r.runs_in_fiber) +
                     " run_in_fiber call(s) (fiber code still called from coroutines)");
    }
    if (r.use_fiber_waits > 0) {
      use_fiber.push_back(w + ": " + std::to_string(r.use_fiber_waits) +
                          " use_fiber wait(s) (a fiber still blocks on Asio operations)");
    }
    if (r.hosted_steps > 0) {
      hosted.push_back(w + ": " + std::to_string(r.hosted_steps) +
                       " hosted step(s) (a coroutine still runs hosted in a fiber)");
    }
    if (r.implicit_yields > 0) {
      yields.push_back(w + " blocked fibers " + std::to_string(r.implicit_yields) +
                       " time(s) (implicit yields: it still calls unported fiber code)");
    }
    if (r.loop_blocks > 0) {
      blocks.push_back(w + " tried to block the loop fiber on a fiber primitive " +
                       std::to_string(r.loop_blocks) + " time(s)");
    }
  }
  for (auto* v : {&fiber_time, &raw, &awaits, &runs, &use_fiber, &hosted, &yields, &blocks}) {
    not_ready.insert(not_ready.end(), v->begin(), v->end());
  }
}

std::string report::verdict() const {
  if (ready()) return "ready for " + goal;
  return "not ready for " + goal + ": " + std::to_string(not_ready.size()) + " reason(s)";
}

const report::row* report::find(std::string_view work) const noexcept {
  for (const auto& r : rows)
    if (r.work == work) return &r;
  return nullptr;
}

std::string report::to_text() const {
  std::string out = "bridge report\n";
  std::size_t name_w = 4;
  for (const auto& r : rows) name_w = std::max(name_w, r.work.size());
  std::string head = pad("work", name_w) + pad("calls", 8, true) + pad("fiber time", 10, true) +
                     pad("yields", 7, true) + pad("stalls", 7, true) + pad("longest", 9, true) +
                     pad("blocks", 7, true) + pad("raw", 5, true) + pad("await", 7, true) +
                     pad("in fiber", 9, true) + pad("use_fiber", 9, true) + "hosted";
  out += head + "\n";
  for (const auto& r : rows) {
    std::string line = pad(r.work, name_w) + pad(count(r.calls), 8, true) +
                       pad(format_duration(r.fiber_time), 10, true) +
                       pad(count(r.implicit_yields), 7, true) + pad(count(r.stalls), 7, true) +
                       pad(format_duration(r.longest_stall), 9, true) +
                       pad(count(r.loop_blocks), 7, true) + pad(count(r.raw_fibers), 5, true) +
                       pad(count(r.awaits), 7, true) + pad(count(r.runs_in_fiber), 9, true) +
                       pad(count(r.use_fiber_waits), 9, true) + pad(count(r.hosted_steps), 6, true);
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  out += "\nverdict: " + verdict() + "\n";
  for (const auto& reason : not_ready) out += "  - " + reason + "\n";
  return out;
}

json::object report::to_json() const {
  json::object o;
  o["goal"] = goal;
  o["ready"] = ready();
  o["verdict"] = verdict();
  json::array reasons;
  for (const auto& r : not_ready) reasons.emplace_back(r);
  o["reasons"] = std::move(reasons);
  json::array work;
  for (const auto& r : rows) {
    json::object w;
    w["work"] = r.work;
    w["calls"] = r.calls;
    w["fiber_time_ns"] = static_cast<std::uint64_t>(r.fiber_time.count());
    w["implicit_yields"] = r.implicit_yields;
    w["stalls"] = r.stalls;
    w["longest_stall_us"] = static_cast<std::uint64_t>(r.longest_stall.count());
    w["loop_blocks"] = r.loop_blocks;
    w["raw_fibers"] = r.raw_fibers;
    w["await"] = r.awaits;
    w["run_in_fiber"] = r.runs_in_fiber;
    w["use_fiber"] = r.use_fiber_waits;
    w["hosted_steps"] = r.hosted_steps;
    work.emplace_back(std::move(w));
  }
  o["work"] = std::move(work);
  return o;
}

namespace {

[[noreturn]] void fail(const std::string& what) {
  throw report_decode_error("bridge report JSON: " + what);
}

const json::object& obj(const json::value& v, const char* what) {
  if (!v.is_object()) fail(std::string(what) + " is not an object");
  return v.get_object();
}

const json::value& field(const json::object& o, const char* key, const char* where) {
  auto it = o.find(key);
  if (it == o.end()) fail(std::string(where) + " has no field '" + key + "'");
  return it->value();
}

std::string text(const json::object& o, const char* key, const char* where) {
  const auto& v = field(o, key, where);
  if (!v.is_string()) fail(std::string(where) + ": '" + key + "' is not a string");
  return std::string(v.get_string());
}

std::uint64_t number(const json::object& o, const char* key, const char* where) {
  const auto& v = field(o, key, where);
  if (v.is_uint64()) return v.get_uint64();
  if (v.is_int64() && v.get_int64() >= 0) return static_cast<std::uint64_t>(v.get_int64());
  fail(std::string(where) + ": '" + key + "' is not a count");
}

}  // namespace

report report::from_json(const json::value& v) {
  const auto& o = obj(v, "the report");
  report r;
  r.goal = text(o, "goal", "the report");
  const auto& reasons = field(o, "reasons", "the report");
  if (!reasons.is_array()) fail("'reasons' is not an array");
  for (const auto& reason : reasons.get_array()) {
    if (!reason.is_string()) fail("a reason is not a string");
    r.not_ready.emplace_back(reason.get_string());
  }
  const auto& work = field(o, "work", "the report");
  if (!work.is_array()) fail("'work' is not an array");
  for (const auto& item : work.get_array()) {
    const auto& w = obj(item, "a work row");
    row x;
    x.work = text(w, "work", "a work row");
    x.calls = number(w, "calls", "a work row");
    x.fiber_time = std::chrono::nanoseconds(number(w, "fiber_time_ns", "a work row"));
    x.implicit_yields = number(w, "implicit_yields", "a work row");
    x.stalls = number(w, "stalls", "a work row");
    x.longest_stall = std::chrono::microseconds(number(w, "longest_stall_us", "a work row"));
    x.loop_blocks = number(w, "loop_blocks", "a work row");
    x.raw_fibers = number(w, "raw_fibers", "a work row");
    x.awaits = number(w, "await", "a work row");
    x.runs_in_fiber = number(w, "run_in_fiber", "a work row");
    x.use_fiber_waits = number(w, "use_fiber", "a work row");
    x.hosted_steps = number(w, "hosted_steps", "a work row");
    r.rows.push_back(std::move(x));
  }
  return r;
}

}  // namespace coport::bridge
