// coport-bench's figures of the bridge's crossings and yields, and what
// they are judged against: a yield between two fibers on a coport loop
// (against stock Boost.Fiber round_robin), bridge::await from a fiber and
// run_in_fiber from a coroutine (against a plain co_spawn and against
// Asio's own stackful/stackless crossings through asio::spawn), and a
// native or hosted coroutine's resumption (against a coroutine on a plain
// io_context).

#include "bench.hpp"

#include <coport/bridge/bridge.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/fiber/barrier.hpp>
#include <boost/fiber/fiber.hpp>
#include <boost/fiber/operations.hpp>

#include <cstdint>
#include <exception>
#include <thread>

namespace coport_bench {

namespace asio = boost::asio;

namespace {

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

// ---------------------------------------------------------- bridge crossings

asio::awaitable<int> trivial(int i) { co_return i; }

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

// ------------------------------------------------------------- resumptions

/// n resumptions of the calling coroutine through its own executor.
asio::awaitable<elapsed_time> post_turns(std::uint64_t n) {
  for (std::uint64_t i = 0, w = warmup_of(n); i < w; ++i) co_await asio::post(asio::use_awaitable);
  const reading t0 = read_clocks();
  for (std::uint64_t i = 0; i < n; ++i) co_await asio::post(asio::use_awaitable);
  co_return since(t0);
}

}  // namespace

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

timing bridge_coroutine_to_fiber(std::uint64_t n) {
  bridge::runtime rt(bench_options());
  auto f = asio::co_spawn(rt.get_executor(), run_in_fiber_turns(rt.get_executor(), n),
                          asio::use_future);
  return {f.get(), n};
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

timing asio_coroutine_to_spawn(std::uint64_t n) {
  asio::io_context io(1);
  auto f = asio::co_spawn(io, spawn_turns(n), asio::use_future);
  io.run();
  return {f.get(), n};
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

}  // namespace coport_bench
