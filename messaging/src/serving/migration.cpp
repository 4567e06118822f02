#include <coport/messaging/serving/executor.hpp>
#include <coport/messaging/serving/migration.hpp>

#include <algorithm>

namespace json = boost::json;

namespace coport::messaging {

namespace {

std::string full_name(const endpoint& e, const method& m) { return e.name() + "." + m.name(); }

migration::registry_options registry_options_of(const migration_options& o) {
  return {.policies = o.policies, .default_policy = o.default_policy, .seed = o.seed,
          .mismatches_kept = o.mismatches_kept};
}

}  // namespace

migration_controls::migration_controls(std::shared_ptr<const dispatcher> d, migration_options options)
    : dispatcher_(std::move(d)), options_(std::move(options)), registry_({}, registry_options_of(options_)) {
  if (!dispatcher_) throw std::invalid_argument("migration_controls: no dispatcher");
  auto matches = [](const std::vector<std::string>& names, const std::string& full, const std::string& bare) {
    return std::find(names.begin(), names.end(), full) != names.end() ||
           std::find(names.begin(), names.end(), bare) != names.end();
  };
  for (const auto& e : dispatcher_->endpoints()) {
    for (const auto& [name, m] : e->methods()) {
      state st;
      st.m = &m;
      st.point = &registry_.declare(name, m.legacy() != nullptr, m.ported() != nullptr, e->name(), name);
      st.strict = options_.strict &&
                  (options_.strict_methods.empty() || matches(options_.strict_methods, full_name(*e, m), name));
      states_.emplace(&m, st);
    }
  }
  for (const auto& key : registry_.unused_policies()) {
    throw invalid_policy("policy for '" + key + "': no endpoint has such a method");
  }
}

migration_controls::~migration_controls() = default;

const migration_controls::state& migration_controls::state_of(const endpoint&, const method& m) const {
  auto it = states_.find(&m);
  if (it == states_.end()) {
    throw std::logic_error("migration_controls: method " + m.name() + " is not in the controlled dispatcher");
  }
  return it->second;
}

policy migration_controls::set_policy(std::string_view name, policy p) { return registry_.set_policy(name, p); }

void migration_controls::set_all(policy p) { registry_.set_all(p); }

policy migration_controls::policy_of(const endpoint& e, const method& m) const {
  return state_of(e, m).point->current();
}

migration_controls::route migration_controls::choose(const endpoint& e, const method& m) {
  const migration::point_record::route r = state_of(e, m).point->choose();
  const method_form* primary = r.primary == migration::form_kind::fiber ? m.legacy() : m.ported();
  return {primary, r.shadow ? m.ported() : nullptr};
}

std::size_t migration_controls::record_shadow(const endpoint& e, const method& m, bool equal,
                                              const json::object& args, std::string legacy, std::string ported) {
  return state_of(e, m).point->record_shadow(equal, args, std::move(legacy), std::move(ported));
}

std::pair<std::uint64_t, std::uint64_t> migration_controls::shadow_counts(const endpoint& e, const method& m) const {
  return state_of(e, m).point->shadow_counts();
}

std::vector<shadow_mismatch> migration_controls::mismatches() const { return registry_.mismatches(); }

bool migration_controls::strict_for(const endpoint& e, const method& m) const { return state_of(e, m).strict; }

// ---------------------------------------------------------------- report

migration_report make_report(const migration_controls& controls, const std::vector<method_report>& metrics,
                             std::string_view executor_name) {
  migration_report r;
  r.executor = std::string(executor_name);
  for (const auto& e : controls.served().endpoints()) {
    for (const auto& [name, m] : e->methods()) {
      if (name.starts_with('_')) continue;  // never dispatched
      migration_report::method_row row;
      row.endpoint = e->name();
      row.method = name;
      row.kinds = m.has_both_forms() ? "both" : (m.ported() ? "coroutine" : "fiber");
      row.policy = controls.policy_of(*e, m).to_string();
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
            fr.in_flight = mr.in_flight;
            fr.latency = mr.latency;
            fr.implicit_yields = mr.implicit_yields;
            fr.stalls = mr.stalls;
            break;
          }
        }
        row.forms.push_back(std::move(fr));
      }
      std::tie(row.shadow_calls, row.shadow_mismatches) = controls.shadow_counts(*e, m);
      r.methods.push_back(std::move(row));
    }
  }
  // Mismatches of other points declared in the same registry belong to
  // their own report (registry::make_report).
  const auto& eps = controls.served().endpoints();
  for (auto& mm : controls.mismatches()) {
    const bool of_endpoint =
        std::any_of(eps.begin(), eps.end(), [&](const auto& e) { return e->name() == mm.endpoint; });
    if (of_endpoint) r.mismatches.push_back(std::move(mm));
  }
  r.judge();
  return r;
}

migration_report migration_report::from_json(const json::value& v) {
  try {
    return migration_report(migration::report::from_json(v));
  } catch (const migration::report_decode_error& e) {
    throw decode_error(e.what());
  }
}

}  // namespace coport::messaging
