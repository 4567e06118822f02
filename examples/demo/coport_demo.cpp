// coport-demo: a metering service half-way through its port from
// Boost.Fiber to C++20 coroutines, under load, and what coport says about it.
//
//   coport-demo [--calls N] [--notifications N] [--transport URL] [--phases] [--json] [--verbose]
//               [--http-port N] [--stall-threshold MS] [--http HOST:PORT]
//   coport-demo --help | --version
//
// The service (metering.hpp) stores usage samples and answers queries on
// them. Its release 2 is half-ported: one method has no ported form yet,
// one is ported, one runs its ported form for a share of the calls
// (canary), one runs both forms and compares them (shadow), and one is
// ported in shape but still calls the legacy storage client. It also
// answers the same queries over a REST API on Boost.Beast (rest.hpp), whose
// routes are migration points in the same stages (legacy only, ported,
// shadow, canary), and stores usage notifications through a migration
// point. The program serves it on fiber_executor, sends it thousands of
// calls and usage notifications from coroutine and fiber clients, and REST
// queries from coroutines (traffic.hpp), checks every answer, and prints
// the migration report: per method, route and form, calls, latency,
// implicit yields, stalls, shadow mismatches, and whether the service can
// move to coro_executor.
//
// --phases walks the whole port in one run, one report per phase:
//   1. release 1, every method legacy, on fiber_executor;
//   2. release 2, mixed (the default run);
//   3. release 3, every method in both forms, coroutines native, started
//      with the same canary and shadow, then switched to ported at run time;
//   4. release 3 on coro_executor over a plain io_context: no fibers, and
//      no migration points (they run on a coport runtime): no REST API,
//      notifications stored by the ported client.
//
// --http HOST:PORT serves the service's admin HTTP server (coport::admin):
// /metrics for Prometheus, the /migration dashboard, /migration.json and
// POST /policy (with the token in $COPORT_ADMIN_TOKEN). After the traffic
// and the report the demo then keeps serving, the service idle, until
// SIGINT or SIGTERM, so that a person (or Prometheus) can look at it.
//
// Each phase serves a fresh store and gets the same traffic. Exit status: 0
// when every answer and the report's counts are as expected, 1 otherwise
// (with what was wrong on stderr), 3 when the transport cannot be opened,
// 64 for a command line it cannot use.
#include "../example_common.hpp"
#include "metering.hpp"
#include "rest.hpp"
#include "traffic.hpp"

#include <coport/admin/http_server.hpp>
#include <coport/bridge/runtime.hpp>
#include <coport/coro_executor/coro_executor.hpp>
#include <coport/fiber_executor/fiber_executor.hpp>
#include <coport/messaging/serving/executor.hpp>
#include <coport/messaging/serving/migration.hpp>
#include <coport/messaging/notify/notify.hpp>
#include <coport/messaging/transport/rabbit.hpp>
#include <coport/migration/points.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/array.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace bridge = coport::bridge;
namespace json = boost::json;
namespace msg = coport::messaging;
namespace mig = coport::migration;
namespace ex = coport_example;
namespace cli = coport_example::cli;

namespace {

struct config {
  std::size_t calls = 3000;
  std::size_t notifications = 500;
  std::string transport = "memory://";
  bool phases = false;
  bool json = false;
  bool verbose = false;
  unsigned http_port = 0;  // 0: an ephemeral port
  /// The service loop's stall threshold (bridge::runtime_options); 0 off.
  unsigned stall_threshold_ms = 25;
  /// --http: the admin server's address, and its token ($COPORT_ADMIN_TOKEN).
  std::optional<cli::listen_address> http;
  std::optional<std::string> admin_token;
};

// Reads the command line into `c`: std::nullopt when the demo is to run,
// else the status to exit with (cli::parse).
std::optional<int> parse_command_line(int argc, char** argv, config& c) {
  CLI::App app(
      "A metering service half-way through its port from Boost.Fiber to C++20\n"
      "coroutines, under load: checks every answer, then prints the migration report\n"
      "and whether the service can move to coro_executor. Exit status: 0 as expected,\n"
      "1 otherwise, 3 when the transport cannot be opened.",
      "coport-demo");
  cli::setup(app, {.redact = ex::mask_passwords});
  app.add_option("--calls", c.calls, "RPC calls per phase (default 3000): 3/5 record,\n2/5 queries")
      ->type_name("N")
      ->check(cli::count());
  app.add_option("--notifications", c.notifications, "usage notifications per phase (default 500)")
      ->type_name("N")
      ->check(cli::count(0));
  app.add_option("--transport", c.transport,
                 "memory:// (default, in this process) or\n"
                 "rabbit://user:pass@host:5672/")
      ->type_name("URL");
  app.add_flag("--phases", c.phases, "walk the port: legacy, mixed, ported, coro_executor;\na report after each");
  app.add_flag("--json", c.json, "print the report(s) as JSON instead of text");
  app.add_flag("--verbose", c.verbose,
               "show the library's log on stderr (start-up, the\n"
               "first shadow mismatches)");
  app.add_option("--http-port", c.http_port,
                 "port of the REST API on 127.0.0.1 (default 0: one\n"
                 "the system chooses, printed)")
      ->type_name("N")
      ->check(CLI::Range(0u, 65535u).description(""));
  app.add_option("--stall-threshold", c.stall_threshold_ms,
                 "report native work that holds the service's loop\n"
                 "longer than MS milliseconds as a stall (default 25;\n"
                 "0 turns the detector off)")
      ->type_name("MS")
      ->check(CLI::Range(0u, 60000u).description(""));
  std::string http;
  CLI::Option* http_option =
      cli::add_http_option(app, http, ", then keep serving after\nthe traffic until SIGINT or SIGTERM");
  return cli::parse(app, argc, argv, [&] {
    if (http_option->count() == 0) return;
    if (c.phases || c.json) throw ex::usage_error("--http serves the default run, not --phases or --json");
    c.http = cli::parse_listen_address(http);
    if (const char* token = std::getenv("COPORT_ADMIN_TOKEN"); token && *token) c.admin_token = token;
  });
}

// ------------------------------------------------------------------ phases

/// One step of the port: a release of the service, the executor serving it
/// and the migration settings it starts with.
struct phase {
  std::string name{};
  std::string executor{};  // "fiber_executor" or "coro_executor"
  std::string summary{};   // one line: what is registered and how it is served
  metering::release release = metering::release::legacy;
  msg::migration_options migration{};
  /// The policies of the service's other migration points (the REST
  /// routes, notifications), on fiber_executor.
  mig::registry_options points{};
  coport::fiber_executor_options fiber{};
  /// set_all(ported) half-way through the queries.
  bool to_ported_midway = false;
};

constexpr std::uint64_t canary_seed = 2014;

// The configuration of release 2, as an operator would write it.
msg::migration_options mixed_policies() {
  msg::migration_options o;
  o.policies.emplace("metering.record", msg::policy::canary(25));  // a quarter of the writes, ported
  o.policies.emplace("metering.total", msg::policy::ported());
  o.policies.emplace("metering.stats", msg::policy::shadow());     // both run, legacy answers
  o.policies.emplace("metering.usage", msg::policy::ported());
  o.seed = canary_seed;
  o.mismatches_kept = 2;  // per method: enough to see what differs
  return o;
}

// The same for the REST routes and notifications (rest.hpp): the other
// stages of a port, on the routes that have both forms.
mig::registry_options mixed_point_policies() {
  mig::registry_options o;
  o.policies.emplace("rest.statistics", msg::policy::shadow());
  o.policies.emplace("rest.usage", msg::policy::canary(50));
  o.seed = canary_seed;
  o.mismatches_kept = 2;
  return o;
}

phase legacy_phase() {
  phase p{.name = "all legacy",
          .executor = "fiber_executor",
          .summary = "release 1, before the port: record, total, stats, resources, usage in their legacy "
                     "(fiber) form only",
          .release = metering::release::legacy};
  p.migration.seed = canary_seed;
  p.points.seed = canary_seed;
  return p;
}

phase mixed_phase() {
  phase p{.name = "mixed",
          .executor = "fiber_executor",
          .summary = "release 2: resources legacy only; record canary:25, total ported, stats shadow "
                     "(native); usage ported but hosted, still on the legacy storage client",
          .release = metering::release::mixed,
          .migration = mixed_policies(),
          .points = mixed_point_policies()};
  // Coroutine forms that only co_await run natively on the loop; `usage`
  // keeps the default, hosted, because it still blocks on the legacy client.
  p.fiber.default_mode = coport::coroutine_mode::hosted;
  for (const char* m : {"metering.record", "metering.total", "metering.stats"}) {
    p.fiber.modes.emplace(m, coport::coroutine_mode::native);
  }
  return p;
}

phase ported_phase() {
  phase p{.name = "all ported",
          .executor = "fiber_executor",
          .summary = "release 3: every method in both forms, ported forms native; starts with release 2's "
                     "canary and shadow, then set_all(ported) half-way through the queries",
          .release = metering::release::ported,
          .migration = mixed_policies(),
          .points = mixed_point_policies(),
          .to_ported_midway = true};
  p.fiber.default_mode = coport::coroutine_mode::native;
  return p;
}

phase coro_phase() {
  phase p{.name = "no fibers",
          .executor = "coro_executor",
          .summary = "release 3 on coro_executor over a plain asio::io_context: ported forms only, no fibers "
                     "(and no REST API: its routes are migration points, which run on a coport runtime)",
          .release = metering::release::ported};
  p.migration.seed = canary_seed;
  return p;
}

/// What a phase measured.
struct outcome {
  msg::migration_report report;
  std::vector<std::string> problems;  // empty: every check passed
  std::string interim;                // phase 3: the verdict before set_all(ported)
  std::size_t rest_queries = 0;       // REST queries sent (none on coro_executor)
};

/// --http: the admin server of a phase served on fiber_executor.
struct http_admin {
  cli::listen_address at;
  std::optional<std::string> token;
  /// Called once the traffic is over and checked, while the service and the
  /// admin server are still up: shows the outcome and serves until a signal.
  std::function<void(const outcome&, const std::string& url)> hold;
};

/// What was sent through the service's migration points, for their rows.
struct point_traffic {
  std::map<std::string, std::uint64_t> calls;  // by point
  std::uint64_t shadowed = 0;                  // rest.statistics calls sent under shadow
  std::uint64_t canaried = 0;                  // rest.usage calls sent under canary
};

/// The checks of the report against what was sent: every call served once
/// by a form, no errors, and shadow found exactly the calls the porting bug
/// of release 2 affects.
void check_report(const msg::migration_report& r, const demo::traffic& plan, std::uint64_t shadowed,
                  std::uint64_t expected_mismatches, std::vector<std::string>& problems) {
  const auto sent = plan.calls_by_method();
  for (const auto& [method, n] : sent) {
    const msg::migration_report::method_row* row = nullptr;
    for (const auto& m : r.methods) {
      if (m.endpoint == "metering" && m.method == method) row = &m;
    }
    if (!row) {
      problems.push_back("the report has no row for metering." + method);
      continue;
    }
    std::uint64_t calls = 0, errors = 0;
    for (const auto& f : row->forms) {
      calls += f.calls;
      errors += f.errors;
    }
    // A shadowed call runs both forms.
    const std::uint64_t expected = n + (method == "stats" ? shadowed : 0);
    if (calls != expected) {
      problems.push_back("metering." + method + ": the report counts " + std::to_string(calls) +
                         " calls served, expected " + std::to_string(expected));
    }
    if (errors != 0) problems.push_back("metering." + method + ": " + std::to_string(errors) + " calls failed");
    if (method == "stats" && (row->shadow_calls != shadowed || row->shadow_mismatches != expected_mismatches)) {
      problems.push_back("metering.stats: shadow compared " + std::to_string(row->shadow_calls) + " calls and found " +
                         std::to_string(row->shadow_mismatches) + " mismatches, expected " + std::to_string(shadowed) +
                         " and " + std::to_string(expected_mismatches));
    }
  }
}

/// The checks of the points' rows: every call served once by a form, none
/// failed, shadow compared every shadowed call and found no difference (the
/// REST routes' ported forms are right), a canary used both forms.
void check_points(const msg::migration_report& r, const point_traffic& sent, std::vector<std::string>& problems) {
  for (const auto& [name, n] : sent.calls) {
    const msg::migration_report::method_row* row = nullptr;
    for (const auto& m : r.methods) {
      if (m.unit == "point" && (m.endpoint.empty() ? m.method : m.endpoint + "." + m.method) == name) row = &m;
    }
    if (!row) {
      problems.push_back("the report has no row for the point " + name);
      continue;
    }
    std::uint64_t calls = 0, errors = 0;
    for (const auto& f : row->forms) {
      calls += f.calls;
      errors += f.errors;
    }
    const std::uint64_t expected = n + (name == "rest.statistics" ? sent.shadowed : 0);
    if (calls != expected) {
      problems.push_back(name + ": the report counts " + std::to_string(calls) + " calls served, expected " +
                         std::to_string(expected));
    }
    if (errors != 0) problems.push_back(name + ": " + std::to_string(errors) + " calls failed");
    if (name == "rest.statistics" && (row->shadow_calls != sent.shadowed || row->shadow_mismatches != 0)) {
      problems.push_back("rest.statistics: shadow compared " + std::to_string(row->shadow_calls) +
                         " calls and found " + std::to_string(row->shadow_mismatches) + " mismatches, expected " +
                         std::to_string(sent.shadowed) + " and 0");
    }
    // A share of 50 % of 20 calls or more: both forms are drawn.
    if (name == "rest.usage" && sent.canaried >= 20) {
      for (const auto& f : row->forms) {
        if (f.calls == 0) problems.push_back("rest.usage: canary sent no call to its " + std::string(mig::to_string(f.kind)) + " form");
      }
    }
  }
}

std::string reasons_text(const msg::migration_report& r) {
  std::string text = r.verdict() + "\n";
  for (const auto& reason : r.not_ready) text += "  - " + reason + "\n";
  return text;
}

/// What runs the service: a coport loop (fibers and coroutines) for
/// fiber_executor, a plain io_context thread for coro_executor. Declared
/// before the service so that it outlives it.
struct service_loop {
  std::optional<bridge::runtime> loop;  // stops and joins when destroyed
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work = asio::make_work_guard(io);
  std::thread io_thread;

  void start_io() {
    io_thread = std::thread([this] { io.run(); });
  }
  /// After a graceful stop: lets the io_context run out of work.
  void finish() {
    work.reset();
    if (io_thread.joinable()) io_thread.join();
  }
  /// On an early exit (an exception) nothing was stopped gracefully: drop
  /// what is left.
  ~service_loop() {
    if (io_thread.joinable()) {
      io.stop();
      io_thread.join();
    }
  }
};

/// Serves `p` on `transport` (and its REST API on `http_port`, announced on
/// `text`), sends `plan` through `drv`, checks everything.
outcome run_phase(const phase& p, const std::shared_ptr<msg::transport>& transport, const demo::traffic& plan,
                  demo::driver& drv, std::string label, std::uint16_t http_port,
                  std::chrono::milliseconds stall_threshold, const http_admin* admin, FILE* text) {
  const bool on_fibers = p.executor == "fiber_executor";

  service_loop loops;
  asio::any_io_executor service_ex, listener_ex;
  if (on_fibers) {
    bridge::runtime_options o;
    o.name = "metering";
    o.stall_threshold = stall_threshold;
    loops.loop.emplace(std::move(o));
    service_ex = loops.loop->get_executor();
    listener_ex = loops.loop->get_executor("metering.notifications");
  } else {
    loops.start_io();
    service_ex = loops.io.get_executor();
    listener_ex = loops.io.get_executor();
  }

  // The service's migration points other than its methods (storing a
  // notification, the REST routes) need a coport runtime.
  std::optional<mig::registry> points;
  if (on_fibers) points.emplace(std::string(), p.points);

  // The service: its endpoint, the controls that choose a form per call,
  // the executor, the listener of usage notifications and the REST API.
  metering::service svc(p.release, service_ex,
                        on_fibers ? metering::point_host{&*points, &*loops.loop} : metering::point_host{});
  auto dispatcher = std::make_shared<msg::dispatcher>();
  dispatcher->add(svc.rpc_endpoint());
  auto controls = std::make_shared<msg::migration_controls>(dispatcher, p.migration);
  const msg::service service{transport, msg::target{.topic = "metering", .server = "metering-1"}, dispatcher,
                             controls};
  std::unique_ptr<msg::executor> executor;
  if (on_fibers) {
    executor = std::make_unique<coport::fiber_executor>(service, *loops.loop, p.fiber);
  } else {
    coport::coro_executor_options o;
    o.single_thread = true;
    executor = std::make_unique<coport::coro_executor>(service, loops.io.get_executor(), o);
  }
  msg::notification_listener listener(transport, {msg::target{.topic = "notifications"}}, {svc.listener_endpoint()},
                                      listener_ex);
  std::optional<metering::rest_api> api;
  if (on_fibers) {
    metering::rest_options o;
    o.port = http_port;
    api.emplace(svc, *points, *loops.loop, std::move(o));
    api->start();
    std::fprintf(text, "rest api: http://127.0.0.1:%u/v2/meters/<meter>/{statistics,total,resources,resources/<id>}\n",
                 static_cast<unsigned>(api->port()));
    std::fflush(text);
  }
  executor->start();
  listener.start();
  // The admin server: the same report as full_report() below (the
  // executor's methods, then the points), the policies of both, and the
  // loop's work tags.
  std::optional<coport::admin::http_server> http;
  if (admin && on_fibers) {
    coport::admin::server_options o;
    o.host = admin->at.host;
    o.port = admin->at.port;
    o.token = admin->token;
    http.emplace(std::move(o));
    http->add({[&executor] { return mig::report(executor->report()); },
               [&controls](std::string_view name, mig::policy p) { return controls->set_policy(name, p); }});
    http->add(coport::admin::source_of(*points));
    http->add_work_counters("metering", loops.loop->registry());
    http->add_loop(*loops.loop);
    http->add_transport("metering", transport);
    http->start();
    std::fprintf(text, "admin http: %s\n", http->url().c_str());
    std::fflush(text);
  }
  // The report: the service's methods, then its other points.
  auto full_report = [&] {
    msg::migration_report r = executor->report();
    if (points) r.add(points->make_report());
    return r;
  };

  // The traffic: writes first, then queries (whose answers depend on every
  // write having landed).
  outcome out;
  const auto stored = [&svc] { return svc.notifications_stored(); };
  const std::span<const demo::call> rest = api ? std::span<const demo::call>(plan.rest_queries())
                                               : std::span<const demo::call>();
  out.rest_queries = rest.size();
  drv.begin(std::move(label), plan.call_count(), plan.notifications().size(), rest.size(),
            api ? api->port() : 0);
  drv.send(plan.records(), plan.notifications(), stored);
  const std::span<const demo::call> queries = plan.queries();
  std::uint64_t shadowed = 0, expected_mismatches = 0;
  auto count_shadowed = [&](std::span<const demo::call> calls) {
    for (const auto& c : calls) {
      if (c.what != demo::op::stats) continue;
      ++shadowed;
      if (p.release == metering::release::mixed && plan.has_idle_samples(c.sample.meter)) ++expected_mismatches;
    }
  };
  const bool stats_shadowed = controls->policy_of(*svc.rpc_endpoint(), *svc.rpc_endpoint()->find("stats")) ==
                              msg::policy::shadow();
  // The points' calls: REST queries by route, each notification stored once.
  point_traffic through_points;
  if (points) through_points.calls["notifications.usage"] = plan.notifications().size();
  auto count_rest = [&](std::span<const demo::call> sent) {
    if (!points) return;
    const bool shadow = points->find("rest.statistics")->current() == msg::policy::shadow();
    const bool canary = points->find("rest.usage")->current().what == mig::policy::kind::canary;
    for (const auto& c : sent) {
      ++through_points.calls[std::string(demo::rest_point_of(c.what))];
      if (c.what == demo::op::stats && shadow) ++through_points.shadowed;
      if (c.what == demo::op::usage && canary) ++through_points.canaried;
    }
  };
  if (p.to_ported_midway) {
    const std::size_t half = queries.size() / 2, rest_half = rest.size() / 2;
    count_rest(rest.first(rest_half));
    drv.send(queries.first(half), {}, stored, rest.first(rest_half));
    if (stats_shadowed) count_shadowed(queries.first(half));
    out.interim = reasons_text(full_report());
    controls->set_all(msg::policy::ported());
    if (points) points->set_all(msg::policy::ported());
    count_rest(rest.subspan(rest_half));
    drv.send(queries.subspan(half), {}, stored, rest.subspan(rest_half));
  } else {
    count_rest(rest);
    drv.send(queries, {}, stored, rest);
    if (stats_shadowed) count_shadowed(queries);
  }
  // Bad input: the API refuses it and goes on serving.
  const bool refusals_as_expected = !api || drv.send_bad_requests();

  // Graceful stop: every request in flight replies first; then the REST
  // API closes its acceptor and connections and waits for their code.
  executor->async_stop(asio::use_future).get();
  listener.async_stop(asio::use_future).get();
  if (api) api->stop();
  out.report = full_report();

  if (drv.answered() != plan.call_count()) {
    out.problems.push_back(std::to_string(drv.answered()) + " of " + std::to_string(plan.call_count()) +
                           " calls answered");
  }
  if (drv.failures() != 0) {
    out.problems.push_back(std::to_string(drv.failures()) + " calls or notifications went wrong, first ones:");
    for (const auto& f : drv.first_failures()) out.problems.push_back("  " + f);
  }
  if (svc.notifications_stored() != plan.notifications().size()) {
    out.problems.push_back(std::to_string(svc.notifications_stored()) + " of " +
                           std::to_string(plan.notifications().size()) + " notifications stored (" +
                           std::to_string(svc.notifications_refused()) + " refused)");
  }
  if (executor->rejected() != 0) {
    out.problems.push_back(std::to_string(executor->rejected()) + " requests rejected by the dispatcher");
  }
  check_report(out.report, plan, shadowed, expected_mismatches, out.problems);
  if (drv.rest_answered() != rest.size()) {
    out.problems.push_back(std::to_string(drv.rest_answered()) + " of " + std::to_string(rest.size()) +
                           " REST queries answered");
  }
  if (api && refusals_as_expected && api->refused() != 2) {
    out.problems.push_back("the REST API refused " + std::to_string(api->refused()) + " requests, expected 2");
  }
  if (points) check_points(out.report, through_points, out.problems);

  if (http && admin->hold) admin->hold(out, http->url());
  if (http) http->stop();
  loops.finish();
  return out;
}

std::string traffic_line(const demo::traffic& plan, std::size_t callers, bool rest) {
  std::string line = "traffic: " + std::to_string(plan.call_count()) + " calls (";
  const char* sep = "";
  for (const auto& [method, n] : plan.calls_by_method()) {
    line += sep + std::to_string(n) + " " + method;
    sep = ", ";
  }
  return line + ") from " + std::to_string(callers) + " coroutine and " + std::to_string(callers) +
         " fiber callers, " + std::to_string(plan.notifications().size()) + " usage notifications" +
         (rest ? ", " + std::to_string(plan.rest_queries().size()) + " REST queries from " +
                       std::to_string(demo::driver::rest_clients) + " coroutine clients"
              : "");
}

}  // namespace

int main(int argc, char** argv) {
  config cfg;
  if (const std::optional<int> status = parse_command_line(argc, argv, cfg)) return *status;
  // --http serves until SIGINT or SIGTERM, taken by sigwait(): blocked here,
  // before any thread starts, so that every thread inherits the mask.
  if (cfg.http) ex::block_stop_signals();

  std::shared_ptr<msg::transport> transport;
  try {
    // The library logs through the transport's logger: its start-up lines
    // and the first shadow mismatches of each method, which the report
    // shows too. Without --verbose only errors, so that the progress lines
    // and the report stand alone.
    msg::transport_options options;
    options.logger = std::make_shared<spdlog::logger>("coport-demo",
                                                      std::make_shared<spdlog::sinks::stderr_sink_mt>());
    options.logger->set_level(cfg.verbose ? spdlog::level::info : spdlog::level::err);
    transport = msg::transport::create(cfg.transport, std::move(options));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "coport-demo: cannot open the transport %s: %s\n",
                 msg::mask_url_password(cfg.transport).c_str(), e.what());
    return ex::exit_failure;
  }

  const demo::traffic plan(cfg.calls, cfg.notifications);
  constexpr std::size_t callers = 8;  // of each kind
  std::vector<phase> phases;
  if (cfg.phases) phases = {legacy_phase(), mixed_phase(), ported_phase(), coro_phase()};
  else phases = {mixed_phase()};

  // The clients run on a loop of their own, as another process would.
  bridge::runtime_options client_options;
  client_options.name = "driver";
  bridge::runtime client_loop(std::move(client_options));
  demo::driver drv(transport, client_loop, plan, callers);

  // Text goes to stdout; with --json only the JSON does, the rest to stderr.
  FILE* text = cfg.json ? stderr : stdout;
  json::array json_phases;
  bool ok = true;
  for (std::size_t i = 0; i < phases.size(); ++i) {
    const phase& p = phases[i];
    std::string header, label;
    if (cfg.phases) {
      header = "== phase " + std::to_string(i + 1) + "/" + std::to_string(phases.size()) + ": " + p.name + " (" +
               p.executor + ") ==";
      label = "phase " + std::to_string(i + 1) + "/" + std::to_string(phases.size());
    } else {
      header = "== coport-demo: the metering service half-way through its port (" + p.executor + ", " +
               transport->describe() + ") ==";
      label = "coport-demo";
    }
    std::fprintf(text, "%s%s\n%s\n%s\n", i == 0 ? "" : "\n", header.c_str(), p.summary.c_str(),
                 traffic_line(plan, callers, p.executor == "fiber_executor").c_str());
    std::fflush(text);

    const auto started = std::chrono::steady_clock::now();
    // The outcome on stdout (or in the JSON), and whether it was as expected.
    auto show = [&](const outcome& out) {
      const std::chrono::duration<double> took = std::chrono::steady_clock::now() - started;
      std::fprintf(stderr, "%s: done in %.2f s\n", label.c_str(), took.count());

      if (!out.interim.empty()) {
        std::fprintf(text, "half-way through the queries: %sset_all(ported): every method now answered by its ported form\n",
                     out.interim.c_str());
      }
      if (out.problems.empty()) {
        std::string rest;
        if (out.rest_queries > 0) {
          rest = "; " + std::to_string(out.rest_queries) +
                 " REST queries answered as expected, a malformed request refused with 400, an unknown route "
                 "with 404";
        }
        std::fprintf(text, "checked: %zu calls answered as expected (totals equal the volumes sent, %.2f in all); "
                           "%zu notifications stored%s\n",
                     plan.call_count(), plan.volume_sent(), plan.notifications().size(), rest.c_str());
      } else {
        ok = false;
        std::fprintf(stderr, "coport-demo: %s: FAILED\n", p.name.c_str());
        for (const auto& problem : out.problems) std::fprintf(stderr, "  %s\n", problem.c_str());
      }
      if (cfg.json) {
        json::object entry;
        entry["phase"] = p.name;
        entry["executor"] = p.executor;
        entry["checked"] = out.problems.empty();
        entry["report"] = out.report.to_json();
        json_phases.push_back(std::move(entry));
      } else {
        std::fprintf(stdout, "\n%s", out.report.to_text().c_str());
      }
      std::fflush(stdout);
    };
    bool shown = false;
    http_admin admin;
    if (cfg.http) {
      admin.at = *cfg.http;
      admin.token = cfg.admin_token;
      admin.hold = [&](const outcome& out, const std::string& url) {
        show(out);
        shown = true;
        std::fprintf(stdout, "\nserving until SIGINT or SIGTERM: %smigration\n", url.c_str());
        std::fflush(stdout);
        const sigset_t stop_signals = ex::stop_signal_set();
        int signal = 0;
        sigwait(&stop_signals, &signal);
        std::fprintf(stderr, "coport-demo: %s: stopping\n", signal == SIGINT ? "SIGINT" : "SIGTERM");
      };
    }
    outcome out;
    try {
      out = run_phase(p, transport, plan, drv, label, static_cast<std::uint16_t>(cfg.http_port),
                      std::chrono::milliseconds(cfg.stall_threshold_ms), cfg.http ? &admin : nullptr, text);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "coport-demo: %s: %s\n", p.name.c_str(), e.what());
      return ex::exit_failure;
    }
    if (!shown) show(out);
  }

  if (cfg.json) {
    const json::value doc = cfg.phases ? json::value(json::object{{"phases", std::move(json_phases)}})
                                       : json::value(json_phases.front().as_object().at("report"));
    std::fprintf(stdout, "%s\n", json::serialize(doc).c_str());
  }
  if (!ok) {
    std::fprintf(stderr, "coport-demo: some answers or counts were not as expected (see above)\n");
    return 1;
  }
  return ex::exit_ok;
}
