// coport-bench's table of contents: every benchmark with its description,
// in the order they run and are reported, and every ratio, the figure
// judged against its floor or its alternative, with its aim. The order
// interleaves the families (a floor next to the figures judged against it),
// so the lists are kept here rather than in the families' files; --list
// prints them with the figures of other kinds.
//
// Adding a benchmark: write a function `timing f(std::uint64_t n)` in its
// family's file that sets up its own world (a fresh runtime, say), runs a
// short untimed warm-up, then times n iterations of the operation between
// two read_clocks() on the thread that runs them, and reports how many
// operations it timed; declare it in bench.hpp and add it to `benchmarks()`
// (with cpu_scope::process or ::none when its work is not on the measuring
// thread). If it is to be judged against another, add a line to
// `ratios()`. The runner (run.cpp) calibrates n, repeats, pairs and prints.

#include "bench.hpp"
#include "results.hpp"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace coport_bench {

const std::vector<benchmark>& benchmarks() {
  static const std::vector<benchmark> list = {
      {"floor.round_robin_yield",
       "this_fiber::yield(), two fibers, plain thread, Boost.Fiber round_robin",
       floor_round_robin_yield},
      {"bridge.yield", "this_fiber::yield(), two fibers on a coport runtime loop", bridge_yield},
      {"floor.coroutine_resume", "resumption of a hand-written C++20 generator",
       floor_coroutine_resume},
      {"floor.asio_post", "asio::post round trip: a handler reposting itself, one thread",
       floor_asio_post},
      {"floor.co_spawn", "co_spawn of a trivial coroutine to completion, plain io_context",
       floor_co_spawn},
      {"bridge.fiber_to_coroutine", "bridge::await(trivial()) from a fiber",
       bridge_fiber_to_coroutine},
      {"bridge.coroutine_to_fiber",
       "co_await async_run_in_fiber(ex, []{ return 1; }) from a native coroutine",
       bridge_coroutine_to_fiber},
      {"asio.spawn_to_coroutine",
       "co_spawn(ex, trivial(), as_tuple(yield)) from an asio::spawn stackful coroutine, plain io_context",
       asio_spawn_to_coroutine},
      {"asio.coroutine_to_spawn",
       "co_await asio::spawn(ex, [](yield_context) { return 1; }, use_awaitable), plain io_context",
       asio_coroutine_to_spawn},
      {"messaging.call_memory",
       "RPC call round trip over memory://: coroutine client, coroutine method, one io_context",
       messaging_call_memory},
      {"floor.awaitable_post",
       "co_await asio::post(use_awaitable), coroutine on a plain io_context, one thread",
       floor_awaitable_post},
      {"bridge.native_resume", "co_await asio::post(use_awaitable), native coroutine",
       bridge_native_resume},
      {"bridge.hosted_resume", "co_await asio::post(use_awaitable), hosted coroutine",
       bridge_hosted_resume},
      {"direct.ported", "co_await of a 1 us coroutine from a native coroutine on a coport loop", direct_ported},
      {"point.ported", "the same through a migration point on policy ported (co_await p.async_call)", point_ported},
      {"direct.legacy", "call of a 1 us function from a fiber on a coport loop", direct_legacy},
      {"point.legacy", "the same through a migration point on policy legacy (p.call)", point_legacy},
      {"exec.coro", "call round trip over memory://, coroutine method on coro_executor (1 thread)", exec_coro},
      {"exec.fiber_hosted", "the same, hosted coroutine method on fiber_executor (1 loop)", exec_fiber_hosted},
      {"exec.fiber_native", "the same, native coroutine method on fiber_executor (1 loop)", exec_fiber_native},
      {"exec.fiber_method", "the same, fiber method on fiber_executor (1 loop)", exec_fiber_method},
#if COPORT_BENCH_HAS_ADMIN
      {"admin.fiber_native_scraped",
       "exec.fiber_native with its admin::http_server running and /metrics scraped over HTTP every 10 ms (1 500 "
       "times as often as Prometheus' default, every 15 s)",
       admin_fiber_native_scraped},
      {"admin.scrape_1000",
       "one /metrics body (http_server::metrics_text()) of 1 000 migration points in both forms, all with calls, "
       "per scrape",
       admin_scrape_1000},
      {"admin.report_json_1000", "json::serialize(report().to_json()) of the same 1 000 points (/migration.json)",
       admin_report_json_1000},
#endif
      {"exec.pool1", "fiber_executor serving queued casts of a 2 us fiber method, 1 loop (wall clock)", exec_pool1,
       cpu_scope::none},
      {"exec.pool2", "the same on 2 loops (wall clock)", exec_pool2, cpu_scope::none},
      {"exec.pool1_10us", "fiber_executor serving queued casts of a 10 us fiber method, 1 loop (wall clock)",
       exec_pool1_10us, cpu_scope::none},
      {"exec.pool2_10us", "the same on 2 loops (wall clock)", exec_pool2_10us, cpu_scope::none},
      {"floor.context_switch", "Boost.Context fiber switch (one resume, one way)", floor_context_switch},
      {"floor.cross_thread_wake",
       "asio::post to an io_context sleeping on another thread, one way (--clock cpu: both threads' CPU time)",
       floor_cross_thread_wake, cpu_scope::process},
      {"floor.fiber_channel", "Boost.Fiber buffered_channel(64), fiber to fiber, plain thread, per value",
       floor_fiber_channel},
      {"floor.asio_channel", "Asio experimental::channel(64), coroutine to coroutine, plain io_context, per value",
       floor_asio_channel},
      {"chan.fibers", "bridge::channel(64), fiber to fiber on a coport loop, per value", chan_fibers},
      {"chan.coroutines", "bridge::channel(64), coroutine to coroutine on a coport loop, per value",
       chan_coroutines},
      {"chan.fiber_to_coroutine", "bridge::channel(64), fiber to coroutine on a coport loop, per value",
       chan_fiber_to_coroutine},
      {"floor.skynet_fibers", "skynet, stock Boost.Fiber fibers (round_robin, plain thread), per task",
       floor_skynet_fibers},
      {"floor.skynet_coroutines", "skynet, co_spawn'd coroutines on a plain io_context, per task",
       floor_skynet_coroutines},
      {"skynet.fibers", "skynet, pooled fibers on a coport loop, per task", skynet_fibers},
      {"skynet.coroutines", "skynet, co_spawn'd coroutines on a coport loop, per task", skynet_coroutines},
      {"skynet.mixed", "skynet, levels alternating fibers and coroutines on a coport loop, per task",
       skynet_mixed},
  };
  return list;
}

const std::vector<ratio_spec>& ratios() {
  static const std::vector<ratio_spec> list = {
      {"bridge.yield", "floor.round_robin_yield", 1.5},
      {"bridge.fiber_to_coroutine", "bridge.yield", 5.0},
      {"bridge.fiber_to_coroutine", "floor.co_spawn", std::nullopt},
      {"bridge.coroutine_to_fiber", "bridge.yield", 5.0},
      {"bridge.coroutine_to_fiber", "floor.awaitable_post", std::nullopt},
      // Against Asio's own crossings between stackful and stackless code.
      {"bridge.fiber_to_coroutine", "asio.spawn_to_coroutine", std::nullopt},
      {"bridge.coroutine_to_fiber", "asio.coroutine_to_spawn", std::nullopt},
      {"bridge.native_resume", "floor.awaitable_post", std::nullopt},
      {"messaging.call_memory", "floor.asio_post", 15.0},
      {"bridge.hosted_resume", "bridge.native_resume", std::nullopt},
      {"point.ported", "direct.ported", 1.2},
      {"point.legacy", "direct.legacy", 1.2},
      {"exec.fiber_hosted", "exec.coro", 1.3},
      {"exec.fiber_native", "exec.coro", std::nullopt},
      {"exec.fiber_method", "exec.coro", std::nullopt},
      {"exec.coro", "messaging.call_memory", std::nullopt},
#if COPORT_BENCH_HAS_ADMIN
      // The cost of exporting metrics: a call while /metrics is scraped.
      {"admin.fiber_native_scraped", "exec.fiber_native", 1.05},
      {"admin.scrape_1000", "admin.report_json_1000", std::nullopt},
#endif
      // Throughput ratio 2 loops : 1 loop, as ns(1 loop) / ns(2 loops).
      {"exec.pool1", "exec.pool2", 1.7, true},
      {"exec.pool1_10us", "exec.pool2_10us", 1.7, true},
      {"bridge.yield", "floor.context_switch", std::nullopt},
      {"chan.fibers", "floor.fiber_channel", std::nullopt},
      {"chan.coroutines", "floor.asio_channel", std::nullopt},
      {"chan.fiber_to_coroutine", "floor.fiber_channel", std::nullopt},
      {"skynet.fibers", "floor.skynet_fibers", std::nullopt},
      {"skynet.coroutines", "floor.skynet_coroutines", std::nullopt},
      {"skynet.mixed", "skynet.fibers", std::nullopt},
  };
  return list;
}

std::string ratio_name(const ratio_spec& r) {
  return std::string(r.numerator) + "/" + std::string(r.denominator);
}

const benchmark* find_benchmark(std::string_view name) {
  for (const auto& b : benchmarks()) {
    if (b.name == name) return &b;
  }
  return nullptr;
}

/// Throws if the lists disagree: a ratio naming no benchmark, a name twice.
void check_lists() {
  for (const auto& b : benchmarks()) {
    if (std::count_if(benchmarks().begin(), benchmarks().end(),
                      [&](const benchmark& o) { return o.name == b.name; }) != 1) {
      throw std::logic_error("benchmark listed twice: " + std::string(b.name));
    }
  }
  for (const auto& r : ratios()) {
    if (!find_benchmark(r.numerator) || !find_benchmark(r.denominator)) {
      throw std::logic_error("ratio names an unknown benchmark: " + ratio_name(r));
    }
  }
}

void print_list() {
  for (const auto& b : benchmarks()) {
    std::printf("%-28s %s\n", std::string(b.name).c_str(), std::string(b.what).c_str());
  }
  for (const auto& k : parked_kinds()) {
    std::printf("%-28s resident bytes per parked request: %s\n", ("memory.parked_" + std::string(k.kind)).c_str(),
                std::string(k.what).c_str());
  }
  for (const auto& l : latency_runs()) {
    std::printf("%-28s calls/s, p50, p99: %s\n", std::string(l.name).c_str(), std::string(l.what).c_str());
  }
#if COPORT_BENCH_HAS_ADMIN
  std::printf("%-28s bytes and series per scrape: %s\n", std::string(scrape_size_name).c_str(),
              std::string(scrape_size_what).c_str());
#endif
  std::printf("%-28s calls/s at concurrency 1 and 50 against oslo.messaging and rabbitmq-c alone (full runs)\n",
              "rabbit");
  for (const auto& r : ratios()) {
    std::printf("ratio %s", ratio_name(r).c_str());
    if (r.aim) std::printf(" (aim %s %.2f)", r.at_least ? ">=" : "<=", *r.aim);
    std::printf("\n");
  }
}

}  // namespace coport_bench
