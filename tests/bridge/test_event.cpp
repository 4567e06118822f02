#include <coport/bridge/event.hpp>

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
#include <boost/fiber/fiber.hpp>

#include <chrono>
#include <future>
#include <memory>
#include <thread>
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

}  // namespace

TEST_CASE("a coroutine waiting on an event is woken by a fiber's set", "[bridge][event]") {
  bridge::runtime rt(test_options("event"));
  bridge::event ev(rt.get_executor());
  std::promise<void> waiting;
  auto waiter = [&]() -> asio::awaitable<std::pair<error_code, bool>> {
    waiting.set_value();
    auto [ec] = co_await ev.async_wait(asio::as_tuple(asio::use_awaitable));
    co_return std::pair(ec, ev.is_set());
  };
  auto woken = in_coro(rt, waiter());
  get(waiting.get_future());
  settle(rt);
  CHECK(woken.wait_for(0s) == std::future_status::timeout);

  get(in_fiber(rt, [&] { ev.set(); }));

  const auto [ec, was_set] = get(woken);
  CHECK_FALSE(ec);
  CHECK(was_set);
}

TEST_CASE("a fiber waiting on an event is woken by a coroutine's set", "[bridge][event]") {
  bridge::runtime rt(test_options("event"));
  bridge::event ev(rt.get_executor());
  std::promise<void> waiting;
  auto woken = in_fiber(rt, [&] {
    waiting.set_value();
    ev.wait();
    return ev.is_set();
  });
  get(waiting.get_future());
  settle(rt);
  CHECK(woken.wait_for(0s) == std::future_status::timeout);

  auto setter = [&]() -> asio::awaitable<void> {
    ev.set();
    co_return;
  };
  get(in_coro(rt, setter()));

  CHECK(get(woken));
}

TEST_CASE("fibers and coroutines waiting on one event are all woken by a single set",
          "[bridge][event]") {
  constexpr int per_kind = 16;
  bridge::runtime rt(test_options("event"));
  bridge::event ev(rt.get_executor());

  // Touched on the loop thread only.
  int registered = 0;
  std::promise<void> all_waiting;
  auto about_to_wait = [&] {
    if (++registered == 2 * per_kind) all_waiting.set_value();
  };

  auto coro_waiter = [&]() -> asio::awaitable<error_code> {
    about_to_wait();
    auto [ec] = co_await ev.async_wait(asio::as_tuple(asio::use_awaitable));
    co_return ec;
  };
  std::vector<std::future<error_code>> woken;
  for (int i = 0; i < per_kind; ++i) {
    woken.push_back(in_fiber(rt, [&] {
      about_to_wait();
      return failure_of([&] { ev.wait(); });
    }));
    woken.push_back(in_coro(rt, coro_waiter()));
  }
  get(all_waiting.get_future());
  settle(rt);

  get(in_fiber(rt, [&] { ev.set(); }));

  int ok = 0;
  for (auto& f : woken) {
    if (!get(f)) ++ok;
  }
  CHECK(ok == 2 * per_kind);
}

TEST_CASE("set from a plain thread wakes a fiber waiting on the loop", "[bridge][event]") {
  bridge::runtime rt(test_options("event"));
  bridge::event ev(rt.get_executor());
  std::promise<void> waiting;
  auto woken = in_fiber(rt, [&] {
    waiting.set_value();
    return failure_of([&] { ev.wait(); });
  });
  get(waiting.get_future());
  settle(rt);

  ev.set();  // from the test thread

  CHECK_FALSE(get(woken));
}

TEST_CASE("a plain thread waiting on an event is woken by a coroutine's set", "[bridge][event]") {
  bridge::runtime rt(test_options("event"));
  bridge::event ev(rt.get_executor());
  std::promise<void> waiting;
  std::promise<bool> result;
  auto woken = result.get_future();
  std::thread waiter([&] {
    // A fiber of this thread runs only once the thread's own context has
    // parked in ev.wait(): its announcement orders the set after the wait.
    boost::fibers::fiber announce([&] { waiting.set_value(); });
    ev.wait();
    result.set_value(ev.is_set());
    announce.join();
  });
  get(waiting.get_future());

  auto setter = [&]() -> asio::awaitable<void> {
    ev.set();
    co_return;
  };
  get(in_coro(rt, setter()));

  const bool finished = woken.wait_for(30s) == std::future_status::ready;
  if (finished) {
    waiter.join();
  } else {
    waiter.detach();  // hung: leak the thread rather than terminate the run
  }
  REQUIRE(finished);
  CHECK(woken.get());
}

TEST_CASE("wait_for on an event nobody sets times out and returns false", "[bridge][event]") {
  bridge::runtime rt(test_options("event"));
  bridge::event ev(rt.get_executor());

  auto timed_out = get(in_fiber(rt, [&] {
    const bool short_wait = ev.wait_for(1ms);
    const bool past_deadline = ev.wait_until(std::chrono::steady_clock::now() - 1s);
    return std::pair(short_wait, past_deadline);
  }));
  CHECK_FALSE(timed_out.first);
  CHECK_FALSE(timed_out.second);

  // The timed-out waiters left the event: a set afterwards touches neither.
  ev.set();
  CHECK(get(in_fiber(rt, [&] { return ev.wait_for(0ms); })));
}

TEST_CASE("wait_for returns true when the event is set before the deadline", "[bridge][event]") {
  bridge::runtime rt(test_options("event"));
  bridge::event ev(rt.get_executor());

  SECTION("set while the fiber waits") {
    std::promise<void> waiting;
    auto woken = in_fiber(rt, [&] {
      waiting.set_value();
      return ev.wait_for(1h);
    });
    get(waiting.get_future());
    settle(rt);
    ev.set();
    CHECK(get(woken));
  }
  SECTION("set before the fiber waits") {
    ev.set();
    CHECK(get(in_fiber(rt, [&] { return ev.wait_for(0ms); })));
  }
}

TEST_CASE("reset makes later waits block until the next set", "[bridge][event]") {
  bridge::runtime rt(test_options("event"));
  bridge::event ev(rt.get_executor(), true);
  REQUIRE(ev.is_set());

  ev.reset();
  CHECK_FALSE(ev.is_set());
  CHECK_FALSE(get(in_fiber(rt, [&] { return ev.wait_for(1ms); })));

  std::promise<void> waiting;
  auto woken = in_fiber(rt, [&] {
    waiting.set_value();
    return failure_of([&] { ev.wait(); });
  });
  get(waiting.get_future());
  settle(rt);
  ev.set();
  CHECK_FALSE(get(woken));
}

TEST_CASE("a coroutine's wait cancelled through its slot ends with operation_aborted and the "
          "event still works",
          "[bridge][event]") {
  bridge::runtime rt(test_options("event"));
  bridge::event ev(rt.get_executor());
  std::promise<void> first_waiting, second_waiting;
  auto waiter = [&](std::promise<void>& waiting) -> asio::awaitable<error_code> {
    waiting.set_value();
    auto [ec] = co_await ev.async_wait(asio::as_tuple(asio::use_awaitable));
    co_return ec;
  };
  asio::cancellation_signal sig;
  auto cancelled = asio::co_spawn(rt.get_executor(), waiter(first_waiting),
                                  asio::bind_cancellation_slot(sig.slot(), asio::use_future));
  auto kept = in_coro(rt, waiter(second_waiting));
  get(first_waiting.get_future());
  get(second_waiting.get_future());
  settle(rt);

  get(emit_on_loop(rt, sig));
  CHECK(get(cancelled) == asio::error::operation_aborted);
  CHECK_FALSE(ev.is_set());

  // The other waiter was left in place and the event was not consumed.
  settle(rt);
  CHECK(kept.wait_for(0s) == std::future_status::timeout);
  ev.set();
  CHECK_FALSE(get(kept));
  std::promise<void> third_waiting;
  CHECK_FALSE(get(in_coro(rt, waiter(third_waiting))));
}

TEST_CASE("a fiber's wait is interrupted by a stop with operation_aborted", "[bridge][event]") {
  bridge::runtime rt(test_options("event"));
  bridge::event ev(rt.get_executor());

  // Runs `wait` in a fiber, stops the fiber once it waits and returns how
  // the wait ended.
  auto stop_while_waiting = [&](auto wait) {
    std::promise<void> waiting;
    asio::cancellation_signal sig;
    auto stopped = bridge::async_run_in_fiber(
        rt.get_executor(),
        [&] {
          waiting.set_value();
          return failure_of(wait);
        },
        asio::bind_cancellation_slot(sig.slot(), asio::use_future));
    get(waiting.get_future());
    settle(rt);
    get(emit_on_loop(rt, sig));
    return get(stopped);
  };

  SECTION("a plain wait stopped through the cancellation slot of run_in_fiber") {
    CHECK(stop_while_waiting([&] { ev.wait(); }) == asio::error::operation_aborted);
  }
  SECTION("a timed wait stopped through the cancellation slot of run_in_fiber") {
    CHECK(stop_while_waiting([&] { (void)ev.wait_for(1h); }) == asio::error::operation_aborted);
  }

  SECTION("stopped by a coroutine that stops waiting for the fiber") {
    using namespace asio::experimental::awaitable_operators;
    error_code fiber_outcome;  // written by the fiber, read after the coroutine ends
    auto impatient = [&]() -> asio::awaitable<std::size_t> {
      // The timer only triggers the cancellation: whether it fires before or
      // after the fiber starts waiting, the fiber ends with operation_aborted.
      asio::steady_timer timer(co_await asio::this_coro::executor, 1ms);
      auto winner = co_await (
          bridge::async_run_in_fiber(
              rt.get_executor(), [&] { fiber_outcome = failure_of([&] { ev.wait(); }); },
              asio::use_awaitable) ||
          timer.async_wait(asio::use_awaitable));
      co_return winner.index();
    };
    CHECK(get(in_coro(rt, impatient())) == 1);  // the timer: nobody sets the event
    CHECK(fiber_outcome == asio::error::operation_aborted);
  }

  // The interrupted waiter left the event, which still works.
  CHECK_FALSE(ev.is_set());
  std::promise<void> waiting;
  auto woken = in_fiber(rt, [&] {
    waiting.set_value();
    return failure_of([&] { ev.wait(); });
  });
  get(waiting.get_future());
  settle(rt);
  ev.set();
  CHECK_FALSE(get(woken));
}

TEST_CASE("waiting on an event on the loop fiber throws blocking_on_loop", "[bridge][event]") {
  bridge::runtime rt(test_options("event"));
  bridge::event ev(rt.get_executor());

  SECTION("from a native coroutine") {
    auto native = [&]() -> asio::awaitable<std::pair<error_code, error_code>> {
      co_return std::pair(bridge_error_of([&] { ev.wait(); }),
                          bridge_error_of([&] { (void)ev.wait_for(1h); }));
    };
    const auto [plain, timed] = get(in_coro(rt, native()));
    CHECK(plain == bridge::errc::blocking_on_loop);
    CHECK(timed == bridge::errc::blocking_on_loop);
  }
  SECTION("from a task posted to the loop") {
    auto outcome = std::make_shared<std::promise<error_code>>();
    auto f = outcome->get_future();
    rt.post([&ev, outcome] {
      try {
        outcome->set_value(bridge_error_of([&] { ev.wait(); }));
      } catch (...) {
        outcome->set_exception(std::current_exception());
      }
    });
    CHECK(get(f) == bridge::errc::blocking_on_loop);
  }
  CHECK_FALSE(ev.is_set());
}

TEST_CASE("an event connects fibers and coroutines on two runtimes", "[bridge][event]") {
  bridge::runtime rt1(test_options("event-1"));
  bridge::runtime rt2(test_options("event-2"));
  bridge::event ev(rt1.get_executor());
  std::promise<void> waiting;

  SECTION("a coroutine on one runtime wakes a fiber on the other") {
    auto woken = in_fiber(rt2, [&] {
      waiting.set_value();
      return failure_of([&] { ev.wait(); });
    });
    get(waiting.get_future());
    settle(rt2);
    auto setter = [&]() -> asio::awaitable<void> {
      ev.set();
      co_return;
    };
    get(in_coro(rt1, setter()));
    CHECK_FALSE(get(woken));
  }
  SECTION("a fiber on one runtime wakes a coroutine on the other, which resumes at home") {
    auto waiter = [&]() -> asio::awaitable<std::pair<error_code, std::thread::id>> {
      waiting.set_value();
      auto [ec] = co_await ev.async_wait(asio::as_tuple(asio::use_awaitable));
      co_return std::pair(ec, std::this_thread::get_id());
    };
    auto woken = in_coro(rt2, waiter());
    get(waiting.get_future());
    settle(rt2);
    get(in_fiber(rt1, [&] { ev.set(); }));
    const auto [ec, resumed_on] = get(woken);
    CHECK_FALSE(ec);
    CHECK(resumed_on == rt2.thread_id());
  }
}

TEST_CASE("destroying an event ends pending coroutine waits with operation_aborted",
          "[bridge][event]") {
  bridge::runtime rt(test_options("event"));
  auto ev = std::make_unique<bridge::event>(rt.get_executor());
  std::promise<void> waiting;
  auto waiter = [&](bridge::event& e) -> asio::awaitable<error_code> {
    waiting.set_value();
    auto [ec] = co_await e.async_wait(asio::as_tuple(asio::use_awaitable));
    co_return ec;
  };
  auto woken = in_coro(rt, waiter(*ev));
  get(waiting.get_future());
  settle(rt);

  ev.reset();

  CHECK(get(woken) == asio::error::operation_aborted);
}
