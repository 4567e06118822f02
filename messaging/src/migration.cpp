#include <coport/messaging/executor.hpp>
#include <coport/messaging/migration.hpp>

#include <boost/json/serialize.hpp>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <ctime>

namespace json = boost::json;

namespace coport::messaging {

// ---------------------------------------------------------------- policy

policy policy::canary(unsigned percent) {
  if (percent > 100) {
    throw invalid_policy("canary share must be 0..100 %, got " + std::to_string(percent));
  }
  return {kind::canary, percent};
}

policy policy::parse(std::string_view text) {
  if (text == "legacy") return legacy();
  if (text == "ported") return ported();
  if (text == "shadow") return shadow();
  if (text.starts_with("canary:")) {
    std::string_view n = text.substr(7);
    if (n.ends_with('%')) n.remove_suffix(1);
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), value);
    if (ec != std::errc{} || end != n.data() + n.size() || n.empty()) {
      throw invalid_policy("canary policy '" + std::string(text) + "': expected canary:N with N in 0..100");
    }
    return canary(value);
  }
  throw invalid_policy("unknown policy '" + std::string(text) +
                       "': expected legacy, ported, canary:N (0..100) or shadow");
}

std::string policy::to_string() const {
  switch (what) {
    case kind::legacy: return "legacy";
    case kind::ported: return "ported";
    case kind::canary: return "canary:" + std::to_string(percent);
    case kind::shadow: return "shadow";
  }
  return "?";
}

// -------------------------------------------------------------- controls

namespace {

std::uint32_t pack(policy p) noexcept { return static_cast<std::uint32_t>(p.what) | (p.percent << 8); }
policy unpack(std::uint32_t v) noexcept {
  return policy{static_cast<policy::kind>(v & 0xff), v >> 8};
}

// splitmix64: a well-mixed 64-bit value from a counter.
std::uint64_t mix(std::uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

std::string full_name(const endpoint& e, const method& m) { return e.name() + "." + m.name(); }

// Throws unless `m` has the forms `p` needs.
void check_fits(const endpoint& e, const method& m, policy p) {
  const std::string name = full_name(e, m);
  const bool needs_legacy = p.what != policy::kind::ported;
  const bool needs_ported = p.what != policy::kind::legacy;
  if (needs_legacy && !m.legacy()) {
    throw invalid_policy("policy " + p.to_string() + " for " + name +
                         " needs its legacy (fiber) form, which is not registered");
  }
  if (needs_ported && !m.ported()) {
    throw invalid_policy("policy " + p.to_string() + " for " + name +
                         " needs its ported (coroutine) form, which is not registered");
  }
}

}  // namespace

struct migration_controls::state {
  const endpoint* ep = nullptr;
  const method* m = nullptr;
  std::atomic<std::uint32_t> current{0};
  std::atomic<std::uint64_t> shadow_calls{0};
  std::atomic<std::uint64_t> shadow_mismatches{0};
  std::size_t kept = 0;  // guarded by mismatch_mutex_
  bool strict = false;
};

migration_controls::migration_controls(std::shared_ptr<const dispatcher> d, migration_options options)
    : dispatcher_(std::move(d)), options_(std::move(options)) {
  if (!dispatcher_) throw std::invalid_argument("migration_controls: no dispatcher");
  std::map<std::string, bool, std::less<>> used;
  for (const auto& [key, p] : options_.policies) used[key] = false;
  auto matches = [](const std::vector<std::string>& names, const std::string& full, const std::string& bare) {
    return std::find(names.begin(), names.end(), full) != names.end() ||
           std::find(names.begin(), names.end(), bare) != names.end();
  };
  for (const auto& e : dispatcher_->endpoints()) {
    for (const auto& [name, m] : e->methods()) {
      auto st = std::make_unique<state>();
      st->ep = e.get();
      st->m = &m;
      const std::string full = full_name(*e, m);
      policy p = m.has_both_forms() ? options_.default_policy : (m.ported() ? policy::ported() : policy::legacy());
      auto it = options_.policies.find(full);
      if (it == options_.policies.end()) it = options_.policies.find(name);
      if (it != options_.policies.end()) {
        check_fits(*e, m, it->second);
        p = it->second;
        used[it->first] = true;
      }
      st->current.store(pack(p));
      st->strict = options_.strict && (options_.strict_methods.empty() || matches(options_.strict_methods, full, name));
      states_.emplace(&m, std::move(st));
    }
  }
  for (const auto& [key, was_used] : used) {
    if (!was_used) throw invalid_policy("policy for '" + key + "': no endpoint has such a method");
  }
}

migration_controls::~migration_controls() = default;

migration_controls::state& migration_controls::state_of(const endpoint&, const method& m) const {
  auto it = states_.find(&m);
  if (it == states_.end()) {
    throw std::logic_error("migration_controls: method " + m.name() + " is not in the controlled dispatcher");
  }
  return *it->second;
}

const method& migration_controls::find_method(std::string_view name, const endpoint** out) const {
  const method* found = nullptr;
  int count = 0;
  for (const auto& e : dispatcher_->endpoints()) {
    for (const auto& [mname, m] : e->methods()) {
      if (name == full_name(*e, m)) {
        *out = e.get();
        return m;
      }
      if (name == mname) {
        ++count;
        found = &m;
        *out = e.get();
      }
    }
  }
  if (count == 1) return *found;
  if (count > 1) {
    throw invalid_policy("method name '" + std::string(name) +
                         "' is served by several endpoints; name it as endpoint.method");
  }
  throw invalid_policy("no endpoint has a method named '" + std::string(name) + "'");
}

policy migration_controls::set_policy(std::string_view name, policy p) {
  if (p.what == policy::kind::canary && p.percent > 100) (void)policy::canary(p.percent);
  const endpoint* e = nullptr;
  const method& m = find_method(name, &e);
  check_fits(*e, m, p);
  return unpack(state_of(*e, m).current.exchange(pack(p)));
}

void migration_controls::set_all(policy p) {
  for (auto& [m, st] : states_) {
    if (st->m->has_both_forms()) st->current.store(pack(p));
  }
}

policy migration_controls::policy_of(const endpoint& e, const method& m) const {
  return unpack(state_of(e, m).current.load(std::memory_order_relaxed));
}

migration_controls::route migration_controls::choose(const endpoint& e, const method& m) {
  if (!m.has_both_forms()) return {m.ported() ? m.ported() : m.legacy(), nullptr};
  const policy p = policy_of(e, m);
  switch (p.what) {
    case policy::kind::legacy: return {m.legacy(), nullptr};
    case policy::kind::ported: return {m.ported(), nullptr};
    case policy::kind::shadow: return {m.legacy(), m.ported()};
    case policy::kind::canary: {
      const std::uint64_t draw = mix(options_.seed + draws_.fetch_add(1, std::memory_order_relaxed)) % 100;
      return {draw < p.percent ? m.ported() : m.legacy(), nullptr};
    }
  }
  return {m.ported(), nullptr};
}

std::size_t migration_controls::record_shadow(const endpoint& e, const method& m, bool equal, const json::object& args,
                                              std::string legacy, std::string ported) {
  state& st = state_of(e, m);
  st.shadow_calls.fetch_add(1, std::memory_order_relaxed);
  if (equal) return 0;
  st.shadow_mismatches.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lk(mismatch_mutex_);
  if (st.kept >= options_.mismatches_kept) return 0;
  ++st.kept;
  kept_.push_back(shadow_mismatch{e.name(), m.name(), args, std::move(legacy), std::move(ported),
                                  std::chrono::system_clock::now()});
  return st.kept;
}

std::pair<std::uint64_t, std::uint64_t> migration_controls::shadow_counts(const endpoint& e, const method& m) const {
  const state& st = state_of(e, m);
  return {st.shadow_calls.load(std::memory_order_relaxed), st.shadow_mismatches.load(std::memory_order_relaxed)};
}

std::vector<shadow_mismatch> migration_controls::mismatches() const {
  std::lock_guard lk(mismatch_mutex_);
  return kept_;
}

bool migration_controls::strict_for(const endpoint& e, const method& m) const { return state_of(e, m).strict; }

// ---------------------------------------------------------------- report

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

migration_report make_report(const migration_controls& controls, const std::vector<method_report>& metrics,
                             std::string_view executor_name) {
  migration_report r;
  r.executor = std::string(executor_name);
  std::vector<std::string> fiber_only, not_ported, yields, hosted, mismatched, stalled;
  for (const auto& e : controls.served().endpoints()) {
    for (const auto& [name, m] : e->methods()) {
      if (name.starts_with('_')) continue;  // never dispatched
      migration_report::method_row row;
      row.endpoint = e->name();
      row.method = name;
      row.kinds = m.has_both_forms() ? "both" : (m.ported() ? "coroutine" : "fiber");
      const policy p = controls.policy_of(*e, m);
      row.policy = p.to_string();
      for (const method_form* f : {m.legacy(), m.ported()}) {
        if (!f) continue;
        migration_report::form_row fr;
        fr.kind = f->kind;
        for (const auto& mr : metrics) {
          if (mr.endpoint == e->name() && mr.method == name && mr.kind == f->kind) {
            fr.mode = mr.mode;
            fr.calls = mr.calls;
            fr.errors = mr.errors;
            fr.cancelled = mr.cancelled;
            fr.p50 = mr.p50;
            fr.p99 = mr.p99;
            fr.implicit_yields = mr.implicit_yields;
            fr.stalls = mr.stalls;
            break;
          }
        }
        row.forms.push_back(std::move(fr));
      }
      std::tie(row.shadow_calls, row.shadow_mismatches) = controls.shadow_counts(*e, m);

      const std::string full = e->name() + "." + name;
      if (!m.ported()) fiber_only.push_back(full);
      else if (m.has_both_forms() && p.what != policy::kind::ported) {
        not_ported.push_back(full + " is served under policy " + row.policy + ", not ported");
      }
      for (const auto& fr : row.forms) {
        if (fr.kind != method_kind::coroutine) continue;
        if (fr.implicit_yields > 0) {
          yields.push_back(full + ": its coroutine form blocked fibers " + std::to_string(fr.implicit_yields) +
                           " time(s) (implicit yields: it still calls unported fiber code)");
        } else if (fr.mode == "hosted") {
          hosted.push_back(full + " runs hosted; run it native (fiber_executor_options::modes) to prove it "
                                  "no longer needs a fiber");
        }
        if (fr.stalls > 0) {
          stalled.push_back(full + ": its coroutine form stalled the loop " + std::to_string(fr.stalls) +
                            " time(s)");
        }
      }
      if (row.shadow_mismatches > 0) {
        mismatched.push_back(full + ": " + std::to_string(row.shadow_mismatches) + " of " +
                             std::to_string(row.shadow_calls) + " shadow call(s) answered differently");
      }
      r.methods.push_back(std::move(row));
    }
  }
  if (!fiber_only.empty()) {
    std::string list;
    for (const auto& f : fiber_only) list += (list.empty() ? "" : ", ") + f;
    r.not_ready.push_back(std::to_string(fiber_only.size()) + " method(s) have only a fiber form: " + list);
  }
  for (auto* v : {&not_ported, &yields, &hosted, &mismatched, &stalled}) {
    r.not_ready.insert(r.not_ready.end(), v->begin(), v->end());
  }
  r.mismatches = controls.mismatches();
  return r;
}

std::string migration_report::verdict() const {
  if (ready()) return "ready for coro_executor";
  return "not ready for coro_executor: " + std::to_string(not_ready.size()) + " reason(s)";
}

std::string migration_report::to_text() const {
  std::string out = "migration report (" + executor + ")\n";
  const std::size_t name_w = [&] {
    std::size_t w = 6;
    for (const auto& m : methods) w = std::max(w, m.endpoint.size() + 1 + m.method.size());
    return w;
  }();
  out += pad("method", name_w) + pad("kinds", 9) + pad("policy", 10) + pad("form", 9) + pad("mode", 11) +
         pad("calls", 8, true) + pad("errors", 7, true) + pad("p50", 9, true) + pad("p99", 9, true) +
         pad("yields", 7, true) + pad("stalls", 7, true) + "shadow\n";
  for (const auto& m : methods) {
    bool first = true;
    for (const auto& f : m.forms) {
      std::string line = first ? pad(m.endpoint + "." + m.method, name_w) + pad(m.kinds, 9) + pad(m.policy, 10)
                               : pad("", name_w) + pad("", 9) + pad("", 10);
      line += pad(f.kind == method_kind::fiber ? "legacy" : "ported", 9) + pad(f.mode.empty() ? "-" : f.mode, 11) +
              pad(std::to_string(f.calls), 8, true) + pad(std::to_string(f.errors), 7, true) +
              pad(format_duration(f.p50, f.calls), 9, true) + pad(format_duration(f.p99, f.calls), 9, true) +
              pad(f.kind == method_kind::coroutine ? std::to_string(f.implicit_yields) : "-", 7, true) +
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
      out += "  " + mm.endpoint + "." + mm.method + " " + json::serialize(mm.args) + "\n    legacy: " + mm.legacy +
             "\n    ported: " + mm.ported + "\n";
    }
  }
  out += "\nverdict: " + verdict() + "\n";
  for (const auto& reason : not_ready) out += "  - " + reason + "\n";
  return out;
}

json::object migration_report::to_json() const {
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
  return o;
}

namespace {

const json::value& field(const json::object& o, std::string_view key, const char* where) {
  const json::value* v = o.if_contains(key);
  if (!v) throw decode_error(std::string("migration report: ") + where + " has no '" + std::string(key) + "'");
  return *v;
}
std::string str(const json::object& o, std::string_view key, const char* where) {
  const auto& v = field(o, key, where);
  if (!v.is_string()) throw decode_error(std::string("migration report: ") + where + "." + std::string(key) + " is not a string");
  return std::string(v.get_string());
}
std::uint64_t count(const json::object& o, std::string_view key, const char* where) {
  const auto& v = field(o, key, where);
  if (v.is_uint64()) return v.get_uint64();
  if (v.is_int64() && v.get_int64() >= 0) return static_cast<std::uint64_t>(v.get_int64());
  throw decode_error(std::string("migration report: ") + where + "." + std::string(key) + " is not a count");
}
const json::object& obj(const json::value& v, const char* where) {
  if (!v.is_object()) throw decode_error(std::string("migration report: ") + where + " is not an object");
  return v.get_object();
}
const json::array& arr(const json::object& o, std::string_view key, const char* where) {
  const auto& v = field(o, key, where);
  if (!v.is_array()) throw decode_error(std::string("migration report: ") + where + "." + std::string(key) + " is not an array");
  return v.get_array();
}
std::chrono::nanoseconds micros(const json::object& o, std::string_view key, const char* where) {
  const auto& v = field(o, key, where);
  if (!v.is_number()) throw decode_error(std::string("migration report: ") + where + "." + std::string(key) + " is not a number");
  return std::chrono::nanoseconds(static_cast<std::int64_t>(v.to_number<double>() * 1000.0));
}

}  // namespace

migration_report migration_report::from_json(const json::value& v) {
  const auto& o = obj(v, "the report");
  migration_report r;
  r.executor = str(o, "executor", "the report");
  for (const auto& reason : arr(o, "reasons", "the report")) {
    if (!reason.is_string()) throw decode_error("migration report: a reason is not a string");
    r.not_ready.emplace_back(reason.get_string());
  }
  for (const auto& mv : arr(o, "methods", "the report")) {
    const auto& mo = obj(mv, "a method");
    method_row m;
    m.endpoint = str(mo, "endpoint", "a method");
    m.method = str(mo, "method", "a method");
    m.kinds = str(mo, "kinds", "a method");
    m.policy = str(mo, "policy", "a method");
    const auto& shadow = obj(field(mo, "shadow", "a method"), "a method's shadow");
    m.shadow_calls = count(shadow, "calls", "shadow");
    m.shadow_mismatches = count(shadow, "mismatches", "shadow");
    for (const auto& fv : arr(mo, "forms", "a method")) {
      const auto& fo = obj(fv, "a form");
      form_row f;
      const std::string kind = str(fo, "kind", "a form");
      if (kind == "fiber") f.kind = method_kind::fiber;
      else if (kind == "coroutine") f.kind = method_kind::coroutine;
      else throw decode_error("migration report: unknown form kind '" + kind + "'");
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

}  // namespace coport::messaging
