#include <coport/bridge/hosted.hpp>

#include <catch2/catch.hpp>

#include "bridge_test_support.hpp"

#include <boost/fiber/all.hpp>

#include <set>

using namespace std::chrono_literals;
using namespace coport::test;

TEST_CASE("a hosted coroutine calls fiber-blocking legacy code directly and co_awaits Asio",
          "[bridge][hosted]") {
  bridge::runtime rt(test_options("hosted"));
  boost::fibers::promise<int> legacy_result;
  boost::fibers::promise<void> about_to_block;
  // Legacy code fulfils the promise from a fiber once the hosted coroutine
  // is about to wait for it: the wait always blocks.
  bridge::spawn_fiber(rt.get_executor(), [&] {
    about_to_block.get_future().get();
    legacy_result.set_value(40);
  });
  auto v = bridge::co_spawn_hosted(
      rt.get_executor("hosted.mixed"),
      [&]() -> asio::awaitable<int> {
        auto legacy = legacy_result.get_future();
        about_to_block.set_value();  // readies the legacy fiber; it runs once this one blocks
        int a = legacy.get();  // blocks the host fiber only
        boost::fibers::mutex m;
        {
          std::lock_guard lk(m);
          ++a;
        }
        asio::steady_timer t(co_await asio::this_coro::executor, 1ms);
        co_await t.async_wait(asio::use_awaitable);  // explicit yield
        boost::fibers::buffered_channel<int> ch(2);
        ch.push(1);
        int one = 0;
        ch.pop(one);
        co_return a + one;
      },
      asio::use_future);
  CHECK(get(v) == 42);
}

TEST_CASE("a blocked hosted coroutine blocks only its host fiber", "[bridge][hosted]") {
  bridge::runtime rt(test_options("hosted"));
  boost::fibers::promise<int> p;
  auto hosted = bridge::co_spawn_hosted(
      rt.get_executor(),
      [&]() -> asio::awaitable<int> { co_return p.get_future().get(); }, asio::use_future);
  // Only a native coroutine that runs while the hosted one is blocked can
  // release it.
  auto native = in_coro(rt, [&]() -> asio::awaitable<int> {
    co_await asio::post(asio::use_awaitable);
    p.set_value(9);
    co_return 1;
  });
  CHECK(get(native) == 1);
  CHECK(get(hosted) == 9);
}

TEST_CASE("every step of a hosted coroutine runs in the same dedicated fiber", "[bridge][hosted]") {
  bridge::runtime rt(test_options("hosted"));
  auto ids = bridge::co_spawn_hosted(
      rt.get_executor(),
      [&]() -> asio::awaitable<std::set<boost::fibers::fiber::id>> {
        std::set<boost::fibers::fiber::id> seen;
        for (int i = 0; i < 5; ++i) {
          seen.insert(boost::this_fiber::get_id());
          asio::steady_timer t(co_await asio::this_coro::executor, 1ms);
          co_await t.async_wait(asio::use_awaitable);
          co_await asio::post(asio::use_awaitable);
        }
        co_return seen;
      },
      asio::use_future);
  auto seen = get(ids);
  CHECK(seen.size() == 1);
  auto loop_fiber = in_coro(rt, []() -> asio::awaitable<boost::fibers::fiber::id> {
    co_return boost::this_fiber::get_id();
  });
  CHECK(seen.count(get(loop_fiber)) == 0);  // not the loop fiber
}

TEST_CASE("hosted and native coroutines see their own executors through any_io_executor",
          "[bridge][hosted]") {
  bridge::runtime rt(test_options("hosted"));
  auto hosted = bridge::co_spawn_hosted(
      rt.get_executor(),
      []() -> asio::awaitable<bool> {
        auto ex = co_await asio::this_coro::executor;
        co_return ex.target<bridge::hosted_executor>() != nullptr &&
            ex.target<bridge::hosted_executor>()->running_in_this_thread();
      },
      asio::use_future);
  auto native = in_coro(rt, []() -> asio::awaitable<bool> {
    auto ex = co_await asio::this_coro::executor;
    co_return ex.target<bridge::loop_executor>() != nullptr;
  });
  CHECK(get(hosted));
  CHECK(get(native));
}

TEST_CASE("an exception escaping a hosted coroutine reaches the completion token", "[bridge][hosted]") {
  bridge::runtime rt(test_options("hosted"));
  auto f = bridge::co_spawn_hosted(
      rt.get_executor(),
      []() -> asio::awaitable<int> {
        boost::this_fiber::yield();
        throw std::invalid_argument("hosted failure");
        co_return 0;
      },
      asio::use_future);
  CHECK_THROWS_WITH(get(f), "hosted failure");
}

TEST_CASE("a hosted coroutine waits for a native one and for fiber work", "[bridge][hosted]") {
  bridge::runtime rt(test_options("hosted"));
  auto f = bridge::co_spawn_hosted(
      rt.get_executor(),
      []() -> asio::awaitable<int> {
        int a = bridge::await([]() -> asio::awaitable<int> { co_return 1; }());  // legacy style
        int b = co_await bridge::run_in_fiber([] { return 2; });                  // ported style
        co_return a + b;
      },
      asio::use_future);
  CHECK(get(f) == 3);
}

TEST_CASE("many hosted coroutines run at once, each in its own fiber", "[bridge][hosted]") {
  bridge::runtime rt(test_options("hosted"));
  constexpr int n = 200;
  bridge::event go(rt.get_executor());
  bridge::event all_blocked(rt.get_executor());
  int blocked = 0;  // loop thread only
  std::vector<std::future<boost::fibers::fiber::id>> all;
  for (int i = 0; i < n; ++i) {
    all.push_back(bridge::co_spawn_hosted(
        rt.get_executor(),
        [&]() -> asio::awaitable<boost::fibers::fiber::id> {
          if (++blocked == n) all_blocked.set();
          go.wait();  // every host fiber blocked at once
          co_return boost::this_fiber::get_id();
        },
        asio::use_future));
  }
  // Release them only once every host is blocked (fibers of one loop are
  // cooperative: the last host blocks before the fiber it woke runs).
  get(in_fiber(rt, [&] {
    all_blocked.wait();
    go.set();
    return 0;
  }));
  std::set<boost::fibers::fiber::id> ids;
  for (auto& f : all) ids.insert(get(f));
  CHECK(ids.size() == n);
}

TEST_CASE("stop cancels a hosted coroutine spawned without a slot", "[bridge][hosted][cancel]") {
  bridge::runtime rt(test_options("hosted"));
  std::promise<boost::system::error_code> how;
  std::promise<void> started;
  bridge::spawn_hosted(rt.get_executor("hosted.forever"), [&]() -> asio::awaitable<void> {
    asio::steady_timer t(co_await asio::this_coro::executor, 1h);
    started.set_value();
    auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    how.set_value(ec);
  });
  get(started.get_future());
  rt.stop();
  rt.join();
  CHECK(get(how.get_future()) == asio::error::operation_aborted);
}
