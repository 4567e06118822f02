#include <coport/migration/points.hpp>

#include <algorithm>

namespace coport::migration {

namespace {

std::uint32_t pack(policy p) noexcept { return static_cast<std::uint32_t>(p.what) | (p.percent << 8); }
policy unpack(std::uint32_t v) noexcept { return policy{static_cast<policy::kind>(v & 0xff), v >> 8}; }

// splitmix64: a well-mixed 64-bit value from a counter.
std::uint64_t mix(std::uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

// ----------------------------------------------------------------- point

point_record::point_record(registry& r, std::string group, std::string name, bool has_legacy, bool has_ported,
                           policy p)
    : registry_(r),
      group_(std::move(group)),
      name_(std::move(name)),
      full_(group_.empty() ? name_ : group_ + "." + name_),
      has_legacy_(has_legacy),
      has_ported_(has_ported),
      current_(pack(p)) {}

policy point_record::current() const noexcept { return unpack(current_.load(std::memory_order_relaxed)); }

point_record::route point_record::choose() noexcept {
  if (!(has_legacy_ && has_ported_)) return {has_ported_ ? form_kind::coroutine : form_kind::fiber, false};
  const policy p = current();
  switch (p.what) {
    case policy::kind::legacy: return {form_kind::fiber, false};
    case policy::kind::ported: return {form_kind::coroutine, false};
    case policy::kind::shadow: return {form_kind::fiber, true};
    case policy::kind::canary:
      return {registry_.draw() % 100 < p.percent ? form_kind::coroutine : form_kind::fiber, false};
  }
  return {form_kind::coroutine, false};
}

std::size_t point_record::record_shadow(bool equal, const boost::json::object& args, std::string legacy,
                                        std::string ported) {
  shadow_calls_.fetch_add(1, std::memory_order_relaxed);
  if (equal) return 0;
  shadow_mismatches_.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lk(registry_.mutex_);
  if (kept_ >= registry_.options_.mismatches_kept) return 0;
  ++kept_;
  registry_.kept_.push_back(
      shadow_mismatch{group_, name_, args, std::move(legacy), std::move(ported), std::chrono::system_clock::now()});
  return kept_;
}

std::pair<std::uint64_t, std::uint64_t> point_record::shadow_counts() const noexcept {
  return {shadow_calls_.load(std::memory_order_relaxed), shadow_mismatches_.load(std::memory_order_relaxed)};
}

// -------------------------------------------------------------- registry

registry::registry(std::string name, registry_options options) : name_(std::move(name)), options_(std::move(options)) {
  for (const auto& [key, p] : options_.policies) {
    if (p.what == policy::kind::canary) (void)policy::canary(p.percent);
    policy_used_[key] = false;
  }
}

registry::~registry() = default;

std::uint64_t registry::draw() noexcept {
  return mix(options_.seed + draws_.fetch_add(1, std::memory_order_relaxed));
}

point_record& registry::declare(std::string_view name, bool has_legacy, bool has_ported, std::string_view group,
                                std::string_view alias) {
  if (!has_legacy && !has_ported) throw invalid_policy("migration point '" + std::string(name) + "' has no form");
  std::string g(group.empty() ? std::string_view(name_) : group);
  const std::string full = g.empty() ? std::string(name) : g + "." + std::string(name);
  std::lock_guard lk(mutex_);
  for (const auto& p : points_) {
    if (p->full_name() == full) {
      throw invalid_policy("migration point '" + full + "' is declared twice", errc::duplicate_point);
    }
  }
  policy p = has_legacy && has_ported ? options_.default_policy : (has_ported ? policy::ported() : policy::legacy());
  auto it = options_.policies.find(full);
  if (it == options_.policies.end() && !alias.empty()) it = options_.policies.find(alias);
  if (it == options_.policies.end() && full != name) it = options_.policies.find(name);
  if (it != options_.policies.end()) {
    check_fits(full, has_legacy, has_ported, it->second);
    p = it->second;
    policy_used_[it->first] = true;
  }
  points_.push_back(std::unique_ptr<point_record>(
      new point_record(*this, std::move(g), std::string(name), has_legacy, has_ported, p)));
  return *points_.back();
}

point_record* registry::find(std::string_view name) const {
  std::lock_guard lk(mutex_);
  point_record* found = nullptr;
  int count = 0;
  for (const auto& p : points_) {
    if (p->full_name() == name) return p.get();
    if (p->name() == name) {
      ++count;
      found = p.get();
    }
  }
  return count == 1 ? found : nullptr;
}

policy registry::set_policy(std::string_view name, policy p) {
  point_record* r = find(name);
  if (!r) {
    std::size_t same_name = 0;
    for (const auto* q : points()) same_name += q->name() == name ? 1 : 0;
    if (same_name > 1) {
      throw invalid_policy("method name '" + std::string(name) +
                               "' is served by several endpoints; name it as endpoint.method",
                           errc::unknown_point);
    }
    throw invalid_policy("no endpoint or migration point is named '" + std::string(name) + "'",
                         errc::unknown_point);
  }
  check_fits(r->full_name(), r->has_legacy(), r->has_ported(), p);
  return unpack(r->current_.exchange(pack(p)));
}

void registry::set_all(policy p) {
  for (auto* r : points()) {
    if (r->has_legacy() && r->has_ported()) r->current_.store(pack(p));
  }
}

std::vector<std::string> registry::unused_policies() const {
  std::lock_guard lk(mutex_);
  std::vector<std::string> out;
  for (const auto& [key, used] : policy_used_) {
    if (!used) out.push_back(key);
  }
  return out;
}

std::vector<shadow_mismatch> registry::mismatches() const {
  std::lock_guard lk(mutex_);
  return kept_;
}

std::vector<point_record*> registry::points() const {
  std::lock_guard lk(mutex_);
  std::vector<point_record*> out;
  out.reserve(points_.size());
  for (const auto& p : points_) out.push_back(p.get());
  return out;
}

void registry::set_counters_source(counters_source source) {
  std::lock_guard lk(mutex_);
  counters_ = std::move(source);
}

report registry::make_report() const {
  report r;
  r.executor = "migration points";
  r.goal = "removing Boost.Fiber";
  counters_source counters;
  {
    std::lock_guard lk(mutex_);
    counters = counters_;
  }
  for (const point_record* p : points()) {
    report::method_row row;
    row.endpoint = p->group();
    row.method = p->name();
    row.unit = "point";
    row.kinds = p->has_legacy() && p->has_ported() ? "both" : (p->has_ported() ? "coroutine" : "fiber");
    row.policy = p->current().to_string();
    for (form_kind k : {form_kind::fiber, form_kind::coroutine}) {
      if (!(k == form_kind::fiber ? p->has_legacy() : p->has_ported())) continue;
      const form_metrics& m = p->metrics(k);
      report::form_row f;
      f.kind = k;
      f.mode = k == form_kind::fiber ? p->mode_legacy : p->mode_ported;
      f.calls = m.calls.load(std::memory_order_relaxed);
      f.errors = m.errors.load(std::memory_order_relaxed);
      f.cancelled = m.cancelled.load(std::memory_order_relaxed);
      f.p50 = m.latency.percentile(0.5);
      f.p99 = m.latency.percentile(0.99);
      f.in_flight = m.in_flight.load(std::memory_order_relaxed);
      f.latency = m.latency.buckets();
      if (counters) {
        const work_counters c = counters(k == form_kind::fiber ? p->full_name() + " [legacy]" : p->full_name());
        f.implicit_yields = c.implicit_yields;
        f.stalls = c.stalls;
      }
      row.forms.push_back(std::move(f));
    }
    std::tie(row.shadow_calls, row.shadow_mismatches) = p->shadow_counts();
    r.methods.push_back(std::move(row));
  }
  r.mismatches = mismatches();
  r.judge();
  return r;
}

}  // namespace coport::migration
