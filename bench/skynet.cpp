// coport-bench's skynet figures: a tree of a million tasks (--quick: 100 000)
// of pooled fibers, of coroutines and of levels alternating the two on a
// coport loop, against stock Boost.Fiber fibers on a plain thread and
// co_spawn'd coroutines on a plain io_context.

#include "bench.hpp"

#include <coport/bridge/bridge.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/fiber/fiber.hpp>
#include <boost/fiber/fixedsize_stack.hpp>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace coport_bench {

namespace asio = boost::asio;

namespace {

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

}  // namespace

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

timing skynet_fibers(std::uint64_t) { return skynet_on_loop(skynet_fiber); }

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

timing skynet_mixed(std::uint64_t) { return skynet_on_loop(skynet_mixed_tenth); }

void set_skynet_leaves(std::uint64_t leaves) { skynet_leaves = leaves; }

}  // namespace coport_bench
