// coport-bench: the project's benchmark program.
//
//   coport-bench [--quick] [--json FILE] [--repeat N] [--clock wall|cpu] [--list] [NAME...]
//
// Machines here are shared and noisy, so the figures that matter are ratios
// of two measurements taken back to back in the same run (DESIGN.md,
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
// `benchmarks()`. If it is to be judged against another, add a line to
// `ratios()`. The runner calibrates n, repeats, pairs and prints.

#include <coport/bridge/bridge.hpp>
#include <coport/coro_executor/coro_executor.hpp>
#include <coport/fiber_executor/fiber_executor.hpp>
#include <coport/messaging/client.hpp>
#include <coport/messaging/server.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/fiber/barrier.hpp>
#include <boost/fiber/fiber.hpp>
#include <boost/fiber/operations.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <boost/version.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <coroutine>
#include <ctime>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <future>
#include <unistd.h>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace bridge = coport::bridge;
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

/// n sequential calls of `method` from a coroutine client, timed on the
/// client's thread.
asio::awaitable<elapsed_time> sequential_calls(msg::rpc_client client, std::string method, std::uint64_t n) {
  std::int64_t sum = 0;
  for (std::uint64_t i = 0, w = warmup_of(n); i < w; ++i) {
    sum += co_await client.async_call<std::int64_t>(method, msg::args("a", 1, "b", 2), asio::use_awaitable);
  }
  const reading t0 = read_clocks();
  for (std::uint64_t i = 0; i < n; ++i) {
    sum += co_await client.async_call<std::int64_t>(method, msg::args("a", 1, "b", 2), asio::use_awaitable);
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
    return {e.wall, e.wall};
  };
  run_batch(std::max<std::uint64_t>(n / 16, 64));  // warm-up: pools, stacks
  return {run_batch(n), n};
}

timing exec_pool1(std::uint64_t n) { return exec_pool(1, 1500, n); }
timing exec_pool2(std::uint64_t n) { return exec_pool(2, 1500, n); }
timing exec_pool1_10us(std::uint64_t n) { return exec_pool(1, 7500, n); }
timing exec_pool2_10us(std::uint64_t n) { return exec_pool(2, 7500, n); }

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
      {"exec.coro", "call round trip over memory://, coroutine method on coro_executor (1 thread)", exec_coro},
      {"exec.fiber_hosted", "the same, hosted coroutine method on fiber_executor (1 loop)", exec_fiber_hosted},
      {"exec.fiber_native", "the same, native coroutine method on fiber_executor (1 loop)", exec_fiber_native},
      {"exec.fiber_method", "the same, fiber method on fiber_executor (1 loop)", exec_fiber_method},
      {"exec.pool1", "fiber_executor serving queued casts of a 2 us fiber method, 1 loop", exec_pool1},
      {"exec.pool2", "the same on 2 loops", exec_pool2},
      {"exec.pool1_10us", "fiber_executor serving queued casts of a 10 us fiber method, 1 loop", exec_pool1_10us},
      {"exec.pool2_10us", "the same on 2 loops", exec_pool2_10us},
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
      {"bridge.native_resume", "floor.awaitable_post", std::nullopt},
      {"messaging.call_memory", "floor.asio_post", 15.0},
      {"bridge.hosted_resume", "bridge.native_resume", std::nullopt},
      {"exec.fiber_hosted", "exec.coro", 1.3},
      {"exec.fiber_native", "exec.coro", std::nullopt},
      {"exec.fiber_method", "exec.coro", std::nullopt},
      {"exec.coro", "messaging.call_memory", std::nullopt},
      // Throughput ratio 2 loops : 1 loop, as ns(1 loop) / ns(2 loops).
      {"exec.pool1", "exec.pool2", 1.7, true},
      {"exec.pool1_10us", "exec.pool2_10us", 1.7, true},
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

/// The benchmarks to run: those whose name contains one of the filters (all
/// without filters), plus the denominator of every ratio whose numerator is
/// selected, since a figure is judged against its baseline.
std::vector<const benchmark*> select(const std::vector<std::string>& filters) {
  std::vector<bool> chosen(benchmarks().size(), filters.empty());
  for (std::size_t i = 0; i < benchmarks().size(); ++i) {
    for (const auto& f : filters) {
      if (benchmarks()[i].name.find(f) != std::string_view::npos) chosen[i] = true;
    }
  }
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

report print_results(runner& r, const std::vector<const benchmark*>& chosen,
                     const std::vector<step>& steps, const settings& s) {
  report out;
  const char* clock_name = s.cpu_clock ? "cpu" : "wall";
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
    std::printf("%-28s %10.1f  %-20s %4zu %12llu\n", std::string(b->name).c_str(), m.median,
                range(m.min, m.max, "%.1f").c_str(), m.count,
                static_cast<unsigned long long>(r.iterations(b->name)));
    json::object o;
    o["name"] = b->name;
    o["kind"] = "measurement";
    o["value"] = number_or_null(m.median);
    o["unit"] = "ns";
    o["min"] = number_or_null(m.min);
    o["max"] = number_or_null(m.max);
    o["samples"] = m.count;
    o["iterations"] = r.iterations(b->name);
    o["clock"] = clock_name;
    o["description"] = b->what;
    out.lines.push_back(std::move(o));
  }

  bool any_ratio = false;
  for (const step& st : steps) {
    if (!st.ratio) continue;
    if (!any_ratio) {
      std::printf("\n%-50s %7s  %-12s %6s  %s\n", "ratio (median of per-repeat ratios)", "median",
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
    std::printf("%-50s %7.2f  %-12s %6s  %s\n", label.c_str(), q.median,
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
    o["clock"] = clock_name;
    out.lines.push_back(std::move(o));
  }
  std::fflush(stdout);
  return out;
}

// ---------------------------------------------------------------------- main

void usage(std::FILE* to) {
  std::fprintf(to,
               "usage: coport-bench [--quick] [--json FILE] [--repeat N] [--clock wall|cpu] "
               "[--list] [NAME...]\n"
               "  --quick       3 repeats of >= 10 ms measurements (default: 5 of >= 50 ms)\n"
               "  --json FILE   also write one JSON object per result, one per line\n"
               "  --repeat N    repeats of each measurement\n"
               "  --clock C     wall: steady_clock (default); cpu: the measuring thread's\n"
               "                CPU time, which leaves out preemption on a busy machine\n"
               "  --list        list the benchmarks and ratios, run nothing\n"
               "  --parked K N  (internal) the child process of one memory figure\n"
               "  NAME          run the benchmarks whose name contains NAME (and the\n"
               "                baselines of their ratios)\n");
}

std::optional<settings> parse(int argc, char** argv) {
  settings s;
  std::optional<int> repeats;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--quick") {
      s.quick = true;
    } else if (a == "--json" && i + 1 < argc) {
      s.json_path = argv[++i];
    } else if (a == "--repeat" && i + 1 < argc) {
      char* end = nullptr;
      const long v = std::strtol(argv[++i], &end, 10);
      if (*end != '\0' || v < 1 || v > 1000) {
        std::fprintf(stderr, "coport-bench: --repeat wants a number from 1 to 1000\n");
        return std::nullopt;
      }
      repeats = static_cast<int>(v);
    } else if (a == "--clock" && i + 1 < argc) {
      const std::string_view c = argv[++i];
      if (c != "wall" && c != "cpu") {
        std::fprintf(stderr, "coport-bench: --clock wants 'wall' or 'cpu'\n");
        return std::nullopt;
      }
      s.cpu_clock = c == "cpu";
    } else if (a == "--parked" && i + 2 < argc) {
      const std::string kind = argv[++i];
      const long n = std::strtol(argv[++i], nullptr, 10);
      if (n < 1) {
        std::fprintf(stderr, "coport-bench: --parked wants a kind and a count\n");
        return std::nullopt;
      }
      s.parked.emplace(kind, static_cast<std::size_t>(n));
    } else if (a == "--list") {
      s.list = true;
    } else if (a == "-h" || a == "--help") {
      usage(stdout);
      std::exit(0);
    } else if (!a.empty() && a[0] == '-') {
      std::fprintf(stderr, "coport-bench: unknown or incomplete option '%s'\n", argv[i]);
      usage(stderr);
      return std::nullopt;
    } else {
      s.filters.emplace_back(a);
    }
  }
  s.repeats = repeats ? *repeats : (s.quick ? 3 : 5);
  return s;
}

int run_main(int argc, char** argv) {
  const std::optional<settings> parsed = parse(argc, argv);
  if (!parsed) return 2;
  const settings& s = *parsed;
  if (s.parked) return parked_child(s.parked->first, s.parked->second);
  check_lists();

  if (s.list) {
    for (const auto& b : benchmarks()) {
      std::printf("%-28s %s\n", std::string(b.name).c_str(), std::string(b.what).c_str());
    }
    for (const auto& k : parked_kinds()) {
      std::printf("%-28s resident bytes per parked request: %s\n", ("memory.parked_" + std::string(k.kind)).c_str(),
                  std::string(k.what).c_str());
    }
    for (const auto& r : ratios()) {
      std::printf("ratio %s", ratio_name(r).c_str());
      if (r.aim) std::printf(" (aim %s %.2f)", r.at_least ? ">=" : "<=", *r.aim);
      std::printf("\n");
    }
    return 0;
  }

  // The memory figures run when nothing is filtered or a filter names them.
  std::vector<const parked_spec*> parked;
  for (const auto& k : parked_kinds()) {
    const std::string name = "memory.parked_" + std::string(k.kind);
    bool wanted = s.filters.empty();
    for (const auto& f : s.filters) wanted = wanted || name.find(f) != std::string::npos;
    if (wanted) parked.push_back(&k);
  }
  const auto chosen = select(s.filters);
  if (chosen.empty() && parked.empty()) {
    std::fprintf(stderr, "coport-bench: no benchmark matches; try --list\n");
    return 2;
  }
  // Open the JSON file first, so that a bad path fails before the run.
  std::ofstream json_out;
  if (s.json_path) {
    json_out.open(*s.json_path, std::ios::trunc);
    if (!json_out) {
      std::fprintf(stderr, "coport-bench: cannot write %s\n", s.json_path->c_str());
      return 2;
    }
  }

  const auto steps = schedule(chosen);
  runner r(s);
  report rep;
  if (!chosen.empty()) {
    r.run(steps);
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
      o["met"] = k->aim ? json::value(met) : json::value(nullptr);
      o["description"] = k->what;
      rep.lines.push_back(std::move(o));
    }
    std::fflush(stdout);
  }

  if (s.json_path) {
    for (const auto& line : rep.lines) json_out << json::serialize(line) << '\n';
    json_out.flush();
    if (!json_out) {
      std::fprintf(stderr, "coport-bench: error writing %s\n", s.json_path->c_str());
      return 1;
    }
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
