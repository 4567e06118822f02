// coport-bench's channel figures: bridge::channel(64) from fiber to fiber,
// coroutine to coroutine and fiber to coroutine on a coport loop, against
// stock Boost.Fiber's buffered_channel and Asio's experimental::channel
// with the same capacity.

#include "bench.hpp"

#include <coport/bridge/bridge.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/channel.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/fiber/buffered_channel.hpp>
#include <boost/fiber/fiber.hpp>

#include <cstddef>
#include <cstdint>
#include <future>
#include <optional>
#include <thread>

namespace coport_bench {

namespace asio = boost::asio;

namespace {

// One producer sends n integers through a channel of capacity 64 to one
// consumer, on one thread; the figure is ns per value. The consumer's clock
// readings bound the timed part (first value to last).

constexpr std::size_t channel_capacity = 64;

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

}  // namespace

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

timing chan_fibers(std::uint64_t n) { return bridge_channel(true, true, n); }
timing chan_coroutines(std::uint64_t n) { return bridge_channel(false, false, n); }
timing chan_fiber_to_coroutine(std::uint64_t n) { return bridge_channel(true, false, n); }

}  // namespace coport_bench
