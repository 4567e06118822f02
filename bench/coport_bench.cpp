// coport-bench: the project's benchmark program.
//
//   coport-bench [--quick] [--json FILE] [--report DIR] [--no-rabbit] [--rabbit-cluster] [--repeat N]
//                [--clock wall|cpu] [--list] [--help] [--version] [NAME...]
//
// What it measures: the floors (a coroutine resume, a Boost.Context switch,
// a stock Boost.Fiber yield, an asio::post round trip, a cross-thread
// wake-up, stock channels, skynet on stock fibers and on a plain
// io_context) and coport's figures, each as a ratio to its floor or its
// alternative (Asio's own stackful/stackless crossings, for the bridge's);
// resident memory per parked request (child processes); in-process call
// latency per executor and method kind; the admin server's cost (calls
// while its /metrics is scraped, and one scrape of 1 000 points: its time
// against the same report as JSON, and its size); and, in a full run where
// rabbitmq-server is installed, RPC over a private broker against
// oslo.messaging and against rabbitmq-c alone (bench/rabbit_bench.py,
// coport-bench-amqp), and with --rabbit-cluster coport and oslo.messaging
// once more on a private three-node cluster with quorum queues, in the same
// run. --report writes the HTML page.
//
// Machines here are shared and noisy, so the figures that matter are ratios
// of two measurements taken back to back in the same run (docs/architecture.md,
// "Performance is stated as ratios"). The two sides of a ratio are measured
// one right after the other in every repeat (alternating which goes first),
// and the ratio reported is the median of the per-repeat ratios; an absolute
// ns figure is printed for orientation only. A measurement that is the
// baseline of several ratios is measured once per ratio per repeat.
//
// Adding a benchmark: write a function `timing f(std::uint64_t n)` that sets
// up its own world (a fresh runtime, say), runs a short untimed warm-up, then
// times n iterations of the operation between two read_clocks() on the
// thread that runs them, and reports how many operations it timed; add it to
// `benchmarks()` (with cpu_scope::process or ::none when its work is not on
// the measuring thread). If it is to be judged against another, add a line
// to `ratios()`. The runner calibrates n, repeats, pairs and prints.

#include <coport/bridge/bridge.hpp>
#include <coport/coro_executor/coro_executor.hpp>
#include <coport/fiber_executor/fiber_executor.hpp>
#include <coport/messaging/rpc/client.hpp>
#include <coport/messaging/rpc/server.hpp>
#include <coport/migration/point.hpp>
#include <coport/migration/points.hpp>
#if COPORT_BENCH_HAS_ADMIN
#include <coport/admin/http_server.hpp>
#endif

#include "report_html.hpp"

#include <CLI/CLI.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/experimental/channel.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/spawn.hpp>
#if COPORT_BENCH_HAS_ADMIN
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#endif
#include <boost/context/fiber.hpp>
#include <boost/fiber/buffered_channel.hpp>
#include <boost/fiber/fixedsize_stack.hpp>
#include <boost/fiber/barrier.hpp>
#include <boost/fiber/fiber.hpp>
#include <boost/fiber/operations.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value_to.hpp>
#include <boost/version.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <coroutine>
#include <ctime>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <future>
#include <sys/utsname.h>
#include <unistd.h>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace bridge = coport::bridge;
namespace migration = coport::migration;
namespace json = boost::json;

using clock_type = std::chrono::steady_clock;
using std::chrono::nanoseconds;

// ------------------------------------------------------------------ registry

/// Time between two clock readings on one thread, by both clocks: the
/// steady clock (wall time) and the thread's CPU time. On a shared machine
/// the thread is now and then preempted; wall time counts those gaps, CPU
/// time does not.
struct elapsed_time {
  nanoseconds wall{};
  nanoseconds cpu{};
};

/// Whose CPU time a benchmark's `elapsed_time::cpu` is, which --clock cpu
/// reports: the measuring thread's (most benchmarks: the work runs there);
/// the process's, all threads (work handed between threads that sleep in
/// between); or none, `cpu` being wall time again (a throughput over
/// several threads, where the question is elapsed time).
enum class cpu_scope { thread, process, none };

/// What one run of a benchmark timed: `ops` operations in `elapsed`.
struct timing {
  elapsed_time elapsed;
  std::uint64_t ops = 0;
};

/// A benchmark: `run(n)` times about n iterations of one operation (setup and
/// warm-up excluded) and reports them. Its figure is ns per operation.
struct benchmark {
  std::string_view name;
  std::string_view what;
  timing (*run)(std::uint64_t n);
  /// Whose CPU time `timing::elapsed.cpu` is.
  cpu_scope cpu = cpu_scope::thread;
};

/// numerator / denominator, measured back to back in each repeat. Met when
/// the median ratio is at most `aim` (at least, with `at_least`: speed-ups);
/// without an aim the ratio is informative.
struct ratio_spec {
  std::string_view numerator;
  std::string_view denominator;
  std::optional<double> aim;
  bool at_least = false;
};

/// Keeps the compiler from optimising a computed value away.
template <class T>
void keep(const T& v) {
  asm volatile("" : : "r,m"(v) : "memory");
}

/// Untimed iterations before the timed ones.
std::uint64_t warmup_of(std::uint64_t n) { return std::clamp<std::uint64_t>(n / 16, 1, 1000); }

/// Both clocks, read on the calling thread.
struct reading {
  clock_type::time_point wall{};
  nanoseconds cpu{};
};

reading read_clocks() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return {clock_type::now(), std::chrono::seconds(ts.tv_sec) + nanoseconds(ts.tv_nsec)};
}

elapsed_time between(const reading& from, const reading& to) {
  return {std::chrono::duration_cast<nanoseconds>(to.wall - from.wall), to.cpu - from.cpu};
}

elapsed_time since(const reading& from) { return between(from, read_clocks()); }

/// CPU time of the whole process, all its threads: for benchmarks whose
/// work is spread over threads that sleep in between (cpu_scope::process).
nanoseconds process_cpu() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return std::chrono::seconds(ts.tv_sec) + nanoseconds(ts.tv_nsec);
}

/// Every runtime of a measurement: no stall detector (its watchdog thread
/// would compete for the two cores, and nothing here is a stall).
bridge::runtime_options bench_options() {
  bridge::runtime_options o;
  o.name = "bench";
  o.stall_threshold = std::chrono::milliseconds(0);
  return o;
}

// ------------------------------------------------------- floor: coroutines

/// The smallest useful C++20 coroutine: a generator of 0, 1, 2, ...
class counter {
 public:
  struct promise_type {
    std::uint64_t value = 0;
    counter get_return_object() {
      return counter(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    std::suspend_always yield_value(std::uint64_t v) noexcept {
      value = v;
      return {};
    }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };

  explicit counter(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}
  counter(const counter&) = delete;
  counter& operator=(const counter&) = delete;
  ~counter() { h_.destroy(); }

  std::uint64_t next() {
    h_.resume();
    return h_.promise().value;
  }

 private:
  std::coroutine_handle<promise_type> h_;
};

// Not inlined: otherwise the compiler may see through the frame and turn the
// resumptions into a plain loop, which would not measure a resumption.
[[gnu::noinline]] counter count_up() {
  for (std::uint64_t i = 0;; ++i) co_yield i;
}

timing floor_coroutine_resume(std::uint64_t n) {
  counter c = count_up();
  std::uint64_t sum = 0;
  for (std::uint64_t i = 0, w = warmup_of(n); i < w; ++i) sum += c.next();
  const reading t0 = read_clocks();
  for (std::uint64_t i = 0; i < n; ++i) sum += c.next();
  const auto elapsed = since(t0);
  keep(sum);
  return {elapsed, n};
}

// ------------------------------------------------------------- floor: asio

/// A handler that posts itself again until it has run `left` times.
struct repost {
  asio::io_context* io;
  std::uint64_t left;
  void operator()() {
    if (--left > 0) asio::post(*io, *this);
  }
};

timing floor_asio_post(std::uint64_t n) {
  asio::io_context io(1);  // one thread, as a coport loop's io_context
  asio::post(io, repost{&io, warmup_of(n)});
  io.run();
  io.restart();
  asio::post(io, repost{&io, n});
  const reading t0 = read_clocks();
  io.run();
  return {since(t0), n};
}

// --------------------------------------------------- floor: context switch

/// A Boost.Context fiber switch: two contexts handing control to each other,
/// n switches in all (each resume() is one switch).
timing floor_context_switch(std::uint64_t n) {
  namespace ctx = boost::context;
  std::uint64_t turns = 0;
  ctx::fiber other([&turns](ctx::fiber&& back) {
    for (;;) {
      ++turns;
      back = std::move(back).resume();
    }
    return std::move(back);
  });
  for (std::uint64_t i = 0, w = warmup_of(n); i < w; ++i) other = std::move(other).resume();
  const reading t0 = read_clocks();
  for (std::uint64_t i = 0; i < n; ++i) other = std::move(other).resume();
  const auto elapsed = since(t0);
  keep(turns);
  // `other` is left suspended; its stack is unwound by its destructor.
  return {elapsed, 2 * n};  // there and back: two switches per resume
}

// --------------------------------------------------- floor: another thread

/// A cross-thread wake-up: two threads, each running an io_context of its
/// own and sleeping in it when idle, post a handler to each other n times
/// back and forth; each post wakes the other thread.
timing floor_cross_thread_wake(std::uint64_t n) {
  asio::io_context a(1);
  asio::io_context b(1);
  auto guard_a = asio::make_work_guard(a);
  auto guard_b = asio::make_work_guard(b);
  std::thread tb([&b] { b.run(); });
  // An even count of hops ends on `a`, which then stops.
  struct ping {
    asio::io_context* here;
    asio::io_context* there;
    std::uint64_t left;
    void operator()() const {
      if (left == 0) {
        here->stop();
        return;
      }
      asio::post(*there, ping{there, here, left - 1});
    }
  };
  asio::post(a, ping{&a, &b, 2 * warmup_of(n)});
  a.run();
  a.restart();
  asio::post(a, ping{&a, &b, 2 * n});
  const clock_type::time_point wall0 = clock_type::now();
  const nanoseconds cpu0 = process_cpu();
  a.run();
  const nanoseconds cpu = process_cpu() - cpu0;
  const nanoseconds wall = std::chrono::duration_cast<nanoseconds>(clock_type::now() - wall0);
  guard_b.reset();
  tb.join();
  // Each thread sleeps while the other works, so the measuring thread's CPU
  // time would count half the work; the process's counts both threads.
  return {{wall, cpu}, 2 * n};
}

// ------------------------------------------------------------------ yields

struct span {
  reading begin;
  reading end;
};

/// One of two fibers taking turns: warm up, meet the other at `gate` (so the
/// timed part starts with both ready), then yield n times.
span yield_turns(boost::fibers::barrier& gate, std::uint64_t n) {
  for (std::uint64_t i = 0, w = warmup_of(n); i < w; ++i) boost::this_fiber::yield();
  gate.wait();
  span s;
  s.begin = read_clocks();
  for (std::uint64_t i = 0; i < n; ++i) boost::this_fiber::yield();
  s.end = read_clocks();
  return s;
}

// Both fibers run on one thread, so their readings of either clock compare.
timing both_turns(const span& a, const span& b, std::uint64_t n) {
  const reading& first = a.begin.wall <= b.begin.wall ? a.begin : b.begin;
  const reading& last = a.end.wall >= b.end.wall ? a.end : b.end;
  return {between(first, last), 2 * n};
}

timing floor_round_robin_yield(std::uint64_t n) {
  span a;
  span b;
  // A plain thread: Boost.Fiber's default scheduler (algo::round_robin).
  std::thread t([&] {
    boost::fibers::barrier gate(2);
    boost::fibers::fiber fa([&] { a = yield_turns(gate, n); });
    boost::fibers::fiber fb([&] { b = yield_turns(gate, n); });
    fa.join();
    fb.join();
  });
  t.join();
  return both_turns(a, b, n);
}

timing bridge_yield(std::uint64_t n) {
  boost::fibers::barrier gate(2);
  bridge::runtime rt(bench_options());
  auto a = bridge::async_run_in_fiber(
      rt.get_executor(), [&] { return yield_turns(gate, n); }, asio::use_future);
  auto b = bridge::async_run_in_fiber(
      rt.get_executor(), [&] { return yield_turns(gate, n); }, asio::use_future);
  return both_turns(a.get(), b.get(), n);
}

// ---------------------------------------------------------- bridge crossings

asio::awaitable<int> trivial(int i) { co_return i; }

timing bridge_fiber_to_coroutine(std::uint64_t n) {
  bridge::runtime rt(bench_options());
  auto f = bridge::async_run_in_fiber(
      rt.get_executor(),
      [n] {
        int sum = 0;
        for (std::uint64_t i = 0, w = warmup_of(n); i < w; ++i) sum += bridge::await(trivial(1));
        const reading t0 = read_clocks();
        for (std::uint64_t i = 0; i < n; ++i) sum += bridge::await(trivial(1));
        const auto elapsed = since(t0);
        keep(sum);
        return elapsed;
      },
      asio::use_future);
  return {f.get(), n};
}

/// Spawns trivial(1) again from each completion until `left` have run: the
/// cost of starting and finishing an asio::awaitable, which is what
/// bridge::await must pay at least.
struct respawn {
  asio::io_context* io;
  std::uint64_t left;
  int* sum;
  void operator()(std::exception_ptr, int v) {
    *sum += v;
    if (--left > 0) asio::co_spawn(*io, trivial(1), respawn{io, left, sum});
  }
};

timing floor_co_spawn(std::uint64_t n) {
  asio::io_context io(1);
  int sum = 0;
  asio::co_spawn(io, trivial(1), respawn{&io, warmup_of(n), &sum});
  io.run();
  io.restart();
  asio::co_spawn(io, trivial(1), respawn{&io, n, &sum});
  const reading t0 = read_clocks();
  io.run();
  const auto elapsed = since(t0);
  keep(sum);
  return {elapsed, n};
}

// ------------------------------------------------------ migration points

/// About a microsecond of arithmetic: the unit of work the migration-point
/// benchmarks wrap, so that their ratio shows the point's own cost beside
/// a small but real form.
std::uint64_t busy_microsecond(std::uint64_t x) {
  for (int i = 0; i < 700; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    keep(x);
  }
  return x;
}

asio::awaitable<std::uint64_t> busy_microsecond_co(std::uint64_t x) { co_return busy_microsecond(x); }

/// A point in `policy` with both forms the busy microsecond.
struct bench_point {
  migration::registry reg;
  migration::point<std::uint64_t(std::uint64_t)> p;
  bench_point(bridge::runtime& rt, migration::policy policy)
      : reg("bench", {.default_policy = policy}),
        p(reg, "work", {.legacy = busy_microsecond, .ported = busy_microsecond_co}, rt) {}
};

/// From a native coroutine on a coport loop, `n` times `co_await make(i)`.
template <class Make>
timing coroutine_loop(std::uint64_t n, Make make) {
  bridge::runtime rt(bench_options());
  auto f = asio::co_spawn(
      rt.get_executor(),
      [&]() -> asio::awaitable<elapsed_time> {
        std::uint64_t sum = 0;
        for (std::uint64_t i = 0, w = warmup_of(n); i < w; ++i) sum += co_await make(rt, i);
        const reading t0 = read_clocks();
        for (std::uint64_t i = 0; i < n; ++i) sum += co_await make(rt, i);
        const auto elapsed = since(t0);
        keep(sum);
        co_return elapsed;
      },
      asio::use_future);
  return {f.get(), n};
}

/// From a fiber of a coport loop, `n` times `call(i)`.
template <class Call>
timing fiber_loop(std::uint64_t n, Call call) {
  bridge::runtime rt(bench_options());
  auto f = bridge::async_run_in_fiber(
      rt.get_executor(),
      [&] {
        std::uint64_t sum = 0;
        for (std::uint64_t i = 0, w = warmup_of(n); i < w; ++i) sum += call(rt, i);
        const reading t0 = read_clocks();
        for (std::uint64_t i = 0; i < n; ++i) sum += call(rt, i);
        const auto elapsed = since(t0);
        keep(sum);
        return elapsed;
      },
      asio::use_future);
  return {f.get(), n};
}

timing direct_ported(std::uint64_t n) {
  return coroutine_loop(n, [](bridge::runtime&, std::uint64_t i) { return busy_microsecond_co(i); });
}

timing point_ported(std::uint64_t n) {
  std::optional<bench_point> bp;
  return coroutine_loop(n, [&](bridge::runtime& rt, std::uint64_t i) {
    if (!bp) bp.emplace(rt, migration::policy::ported());
    return bp->p.async_call(i);
  });
}

timing direct_legacy(std::uint64_t n) {
  return fiber_loop(n, [](bridge::runtime&, std::uint64_t i) { return busy_microsecond(i); });
}

timing point_legacy(std::uint64_t n) {
  std::optional<bench_point> bp;
  return fiber_loop(n, [&](bridge::runtime& rt, std::uint64_t i) {
    if (!bp) bp.emplace(rt, migration::policy::legacy());
    return bp->p.call(i);
  });
}

// ------------------------------------------------------------- messaging

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

asio::awaitable<elapsed_time> run_in_fiber_turns(bridge::loop_executor ex, std::uint64_t n) {
  int sum = 0;
  for (std::uint64_t i = 0, w = warmup_of(n); i < w; ++i) {
    sum += co_await bridge::async_run_in_fiber(ex, [] { return 1; }, asio::use_awaitable);
  }
  const reading t0 = read_clocks();
  for (std::uint64_t i = 0; i < n; ++i) {
    sum += co_await bridge::async_run_in_fiber(ex, [] { return 1; }, asio::use_awaitable);
  }
  const auto elapsed = since(t0);
  keep(sum);
  co_return elapsed;
}

timing bridge_coroutine_to_fiber(std::uint64_t n) {
  bridge::runtime rt(bench_options());
  auto f = asio::co_spawn(rt.get_executor(), run_in_fiber_turns(rt.get_executor(), n),
                          asio::use_future);
  return {f.get(), n};
}

// ------------------------------------------------ Asio's own crossings

// Asio has a crossing of its own between stackful and stackless code, the
// peer of bridge::await and run_in_fiber: a stackful coroutine of
// asio::spawn (Boost.Context, a fresh stack per spawn) awaits an awaitable
// through co_spawn with its yield_context as the completion token, and a
// C++20 coroutine awaits stackful work through asio::spawn with
// use_awaitable. Both on a plain one-thread io_context.

/// co_spawn(ex, trivial(i), yield), as Boost 1.81 lets a stackful coroutine
/// write it: its yield_context mishandles completions that carry an
/// exception_ptr (for void(exception_ptr) it rethrows a null one, for
/// void(exception_ptr, T) it does not compile), so the completion comes as
/// a tuple (as_tuple) and the exception is rethrown here.
int await_from_stackful(asio::io_context& io, int i, const asio::yield_context& yield) {
  auto [e, v] = asio::co_spawn(io, trivial(i), asio::as_tuple(yield));
  if (e) std::rethrow_exception(e);
  return v;
}

/// n await_from_stackful() from one asio::spawn coroutine.
timing asio_spawn_to_coroutine(std::uint64_t n) {
  asio::io_context io(1);
  elapsed_time elapsed;
  asio::spawn(
      io,
      [&io, &elapsed, n](asio::yield_context yield) {
        int sum = 0;
        for (std::uint64_t i = 0, w = warmup_of(n); i < w; ++i) sum += await_from_stackful(io, 1, yield);
        const reading t0 = read_clocks();
        for (std::uint64_t i = 0; i < n; ++i) sum += await_from_stackful(io, 1, yield);
        elapsed = since(t0);
        keep(sum);
      },
      [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
      });
  io.run();
  return {elapsed, n};
}

/// n co_await asio::spawn(ex, one, use_awaitable) from the calling coroutine.
asio::awaitable<elapsed_time> spawn_turns(std::uint64_t n) {
  const auto ex = co_await asio::this_coro::executor;
  auto one = [](asio::yield_context) { return 1; };
  int sum = 0;
  for (std::uint64_t i = 0, w = warmup_of(n); i < w; ++i) sum += co_await asio::spawn(ex, one, asio::use_awaitable);
  const reading t0 = read_clocks();
  for (std::uint64_t i = 0; i < n; ++i) sum += co_await asio::spawn(ex, one, asio::use_awaitable);
  const auto elapsed = since(t0);
  keep(sum);
  co_return elapsed;
}

timing asio_coroutine_to_spawn(std::uint64_t n) {
  asio::io_context io(1);
  auto f = asio::co_spawn(io, spawn_turns(n), asio::use_future);
  io.run();
  return {f.get(), n};
}

/// n resumptions of the calling coroutine through its own executor.
asio::awaitable<elapsed_time> post_turns(std::uint64_t n) {
  for (std::uint64_t i = 0, w = warmup_of(n); i < w; ++i) co_await asio::post(asio::use_awaitable);
  const reading t0 = read_clocks();
  for (std::uint64_t i = 0; i < n; ++i) co_await asio::post(asio::use_awaitable);
  co_return since(t0);
}

/// The same loop on a plain io_context: what a native coroutine costs
/// without coport, and so what bridge.native_resume is judged against.
timing floor_awaitable_post(std::uint64_t n) {
  asio::io_context io(1);
  auto f = asio::co_spawn(io, post_turns(n), asio::use_future);
  io.run();
  return {f.get(), n};
}

timing bridge_native_resume(std::uint64_t n) {
  bridge::runtime rt(bench_options());
  auto f = asio::co_spawn(rt.get_executor(), post_turns(n), asio::use_future);
  return {f.get(), n};
}

timing bridge_hosted_resume(std::uint64_t n) {
  bridge::runtime rt(bench_options());
  auto f = bridge::co_spawn_hosted(rt.get_executor(), post_turns(n), asio::use_future);
  return {f.get(), n};
}

// ---------------------------------------------------------------- channels

// One producer sends n integers through a channel of capacity 64 to one
// consumer, on one thread; the figure is ns per value. The consumer's clock
// readings bound the timed part (first value to last).

constexpr std::size_t channel_capacity = 64;

/// Stock Boost.Fiber: two fibers on a plain thread, buffered_channel.
timing floor_fiber_channel(std::uint64_t n) {
  elapsed_time e;
  std::thread t([&] {
    boost::fibers::buffered_channel<std::uint64_t> ch(channel_capacity);
    const std::uint64_t total = warmup_of(n) + n;
    boost::fibers::fiber producer([&] {
      for (std::uint64_t i = 0; i < total; ++i) ch.push(i);
    });
    boost::fibers::fiber consumer([&] {
      std::uint64_t sum = 0;
      std::uint64_t v = 0;
      for (std::uint64_t i = 0, w = warmup_of(n); i < w; ++i) {
        ch.pop(v);
        sum += v;
      }
      const reading t0 = read_clocks();
      for (std::uint64_t i = 0; i < n; ++i) {
        ch.pop(v);
        sum += v;
      }
      e = since(t0);
      keep(sum);
    });
    producer.join();
    consumer.join();
  });
  t.join();
  return {e, n};
}

/// Stock Asio: two coroutines on a plain io_context, experimental::channel.
timing floor_asio_channel(std::uint64_t n) {
  using chan = asio::experimental::channel<void(boost::system::error_code, std::uint64_t)>;
  asio::io_context io(1);
  chan ch(io, channel_capacity);
  const std::uint64_t total = warmup_of(n) + n;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        for (std::uint64_t i = 0; i < total; ++i) co_await ch.async_send(boost::system::error_code(), i, asio::use_awaitable);
      },
      asio::detached);
  std::optional<elapsed_time> e;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        std::uint64_t sum = 0;
        for (std::uint64_t i = 0, w = warmup_of(n); i < w; ++i) sum += co_await ch.async_receive(asio::use_awaitable);
        const reading t0 = read_clocks();
        for (std::uint64_t i = 0; i < n; ++i) sum += co_await ch.async_receive(asio::use_awaitable);
        e = since(t0);
        keep(sum);
      },
      asio::detached);
  io.run();
  return {*e, n};
}

/// coport's dual-world channel on one loop; `fiber_producer` and
/// `fiber_consumer` choose each side's world.
timing bridge_channel(bool fiber_producer, bool fiber_consumer, std::uint64_t n) {
  bridge::runtime rt(bench_options());
  const bridge::loop_executor ex = rt.get_executor();
  bridge::channel<std::uint64_t> ch(ex, channel_capacity);
  const std::uint64_t total = warmup_of(n) + n;
  std::future<void> produced;
  if (fiber_producer) {
    produced = bridge::async_run_in_fiber(
        ex, [&] { for (std::uint64_t i = 0; i < total; ++i) ch.push(i); }, asio::use_future);
  } else {
    produced = asio::co_spawn(
        ex,
        [&]() -> asio::awaitable<void> {
          for (std::uint64_t i = 0; i < total; ++i) co_await ch.async_push(i, asio::use_awaitable);
        },
        asio::use_future);
  }
  std::future<elapsed_time> consumed;
  if (fiber_consumer) {
    consumed = bridge::async_run_in_fiber(
        ex,
        [&] {
          std::uint64_t sum = 0;
          for (std::uint64_t i = 0, w = warmup_of(n); i < w; ++i) sum += ch.pop();
          const reading t0 = read_clocks();
          for (std::uint64_t i = 0; i < n; ++i) sum += ch.pop();
          const auto e = since(t0);
          keep(sum);
          return e;
        },
        asio::use_future);
  } else {
    consumed = asio::co_spawn(
        ex,
        [&]() -> asio::awaitable<elapsed_time> {
          std::uint64_t sum = 0;
          for (std::uint64_t i = 0, w = warmup_of(n); i < w; ++i) sum += co_await ch.async_pop(asio::use_awaitable);
          const reading t0 = read_clocks();
          for (std::uint64_t i = 0; i < n; ++i) sum += co_await ch.async_pop(asio::use_awaitable);
          const auto e = since(t0);
          keep(sum);
          co_return e;
        },
        asio::use_future);
  }
  produced.get();
  return {consumed.get(), n};
}

timing chan_fibers(std::uint64_t n) { return bridge_channel(true, true, n); }
timing chan_coroutines(std::uint64_t n) { return bridge_channel(false, false, n); }
timing chan_fiber_to_coroutine(std::uint64_t n) { return bridge_channel(true, false, n); }

// ------------------------------------------------------------------ skynet

// Skynet: each task starts ten children, waits for them and returns the sum
// of theirs; the leaves return their own number. skynet_leaves leaves (a
// million; --quick: 100 000), 1 111 111 tasks in all; the figure is ns per
// task. Below the root every task starts all ten children before it waits,
// so many are alive at once; the root runs its ten subtrees one after the
// other, which bounds the fibers alive at once to a tenth of the tree
// (about 1 GB of 16 KiB stacks in a full run).

std::uint64_t skynet_leaves = 1'000'000;
constexpr std::uint64_t skynet_fanout = 10;
constexpr std::size_t skynet_stack = 16 * 1024;

std::uint64_t skynet_tasks() {
  std::uint64_t tasks = 0;
  for (std::uint64_t level = skynet_leaves; level >= 1; level /= skynet_fanout) tasks += level;
  return tasks;
}

/// The root: `subtree(first, leaves)` for each tenth of the leaves in turn.
template <class Subtree>
std::uint64_t skynet_by_tenths(Subtree subtree) {
  const std::uint64_t part = skynet_leaves / skynet_fanout;
  std::uint64_t sum = 0;
  for (std::uint64_t i = 0; i < skynet_fanout; ++i) sum += subtree(i * part, part);
  return sum;
}

/// Throws unless the tree summed its leaves 0 .. skynet_leaves-1.
void check_skynet(std::uint64_t sum) {
  if (sum != skynet_leaves * (skynet_leaves - 1) / 2) {
    throw std::logic_error("skynet: wrong sum " + std::to_string(sum));
  }
}

bridge::runtime_options skynet_options() {
  bridge::runtime_options o = bench_options();
  o.fiber_stack_size = skynet_stack;
  return o;
}

/// A task's children, which all run on its loop: their sum, and an event
/// the last one sets; waited for by a fiber or by a coroutine.
struct skynet_join {
  explicit skynet_join(const bridge::loop_executor& ex) : done(ex) {}
  void add(std::uint64_t v) {
    sum += v;
    if (--left == 0) done.set();
  }
  std::uint64_t sum = 0;
  std::uint64_t left = skynet_fanout;
  bridge::event done;
};

/// Stock Boost.Fiber: fibers on a plain thread, joined.
std::uint64_t skynet_stock_fiber(std::uint64_t num, std::uint64_t size) {
  if (size == 1) return num;
  const std::uint64_t part = size / skynet_fanout;
  std::uint64_t results[skynet_fanout] = {};
  std::vector<boost::fibers::fiber> children;
  children.reserve(skynet_fanout);
  for (std::uint64_t i = 0; i < skynet_fanout; ++i) {
    children.emplace_back(std::allocator_arg, boost::fibers::fixedsize_stack(skynet_stack),
                          [&results, i, first = num + i * part, part] { results[i] = skynet_stock_fiber(first, part); });
  }
  std::uint64_t sum = 0;
  for (std::uint64_t i = 0; i < skynet_fanout; ++i) {
    children[i].join();
    sum += results[i];
  }
  return sum;
}

timing floor_skynet_fibers(std::uint64_t) {
  elapsed_time e;
  std::uint64_t sum = 0;
  std::thread t([&] {
    boost::fibers::fiber root(std::allocator_arg, boost::fibers::fixedsize_stack(skynet_stack), [&] {
      const reading t0 = read_clocks();
      sum = skynet_by_tenths(skynet_stock_fiber);
      e = since(t0);
    });
    root.join();
  });
  t.join();
  check_skynet(sum);
  return {e, skynet_tasks()};
}

/// coport fibers on a loop: pooled fibers (bridge::spawn_fiber) joined
/// through a bridge::event.
std::uint64_t skynet_fiber(const bridge::loop_executor& ex, std::uint64_t num, std::uint64_t size) {
  if (size == 1) return num;
  const std::uint64_t part = size / skynet_fanout;
  skynet_join j(ex);
  for (std::uint64_t i = 0; i < skynet_fanout; ++i) {
    bridge::spawn_fiber(ex, [&j, ex, first = num + i * part, part] { j.add(skynet_fiber(ex, first, part)); });
  }
  j.done.wait();
  return j.sum;
}

/// The root in a fiber of a coport loop; `subtree` runs one tenth.
timing skynet_on_loop(std::uint64_t (*subtree)(const bridge::loop_executor&, std::uint64_t, std::uint64_t)) {
  bridge::runtime rt(skynet_options());
  const bridge::loop_executor ex = rt.get_executor();
  auto f = bridge::async_run_in_fiber(
      ex,
      [ex, subtree] {
        const reading t0 = read_clocks();
        const std::uint64_t sum =
            skynet_by_tenths([&](std::uint64_t first, std::uint64_t leaves) { return subtree(ex, first, leaves); });
        return std::pair(since(t0), sum);
      },
      asio::use_future);
  const auto [e, sum] = f.get();
  check_skynet(sum);
  return {e, skynet_tasks()};
}

timing skynet_fibers(std::uint64_t) { return skynet_on_loop(skynet_fiber); }

/// Coroutines: co_spawn'd children, joined through a timer the last one
/// cancels. The same code runs on a plain io_context (the floor) and on a
/// coport loop.
asio::awaitable<std::uint64_t> skynet_coro(std::uint64_t num, std::uint64_t size) {
  if (size == 1) co_return num;
  const auto ex = co_await asio::this_coro::executor;
  const std::uint64_t part = size / skynet_fanout;
  std::uint64_t sum = 0;
  std::uint64_t left = skynet_fanout;
  asio::steady_timer all_done(ex, asio::steady_timer::time_point::max());
  for (std::uint64_t i = 0; i < skynet_fanout; ++i) {
    asio::co_spawn(ex, skynet_coro(num + i * part, part), [&](std::exception_ptr, std::uint64_t v) {
      sum += v;
      if (--left == 0) all_done.cancel();
    });
  }
  // A child may have finished inline, before this wait.
  if (left > 0) {
    boost::system::error_code cancelled;
    co_await all_done.async_wait(asio::redirect_error(asio::use_awaitable, cancelled));
  }
  co_return sum;
}

asio::awaitable<std::pair<elapsed_time, std::uint64_t>> timed_skynet_coro() {
  const std::uint64_t part = skynet_leaves / skynet_fanout;
  const reading t0 = read_clocks();
  std::uint64_t sum = 0;
  for (std::uint64_t i = 0; i < skynet_fanout; ++i) sum += co_await skynet_coro(i * part, part);
  co_return std::pair(since(t0), sum);
}

timing floor_skynet_coroutines(std::uint64_t) {
  asio::io_context io(1);
  auto f = asio::co_spawn(io, timed_skynet_coro(), asio::use_future);
  io.run();
  const auto [e, sum] = f.get();
  check_skynet(sum);
  return {e, skynet_tasks()};
}

timing skynet_coroutines(std::uint64_t) {
  bridge::runtime rt(skynet_options());
  auto f = asio::co_spawn(rt.get_executor(), timed_skynet_coro(), asio::use_future);
  const auto [e, sum] = f.get();
  check_skynet(sum);
  return {e, skynet_tasks()};
}

/// Mixed: the levels alternate, fibers starting coroutines (bridge::spawn)
/// and coroutines starting fibers (bridge::spawn_fiber); every task waits
/// on a bridge::event in its own world.
asio::awaitable<std::uint64_t> skynet_mixed_coro(bridge::loop_executor ex, std::uint64_t num, std::uint64_t size);

std::uint64_t skynet_mixed_fiber(const bridge::loop_executor& ex, std::uint64_t num, std::uint64_t size) {
  if (size == 1) return num;
  const std::uint64_t part = size / skynet_fanout;
  skynet_join j(ex);
  for (std::uint64_t i = 0; i < skynet_fanout; ++i) {
    bridge::spawn(ex, [&j, ex, first = num + i * part, part]() -> asio::awaitable<void> {
      j.add(co_await skynet_mixed_coro(ex, first, part));
    });
  }
  j.done.wait();
  return j.sum;
}

asio::awaitable<std::uint64_t> skynet_mixed_coro(bridge::loop_executor ex, std::uint64_t num, std::uint64_t size) {
  if (size == 1) co_return num;
  const std::uint64_t part = size / skynet_fanout;
  skynet_join j(ex);
  for (std::uint64_t i = 0; i < skynet_fanout; ++i) {
    bridge::spawn_fiber(ex, [&j, ex, first = num + i * part, part] { j.add(skynet_mixed_fiber(ex, first, part)); });
  }
  co_await j.done.async_wait(asio::use_awaitable);
  co_return j.sum;
}

/// A tenth of the mixed tree from the root fiber: its top is a coroutine.
std::uint64_t skynet_mixed_tenth(const bridge::loop_executor& ex, std::uint64_t first, std::uint64_t leaves) {
  return bridge::await(skynet_mixed_coro(ex, first, leaves));
}

timing skynet_mixed(std::uint64_t) { return skynet_on_loop(skynet_mixed_tenth); }

// ----------------------------------------------------------------- the lists

// ------------------------------------------------------------- executors

namespace msg = coport::messaging;

/// CPU work the compiler cannot fold: about 2 us per 1500 rounds here.
std::int64_t burn(std::int64_t seed, int rounds = 1500) {
  std::uint64_t x = static_cast<std::uint64_t>(seed) | 1;
  for (int i = 0; i < rounds; ++i) x = x * 6364136223846793005ULL + 1442695040888963407ULL;
  return static_cast<std::int64_t>(x >> 33);
}

/// The benchmark service: the same `add` as messaging.call_memory in every
/// form and mode, and `work`, a fiber method of a few microseconds of CPU.
msg::service bench_service(const std::string& topic, bool fiber_methods = true) {
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

/// Where a latency run (see call_latency) records each call; null in the
/// timed runs, which read the clock twice in all. Set before the calls
/// start on their loop, read there.
std::vector<nanoseconds>* call_latencies = nullptr;

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

timing exec_pool1(std::uint64_t n) { return exec_pool(1, 1500, n); }
timing exec_pool2(std::uint64_t n) { return exec_pool(2, 1500, n); }
timing exec_pool1_10us(std::uint64_t n) { return exec_pool(1, 7500, n); }
timing exec_pool2_10us(std::uint64_t n) { return exec_pool(2, 7500, n); }

// ------------------------------------------------------------- admin server

#if COPORT_BENCH_HAS_ADMIN

namespace admin = coport::admin;
namespace http = boost::beast::http;

/// How often the scraper of admin.fiber_native_scraped GETs /metrics: 1500
/// times as often as Prometheus does by default (every 15 s).
constexpr std::chrono::milliseconds scrape_interval{10};

/// Scrapes an admin server's /metrics every `scrape_interval` from a
/// thread of its own, as Prometheus does: a blocking Beast client on one
/// keep-alive connection (a new one when the server closes it), the first
/// scrape at once. Checks each answer (200, coport's series in it).
class scraper {
 public:
  explicit scraper(std::uint16_t port) : port_(port), thread_([this] { run(); }) {}
  scraper(const scraper&) = delete;
  scraper& operator=(const scraper&) = delete;
  ~scraper() { join(); }

  /// Stops scraping and returns the scrapes made; throws what a scrape
  /// failed with.
  std::uint64_t finish() {
    join();
    if (error_) std::rethrow_exception(error_);
    return scrapes_;
  }
  /// Bytes of /metrics bodies read (after finish()).
  [[nodiscard]] std::uint64_t bytes() const noexcept { return bytes_; }

 private:
  void join() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  void run() {
    try {
      asio::io_context io;
      asio::ip::tcp::socket socket(io);
      const asio::ip::tcp::endpoint server(asio::ip::make_address("127.0.0.1"), port_);
      boost::beast::flat_buffer buffer;
      http::request<http::empty_body> req{http::verb::get, "/metrics", 11};
      req.set(http::field::host, "127.0.0.1:" + std::to_string(port_));
      req.set(http::field::user_agent, "coport-bench");
      req.keep_alive(true);
      auto next = clock_type::now();
      for (;;) {
        {
          std::unique_lock lock(mutex_);
          if (wake_.wait_until(lock, next, [this] { return stopping_; })) return;
        }
        if (!socket.is_open()) {
          socket.connect(server);
          buffer.clear();
        }
        http::write(socket, req);
        http::response_parser<http::string_body> parser;
        parser.body_limit(64 * 1024 * 1024);
        http::read(socket, buffer, parser);
        const auto& res = parser.get();
        if (res.result() != http::status::ok ||
            res.body().find("coport_migration_calls_total{") == std::string::npos) {
          throw std::runtime_error("GET /metrics answered " + std::to_string(res.result_int()) +
                                   " without coport's series");
        }
        ++scrapes_;
        bytes_ += res.body().size();
        if (!res.keep_alive()) socket.close();
        // Behind (a slow scrape, a preempted thread): the next one at once,
        // then on time again, as Prometheus' scrape loop.
        next = std::max(next + scrape_interval, clock_type::now());
      }
    } catch (const std::exception& e) {
      error_ = std::make_exception_ptr(std::runtime_error(std::string("the /metrics scraper failed: ") + e.what()));
    }
  }

  std::uint16_t port_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;  // guarded by mutex_
  // The scraper's thread only, until joined.
  std::uint64_t scrapes_ = 0;
  std::uint64_t bytes_ = 0;
  std::exception_ptr error_;
  std::thread thread_;  // last: starts once the rest is built
};

/// What the scrapers of admin.fiber_native_scraped did over the run, for
/// the note after it (stderr): scrapes, bytes read, timed calls.
struct scraped_totals {
  std::uint64_t scrapes = 0;
  std::uint64_t bytes = 0;
  std::uint64_t calls = 0;
  nanoseconds timed{};
};
scraped_totals scraped;

/// exec.fiber_native with the admin server of that service running and
/// scraped: its executor's report and policies, the loop and the loop's
/// work counters as sources, and a scraper GETting /metrics over HTTP every
/// 10 ms while the calls run. The server and the scraper run on threads of
/// their own (the server never on the loop); the figure is the calls'.
timing admin_fiber_native_scraped(std::uint64_t n) {
  bridge::runtime rt(bench_options());
  msg::service svc = bench_service("bench");
  coport::fiber_executor_options o;
  o.modes["add_native"] = coport::coroutine_mode::native;
  coport::fiber_executor ex(svc, rt, o);
  admin::http_server server;
  server.add({[&ex] { return migration::report(ex.report()); },
              [&ex](std::string_view name, migration::policy p) { return ex.controls()->set_policy(name, p); }});
  server.add_loop(rt);
  server.add_work_counters("bench", rt.registry());
  ex.start();
  server.start();
  elapsed_time e;
  std::uint64_t scrapes = 0;
  {
    scraper scrape(server.port());
    msg::rpc_client client(svc.transport, msg::target{.topic = "bench"});
    auto f = asio::co_spawn(rt.get_executor(), sequential_calls(client, "add_native", n), asio::use_future);
    e = f.get();
    scrapes = scrape.finish();
    scraped.bytes += scrape.bytes();
  }
  server.stop();
  ex.async_stop(asio::use_future).get();
  // A run of ten intervals or more that was never scraped measured nothing
  // of what it claims (the runs together are checked by report_scrapes()).
  if (scrapes == 0 && e.wall >= 10 * scrape_interval) {
    throw std::runtime_error("admin.fiber_native_scraped: /metrics was not scraped once in " +
                             std::to_string(e.wall.count() / 1'000'000) + " ms of calls");
  }
  scraped.scrapes += scrapes;
  scraped.calls += n;
  scraped.timed += e.wall;
  return {e, n};
}

/// After the runs: how often admin.fiber_native_scraped's runs were scraped
/// (stderr). Throws when they were never scraped in three intervals or
/// more of calls all told: short runs (--quick) are each shorter than the
/// one check, but each is scraped once at its start.
void report_scrapes() {
  if (scraped.calls == 0) return;
  const double timed_s = std::chrono::duration<double>(scraped.timed).count();
  if (scraped.scrapes == 0) {
    if (scraped.timed < 3 * scrape_interval) return;
    throw std::runtime_error("admin.fiber_native_scraped: /metrics was not scraped once in " +
                             std::to_string(scraped.timed.count() / 1'000'000) + " ms of calls");
  }
  const double scrapes = static_cast<double>(scraped.scrapes);
  std::fprintf(stderr,
               "admin.fiber_native_scraped: %llu scrapes of /metrics (%.0f bytes each) during %.2f s of timed "
               "calls: one per %.1f ms (aim %lld ms; each run's first at once)\n",
               static_cast<unsigned long long>(scraped.scrapes), static_cast<double>(scraped.bytes) / scrapes,
               timed_s, timed_s * 1000 / scrapes, static_cast<long long>(scrape_interval.count()));
}

/// The points of admin.scrape_1000: a registry of 1 000 points in both
/// forms, each form with calls recorded (some failed) over several
/// latency buckets, and an admin server (never started) whose source it
/// is. metrics_text() and report() build their answers as GET /metrics and
/// GET /migration.json do, without the HTTP around them.
struct thousand_points {
  static constexpr std::size_t points = 1000;
  migration::registry reg{"bench"};
  admin::http_server server;

  thousand_points() {
    for (std::size_t i = 0; i < points; ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "point_%04zu", i);
      migration::point_record& p = reg.declare(name, true, true);
      for (migration::form_kind k : {migration::form_kind::fiber, migration::form_kind::coroutine}) {
        for (std::size_t j = 0; j < 4; ++j) {
          const auto took = std::chrono::microseconds(2 + 37 * ((i + j) % 7) + 900 * j);
          p.metrics(k).record(took, (i + j) % 13 == 0, false);
        }
      }
    }
    server.add(admin::source_of(reg));
  }
};

/// admin.scrape_1000 and admin.report_json_1000 time n / 256 answers (at
/// least one): one is about as long as 256 operations of the other
/// benchmarks, so that calibration starts at one answer.
std::uint64_t answers_of(std::uint64_t n) { return std::max<std::uint64_t>(n / 256, 1); }

template <class Answer>
timing time_answers(std::uint64_t n, Answer answer) {
  thousand_points world;
  const std::uint64_t count = answers_of(n);
  std::size_t size = 0;
  for (std::uint64_t i = 0, w = warmup_of(count); i < w; ++i) size += answer(world).size();
  const reading t0 = read_clocks();
  for (std::uint64_t i = 0; i < count; ++i) size += answer(world).size();
  const auto elapsed = since(t0);
  keep(size);
  return {elapsed, count};
}

timing admin_scrape_1000(std::uint64_t n) {
  return time_answers(n, [](const thousand_points& w) { return w.server.metrics_text(); });
}

timing admin_report_json_1000(std::uint64_t n) {
  return time_answers(n, [](const thousand_points& w) { return json::serialize(w.server.report().to_json()); });
}

/// The size of one /metrics body of admin.scrape_1000's points: bytes, and
/// series (sample lines: neither a comment nor blank). Also the size of the
/// same report as JSON (GET /migration.json).
struct scrape_size {
  std::size_t bytes = 0;
  std::size_t series = 0;
  std::size_t json_bytes = 0;
};

scrape_size measure_scrape_size() {
  const thousand_points world;
  const std::string text = world.server.metrics_text();
  scrape_size s;
  s.bytes = text.size();
  for (std::size_t at = 0; at < text.size();) {
    std::size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    if (end > at && text[at] != '#') ++s.series;
    at = end + 1;
  }
  s.json_bytes = json::serialize(world.server.report().to_json()).size();
  return s;
}

/// The size figure's name and description (--list, the output).
constexpr std::string_view scrape_size_name = "admin.scrape_1000_size";
constexpr std::string_view scrape_size_what =
    "one /metrics body of admin.scrape_1000's 1 000 points (series: its sample lines)";

#endif  // COPORT_BENCH_HAS_ADMIN

// ---------------------------------------------------- parked request memory

/// Resident memory of the process, from /proc/self/statm.
std::size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t pages_total = 0;
  std::size_t pages_resident = 0;
  statm >> pages_total >> pages_resident;
  return pages_resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

/// The child of `--parked KIND N`: parks N requests of one kind (casts that
/// wait forever) and prints the resident bytes they added, per request.
/// Runs in a fresh process so that no earlier allocation is reused.
int parked_child(const std::string& kind, std::size_t n) {
  bridge::runtime_options ro = bench_options();
  auto rt = std::make_unique<bridge::runtime>(ro);
  asio::io_context io(1);
  auto guard = asio::make_work_guard(io);
  std::thread io_thread([&io] { io.run(); });

  auto t = msg::transport::create("memory://parked");
  auto ep = std::make_shared<msg::endpoint>("park");
  auto gate = std::make_shared<bridge::event>(rt->get_executor());
  // coro_executor refuses fiber methods: the fiber one only for fiber kinds.
  if (!kind.starts_with("coroutine")) ep->add("wait", {}, [gate] { gate->wait(); });
  ep->add("wait_co", {}, []() -> asio::awaitable<void> {
    asio::steady_timer forever(co_await asio::this_coro::executor, std::chrono::hours(24));
    co_await forever.async_wait(asio::use_awaitable);
  });
  auto d = std::make_shared<msg::dispatcher>();
  d->add(ep);
  msg::service svc{t, msg::target{.topic = "park", .server = "s1"}, d};
  const std::string method = kind == "fiber" ? "wait" : "wait_co";

  // The messages first, so that the figure counts the requests alone.
  msg::rpc_client client(t, msg::target{.topic = "park"});
  for (std::size_t i = 0; i < n; ++i) client.async_cast(method, msg::args(), [](std::exception_ptr) {});
  const std::size_t before = resident_bytes();

  std::unique_ptr<msg::executor> ex;
  if (kind.starts_with("coroutine")) {
    coport::coro_executor_options o;
    o.max_in_flight = n;
    o.single_thread = kind == "coroutine";
    ex = std::make_unique<coport::coro_executor>(svc, io.get_executor(), o);
  } else {
    coport::fiber_executor_options o;
    o.max_in_flight = n;
    o.default_mode = kind == "native" ? coport::coroutine_mode::native : coport::coroutine_mode::hosted;
    ex = std::make_unique<coport::fiber_executor>(svc, *rt, o);
  }
  ex->start();
  const auto give_up = clock_type::now() + std::chrono::seconds(120);
  while (ex->in_flight() < n) {
    if (clock_type::now() > give_up) {
      std::fprintf(stderr, "coport-bench: only %zu of %zu requests parked\n", ex->in_flight(), n);
      std::_Exit(1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const std::size_t after = resident_bytes();
  std::printf("%.1f\n", static_cast<double>(after - std::min(after, before)) / static_cast<double>(n));
  std::fflush(stdout);
  std::_Exit(0);  // no orderly teardown of 100 000 parked requests
}

struct parked_spec {
  std::string_view kind;
  std::string_view what;
  std::optional<double> aim;  // bytes per request
};

const std::vector<parked_spec>& parked_kinds() {
  static const std::vector<parked_spec> list = {
      {"coroutine", "coroutine method on coro_executor, single_thread", 2048},
      {"coroutine_strand", "coroutine method on coro_executor, a strand per request", std::nullopt},
      {"native", "native coroutine method on fiber_executor", std::nullopt},
      {"hosted", "hosted coroutine method on fiber_executor", std::nullopt},
      {"fiber", "fiber method on fiber_executor (64 KiB stacks)", 16384},
  };
  return list;
}

/// Runs `--parked KIND N` in a child process; its figure, or NaN.
double run_parked(std::string_view kind, std::size_t n) {
  char self[4096];
  const ssize_t len = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (len <= 0) return std::nan("");
  self[len] = '\0';
  const std::string cmd = "'" + std::string(self) + "' --parked " + std::string(kind) + " " + std::to_string(n);
  std::FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return std::nan("");
  double v = std::nan("");
  if (std::fscanf(p, "%lf", &v) != 1) v = std::nan("");
  if (::pclose(p) != 0) v = std::nan("");
  return v;
}

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

// -------------------------------------------------------------------- runner

struct settings {
  bool quick = false;
  int repeats = 5;
  bool list = false;
  // Time by the measuring thread's CPU clock instead of steady_clock: leaves
  // out the gaps in which the machine ran someone else's work on that core.
  bool cpu_clock = false;
  std::optional<std::string> json_path;
  /// --report DIR: the HTML page and the JSON there.
  std::optional<std::string> report_dir;
  /// --no-rabbit: leave out the broker figures of a full run.
  bool rabbit = true;
  /// --rabbit-cluster: the broker figures also on a three-node cluster.
  bool rabbit_cluster = false;
  std::vector<std::string> filters;
  /// `--parked KIND N`: be the child process of one memory measurement.
  std::optional<std::pair<std::string, std::size_t>> parked;
  nanoseconds target() const {
    return quick ? std::chrono::milliseconds(10) : std::chrono::milliseconds(50);
  }
};

struct summary {
  double median = 0;
  double min = 0;
  double max = 0;
  std::size_t count = 0;
};

summary summarise(std::vector<double> v) {
  summary s;
  s.count = v.size();
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  s.median = v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
  s.min = v.front();
  s.max = v.back();
  return s;
}

/// One unit of the schedule: a ratio's two sides, or a measurement that is
/// the side of no selected ratio.
struct step {
  const benchmark* numerator;
  const benchmark* denominator = nullptr;  // null: a lone measurement
  const ratio_spec* ratio = nullptr;
};

class runner {
 public:
  explicit runner(const settings& s) : s_(s) {}

  void run(const std::vector<step>& steps) {
    const auto started = clock_type::now();
    for (std::size_t i = 0; i < steps.size(); ++i) {
      const step& st = steps[i];
      std::fprintf(stderr, "[%zu/%zu] %s", i + 1, steps.size(),
                   std::string(st.numerator->name).c_str());
      if (st.denominator) std::fprintf(stderr, " / %s", std::string(st.denominator->name).c_str());
      std::fprintf(stderr, " ...");
      std::fflush(stderr);
      const auto t0 = clock_type::now();
      if (st.denominator) {
        run_pair(st);
        const summary r = summarise(ratio_samples_[st.ratio]);
        std::fprintf(stderr, " ratio %.2f (%.2f..%.2f)", r.median, r.min, r.max);
      } else {
        for (int rep = 0; rep < s_.repeats; ++rep) measure(*st.numerator);
        const summary m = summarise(samples_[st.numerator->name]);
        std::fprintf(stderr, " %.1f ns (%.1f..%.1f)", m.median, m.min, m.max);
      }
      std::fprintf(stderr, " [%.2f s]\n", seconds_since(t0));
    }
    std::fprintf(stderr, "done in %.1f s\n", seconds_since(started));
  }

  const std::vector<double>& samples(std::string_view name) { return samples_[name]; }
  const std::vector<double>& ratio_samples(const ratio_spec* r) { return ratio_samples_[r]; }
  const std::vector<double>& side_samples(const ratio_spec* r, bool numerator) {
    return numerator ? num_samples_[r] : den_samples_[r];
  }
  std::uint64_t iterations(std::string_view name) const {
    auto it = iterations_.find(name);
    return it == iterations_.end() ? 0 : it->second;
  }

 private:
  static double seconds_since(clock_type::time_point t0) {
    return std::chrono::duration<double>(clock_type::now() - t0).count();
  }

  // The two sides alternate which goes first, so that neither always
  // inherits the other's cache and frequency state.
  void run_pair(const step& st) {
    // Calibrate both first, so that no calibration run falls between them.
    calibrated(*st.denominator);
    calibrated(*st.numerator);
    for (int rep = 0; rep < s_.repeats; ++rep) {
      double num = 0;
      double den = 0;
      if (rep % 2 == 0) {
        den = measure(*st.denominator);
        num = measure(*st.numerator);
      } else {
        num = measure(*st.numerator);
        den = measure(*st.denominator);
      }
      num_samples_[st.ratio].push_back(num);
      den_samples_[st.ratio].push_back(den);
      ratio_samples_[st.ratio].push_back(num / den);
    }
  }

  /// One measurement, in ns per operation; records it under the benchmark.
  double measure(const benchmark& b) {
    const std::uint64_t n = calibrated(b);
    const timing t = b.run(n);
    const nanoseconds e = s_.cpu_clock ? t.elapsed.cpu : t.elapsed.wall;
    const double ns =
        t.ops ? static_cast<double>(e.count()) / static_cast<double>(t.ops) : std::nan("");
    samples_[b.name].push_back(ns);
    return ns;
  }

  /// Iterations that make one measurement of `b` last at least the target
  /// time; found once, on first use, then fixed so repeats are comparable.
  /// The calibration runs double as warm-up.
  std::uint64_t calibrated(const benchmark& b) {
    if (auto it = iterations_.find(b.name); it != iterations_.end()) return it->second;
    const double target = static_cast<double>(s_.target().count());
    std::uint64_t n = 256;
    for (;;) {
      const timing t = b.run(n);
      const double took = static_cast<double>(t.elapsed.wall.count());
      if (took >= target || n >= (std::uint64_t{1} << 40)) break;
      const double factor = took > 0 ? std::clamp(1.2 * target / took, 1.5, 100.0) : 100.0;
      n = static_cast<std::uint64_t>(static_cast<double>(n) * factor);
    }
    iterations_.emplace(b.name, n);
    return n;
  }

  const settings& s_;
  std::map<std::string_view, std::vector<double>> samples_;
  std::map<std::string_view, std::uint64_t> iterations_;
  std::map<const ratio_spec*, std::vector<double>> ratio_samples_;
  std::map<const ratio_spec*, std::vector<double>> num_samples_;
  std::map<const ratio_spec*, std::vector<double>> den_samples_;
};

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

/// True when nothing is filtered or a filter is part of `name`.
bool wanted(const std::vector<std::string>& filters, std::string_view name) {
  if (filters.empty()) return true;
  return std::any_of(filters.begin(), filters.end(),
                     [&](const std::string& f) { return name.find(f) != std::string_view::npos; });
}

/// The benchmarks to run: those whose name contains one of the filters (all
/// without filters), plus the denominator of every ratio whose numerator is
/// selected, since a figure is judged against its baseline.
std::vector<const benchmark*> select(const std::vector<std::string>& filters) {
  std::vector<bool> chosen(benchmarks().size());
  for (std::size_t i = 0; i < benchmarks().size(); ++i) chosen[i] = wanted(filters, benchmarks()[i].name);
  auto index_of = [](std::string_view name) {
    return static_cast<std::size_t>(find_benchmark(name) - benchmarks().data());
  };
  for (const auto& r : ratios()) {
    if (chosen[index_of(r.numerator)]) chosen[index_of(r.denominator)] = true;
  }
  std::vector<const benchmark*> out;
  for (std::size_t i = 0; i < benchmarks().size(); ++i) {
    if (chosen[i]) out.push_back(&benchmarks()[i]);
  }
  return out;
}

/// Registry order; a ratio runs where its numerator is listed, a benchmark
/// that is a side of no selected ratio runs alone.
std::vector<step> schedule(const std::vector<const benchmark*>& chosen) {
  auto is_chosen = [&](std::string_view name) {
    return std::any_of(chosen.begin(), chosen.end(),
                       [&](const benchmark* b) { return b->name == name; });
  };
  std::vector<step> steps;
  for (const benchmark* b : chosen) {
    bool in_ratio = false;
    for (const auto& r : ratios()) {
      if (!is_chosen(r.numerator) || !is_chosen(r.denominator)) continue;
      if (r.numerator == b->name) {
        steps.push_back({b, find_benchmark(r.denominator), &r});
        in_ratio = true;
      } else if (r.denominator == b->name) {
        in_ratio = true;  // measured with its numerator
      }
    }
    if (!in_ratio) steps.push_back({b});
  }
  return steps;
}

// -------------------------------------------------------------------- output

json::value number_or_null(double v) {
  if (std::isfinite(v)) return json::value(v);
  return json::value(nullptr);
}

std::string range(double lo, double hi, const char* fmt) {
  char a[32];
  char b[32];
  std::snprintf(a, sizeof a, fmt, lo);
  std::snprintf(b, sizeof b, fmt, hi);
  return std::string(a) + ".." + b;
}

struct report {
  std::vector<json::object> lines;
};

/// The clock of a benchmark's figures in this run, as the JSON names it:
/// "wall", "cpu" (the measuring thread's) or "process cpu" (all threads').
std::string clock_of(const benchmark& b, const settings& s) {
  if (!s.cpu_clock || b.cpu == cpu_scope::none) return "wall";
  return b.cpu == cpu_scope::process ? "process cpu" : "cpu";
}

report print_results(runner& r, const std::vector<const benchmark*>& chosen,
                     const std::vector<step>& steps, const settings& s) {
  report out;
  std::printf("coport-bench: %s mode, %d repeats, >= %lld ms per measurement, %s clock, "
              "%u hardware threads, Boost %d.%d.%d\n\n",
              s.quick ? "quick" : "full", s.repeats,
              static_cast<long long>(
                  std::chrono::duration_cast<std::chrono::milliseconds>(s.target()).count()),
              s.cpu_clock ? "thread CPU" : "steady", std::thread::hardware_concurrency(),
              BOOST_VERSION / 100000,
              BOOST_VERSION / 100 % 1000, BOOST_VERSION % 100);

  std::printf("%-28s %10s  %-20s %4s %12s\n", "measurement", "ns/op", "min..max", "n",
              "iterations");
  for (const benchmark* b : chosen) {
    const summary m = summarise(r.samples(b->name));
    // A figure on another clock than the run's says which.
    const std::string clock = clock_of(*b, s);
    const bool other_clock = clock != (s.cpu_clock ? "cpu" : "wall");
    std::printf("%-28s %10.1f  %-20s %4zu %12llu%s%s\n", std::string(b->name).c_str(), m.median,
                range(m.min, m.max, "%.1f").c_str(), m.count,
                static_cast<unsigned long long>(r.iterations(b->name)), other_clock ? "  " : "",
                other_clock ? clock.c_str() : "");
    json::object o;
    o["name"] = b->name;
    o["kind"] = "measurement";
    o["value"] = number_or_null(m.median);
    o["unit"] = "ns";
    o["min"] = number_or_null(m.min);
    o["max"] = number_or_null(m.max);
    o["samples"] = m.count;
    o["iterations"] = r.iterations(b->name);
    o["clock"] = clock_of(*b, s);
    o["description"] = b->what;
    out.lines.push_back(std::move(o));
  }

  bool any_ratio = false;
  for (const step& st : steps) {
    if (!st.ratio) continue;
    if (!any_ratio) {
      std::printf("\n%-52s %7s  %-12s %6s  %s\n", "ratio (median of per-repeat ratios)", "median",
                  "min..max", "aim", "met");
      any_ratio = true;
    }
    const ratio_spec& rs = *st.ratio;
    const summary q = summarise(r.ratio_samples(st.ratio));
    const summary num = summarise(r.side_samples(st.ratio, true));
    const summary den = summarise(r.side_samples(st.ratio, false));
    // No std::optional<bool> here: GCC 12 warns (wrongly) that it may be
    // read uninitialised.
    const bool met = rs.aim && std::isfinite(q.median) && (rs.at_least ? q.median >= *rs.aim : q.median <= *rs.aim);
    char aim[16] = "-";
    if (rs.aim) std::snprintf(aim, sizeof aim, rs.at_least ? ">=%.2f" : "%.2f", *rs.aim);
    const std::string label = std::string(rs.numerator) + " / " + std::string(rs.denominator);
    std::printf("%-52s %7.2f  %-12s %6s  %s\n", label.c_str(), q.median,
                range(q.min, q.max, "%.2f").c_str(), aim,
                rs.aim ? (met ? "yes" : "NO") : "-");
    json::object o;
    o["name"] = ratio_name(rs);
    o["kind"] = "ratio";
    o["value"] = number_or_null(q.median);
    o["unit"] = "ratio";
    o["numerator_name"] = rs.numerator;
    o["denominator_name"] = rs.denominator;
    // Medians of the two sides as measured in this ratio's pairs (ns/op);
    // "ratio" is the median of the per-repeat ratios, not their quotient.
    o["numerator"] = number_or_null(num.median);
    o["denominator"] = number_or_null(den.median);
    o["ratio"] = number_or_null(q.median);
    o["min"] = number_or_null(q.min);
    o["max"] = number_or_null(q.max);
    o["samples"] = q.count;
    o["aim"] = rs.aim ? json::value(*rs.aim) : json::value(nullptr);
    o["aim_is"] = rs.at_least ? "at least" : "at most";
    o["met"] = rs.aim ? json::value(met) : json::value(nullptr);
    const std::string num_clock = clock_of(*st.numerator, s);
    const std::string den_clock = clock_of(*st.denominator, s);
    o["clock"] = num_clock == den_clock ? num_clock : num_clock + " / " + den_clock;
    out.lines.push_back(std::move(o));
  }
  std::fflush(stdout);
  return out;
}

// ------------------------------------------------------------ call latency

/// In-process calls per executor and method kind, one after the other from
/// a coroutine client on the server's own thread: calls/s, p50 and p99.
struct latency_spec {
  std::string_view name;
  std::string_view what;
  timing (*run)(std::uint64_t n);
};

const std::vector<latency_spec>& latency_runs() {
  static const std::vector<latency_spec> list = {
      {"call.coro_executor", "coroutine method on coro_executor (1 thread)", exec_coro},
      {"call.fiber_executor_hosted", "hosted coroutine method on fiber_executor (1 loop)", exec_fiber_hosted},
      {"call.fiber_executor_native", "native coroutine method on fiber_executor (1 loop)", exec_fiber_native},
      {"call.fiber_executor_fiber", "fiber method on fiber_executor (1 loop)", exec_fiber_method},
  };
  return list;
}

double percentile_us(std::vector<nanoseconds>& v, double q) {
  if (v.empty()) return std::nan("");
  const auto k = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return static_cast<double>(v[k].count()) / 1000.0;
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

// ------------------------------------------------------------------ machine

/// The first line of `path` that starts with `key`, after the key and any
/// of " \t:=\"" around the value; empty if none.
std::string read_field(const char* path, std::string_view key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.starts_with(key)) continue;
    std::string v = line.substr(key.size());
    const auto first = v.find_first_not_of(" \t:=\"");
    const auto last = v.find_last_not_of(" \t\"");
    return first == std::string::npos ? std::string() : v.substr(first, last - first + 1);
  }
  return {};
}

/// What the report says about the machine and the run.
json::object machine_description(const settings& s, double seconds) {
  json::object m;
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) == 0) m["host"] = host;
  m["cpu"] = read_field("/proc/cpuinfo", "model name");
  m["hardware_threads"] = std::thread::hardware_concurrency();
  const std::string mem_kib = read_field("/proc/meminfo", "MemTotal");
  if (!mem_kib.empty()) m["memory_gib"] = std::round(std::strtod(mem_kib.c_str(), nullptr) / 1048576.0 * 10) / 10;
  m["os"] = read_field("/etc/os-release", "PRETTY_NAME");
  utsname u{};
  if (::uname(&u) == 0) m["kernel"] = std::string(u.sysname) + " " + u.release + " " + u.machine;
  m["load_average"] = read_field("/proc/loadavg", "");
#if defined(__clang__)
  m["compiler"] = "clang " __clang_version__;
#elif defined(__GNUC__)
  m["compiler"] = "g++ " __VERSION__;
#endif
  m["build_type"] = COPORT_BENCH_BUILD_TYPE;
  m["boost"] = std::to_string(BOOST_VERSION / 100000) + "." + std::to_string(BOOST_VERSION / 100 % 1000) + "." +
               std::to_string(BOOST_VERSION % 100);
  m["mode"] = s.quick ? "quick" : "full";
  m["repeats"] = s.repeats;
  m["clock"] = s.cpu_clock ? "thread CPU" : "steady (wall)";
  const std::time_t now = std::time(nullptr);
  char date[32] = {};
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  m["date"] = date;
  m["duration_s"] = std::round(seconds * 10) / 10;
  return m;
}

// ------------------------------------------------------------------- rabbit

/// RPC over a RabbitMQ broker against oslo.messaging, by bench/rabbit_bench.py
/// (it starts a private broker; coport-example-server and -client on one
/// side, oslo.messaging's eventlet server and client on the other), and
/// against the floor, rabbitmq-c alone (coport-bench-amqp), when built. Its
/// figures join the results as "external" lines. False, with the reason
/// on stderr, when it cannot run here.
bool run_rabbit(double seconds, bool cluster, report& rep) {
  const char* python = "/usr/bin/python3";
  const char* broker = "/usr/lib/rabbitmq/bin/rabbitmq-server";
  for (const char* needed : {python, broker, COPORT_BENCH_RABBIT_SCRIPT, COPORT_BENCH_SERVER_BIN,
                             COPORT_BENCH_CLIENT_BIN}) {
    if (needed[0] == '\0') {
      std::fprintf(stderr, "rabbit: skipped: built without the example programs (COPORT_BUILD_EXAMPLES)\n");
      return false;
    }
    if (::access(needed, R_OK) != 0) {
      std::fprintf(stderr, "rabbit: skipped: %s is missing (scripts/setup.sh installs the broker)\n", needed);
      return false;
    }
  }
  char out_template[] = "/tmp/coport-bench-rabbit-XXXXXX";
  const int fd = ::mkstemp(out_template);
  if (fd < 0) return false;
  ::close(fd);
  const std::string out = out_template;
  char secs[32];
  std::snprintf(secs, sizeof secs, "%g", seconds);
  // Its progress goes to stderr with ours; its table too (stdout is ours).
  std::string cmd = std::string(python) + " '" + COPORT_BENCH_RABBIT_SCRIPT + "' --server-bin '" +
                    COPORT_BENCH_SERVER_BIN + "' --client-bin '" + COPORT_BENCH_CLIENT_BIN + "' --seconds " + secs +
                    " --concurrency 1,50 --json '" + out + "'";
  const std::string_view amqp_bin = COPORT_BENCH_AMQP_BIN;
  const bool floor = !amqp_bin.empty() && ::access(COPORT_BENCH_AMQP_BIN, X_OK) == 0;
  if (floor) {
    cmd += " --amqp-bin '" + std::string(amqp_bin) + "'";
  } else {
    std::fprintf(stderr, "rabbit: no rabbitmq-c floor: built without the rabbit:// transport (COPORT_WITH_RABBIT)\n");
  }
  if (cluster) cmd += " --cluster";
  cmd += " 1>&2";
  std::fprintf(stderr, "rabbit: coport against oslo.messaging%s over a private broker%s, %s s per figure ...\n",
               floor ? " and rabbitmq-c alone" : "",
               cluster ? ", then on a three-node cluster with quorum queues" : "", secs);
  const int status = std::system(cmd.c_str());
  std::ifstream in(out);
  std::string line;
  std::vector<json::object> lines;
  while (std::getline(in, line)) {
    boost::system::error_code ec;
    json::value v = json::parse(line, ec);
    if (ec || !v.is_object()) continue;
    json::object o = std::move(v.as_object());
    o["source"] = "bench/rabbit_bench.py";
    o["kind"] = "external";
    lines.push_back(std::move(o));
  }
  std::remove(out.c_str());
  if (status != 0 || lines.empty()) {
    std::fprintf(stderr, "rabbit: bench/rabbit_bench.py failed (status %d); no broker figures\n", status);
    return false;
  }
  std::printf("\n%-28s %12s  %s\n", "over RabbitMQ", "value", "aim / met");
  for (const auto& o : lines) {
    const json::value* v = o.if_contains("value");
    const json::value* aim = o.if_contains("aim");
    const json::value* met = o.if_contains("met");
    std::printf("%-28s %12.2f  %s\n", json::value_to<std::string>(o.at("name")).c_str(),
                v && v->is_number() ? v->to_number<double>() : std::nan(""),
                aim && aim->is_number() ? (met && met->is_bool() && met->get_bool() ? "met" : "MISSED") : "-");
    rep.lines.push_back(o);
  }
  std::fflush(stdout);
  return true;
}

// ---------------------------------------------------------------------- main

/// Exit status of a bad command line (sysexits' EX_USAGE).
constexpr int exit_usage = 64;

/// A bad command line: `coport-bench: <message>` and a hint, on stderr.
int usage_error(const std::string& message) {
  std::fprintf(stderr, "coport-bench: %s\nRun 'coport-bench --help' for the options.\n", message.c_str());
  return exit_usage;
}

/// Reads the command line into `s`. Returns the exit status when the
/// program is to end here: 0 after --help or --version (printed on stdout),
/// exit_usage after a bad command line (reported on stderr).
std::optional<int> parse(int argc, char** argv, settings& s) {
  CLI::App app(
      "coport-bench: coport's benchmarks, each judged as a ratio to its floor or its alternative "
      "measured in the same run.",
      "coport-bench");
  app.set_version_flag("--version", "coport-bench " COPORT_BENCH_VERSION, "Print the version and exit");
  app.get_formatter()->column_width(22);
  app.add_flag("--quick", s.quick, "3 repeats of >= 10 ms measurements (default: 5 of >= 50 ms)");
  std::string json_path;
  app.add_option("--json", json_path, "also write one JSON object per result, one per line")->type_name("FILE");
  std::string report_dir;
  app.add_option("--report", report_dir,
                 "also write DIR/index.html (bar charts of the ratios against their aims, the tables, "
                 "the machine) and DIR/results.json")
      ->type_name("DIR");
  bool no_rabbit = false;
  app.add_flag("--no-rabbit", no_rabbit,
               "leave out the RabbitMQ figures (a full run includes them when rabbitmq-server is installed: "
               "a private broker, ~2 min)");
  bool rabbit_cluster = false;
  app.add_flag("--rabbit-cluster", rabbit_cluster,
               "also measure coport and oslo.messaging on a private three-node RabbitMQ cluster with quorum queues "
               "(~1.5 min more)");
  int repeats = 0;
  app.add_option("--repeat", repeats, "repeats of each measurement, 1 to 1000")
      ->type_name("N")
      ->check(CLI::Range(1, 1000).description(""));
  std::string clock = "wall";
  app.add_option("--clock", clock,
                 "wall: steady_clock (default); cpu: the measuring thread's CPU time, which leaves out "
                 "preemption on a busy machine")
      ->type_name("wall|cpu")
      ->check(CLI::IsMember({"wall", "cpu"}).description(""));
  app.add_flag("--list", s.list, "list the benchmarks and ratios, run nothing");
  // The child process of one memory figure; not for people.
  std::vector<std::string> parked;
  app.add_option("--parked", parked, "(internal) the child process of one memory figure")
      ->expected(2)
      ->type_name("KIND N")
      ->group("");
  app.add_option("NAME", s.filters,
                 "run the benchmarks whose name contains NAME (and the baselines of their ratios); "
                 "--list names them");
  app.footer(
      "Examples:\n"
      "  coport-bench --report perf/   full run: the table on stdout, perf/index.html, perf/results.json\n"
      "  coport-bench --quick          a quick run, < 1 min\n"
      "  coport-bench skynet chan      only the benchmarks whose name contains a word");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);  // --help, --version
    return usage_error(e.what());
  }
  if (!json_path.empty()) s.json_path = json_path;
  if (!report_dir.empty()) s.report_dir = report_dir;
  s.rabbit = !no_rabbit;
  s.rabbit_cluster = rabbit_cluster;
  s.cpu_clock = clock == "cpu";
  if (!parked.empty()) {
    char* end = nullptr;
    const long n = std::strtol(parked[1].c_str(), &end, 10);
    if (*end != '\0' || n < 1) return usage_error("--parked wants a kind and a count");
    s.parked.emplace(parked[0], static_cast<std::size_t>(n));
  }
  s.repeats = repeats > 0 ? repeats : (s.quick ? 3 : 5);
  return std::nullopt;
}

int run_main(int argc, char** argv) {
  settings parsed;
  if (const std::optional<int> status = parse(argc, argv, parsed)) return *status;
  const settings& s = parsed;
  if (s.parked) return parked_child(s.parked->first, s.parked->second);
  check_lists();
  if (s.quick) skynet_leaves = 100'000;

  if (s.list) {
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
    return 0;
  }

  std::vector<const parked_spec*> parked;
  for (const auto& k : parked_kinds()) {
    if (wanted(s.filters, "memory.parked_" + std::string(k.kind))) parked.push_back(&k);
  }
  std::vector<const latency_spec*> latencies;
  for (const auto& l : latency_runs()) {
    if (wanted(s.filters, l.name)) latencies.push_back(&l);
  }
#if COPORT_BENCH_HAS_ADMIN
  const bool scrape_sized = wanted(s.filters, scrape_size_name);
#else
  const bool scrape_sized = false;
#endif
  // The broker figures take a minute and a broker: full runs, or by name.
  const bool rabbit = s.rabbit && (s.filters.empty() ? !s.quick : wanted(s.filters, "rabbit"));
  const auto chosen = select(s.filters);
  if (chosen.empty() && parked.empty() && latencies.empty() && !scrape_sized && !rabbit) {
    return usage_error("no benchmark matches; --list names them");
  }
  // Open the outputs first, so that a bad path fails before the run.
  std::ofstream json_out;
  if (s.json_path) {
    json_out.open(*s.json_path, std::ios::trunc);
    if (!json_out) {
      std::fprintf(stderr, "coport-bench: cannot write %s\n", s.json_path->c_str());
      return 2;
    }
  }
  if (s.report_dir) {
    std::error_code ec;
    std::filesystem::create_directories(*s.report_dir, ec);
    if (ec) {
      std::fprintf(stderr, "coport-bench: cannot create %s: %s\n", s.report_dir->c_str(), ec.message().c_str());
      return 2;
    }
  }

  const auto started = clock_type::now();
  const auto steps = schedule(chosen);
  runner r(s);
  report rep;
  if (!chosen.empty()) {
    r.run(steps);
#if COPORT_BENCH_HAS_ADMIN
    report_scrapes();
#endif
    rep = print_results(r, chosen, steps, s);
  }

  if (!parked.empty()) {
    const std::size_t n = s.quick ? 10000 : 100000;
    std::printf("\n%-28s %10s  %8s  %s\n", "memory (resident, fresh process)", "B/request", "aim", "met");
    for (const parked_spec* k : parked) {
      std::fprintf(stderr, "parking %zu requests: %s ...\n", n, std::string(k->what).c_str());
      const double v = run_parked(k->kind, n);
      const std::string name = "memory.parked_" + std::string(k->kind);
      const bool met = k->aim && std::isfinite(v) && v <= *k->aim;
      char aim[16] = "-";
      if (k->aim) std::snprintf(aim, sizeof aim, "%.0f", *k->aim);
      std::printf("%-28s %10.1f  %8s  %s\n", name.c_str(), v, aim, k->aim ? (met ? "yes" : "NO") : "-");
      json::object o;
      o["name"] = name;
      o["kind"] = "memory";
      o["value"] = number_or_null(v);
      o["unit"] = "bytes";
      o["parked"] = n;
      o["aim"] = k->aim ? json::value(*k->aim) : json::value(nullptr);
      o["aim_is"] = "at most";
      o["met"] = k->aim ? json::value(met) : json::value(nullptr);
      o["description"] = k->what;
      rep.lines.push_back(std::move(o));
    }
    std::fflush(stdout);
  }

#if COPORT_BENCH_HAS_ADMIN
  if (scrape_sized) {
    std::fprintf(stderr, "sizing one /metrics body of %zu points ...\n", thousand_points::points);
    const scrape_size z = measure_scrape_size();
    std::printf("\n%-28s %10s  %8s  %8s  %s\n", "scrape size (/metrics body)", "bytes", "series", "points",
                "as JSON (/migration.json)");
    std::printf("%-28s %10zu  %8zu  %8zu  %zu bytes\n", std::string(scrape_size_name).c_str(), z.bytes, z.series,
                thousand_points::points, z.json_bytes);
    json::object o;
    o["name"] = scrape_size_name;
    o["kind"] = "size";
    o["value"] = z.bytes;
    o["unit"] = "bytes";
    o["series"] = z.series;
    o["points"] = thousand_points::points;
    o["json_bytes"] = z.json_bytes;
    o["description"] = scrape_size_what;
    rep.lines.push_back(std::move(o));
    std::fflush(stdout);
  }
#endif

  if (!latencies.empty()) run_latencies(latencies, s.quick, rep);
  if (rabbit) run_rabbit(10, s.rabbit_cluster, rep);

  if (s.json_path) {
    for (const auto& line : rep.lines) json_out << json::serialize(line) << '\n';
    json_out.flush();
    if (!json_out) {
      std::fprintf(stderr, "coport-bench: error writing %s\n", s.json_path->c_str());
      return 1;
    }
  }
  if (s.report_dir) {
    const double seconds = std::chrono::duration<double>(clock_type::now() - started).count();
    coport_bench::write_html_report(*s.report_dir, rep.lines, machine_description(s, seconds));
    std::fprintf(stderr, "report: %s/index.html\n", s.report_dir->c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);  // executors log every stop at info
  try {
    return run_main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "coport-bench: %s\n", e.what());
    return 1;
  }
}
