#include <coport/bridge/await.hpp>

#include <catch2/catch.hpp>

#include "bridge_test_support.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/fiber/operations.hpp>

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
