// coport-port-demo-proof: the coroutine forms coport-port wrote for the
// demo's legacy code answer the demo's traffic as the legacy forms do.
//
//   coport-port-demo-proof [--calls N] [--notifications N]
//
// Built from a ported copy of examples/demo (demo_proof.cmake): in it,
// legacy_storage has add_coroutine and samples_coroutine next to add and
// samples, and release 1 (metering::release::legacy) registers next to
// each RPC method's legacy form the coroutine form coport-port wrote, both
// on the same sample_store. The program serves release 1 on fiber_executor
// over memory:// twice, each time on a fresh service, sends it the demo's
// traffic (demo::driver: records and usage notifications, then queries,
// from coroutine and fiber callers), checks every answer, and reads the
// migration report:
//
//   shadow  the reads (total, stats, resources, usage) in shadow: the
//           legacy form answers, the ported form runs too and is compared,
//           and no call may differ. `record` writes, and a write in shadow
//           is stored twice (the ported form after the legacy one: the
//           later queries would find every sample doubled), so it runs
//           canary:50 instead: both forms write to the store, each call
//           once, and the shadowed queries check what they wrote together.
//   ported  every method in its ported form only.
//
// Coroutine forms run native on the loop: one that still blocked a fiber
// would fail its calls (bridge::errc::blocking_on_loop), which the report
// counts as errors. Prints a line per method and run, then "ok" (exit 0),
// or what was wrong (exit 1).
#include "metering.hpp"
#include "rest.hpp"
#include "traffic.hpp"

#include <coport/bridge/runtime.hpp>
#include <coport/fiber_executor/fiber_executor.hpp>
#include <coport/messaging/serving/executor.hpp>
#include <coport/messaging/serving/migration.hpp>
#include <coport/messaging/notify/notify.hpp>

#include <CLI/CLI.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace asio = boost::asio;
namespace bridge = coport::bridge;
namespace msg = coport::messaging;
namespace mig = coport::migration;

namespace {

constexpr unsigned record_canary = 50;  // percent of the writes served by the ported form

/// One run: its name and the methods' policies.
struct run {
  const char* name;
  msg::migration_options migration;
};

run shadow_run() {
  run r{"shadow", {}};
  r.migration.policies.emplace("metering.record", msg::policy::canary(record_canary));
  for (const char* m : {"metering.total", "metering.stats", "metering.resources", "metering.usage"}) {
    r.migration.policies.emplace(m, msg::policy::shadow());
  }
  r.migration.seed = 2014;
  r.migration.mismatches_kept = 3;
  return r;
}

run ported_run() {
  run r{"ported", {}};
  for (demo::op o : demo::all_ops) {
    r.migration.policies.emplace("metering." + std::string(demo::method_of(o)), msg::policy::ported());
  }
  return r;
}

/// Serves release 1 under `r`, sends `plan` through `drv`, checks the
/// answers and the report; prints a line per method, returns the problems.
std::vector<std::string> serve(const run& r, const std::shared_ptr<msg::transport>& transport,
                               const demo::traffic& plan, demo::driver& drv) {
  bridge::runtime_options lo;
  lo.name = "metering";
  bridge::runtime loop(std::move(lo));  // declared first: outlives the service
  metering::service svc(metering::release::legacy, loop.get_executor());
  auto dispatcher = std::make_shared<msg::dispatcher>();
  dispatcher->add(svc.rpc_endpoint());
  auto controls = std::make_shared<msg::migration_controls>(dispatcher, r.migration);
  const msg::service service{transport, msg::target{.topic = "metering", .server = "metering-1"}, dispatcher,
                             controls};
  coport::fiber_executor_options fo;
  fo.default_mode = coport::coroutine_mode::native;
  coport::fiber_executor executor(service, loop, fo);
  msg::notification_listener listener(transport, {msg::target{.topic = "notifications"}}, {svc.listener_endpoint()},
                                      loop.get_executor("metering.notifications"));
  executor.start();
  listener.start();

  // Writes first, then the queries, whose answers depend on every write.
  const auto stored = [&svc] { return svc.notifications_stored(); };
  drv.begin(r.name, plan.call_count(), plan.notifications().size());
  drv.send(plan.records(), plan.notifications(), stored);
  drv.send(plan.queries(), {}, stored);
  executor.async_stop(asio::use_future).get();  // shadow runs end before the stop does
  listener.async_stop(asio::use_future).get();
  const msg::migration_report report = executor.report();

  std::vector<std::string> problems;
  const std::string run_name = r.name;
  if (drv.answered() != plan.call_count()) {
    problems.push_back(run_name + ": " + std::to_string(drv.answered()) + " of " + std::to_string(plan.call_count()) +
                       " calls answered");
  }
  if (drv.failures() != 0) {
    problems.push_back(run_name + ": " + std::to_string(drv.failures()) + " answers wrong or failed, first ones:");
    for (const auto& f : drv.first_failures()) problems.push_back("  " + f);
  }
  if (svc.notifications_stored() != plan.notifications().size()) {
    problems.push_back(run_name + ": " + std::to_string(svc.notifications_stored()) + " of " +
                       std::to_string(plan.notifications().size()) + " notifications stored");
  }
  if (executor.rejected() != 0) {
    problems.push_back(run_name + ": " + std::to_string(executor.rejected()) + " requests rejected");
  }

  const bool shadow = run_name == "shadow";
  for (const auto& [method, n] : plan.calls_by_method()) {
    const std::string name = "metering." + method;
    const mig::report::method_row* row = nullptr;
    for (const auto& m : report.methods) {
      if (m.full_name() == name) row = &m;
    }
    if (!row || row->kinds != "both") {
      problems.push_back(name + ": " + (row ? "registered as " + row->kinds + " only" : "not in the report") +
                         ", expected both forms");
      continue;
    }
    std::uint64_t legacy = 0, ported = 0, errors = 0, yields = 0;
    for (const auto& f : row->forms) {
      (f.kind == mig::form_kind::fiber ? legacy : ported) += f.calls;
      errors += f.errors;
      if (f.kind == mig::form_kind::coroutine) yields += f.implicit_yields;
    }
    std::string line = run_name + "  " + name + ": " + std::to_string(n) + " calls, ";
    std::vector<std::string> wrong;
    auto expect = [&](const char* what, std::uint64_t got, std::uint64_t want) {
      if (got != want) {
        wrong.push_back(std::string(what) + " " + std::to_string(got) + ", expected " + std::to_string(want));
      }
    };
    if (shadow && method == "record") {
      line += "canary:" + std::to_string(record_canary) + ": " + std::to_string(legacy) + " legacy, " +
              std::to_string(ported) + " ported (a write: not shadowed)";
      expect("calls served", legacy + ported, n);
      if (n >= 20 && (legacy == 0 || ported == 0)) wrong.push_back("the canary left a form unused");
      expect("shadow calls", row->shadow_calls, 0);
    } else if (shadow) {
      line += std::to_string(row->shadow_calls) + " shadowed, " + std::to_string(row->shadow_mismatches) +
              " mismatches";
      expect("legacy calls", legacy, n);
      expect("ported calls", ported, n);
      expect("shadow calls", row->shadow_calls, n);
      expect("shadow mismatches", row->shadow_mismatches, 0);
    } else {
      line += std::to_string(ported) + " ported, " + std::to_string(legacy) + " legacy";
      expect("ported calls", ported, n);
      expect("legacy calls", legacy, 0);
    }
    expect("errors", errors, 0);
    expect("implicit yields of the ported form", yields, 0);
    std::printf("%s\n", line.c_str());
    for (const auto& w : wrong) problems.push_back(run_name + "  " + name + ": " + w);
  }
  for (const auto& m : report.mismatches) {  // the first ones of each method
    problems.push_back(run_name + ": mismatch: " + m.endpoint + "." + m.method + boost::json::serialize(m.args) +
                       ": legacy " + m.legacy + ", ported " + m.ported);
  }
  std::fflush(stdout);
  return problems;
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t calls = 600, notifications = 100;
  CLI::App app("Serves the demo's release 1 with the coroutine forms coport-port wrote, under the demo's\n"
               "traffic: reads in shadow, then every method ported. Exit status 0 when every answer\n"
               "and count is right, 1 otherwise.",
               "coport-port-demo-proof");
  app.add_option("--calls", calls, "RPC calls per run (default 600): 3/5 record, 2/5 queries")
      ->check(CLI::Range(std::size_t{5}, std::size_t{1000000}));
  app.add_option("--notifications", notifications, "usage notifications per run (default 100)")
      ->check(CLI::Range(std::size_t{0}, std::size_t{1000000}));
  CLI11_PARSE(app, argc, argv);

  try {
    msg::transport_options options;
    options.logger = std::make_shared<spdlog::logger>("coport-port-demo-proof",
                                                      std::make_shared<spdlog::sinks::stderr_sink_mt>());
    options.logger->set_level(spdlog::level::err);
    const auto transport = msg::transport::create("memory://", std::move(options));
    const demo::traffic plan(calls, notifications);
    bridge::runtime_options co;
    co.name = "driver";
    bridge::runtime client_loop(std::move(co));  // the callers' loop, as another process's
    demo::driver drv(transport, client_loop, plan, 8);

    std::vector<std::string> problems;
    for (const run& r : {shadow_run(), ported_run()}) {
      for (auto& p : serve(r, transport, plan, drv)) problems.push_back(std::move(p));
    }
    if (!problems.empty()) {
      std::fprintf(stderr, "coport-port-demo-proof: FAILED\n");
      for (const auto& p : problems) std::fprintf(stderr, "  %s\n", p.c_str());
      return 1;
    }
    std::printf("ok\n");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "coport-port-demo-proof: %s\n", e.what());
    return 1;
  }
}
