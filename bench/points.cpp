// coport-bench's figures of migration points: a point's call against a
// direct call of the same form of about a microsecond, ported (co_await
// p.async_call from a native coroutine) and legacy (p.call from a fiber),
// both on a coport loop.

#include "bench.hpp"

#include <coport/bridge/bridge.hpp>
#include <coport/migration/point.hpp>
#include <coport/migration/points.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>

#include <cstdint>
#include <optional>

namespace coport_bench {

namespace asio = boost::asio;
namespace migration = coport::migration;

namespace {

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

}  // namespace

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

}  // namespace coport_bench
