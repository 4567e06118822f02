#include <coport/bridge/channel.hpp>
#include <coport/bridge/status_channel.hpp>

#include <catch2/catch.hpp>

#include "bridge_test_support.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/fiber/buffered_channel.hpp>

#include <algorithm>
#include <cstddef>
#include <future>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace bridge = coport::bridge;
using boost::system::error_code;
using coport::test::emit_on_loop;
using coport::test::get;
using coport::test::in_coro;
using coport::test::in_fiber;
using coport::test::on_loop;
using coport::test::settle;
using coport::test::test_options;
using namespace std::chrono_literals;

// The code a fiber-blocking call fails with, or success.
template <class Fn>
error_code failure_of(Fn&& fn) {
  try {
    fn();
  } catch (const boost::system::system_error& e) {
    return e.code();
  }
  return {};
}

// The code of the bridge::error a call throws; other exceptions propagate.
template <class Fn>
error_code bridge_error_of(Fn&& fn) {
  try {
    fn();
  } catch (const bridge::error& e) {
    return e.code();
  }
  return {};
}

std::vector<int> first_n(int n) {
  std::vector<int> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

const error_code channel_closed = make_error_code(bridge::errc::channel_closed);

}  // namespace

TEST_CASE("values pushed by a fiber reach a coroutine in order", "[bridge][channel]") {
  constexpr int count = 1000;
  const std::size_t capacity = GENERATE(std::size_t{0}, std::size_t{1}, std::size_t{16});
  CAPTURE(capacity);
  bridge::runtime rt(test_options("channel"));
  bridge::channel<int> ch(rt.get_executor(), capacity);

  auto consumer = [&]() -> asio::awaitable<std::vector<int>> {
    std::vector<int> got;
    for (int i = 0; i < count; ++i) got.push_back(co_await ch.async_pop(asio::use_awaitable));
    co_return got;
  };
  auto received = in_coro(rt, consumer());
  auto producer = in_fiber(rt, [&] {
    for (int i = 0; i < count; ++i) ch.push(i);
  });

  get(producer);
  CHECK(get(received) == first_n(count));
  CHECK(ch.size() == 0);
}

TEST_CASE("values pushed by a coroutine reach a fiber in order", "[bridge][channel]") {
  constexpr int count = 1000;
  const std::size_t capacity = GENERATE(std::size_t{0}, std::size_t{1}, std::size_t{16});
  CAPTURE(capacity);
  bridge::runtime rt(test_options("channel"));
  bridge::channel<int> ch(rt.get_executor(), capacity);

  auto received = in_fiber(rt, [&] {
    std::vector<int> got;
    for (int i = 0; i < count; ++i) got.push_back(ch.pop());
    return got;
  });
  auto producer = [&]() -> asio::awaitable<void> {
    for (int i = 0; i < count; ++i) co_await ch.async_push(i, asio::use_awaitable);
  };

  get(in_coro(rt, producer()));
  CHECK(get(received) == first_n(count));
  CHECK(ch.size() == 0);
}

TEST_CASE("a push on a rendezvous channel waits for a pop and is never buffered",
          "[bridge][channel]") {
  bridge::runtime rt(test_options("channel"));
  bridge::channel<int> ch(rt.get_executor(), 0);
  REQUIRE(ch.capacity() == 0);
  int unwanted = 1;
  CHECK_FALSE(ch.try_push(unwanted));  // nobody is waiting to take it

  std::vector<std::string> steps;  // loop thread only
  std::promise<void> pushing;
  auto pusher = in_fiber(rt, [&] {
    pushing.set_value();
    ch.push(7);
    steps.push_back("push returned");
  });
  get(pushing.get_future());
  settle(rt);
  CHECK(ch.size() == 0);
  CHECK(pusher.wait_for(0s) == std::future_status::timeout);

  auto popper = [&]() -> asio::awaitable<int> {
    steps.push_back("pop started");
    const int v = co_await ch.async_pop(asio::use_awaitable);
    steps.push_back("popped");
    co_return v;
  };
  CHECK(get(in_coro(rt, popper())) == 7);
  get(pusher);
  REQUIRE(steps.size() == 3);
  CHECK(steps.front() == "pop started");  // the push could not return before
  CHECK(ch.size() == 0);
}

TEST_CASE("a channel of capacity N accepts N values without a consumer, then waits",
          "[bridge][channel]") {
  constexpr int capacity = 4;
  bridge::runtime rt(test_options("channel"));
  bridge::channel<int> ch(rt.get_executor(), capacity);
  REQUIRE(ch.capacity() == capacity);

  std::promise<void> filled;
  auto producer = in_fiber(rt, [&] {
    for (int i = 0; i < capacity; ++i) ch.push(i);
    filled.set_value();
    ch.push(capacity);  // waits for room
  });
  get(filled.get_future());
  settle(rt);
  CHECK(ch.size() == capacity);
  int extra = 99;
  CHECK_FALSE(ch.try_push(extra));
  CHECK(extra == 99);  // a refused value is left untouched
  CHECK(producer.wait_for(0s) == std::future_status::timeout);

  auto popper = [&]() -> asio::awaitable<int> {
    co_return co_await ch.async_pop(asio::use_awaitable);
  };
  CHECK(get(in_coro(rt, popper())) == 0);
  get(producer);  // the pop made room for the waiting push
  CHECK(ch.size() == capacity);

  std::vector<int> rest;
  while (auto v = ch.try_pop()) rest.push_back(*v);
  CHECK(rest == std::vector<int>{1, 2, 3, 4});
}

TEST_CASE("try_push and try_pop never wait", "[bridge][channel]") {
  bridge::runtime rt(test_options("channel"));

  SECTION("on a buffered channel they use the buffer") {
    bridge::channel<int> ch(rt.get_executor(), 1);
    CHECK_FALSE(ch.try_pop());
    int first = 1, second = 2;
    CHECK(ch.try_push(first));
    CHECK_FALSE(ch.try_push(second));
    CHECK(second == 2);
    CHECK(ch.size() == 1);
    CHECK(ch.try_pop() == std::optional<int>(1));
    CHECK_FALSE(ch.try_pop());
  }
  SECTION("on a rendezvous channel try_push serves a waiting coroutine") {
    bridge::channel<int> ch(rt.get_executor(), 0);
    std::promise<void> waiting;
    auto popper = [&]() -> asio::awaitable<int> {
      waiting.set_value();
      co_return co_await ch.async_pop(asio::use_awaitable);
    };
    auto popped = in_coro(rt, popper());
    get(waiting.get_future());
    settle(rt);
    int v = 3;
    CHECK(ch.try_push(v));
    CHECK(get(popped) == 3);
  }
  SECTION("on a rendezvous channel try_pop takes from a waiting fiber") {
    bridge::channel<int> ch(rt.get_executor(), 0);
    std::promise<void> waiting;
    auto pusher = in_fiber(rt, [&] {
      waiting.set_value();
      ch.push(4);
    });
    get(waiting.get_future());
    settle(rt);
    CHECK(ch.try_pop() == std::optional<int>(4));
    get(pusher);
    CHECK_FALSE(ch.try_pop());
  }
}

TEST_CASE("a channel carries move-only values between fibers and coroutines",
          "[bridge][channel]") {
  bridge::runtime rt(test_options("channel"));
  bridge::channel<std::unique_ptr<int>> ch(rt.get_executor(), 1);

  auto producer = [&]() -> asio::awaitable<void> {
    for (int i = 0; i < 3; ++i) co_await ch.async_push(std::make_unique<int>(i), asio::use_awaitable);
  };
  auto received = in_fiber(rt, [&] {
    std::vector<int> got;
    for (int i = 0; i < 3; ++i) got.push_back(*ch.pop());
    return got;
  });
  get(in_coro(rt, producer()));
  CHECK(get(received) == first_n(3));
}

TEST_CASE("after close, buffered values still drain before pops fail with channel_closed",
          "[bridge][channel]") {
  bridge::runtime rt(test_options("channel"));
  bridge::channel<int> ch(rt.get_executor(), 4);
  for (int i = 0; i < 3; ++i) {
    int v = i;
    REQUIRE(ch.try_push(v));
  }
  ch.close();
  CHECK(ch.closed());
  CHECK(ch.size() == 3);

  auto coro_pop = [&]() -> asio::awaitable<std::pair<error_code, int>> {
    auto [ec, v] = co_await ch.async_pop(asio::as_tuple(asio::use_awaitable));
    co_return std::pair(ec, v);
  };
  CHECK(get(in_fiber(rt, [&] { return ch.pop(); })) == 0);
  CHECK(get(in_coro(rt, coro_pop())) == std::pair(error_code(), 1));
  CHECK(ch.try_pop() == std::optional<int>(2));

  CHECK(get(in_fiber(rt, [&] { return bridge_error_of([&] { (void)ch.pop(); }); })) ==
        channel_closed);
  CHECK(get(in_coro(rt, coro_pop())).first == channel_closed);
  CHECK_FALSE(ch.try_pop());
}

TEST_CASE("close ends pending pops of both kinds with channel_closed", "[bridge][channel]") {
  bridge::runtime rt(test_options("channel"));
  bridge::channel<int> ch(rt.get_executor(), 2);
  std::promise<void> fiber_waiting, coro_waiting;

  auto fiber_pop = in_fiber(rt, [&] {
    fiber_waiting.set_value();
    return bridge_error_of([&] { (void)ch.pop(); });
  });
  auto popper = [&]() -> asio::awaitable<error_code> {
    coro_waiting.set_value();
    auto [ec, v] = co_await ch.async_pop(asio::as_tuple(asio::use_awaitable));
    (void)v;
    co_return ec;
  };
  auto coro_pop = in_coro(rt, popper());
  get(fiber_waiting.get_future());
  get(coro_waiting.get_future());
  settle(rt);

  ch.close();  // from the test thread

  CHECK(get(fiber_pop) == channel_closed);
  CHECK(get(coro_pop) == channel_closed);
}

TEST_CASE("close ends pending pushes of both kinds with channel_closed and drops their values",
          "[bridge][channel]") {
  bridge::runtime rt(test_options("channel"));
  bridge::channel<int> ch(rt.get_executor(), 1);
  int buffered = 0;
  REQUIRE(ch.try_push(buffered));
  std::promise<void> fiber_waiting, coro_waiting;

  auto fiber_push = in_fiber(rt, [&] {
    fiber_waiting.set_value();
    return bridge_error_of([&] { ch.push(1); });
  });
  auto pusher = [&]() -> asio::awaitable<error_code> {
    coro_waiting.set_value();
    auto [ec] = co_await ch.async_push(2, asio::as_tuple(asio::use_awaitable));
    co_return ec;
  };
  auto coro_push = in_coro(rt, pusher());
  get(fiber_waiting.get_future());
  get(coro_waiting.get_future());
  settle(rt);

  ch.close();

  CHECK(get(fiber_push) == channel_closed);
  CHECK(get(coro_push) == channel_closed);
  CHECK(ch.try_pop() == std::optional<int>(0));  // what was accepted is kept
  CHECK_FALSE(ch.try_pop());
}

TEST_CASE("a coroutine's push and a try_push after close fail", "[bridge][channel]") {
  bridge::runtime rt(test_options("channel"));
  bridge::channel<int> ch(rt.get_executor(), 1);
  ch.close();

  int v = 5;
  CHECK_FALSE(ch.try_push(v));
  CHECK(v == 5);
  auto pusher = [&]() -> asio::awaitable<error_code> {
    auto [ec] = co_await ch.async_push(6, asio::as_tuple(asio::use_awaitable));
    co_return ec;
  };
  CHECK(get(in_coro(rt, pusher())) == channel_closed);
  CHECK(ch.size() == 0);
}

TEST_CASE("a fiber's push after close fails with channel_closed", "[bridge][channel]") {
  const std::size_t capacity = GENERATE(std::size_t{0}, std::size_t{1});
  CAPTURE(capacity);
  bridge::runtime rt(test_options("channel"));
  bridge::channel<int> ch(rt.get_executor(), capacity);
  ch.close();

  std::promise<void> pushing;
  auto pushed = in_fiber(rt, [&] {
    pushing.set_value();
    return bridge_error_of([&] { ch.push(5); });
  });
  get(pushing.get_future());
  // A push wrongly accepted after close is now buffered or waiting for a
  // receiver; taking it back lets the fiber finish either way.
  auto leaked = on_loop(rt, [&ch] { return ch.try_pop(); });

  CHECK(get(pushed) == channel_closed);
  CHECK(get(leaked).value_or(-1) == -1);  // -1: nothing was accepted
}

TEST_CASE("a coroutine's pop cancelled through its slot ends with operation_aborted and takes "
          "no later value",
          "[bridge][channel]") {
  bridge::runtime rt(test_options("channel"));
  bridge::channel<int> ch(rt.get_executor(), 0);
  std::promise<void> waiting;
  auto popper = [&]() -> asio::awaitable<std::pair<error_code, int>> {
    waiting.set_value();
    auto [ec, v] = co_await ch.async_pop(asio::as_tuple(asio::use_awaitable));
    co_return std::pair(ec, v);
  };
  asio::cancellation_signal sig;
  auto cancelled = asio::co_spawn(rt.get_executor(), popper(),
                                  asio::bind_cancellation_slot(sig.slot(), asio::use_future));
  get(waiting.get_future());
  settle(rt);

  get(emit_on_loop(rt, sig));
  CHECK(get(cancelled).first == asio::error::operation_aborted);

  int v = 8;
  CHECK_FALSE(ch.try_push(v));  // the withdrawn receiver cannot take it

  auto pusher = in_fiber(rt, [&] { ch.push(9); });
  auto plain_popper = [&]() -> asio::awaitable<int> {
    co_return co_await ch.async_pop(asio::use_awaitable);
  };
  CHECK(get(in_coro(rt, plain_popper())) == 9);
  get(pusher);
}

TEST_CASE("a coroutine's push cancelled through its slot ends with operation_aborted and drops "
          "its value",
          "[bridge][channel]") {
  bridge::runtime rt(test_options("channel"));
  bridge::channel<int> ch(rt.get_executor(), 0);
  std::promise<void> waiting;
  auto pusher = [&]() -> asio::awaitable<error_code> {
    waiting.set_value();
    auto [ec] = co_await ch.async_push(5, asio::as_tuple(asio::use_awaitable));
    co_return ec;
  };
  asio::cancellation_signal sig;
  auto cancelled = asio::co_spawn(rt.get_executor(), pusher(),
                                  asio::bind_cancellation_slot(sig.slot(), asio::use_future));
  get(waiting.get_future());
  settle(rt);

  get(emit_on_loop(rt, sig));
  CHECK(get(cancelled) == asio::error::operation_aborted);
  CHECK_FALSE(ch.try_pop());
  CHECK(ch.size() == 0);
}

TEST_CASE("a fiber blocked on a channel is interrupted by a stop with operation_aborted",
          "[bridge][channel]") {
  bridge::runtime rt(test_options("channel"));
  bridge::channel<int> ch(rt.get_executor(), 0);

  // Runs `op` in a fiber, stops the fiber once it waits and returns how the
  // operation ended.
  auto stop_while_waiting = [&](auto op) {
    std::promise<void> waiting;
    asio::cancellation_signal sig;
    auto stopped = bridge::async_run_in_fiber(
        rt.get_executor(),
        [&] {
          waiting.set_value();
          return failure_of(op);
        },
        asio::bind_cancellation_slot(sig.slot(), asio::use_future));
    get(waiting.get_future());
    settle(rt);
    get(emit_on_loop(rt, sig));
    return get(stopped);
  };

  SECTION("in pop") {
    CHECK(stop_while_waiting([&] { (void)ch.pop(); }) == asio::error::operation_aborted);
    int v = 1;
    CHECK_FALSE(ch.try_push(v));  // the stopped receiver left
  }
  SECTION("in push") {
    CHECK(stop_while_waiting([&] { ch.push(1); }) == asio::error::operation_aborted);
    CHECK_FALSE(ch.try_pop());  // the stopped sender left, and its value with it
  }
  SECTION("in pop, stopped by a coroutine that stops waiting for the fiber") {
    using namespace asio::experimental::awaitable_operators;
    error_code fiber_outcome;  // written by the fiber, read after the coroutine ends
    auto impatient = [&]() -> asio::awaitable<std::size_t> {
      // The timer only triggers the cancellation: whether it fires before or
      // after the fiber starts waiting, the fiber ends with operation_aborted.
      asio::steady_timer timer(co_await asio::this_coro::executor, 1ms);
      auto winner = co_await (
          bridge::async_run_in_fiber(
              rt.get_executor(), [&] { fiber_outcome = failure_of([&] { (void)ch.pop(); }); },
              asio::use_awaitable) ||
          timer.async_wait(asio::use_awaitable));
      co_return winner.index();
    };
    CHECK(get(in_coro(rt, impatient())) == 1);  // the timer: nobody pushes
    CHECK(fiber_outcome == asio::error::operation_aborted);
  }
}

TEST_CASE("a pop cancelled while a value arrives either takes it or leaves it to the pusher",
          "[bridge][channel]") {
  constexpr int attempts = 200;
  bridge::runtime rt(test_options("channel"));
  bridge::channel<int> ch(rt.get_executor(), 0);
  int mismatches = 0;
  int delivered = 0;

  SECTION("a coroutine's pop, cancelled through its slot") {
    auto popper = [&](std::promise<void>& waiting) -> asio::awaitable<std::pair<error_code, int>> {
      waiting.set_value();
      auto [ec, v] = co_await ch.async_pop(asio::as_tuple(asio::use_awaitable));
      co_return std::pair(ec, v);
    };
    for (int i = 0; i < attempts; ++i) {
      std::promise<void> waiting;
      asio::cancellation_signal sig;
      auto popped = asio::co_spawn(rt.get_executor(), popper(waiting),
                                   asio::bind_cancellation_slot(sig.slot(), asio::use_future));
      get(waiting.get_future());
      settle(rt);
      auto emitted = emit_on_loop(rt, sig);
      int v = i;
      const bool accepted = ch.try_push(v);  // races with the cancellation
      const auto [ec, got] = get(popped);
      get(emitted);  // before `sig` goes, also when the value or unlock won
      const bool took_it = !ec && got == i;
      if (accepted != took_it || (ec && ec != asio::error::operation_aborted)) ++mismatches;
      if (took_it) ++delivered;
    }
  }
  SECTION("a fiber's pop, stopped") {
    for (int i = 0; i < attempts; ++i) {
      std::promise<void> waiting;
      asio::cancellation_signal sig;
      auto popped = bridge::async_run_in_fiber(
          rt.get_executor(),
          [&]() -> std::pair<error_code, int> {
            waiting.set_value();
            try {
              return {error_code(), ch.pop()};
            } catch (const boost::system::system_error& e) {
              return {e.code(), -1};
            }
          },
          asio::bind_cancellation_slot(sig.slot(), asio::use_future));
      get(waiting.get_future());
      settle(rt);
      auto emitted = emit_on_loop(rt, sig);
      int v = i;
      const bool accepted = ch.try_push(v);  // races with the stop
      const auto [ec, got] = get(popped);
      get(emitted);  // before `sig` goes, also when the value or unlock won
      const bool took_it = !ec && got == i;
      if (accepted != took_it || (ec && ec != asio::error::operation_aborted)) ++mismatches;
      if (took_it) ++delivered;
    }
  }
  CAPTURE(delivered);
  CHECK(mismatches == 0);
}

TEST_CASE("pushing or popping on the loop fiber throws blocking_on_loop", "[bridge][channel]") {
  bridge::runtime rt(test_options("channel"));
  bridge::channel<int> ch(rt.get_executor(), 1);

  SECTION("from a native coroutine") {
    auto native = [&]() -> asio::awaitable<std::pair<error_code, error_code>> {
      co_return std::pair(bridge_error_of([&] { ch.push(1); }),
                          bridge_error_of([&] { (void)ch.pop(); }));
    };
    const auto [push, pop] = get(in_coro(rt, native()));
    CHECK(push == bridge::errc::blocking_on_loop);
    CHECK(pop == bridge::errc::blocking_on_loop);
  }
  SECTION("from a task posted to the loop") {
    const auto [push, pop] = get(on_loop(rt, [&ch] {
      return std::pair(bridge_error_of([&] { ch.push(1); }),
                       bridge_error_of([&] { (void)ch.pop(); }));
    }));
    CHECK(push == bridge::errc::blocking_on_loop);
    CHECK(pop == bridge::errc::blocking_on_loop);
  }
  // The refused push left nothing behind.
  CHECK(ch.size() == 0);
}

TEST_CASE("fibers and coroutines on two runtimes exchange values through one channel",
          "[bridge][channel]") {
  constexpr int producers_per_kind = 4;
  constexpr int per_producer = 250;
  constexpr int producers = 2 * producers_per_kind;
  constexpr int total = producers * per_producer;
  bridge::runtime_pool pool(2, test_options("channel-pool"));
  bridge::channel<int> ch(pool[0].get_executor(), 3);

  // Producer p pushes p * per_producer + k for k = 0, 1, ...: each consumer
  // must see any one producer's values in increasing order.
  auto coro_producer = [&](int p) -> asio::awaitable<void> {
    for (int k = 0; k < per_producer; ++k) {
      co_await ch.async_push(p * per_producer + k, asio::use_awaitable);
    }
  };
  auto coro_consumer = [&]() -> asio::awaitable<std::vector<int>> {
    std::vector<int> got;
    for (int k = 0; k < per_producer; ++k) got.push_back(co_await ch.async_pop(asio::use_awaitable));
    co_return got;
  };
  std::vector<std::future<void>> pushed;
  std::vector<std::future<std::vector<int>>> popped;
  for (int i = 0; i < producers_per_kind; ++i) {
    // Fibers produce on loop 0 and consume on loop 1; coroutines the reverse.
    pushed.push_back(in_fiber(pool[0], [&ch, p = 2 * i] {
      for (int k = 0; k < per_producer; ++k) ch.push(p * per_producer + k);
    }));
    pushed.push_back(in_coro(pool[1], coro_producer(2 * i + 1)));
    popped.push_back(in_fiber(pool[1], [&ch] {
      std::vector<int> got;
      for (int k = 0; k < per_producer; ++k) got.push_back(ch.pop());
      return got;
    }));
    popped.push_back(in_coro(pool[0], coro_consumer()));
  }
  for (auto& f : pushed) get(f);

  std::vector<int> seen(total, 0);
  int out_of_order = 0;
  int out_of_range = 0;
  for (auto& f : popped) {
    std::vector<int> last(producers, -1);
    for (int v : get(f)) {
      if (v < 0 || v >= total) {
        ++out_of_range;
        continue;
      }
      ++seen[static_cast<std::size_t>(v)];
      auto& prev = last[static_cast<std::size_t>(v / per_producer)];
      if (v <= prev) ++out_of_order;
      prev = v;
    }
  }
  CHECK(out_of_range == 0);
  CHECK(out_of_order == 0);
  CHECK(std::count(seen.begin(), seen.end(), 1) == total);
  CHECK(ch.size() == 0);
}

TEST_CASE("ten thousand fibers and ten thousand coroutines share one channel without losing "
          "a value",
          "[bridge][channel]") {
  constexpr int per_role = 5000;  // of each kind: producers and consumers
  constexpr int total = 2 * per_role;
  constexpr int batch = 100;
  auto options = test_options("channel-many");
  options.fiber_stack_size = 32 * 1024;
  bridge::runtime rt(options);
  bridge::channel<int> ch(rt.get_executor(), 8);

  // Everyone first waits at a gate, so that all 20 000 are alive and then
  // released at once: thousands of senders and receivers of both kinds end
  // up waiting on the channel together.
  bridge::event gate(rt.get_executor());
  int arrived = 0;  // loop thread only
  std::promise<void> all_arrived;
  auto arrive = [&] {
    if (++arrived == 2 * total) all_arrived.set_value();
  };

  auto coro_producer = [&](int v) -> asio::awaitable<void> {
    arrive();
    co_await gate.async_wait(asio::use_awaitable);
    co_await ch.async_push(v, asio::use_awaitable);
  };
  auto coro_consumer = [&]() -> asio::awaitable<int> {
    arrive();
    co_await gate.async_wait(asio::use_awaitable);
    co_return co_await ch.async_pop(asio::use_awaitable);
  };
  // Every value is distinct: fibers push 0..4999, coroutines 5000..9999.
  // The roles start in alternating batches, so each kind meets the other
  // on both sides of the channel.
  std::vector<std::future<void>> pushed;
  std::vector<std::future<int>> popped;
  pushed.reserve(total);
  popped.reserve(total);
  for (int first = 0; first < per_role; first += batch) {
    for (int i = first; i < first + batch; ++i) {
      pushed.push_back(in_fiber(rt, [&, i] {
        arrive();
        gate.wait();
        ch.push(i);
      }));
    }
    for (int i = first; i < first + batch; ++i) popped.push_back(in_coro(rt, coro_consumer()));
    for (int i = first; i < first + batch; ++i) {
      pushed.push_back(in_coro(rt, coro_producer(per_role + i)));
    }
    for (int i = first; i < first + batch; ++i) {
      popped.push_back(in_fiber(rt, [&] {
        arrive();
        gate.wait();
        return ch.pop();
      }));
    }
  }
  get(all_arrived.get_future());
  settle(rt);
  REQUIRE(rt.tracked_work() == static_cast<std::size_t>(total));  // every fiber is alive

  gate.set();

  for (auto& f : pushed) get(f);
  std::vector<int> seen(total, 0);
  int out_of_range = 0;
  for (auto& f : popped) {
    const int v = get(f);
    if (v < 0 || v >= total) {
      ++out_of_range;
    } else {
      ++seen[static_cast<std::size_t>(v)];
    }
  }
  CHECK(out_of_range == 0);
  CHECK(std::count(seen.begin(), seen.end(), 0) == 0);
  CHECK(std::count(seen.begin(), seen.end(), 1) == total);
  CHECK(ch.size() == 0);
}

namespace {

std::string name_of(bridge::channel_op_status s) {
  switch (s) {
    case bridge::channel_op_status::success: return "success";
    case bridge::channel_op_status::empty: return "empty";
    case bridge::channel_op_status::full: return "full";
    case bridge::channel_op_status::closed: return "closed";
    case bridge::channel_op_status::timeout: return "timeout";
  }
  return "?";
}

}  // namespace

TEST_CASE("a status_channel reports success, full, empty, timeout and closed instead of throwing",
          "[bridge][channel][status]") {
  bridge::runtime rt(test_options("channel"));
  bridge::channel<std::string> ch(rt.get_executor(), 1);
  auto steps = in_fiber(rt, [&] {
    bridge::status_channel<std::string> st = ch;
    std::vector<std::string> log;
    auto note = [&](const char* what, bridge::channel_op_status s) {
      log.push_back(std::string(what) + ": " + name_of(s));
    };
    std::string v;
    note("try_push", st.try_push("a"));
    const std::string b = "b";
    note("try_push when full", st.try_push(b));
    note("push_wait_for when full", st.push_wait_for("c", 1ms));
    note("try_pop", st.try_pop(v));
    log.push_back(v);
    note("try_pop when empty", st.try_pop(v));
    note("pop_wait_for when empty", st.pop_wait_for(v, 1ms));
    note("pop_wait_until when empty", st.pop_wait_until(v, std::chrono::system_clock::now() + 1ms));
    note("push", st.push(b));
    st.close();
    log.push_back(st.is_closed() ? "closed" : "open");
    note("push after close", st.push("d"));
    note("try_push after close", st.try_push("d"));
    note("push_wait_until after close", st.push_wait_until("d", std::chrono::steady_clock::now() + 1h));
    note("pop drains", st.pop(v));
    log.push_back(v);
    note("pop", st.pop(v));
    note("try_pop", st.try_pop(v));
    note("pop_wait_for", st.pop_wait_for(v, 1h));
    try {
      (void)st.value_pop();
      log.push_back("value_pop returned");
    } catch (const boost::fibers::fiber_error& e) {
      log.push_back(e.code() == std::errc::operation_not_permitted ? "value_pop threw" : "other error");
    }
    return log;
  });
  CHECK(get(steps) == std::vector<std::string>{"try_push: success",
                                               "try_push when full: full",
                                               "push_wait_for when full: timeout",
                                               "try_pop: success",
                                               "a",
                                               "try_pop when empty: empty",
                                               "pop_wait_for when empty: timeout",
                                               "pop_wait_until when empty: timeout",
                                               "push: success",
                                               "closed",
                                               "push after close: closed",
                                               "try_push after close: closed",
                                               "push_wait_until after close: closed",
                                               "pop drains: success",
                                               "b",
                                               "pop: closed",
                                               "try_pop: closed",
                                               "pop_wait_for: closed",
                                               "value_pop threw"});
  CHECK(ch.closed());
}

TEST_CASE("a status_channel's blocked push and pop take values from coroutines and fibers, "
          "and end with closed when the channel closes",
          "[bridge][channel][status]") {
  bridge::runtime rt(test_options("channel"));
  bridge::channel<int> ch(rt.get_executor(), 0);
  // A function written for buffered_channel: its parameter type changes,
  // its body and its callers do not.
  auto drain = [](bridge::status_channel<int> in) {
    std::vector<int> got;
    int v = 0;
    while (in.pop(v) == bridge::channel_op_status::success) got.push_back(v);
    return got;
  };
  std::promise<void> popping;
  auto consumer = in_fiber(rt, [&] {
    popping.set_value();
    return drain(ch);
  });
  get(popping.get_future());
  get(in_coro(rt, [&]() -> asio::awaitable<void> {
    for (int i = 0; i < 3; ++i) co_await ch.async_push(i, asio::use_awaitable);
  }));
  auto pusher = in_fiber(rt, [&] {
    bridge::status_channel<int> out = ch;
    const auto first = out.push(3);
    const auto second = out.push(4);
    return name_of(first) + "/" + name_of(second);
  });
  CHECK(get(pusher) == "success/success");

  // A push blocked on a full channel.
  bridge::channel<int> full(rt.get_executor(), 1);
  REQUIRE(full.try_push(*std::make_unique<int>(0)));
  std::promise<void> pushing;
  auto blocked = in_fiber(rt, [&] {
    bridge::status_channel<int> out = full;
    pushing.set_value();
    return name_of(out.push(1));
  });
  get(pushing.get_future());
  settle(rt);  // the consumer is back in pop(), the pusher waits for room

  get(on_loop(rt, [&] {
    ch.close();
    full.close();
  }));
  CHECK(get(consumer) == std::vector<int>{0, 1, 2, 3, 4});
  CHECK(get(blocked) == "closed");
}

TEST_CASE("a status_channel still throws operation_aborted when its fiber is asked to stop",
          "[bridge][channel][status][cancel]") {
  bridge::runtime rt(test_options("channel"));
  bridge::channel<int> ch(rt.get_executor(), 0);
  asio::cancellation_signal cancel;
  std::promise<void> popping;
  auto popped = bridge::async_run_in_fiber(
      rt.get_executor(),
      [&] {
        bridge::status_channel<int> in = ch;
        int v = 0;
        popping.set_value();
        return failure_of([&] { (void)in.pop(v); });
      },
      asio::bind_cancellation_slot(cancel.slot(), asio::use_future));
  get(popping.get_future());
  settle(rt);
  get(emit_on_loop(rt, cancel));
  CHECK(get(popped) == asio::error::operation_aborted);
}

TEST_CASE("bridge::channel(ex, N - 1) buffers as many values as buffered_channel(N)",
          "[bridge][channel][status]") {
  bridge::runtime rt(test_options("channel"));
  const std::size_t n = GENERATE(std::size_t{2}, std::size_t{4}, std::size_t{64});
  CAPTURE(n);
  // try_push never waits, so neither channel needs a fiber here.
  boost::fibers::buffered_channel<int> fibers_channel(n);
  bridge::channel<int> ch(rt.get_executor(), n - 1);
  bridge::status_channel<int> st = ch;
  std::size_t fiber_held = 0, bridge_held = 0;
  while (fibers_channel.try_push(1) == boost::fibers::channel_op_status::success) ++fiber_held;
  while (st.try_push(1) == bridge::channel_op_status::success) ++bridge_held;
  CHECK(fiber_held == n - 1);
  CHECK(bridge_held == fiber_held);
  CHECK_THROWS_AS(boost::fibers::buffered_channel<int>(3), boost::fibers::fiber_error);
}
