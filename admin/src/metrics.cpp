// GET /metrics. Every figure is read from the counters coport keeps anyway
// (the report's rows, the bridge's work tags), when Prometheus scrapes: no
// call on a service's path counts anything twice. prometheus-cpp's
// registry and metric classes are for counters a program updates itself,
// so only its data model (MetricFamily) and its text serializer are used.

#include "exposition.hpp"

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <deque>
#include <iterator>
#include <limits>

namespace coport::admin::detail {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

double seconds(std::chrono::nanoseconds d) { return static_cast<double>(d.count()) / 1e9; }

// A deque: the references add() returns stay valid while families are added.
struct families {
  std::deque<MetricFamily> list;

  MetricFamily& add(std::string name, std::string help, MetricType type) {
    list.push_back(MetricFamily{std::move(name), std::move(help), type, {}});
    return list.back();
  }
};

ClientMetric with_labels(std::vector<ClientMetric::Label> labels) {
  ClientMetric m;
  m.label = std::move(labels);
  return m;
}

void counter(MetricFamily& f, std::vector<ClientMetric::Label> labels, double value) {
  ClientMetric m = with_labels(std::move(labels));
  m.counter.value = value;
  f.metric.push_back(std::move(m));
}

void gauge(MetricFamily& f, std::vector<ClientMetric::Label> labels, double value) {
  ClientMetric m = with_labels(std::move(labels));
  m.gauge.value = value;
  f.metric.push_back(std::move(m));
}

void migration_families(families& out, const migration::report& r) {
  auto& calls = out.add("coport_migration_calls_total", "Calls finished, per migration point and form.",
                        MetricType::Counter);
  auto& errors = out.add("coport_migration_errors_total", "Calls that ended in an exception.", MetricType::Counter);
  auto& cancelled = out.add("coport_migration_cancelled_total", "Calls cancelled (deadline, stop).",
                            MetricType::Counter);
  auto& in_flight = out.add("coport_migration_in_flight", "Calls running now.", MetricType::Gauge);
  auto& duration = out.add("coport_migration_call_duration_seconds", "Time a call took, per point and form.",
                           MetricType::Histogram);
  auto& yields = out.add("coport_migration_implicit_yields_total",
                         "Times a form blocked fibers from a hosted coroutine (code not ported yet).",
                         MetricType::Counter);
  auto& stalls = out.add("coport_migration_stalls_total", "Times a form kept its loop past the stall threshold.",
                         MetricType::Counter);
  auto& shadow_calls = out.add("coport_migration_shadow_calls_total", "Calls that ran both forms (shadow).",
                               MetricType::Counter);
  auto& shadow_mismatches = out.add("coport_migration_shadow_mismatches_total",
                                    "Shadow calls whose two forms answered differently.", MetricType::Counter);
  auto& policy = out.add("coport_migration_policy", "The point's current policy (the label; the value is 1).",
                         MetricType::Gauge);
  for (const auto& row : r.methods) {
    const std::string point = row.full_name();
    for (const auto& f : row.forms) {
      const std::vector<ClientMetric::Label> labels{
          {"point", point}, {"form", f.kind == migration::form_kind::fiber ? "legacy" : "ported"}};
      counter(calls, labels, static_cast<double>(f.calls));
      counter(errors, labels, static_cast<double>(f.errors));
      counter(cancelled, labels, static_cast<double>(f.cancelled));
      gauge(in_flight, labels, static_cast<double>(f.in_flight));
      counter(yields, labels, static_cast<double>(f.implicit_yields));
      counter(stalls, labels, static_cast<double>(f.stalls));
      ClientMetric h = with_labels(labels);
      h.histogram.sample_count = f.latency.count;
      h.histogram.sample_sum = seconds(f.latency.sum);
      for (std::size_t i = 0; i < migration::latency_buckets::size; ++i) {
        h.histogram.bucket.push_back({f.latency.cumulative[i], migration::latency_buckets::bounds_seconds[i]});
      }
      h.histogram.bucket.push_back({f.latency.count, std::numeric_limits<double>::infinity()});
      duration.metric.push_back(std::move(h));
    }
    counter(shadow_calls, {{"point", point}}, static_cast<double>(row.shadow_calls));
    counter(shadow_mismatches, {{"point", point}}, static_cast<double>(row.shadow_mismatches));
    gauge(policy, {{"point", point}, {"policy", row.policy}}, 1);
  }
  gauge(out.add("coport_migration_ready", "1 when the report's verdict is ready, else 0.", MetricType::Gauge), {},
        r.ready() ? 1 : 0);
  gauge(out.add("coport_migration_not_ready_reasons", "Reasons the verdict gives against the move.",
                MetricType::Gauge),
        {}, static_cast<double>(r.not_ready.size()));
}

void work_families(families& out, const std::vector<std::pair<std::string, const bridge::diagnostics*>>& work) {
  if (work.empty()) return;
  auto& stalls = out.add("coport_work_stalls_total", "Times this work kept its loop past the stall threshold.",
                         MetricType::Counter);
  auto& longest = out.add("coport_work_longest_stall_seconds", "The longest stall of this work.",
                          MetricType::Gauge);
  auto& yields = out.add("coport_work_implicit_yields_total",
                         "Times a hosted coroutine of this work blocked its host fiber.", MetricType::Counter);
  auto& loop_blocks = out.add("coport_work_loop_blocks_total",
                              "Times native code of this work tried to block the loop on a fiber primitive.",
                              MetricType::Counter);
  auto& started = out.add("coport_work_started_total", "Pieces of this work the bridge saw start.",
                          MetricType::Counter);
  auto& fiber_time = out.add("coport_work_fiber_seconds_total", "CPU time in fibers running this work.",
                             MetricType::Counter);
  auto& awaits = out.add("coport_work_cross_world_calls_total",
                         "Cross-world calls this work made (bridge::await, use_fiber waits).", MetricType::Counter);
  for (const auto& [runtime, d] : work) {
    for (const auto& c : d->snapshot()) {
      const std::vector<ClientMetric::Label> labels{{"runtime", runtime}, {"work", c.name}};
      counter(stalls, labels, static_cast<double>(c.stalls));
      gauge(longest, labels, seconds(c.longest_stall));
      counter(yields, labels, static_cast<double>(c.implicit_yields));
      counter(loop_blocks, labels, static_cast<double>(c.loop_blocks));
      counter(started, labels, static_cast<double>(c.calls));
      counter(fiber_time, labels, seconds(c.fiber_time));
      counter(awaits, labels, static_cast<double>(c.awaits + c.use_fiber_waits));
    }
  }
}

void loop_families(families& out, const std::vector<const bridge::runtime*>& loops) {
  if (loops.empty()) return;
  auto& busy = out.add("coport_loop_busy_seconds_total", "Time the loop's thread ran work since it started.",
                       MetricType::Counter);
  auto& idle = out.add("coport_loop_idle_seconds_total", "Time the loop waited in the kernel since it started.",
                       MetricType::Counter);
  auto& stalls = out.add("coport_loop_stalls_total", "Stalls found on the loop.", MetricType::Counter);
  auto& work = out.add("coport_loop_tracked_work",
                       "Fibers and coroutines started through the loop's runtime and still running.",
                       MetricType::Gauge);
  auto& fibers = out.add("coport_loop_fibers", "Fibers alive on the loop (pooled and raw).", MetricType::Gauge);
  for (const bridge::runtime* rt : loops) {
    const bridge::loop_stats s = rt->stats();
    const std::vector<ClientMetric::Label> labels{{"loop", s.name}};
    counter(busy, labels, seconds(s.busy));
    counter(idle, labels, seconds(s.idle));
    counter(stalls, labels, static_cast<double>(s.stalls));
    gauge(work, labels, static_cast<double>(s.tracked_work));
    gauge(fibers, labels, static_cast<double>(s.fibers));
  }
}

void transport_families(
    families& out,
    const std::vector<std::pair<std::string, std::shared_ptr<const messaging::transport>>>& transports) {
  if (transports.empty()) return;
  auto& connected = out.add("coport_transport_connected",
                            "1 while the transport's connection is up (as its driver last saw it).",
                            MetricType::Gauge);
  struct family {
    const char* name;
    const char* help;
    std::uint64_t messaging::transport_stats::*field;
  };
  static constexpr family counters[] = {
      {"coport_transport_connects_total", "Connections made, the first included.",
       &messaging::transport_stats::connects},
      {"coport_transport_reconnects_total", "Connections made again after one was lost.",
       &messaging::transport_stats::reconnects},
      {"coport_transport_publishes_total", "Messages published: calls, casts, replies, notifications.",
       &messaging::transport_stats::publishes},
      {"coport_transport_confirms_total", "Publisher confirms received (acks).", &messaging::transport_stats::confirms},
      {"coport_transport_nacks_total", "Publisher confirms that were negative.", &messaging::transport_stats::nacks},
      {"coport_transport_returns_total", "Messages returned as unroutable.", &messaging::transport_stats::returns},
      {"coport_transport_redeliveries_total", "Messages received with the broker's redelivered flag.",
       &messaging::transport_stats::redeliveries},
      {"coport_transport_received_total", "Messages received: requests, replies, notifications.",
       &messaging::transport_stats::received},
  };
  std::vector<MetricFamily*> fs;
  for (const auto& c : counters) fs.push_back(&out.add(c.name, c.help, MetricType::Counter));
  for (const auto& [name, t] : transports) {
    const messaging::transport_stats s = t->stats();
    gauge(connected, {{"transport", name}, {"driver", s.driver}}, s.connected ? 1 : 0);
    for (std::size_t i = 0; i < std::size(counters); ++i) {
      counter(*fs[i], {{"transport", name}}, static_cast<double>(s.*counters[i].field));
    }
  }
}

void server_families(families& out, const server_counters& s) {
  counter(out.add("coport_admin_requests_total", "Requests the admin server answered.", MetricType::Counter), {},
          static_cast<double>(s.requests.load(std::memory_order_relaxed)));
  auto& refused = out.add("coport_admin_refused_total", "Connections and requests the admin server refused.",
                          MetricType::Counter);
  static constexpr const char* reasons[] = {"connections", "header_limit", "body_limit",
                                            "timeout",     "malformed",    "unauthorized"};
  static_assert(std::size(reasons) == static_cast<std::size_t>(refusal::count_));
  for (std::size_t i = 0; i < std::size(reasons); ++i) {
    counter(refused, {{"reason", reasons[i]}}, static_cast<double>(s.refused[i].load(std::memory_order_relaxed)));
  }
  gauge(out.add("coport_admin_connections", "Connections open to the admin server.", MetricType::Gauge), {},
        static_cast<double>(s.connections.load(std::memory_order_relaxed)));
  counter(out.add("coport_admin_policy_changes_total", "Policy changes made through the admin server.",
                  MetricType::Counter),
          {}, static_cast<double>(s.policy_changes.load(std::memory_order_relaxed)));
}

}  // namespace

std::string exposition(const migration::report& r, const exposed& more, const server_counters& server) {
  families out;
  migration_families(out, r);
  loop_families(out, more.loops);
  transport_families(out, more.transports);
  work_families(out, more.work);
  server_families(out, server);
  return prometheus::TextSerializer().Serialize(
      std::vector<MetricFamily>(std::make_move_iterator(out.list.begin()), std::make_move_iterator(out.list.end())));
}

}  // namespace coport::admin::detail
