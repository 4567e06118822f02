#include <coport/bridge/await.hpp>

#include <catch2/catch.hpp>

#include "bridge_test_support.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/fiber/operations.hpp>

#include <string>
#include <utility>

using namespace std::chrono_literals;
using namespace coport::test;

namespace {

asio::awaitable<int> add_later(int a, int b) {
  asio::steady_timer t(co_await asio::this_coro::executor, 1ms);
  co_await t.async_wait(asio::use_awaitable);
  co_return a + b;
}

asio::awaitable<void> set_flag(bool& flag) {
  co_await asio::post(asio::use_awaitable);
  flag = true;
}

asio::awaitable<int> throws_logic_error() {
  co_await asio::post(asio::use_awaitable);
  throw std::logic_error("raised in a coroutine");
}

// Waits on a timer "forever"; reports how the wait ended.
asio::awaitable<int> wait_forever(std::promise<boost::system::error_code>& how) {
  asio::steady_timer t(co_await asio::this_coro::executor, 1h);
  auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
  how.set_value(ec);
  if (ec) throw boost::system::system_error(ec);
  co_return 0;
}

// As wait_forever, announcing the wait; once cancelled it takes one more
// step (a post) before it finishes, and records that it got there.
asio::awaitable<int> wait_forever_then_clean_up(std::promise<void>& waiting, bool& cleaned_up) {
  co_await asio::this_coro::throw_if_cancelled(false);
  asio::steady_timer t(co_await asio::this_coro::executor, 1h);
  waiting.set_value();
  auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
  co_await asio::post(asio::use_awaitable);
  cleaned_up = true;
  throw boost::system::system_error(ec);
}

// What a fiber's await call ended with: "value N", "timed_out", "aborted",
// or an exception's what().
template <class Fn>
std::string outcome_of(Fn&& fn) {
  try {
    return "value " + std::to_string(fn());
  } catch (const bridge::error& e) {
    return e.code() == bridge::errc::timed_out ? "timed_out" : e.what();
  } catch (const boost::system::system_error& e) {
    return e.code() == asio::error::operation_aborted ? "aborted" : e.what();
  } catch (const std::exception& e) {
    return e.what();
  }
}

}  // namespace

TEST_CASE("a fiber awaiting a coroutine gets its value", "[bridge][await]") {
  bridge::runtime rt(test_options("await"));
  CHECK(get(in_fiber(rt, [] { return bridge::await(add_later(20, 22)); })) == 42);
}

TEST_CASE("a fiber awaiting a void coroutine resumes after it ran", "[bridge][await]") {
  bridge::runtime rt(test_options("await"));
  CHECK(get(in_fiber(rt, [] {
    bool flag = false;
    bridge::await(set_flag(flag));
    return flag;
  })));
}

TEST_CASE("an exception thrown by the coroutine is rethrown in the fiber", "[bridge][await]") {
  bridge::runtime rt(test_options("await"));
  auto what = in_fiber(rt, [] {
    try {
      bridge::await(throws_logic_error());
      return std::string("no exception");
    } catch (const std::logic_error& e) {
      return std::string(e.what());
    }
  });
  CHECK(get(what) == "raised in a coroutine");
}

TEST_CASE("only the awaiting fiber blocks: other fibers and coroutines keep running",
          "[bridge][await]") {
  bridge::runtime rt(test_options("await"));
  bridge::event ready(rt.get_executor());
  // The awaited coroutine can only finish after another fiber has run.
  auto waiter = in_fiber(rt, [&] {
    return bridge::await([&]() -> asio::awaitable<int> {
      co_await ready.async_wait(asio::use_awaitable);
      co_return 1;
    }());
  });
  auto other = in_fiber(rt, [&] {
    boost::this_fiber::yield();
    ready.set();
    return 2;
  });
  CHECK(get(other) == 2);
  CHECK(get(waiter) == 1);
}

TEST_CASE("await on the loop fiber throws instead of deadlocking", "[bridge][await]") {
  bridge::runtime rt(test_options("await"));
  SECTION("from a native coroutine") {
    auto code = in_coro(rt, []() -> asio::awaitable<boost::system::error_code> {
      try {
        bridge::await(add_later(1, 2));
      } catch (const bridge::error& e) {
        co_return e.code();
      }
      co_return boost::system::error_code{};
    });
    CHECK(get(code) == bridge::errc::blocking_on_loop);
  }
  SECTION("from a posted handler") {
    std::promise<boost::system::error_code> code;
    rt.post([&] {
      try {
        bridge::await(add_later(1, 2));
        code.set_value({});
      } catch (const bridge::error& e) {
        code.set_value(e.code());
      }
    });
    CHECK(get(code.get_future()) == bridge::errc::blocking_on_loop);
  }
}

TEST_CASE("await outside any runtime throws a clear error", "[bridge][await]") {
  try {
    bridge::await(add_later(1, 2));
    FAIL("await on a plain thread returned");
  } catch (const bridge::error& e) {
    CHECK(e.code() == bridge::errc::not_on_runtime);
    CHECK(std::string(e.what()).find("bridge::await") != std::string::npos);
  }
}

TEST_CASE("a timeout on the fiber's wait cancels the coroutine", "[bridge][await][cancel]") {
  bridge::runtime rt(test_options("await"));
  std::promise<boost::system::error_code> how;
  auto code = in_fiber(rt, [&] {
    try {
      bridge::await(wait_forever(how), 10ms);
    } catch (const bridge::error& e) {
      return e.code();
    }
    return boost::system::error_code{};
  });
  CHECK(get(code) == bridge::errc::timed_out);
  CHECK(get(how.get_future()) == asio::error::operation_aborted);  // the coroutine saw it
}

TEST_CASE("a timeout that does not expire leaves the value alone", "[bridge][await]") {
  bridge::runtime rt(test_options("await"));
  CHECK(get(in_fiber(rt, [] { return bridge::await(add_later(2, 3), 10s); })) == 5);
}

TEST_CASE("a coroutine can be awaited on another loop", "[bridge][await]") {
  bridge::runtime_pool pool(2, test_options("await-pool"));
  auto other_loop = pool[1].get_executor();
  auto result = bridge::async_run_in_fiber(
      pool[0].get_executor(),
      [&] {
        return bridge::await(other_loop, [&]() -> asio::awaitable<bool> {
          co_return pool[1].get_executor().running_in_this_thread();
        }());
      },
      asio::use_future);
  CHECK(get(result));
}

TEST_CASE("cancelling a coroutine that waits on a fiber that waits on a coroutine reaches the innermost",
          "[bridge][await][cancel]") {
  using namespace asio::experimental::awaitable_operators;
  bridge::runtime rt(test_options("await"));
  std::promise<boost::system::error_code> innermost;
  std::promise<bool> fiber_saw_abort;
  auto outer = in_coro(rt, [&]() -> asio::awaitable<int> {
    asio::steady_timer deadline(co_await asio::this_coro::executor, 10ms);
    auto which = co_await (bridge::run_in_fiber([&] {
                             try {
                               return bridge::await(wait_forever(innermost));
                             } catch (const boost::system::system_error& e) {
                               fiber_saw_abort.set_value(e.code() == asio::error::operation_aborted);
                               throw;
                             }
                           }) ||
                           deadline.async_wait(asio::use_awaitable));
    co_return static_cast<int>(which.index());
  });
  CHECK(get(outer) == 1);  // the deadline won
  CHECK(get(innermost.get_future()) == asio::error::operation_aborted);
  CHECK(get(fiber_saw_abort.get_future()));
}

TEST_CASE("a timeout on a coroutine awaited on an executor cancels it, waits for it and throws timed_out",
          "[bridge][await][cancel]") {
  bridge::runtime_pool pool(2, test_options("await-pool"));
  // On the fiber's own loop and on another loop.
  const std::size_t where = GENERATE(std::size_t{0}, std::size_t{1});
  CAPTURE(where);
  auto ex = pool[where].get_executor();
  std::promise<void> waiting;
  bool cleaned_up = false;  // written by the coroutine, read after the await returned
  auto r = bridge::async_run_in_fiber(
      pool[0].get_executor(),
      [&] {
        const std::string how = outcome_of([&] {
          return bridge::await(ex, wait_forever_then_clean_up(waiting, cleaned_up), 10ms);
        });
        return how + (cleaned_up ? " after the coroutine finished" : " while it still ran");
      },
      asio::use_future);
  get(waiting.get_future());
  CHECK(get(r) == "timed_out after the coroutine finished");
}

TEST_CASE("a timed await on an executor returns the value that comes in time", "[bridge][await]") {
  bridge::runtime_pool pool(2, test_options("await-pool"));
  auto other_loop = pool[1].get_executor();
  auto r = bridge::async_run_in_fiber(
      pool[0].get_executor(), [&] { return bridge::await(other_loop, add_later(2, 3), 1h); },
      asio::use_future);
  CHECK(get(r) == 5);
}

TEST_CASE("an exception thrown before the deadline is rethrown at once, not reported as timed_out",
          "[bridge][await]") {
  bridge::runtime rt(test_options("await"));
  // With a one-hour deadline, waiting for the timer would show as a hang
  // (get()'s ceiling), and as "timed_out".
  auto r = in_fiber(rt, [&] {
    return std::make_pair(outcome_of([&] { return bridge::await(throws_logic_error(), 1h); }),
                          outcome_of([&] {
                            return bridge::await(rt.get_executor(), throws_logic_error(), 1h);
                          }));
  });
  CHECK(get(r) == std::make_pair(std::string("raised in a coroutine"), std::string("raised in a coroutine")));
}

TEST_CASE("a stop of a fiber in a timed await on an executor cancels the coroutine without timed_out",
          "[bridge][await][cancel]") {
  bridge::runtime rt(test_options("await"));
  std::promise<void> waiting;
  bool cleaned_up = false;
  asio::cancellation_signal cancel;
  auto r = bridge::async_run_in_fiber(
      rt.get_executor(),
      [&] {
        const std::string how = outcome_of([&] {
          return bridge::await(rt.get_executor(), wait_forever_then_clean_up(waiting, cleaned_up), 1h);
        });
        return how + (cleaned_up ? " after the coroutine finished" : " while it still ran");
      },
      asio::bind_cancellation_slot(cancel.slot(), asio::use_future));
  get(waiting.get_future());
  get(emit_on_loop(rt, cancel));
  CHECK(get(r) == "aborted after the coroutine finished");
}
