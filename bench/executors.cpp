// coport-bench's figures of RPC calls in-process, over memory://: a call
// through rpc_server (messaging.call_memory), the same call through
// coro_executor and through fiber_executor for each kind of method
// (exec.*), fiber_executor's serving throughput on one and two loops
// (exec.pool*), and the call latency runs (call.*: calls/s, p50, p99). The
// benchmark service and its sequential calls (service.hpp) are shared with
// the admin server's figures.

#include "bench.hpp"
#include "results.hpp"
#include "service.hpp"

#include <coport/bridge/bridge.hpp>
#include <coport/coro_executor/coro_executor.hpp>
#include <coport/fiber_executor/fiber_executor.hpp>
#include <coport/messaging/rpc/client.hpp>
#include <coport/messaging/rpc/server.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace coport_bench {

namespace asio = boost::asio;

namespace {

/// CPU work the compiler cannot fold: about 2 us per 1500 rounds here.
std::int64_t burn(std::int64_t seed, int rounds = 1500) {
  std::uint64_t x = static_cast<std::uint64_t>(seed) | 1;
  for (int i = 0; i < rounds; ++i) x = x * 6364136223846793005ULL + 1442695040888963407ULL;
  return static_cast<std::int64_t>(x >> 33);
}

/// Where a latency run (see call_latency) records each call; null in the
/// timed runs, which read the clock twice in all. Set before the calls
/// start on their loop, read there.
std::vector<nanoseconds>* call_latencies = nullptr;

/// fiber_executor on one coport loop; the client is a native coroutine on
/// the same loop.
timing fiber_executor_calls(const char* method, std::uint64_t n) {
  bridge::runtime rt(bench_options());
  msg::service svc = bench_service("bench");
  coport::fiber_executor_options o;
  o.modes["add_native"] = coport::coroutine_mode::native;
  coport::fiber_executor ex(svc, rt, o);
  ex.start();
  msg::rpc_client client(svc.transport, msg::target{.topic = "bench"});
  auto f = asio::co_spawn(rt.get_executor(), sequential_calls(client, method, n), asio::use_future);
  const elapsed_time e = f.get();
  ex.async_stop(asio::use_future).get();
  return {e, n};
}

/// Serving throughput of fiber_executor on `loops` loops: n casts of a
/// fiber method of about 2 us of CPU, queued in the transport first, then
/// served; timed on the wall clock from start() to the last one served (the
/// measuring thread only waits). Clients are elsewhere, as in production.
timing exec_pool(std::size_t loops, int rounds, std::uint64_t n) {
  bridge::runtime_pool pool(loops, bench_options());
  struct progress {
    std::atomic<std::uint64_t> served{0};
    std::uint64_t target = 0;
    std::promise<void> all;
  };
  auto run_batch = [&](std::uint64_t count) -> elapsed_time {
    static std::atomic<int> broker{0};
    auto t = msg::transport::create("memory://exec-pool-" + std::to_string(broker++));
    auto p = std::make_shared<progress>();
    p->target = count;
    auto ep = std::make_shared<msg::endpoint>("bench");
    ep->add("work", {"seed"}, [p, rounds](std::int64_t seed) {
      keep(burn(seed, rounds));
      if (p->served.fetch_add(1) + 1 == p->target) p->all.set_value();
    });
    auto d = std::make_shared<msg::dispatcher>();
    d->add(ep);
    msg::rpc_client client(t, msg::target{.topic = "bench"});
    for (std::uint64_t i = 0; i < count; ++i) {
      client.async_cast("work", msg::args("seed", static_cast<std::int64_t>(i)), [](std::exception_ptr) {});
    }
    coport::fiber_executor_options o;
    o.max_in_flight = 256;
    coport::fiber_executor ex({t, msg::target{.topic = "bench", .server = "s1"}, d}, pool, o);
    const reading t0 = read_clocks();
    ex.start();
    p->all.get_future().wait();
    const auto e = since(t0);
    ex.async_stop(asio::use_future).get();
    return {e.wall, e.wall};  // cpu_scope::none: wall time only
  };
  run_batch(std::max<std::uint64_t>(n / 16, 64));  // warm-up: pools, stacks
  return {run_batch(n), n};
}

double percentile_us(std::vector<nanoseconds>& v, double q) {
  if (v.empty()) return std::nan("");
  const auto k = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return static_cast<double>(v[k].count()) / 1000.0;
}

}  // namespace

/// The benchmark service: the same `add` as messaging.call_memory in every
/// form and mode, and `work`, a fiber method of a few microseconds of CPU.
msg::service bench_service(const std::string& topic, bool fiber_methods) {
  static std::atomic<int> broker{0};
  auto t = msg::transport::create("memory://exec-bench-" + std::to_string(broker++));
  auto ep = std::make_shared<msg::endpoint>("bench");
  auto add_co = [](std::int64_t a, std::int64_t b) -> asio::awaitable<std::int64_t> { co_return a + b; };
  ep->add("add", {"a", "b"}, add_co);
  ep->add("add_native", {"a", "b"}, add_co);
  if (fiber_methods) {
    ep->add("add_fiber", {"a", "b"}, [](std::int64_t a, std::int64_t b) { return a + b; });
    ep->add("work", {"seed"}, [](std::int64_t seed) { return burn(seed); });
  }
  auto d = std::make_shared<msg::dispatcher>();
  d->add(ep);
  return {t, msg::target{.topic = topic, .server = "s1"}, d};
}

/// n sequential calls of `method` from a coroutine client, timed on the
/// client's thread.
asio::awaitable<elapsed_time> sequential_calls(msg::rpc_client client, std::string method, std::uint64_t n) {
  std::int64_t sum = 0;
  for (std::uint64_t i = 0, w = warmup_of(n); i < w; ++i) {
    sum += co_await client.async_call<std::int64_t>(method, msg::args("a", 1, "b", 2), asio::use_awaitable);
  }
  std::vector<nanoseconds>* latencies = call_latencies;
  const reading t0 = read_clocks();
  for (std::uint64_t i = 0; i < n; ++i) {
    const auto sent = latencies ? clock_type::now() : clock_type::time_point();
    sum += co_await client.async_call<std::int64_t>(method, msg::args("a", 1, "b", 2), asio::use_awaitable);
    if (latencies) latencies->push_back(clock_type::now() - sent);
  }
  const auto elapsed = since(t0);
  keep(static_cast<int>(sum));
  co_return elapsed;
}

/// n sequential calls of a coroutine method from a coroutine client, over
/// memory://, served by rpc_server on the same one-thread io_context.
timing messaging_call_memory(std::uint64_t n) {
  namespace msg = coport::messaging;
  static std::atomic<int> broker{0};
  asio::io_context io(1);
  auto tr = msg::transport::create("memory://bench-" + std::to_string(broker++));
  auto ep = std::make_shared<msg::endpoint>("bench");
  ep->add("add", {"a", "b"}, [](std::int64_t a, std::int64_t b) -> asio::awaitable<std::int64_t> {
    co_return a + b;
  });
  auto d = std::make_shared<msg::dispatcher>();
  d->add(ep);
  msg::target where;
  where.topic = "bench";
  where.server = "s1";
  msg::rpc_server server(tr, where, d, io.get_executor());
  server.start();
  msg::target to;
  to.topic = "bench";
  msg::rpc_client client(tr, to, {.timeout = std::chrono::seconds(60)});
  std::optional<elapsed_time> result;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        std::int64_t sum = 0;
        for (std::uint64_t i = 0, w = warmup_of(n); i < w; ++i) {
          sum += co_await client.async_call<std::int64_t>("add", msg::args("a", 1, "b", 2),
                                                          asio::use_awaitable);
        }
        const reading t0 = read_clocks();
        for (std::uint64_t i = 0; i < n; ++i) {
          sum += co_await client.async_call<std::int64_t>("add", msg::args("a", 1, "b", 2),
                                                          asio::use_awaitable);
        }
        result = since(t0);
        keep(static_cast<int>(sum));
        co_await server.async_stop(asio::use_awaitable);
        io.stop();
      },
      asio::detached);
  io.run();
  return {*result, n};
}

timing exec_fiber_hosted(std::uint64_t n) { return fiber_executor_calls("add", n); }
timing exec_fiber_native(std::uint64_t n) { return fiber_executor_calls("add_native", n); }
timing exec_fiber_method(std::uint64_t n) { return fiber_executor_calls("add_fiber", n); }

/// coro_executor on a one-thread io_context; the client is a coroutine on
/// the same io_context.
timing exec_coro(std::uint64_t n) {
  asio::io_context io(1);
  msg::service svc = bench_service("bench", false);
  coport::coro_executor_options o;
  o.single_thread = true;  // like fiber_executor's loop: no strand per request
  coport::coro_executor ex(svc, io.get_executor(), o);
  ex.start();
  msg::rpc_client client(svc.transport, msg::target{.topic = "bench"});
  std::optional<elapsed_time> result;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        result = co_await sequential_calls(client, "add", n);
        co_await ex.async_stop(asio::use_awaitable);
        io.stop();
      },
      asio::detached);
  io.run();
  return {*result, n};
}

timing exec_pool1(std::uint64_t n) { return exec_pool(1, 1500, n); }
timing exec_pool2(std::uint64_t n) { return exec_pool(2, 1500, n); }
timing exec_pool1_10us(std::uint64_t n) { return exec_pool(1, 7500, n); }
timing exec_pool2_10us(std::uint64_t n) { return exec_pool(2, 7500, n); }

const std::vector<latency_spec>& latency_runs() {
  static const std::vector<latency_spec> list = {
      {"call.coro_executor", "coroutine method on coro_executor (1 thread)", exec_coro},
      {"call.fiber_executor_hosted", "hosted coroutine method on fiber_executor (1 loop)", exec_fiber_hosted},
      {"call.fiber_executor_native", "native coroutine method on fiber_executor (1 loop)", exec_fiber_native},
      {"call.fiber_executor_fiber", "fiber method on fiber_executor (1 loop)", exec_fiber_method},
  };
  return list;
}

void run_latencies(const std::vector<const latency_spec*>& chosen, bool quick, report& rep) {
  const std::uint64_t calls = quick ? 5000 : 50000;
  std::printf("\n%-28s %10s  %9s  %9s  %s\n", "in-process calls (memory://)", "calls/s", "p50 us", "p99 us",
              "calls");
  for (const latency_spec* l : chosen) {
    std::fprintf(stderr, "%zu sequential calls: %s ...\n", static_cast<std::size_t>(calls), std::string(l->what).c_str());
    std::vector<nanoseconds> latencies;
    latencies.reserve(calls);
    call_latencies = &latencies;
    const timing t = l->run(calls);
    call_latencies = nullptr;
    const double per_s = static_cast<double>(t.ops) * 1e9 / static_cast<double>(t.elapsed.wall.count());
    const double p50 = percentile_us(latencies, 0.50);
    const double p99 = percentile_us(latencies, 0.99);
    std::printf("%-28s %10.0f  %9.2f  %9.2f  %zu\n", std::string(l->name).c_str(), per_s, p50, p99,
                latencies.size());
    json::object o;
    o["name"] = l->name;
    o["kind"] = "throughput";
    o["value"] = number_or_null(per_s);
    o["unit"] = "calls/s";
    o["p50_us"] = number_or_null(p50);
    o["p99_us"] = number_or_null(p99);
    o["calls"] = latencies.size();
    o["description"] = l->what;
    rep.lines.push_back(std::move(o));
  }
  std::fflush(stdout);
}

}  // namespace coport_bench
