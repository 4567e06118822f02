#include <coport/bridge/mutex.hpp>

#include <catch2/catch.hpp>

#include "bridge_test_support.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/fiber/operations.hpp>

#include <atomic>
#include <future>
#include <memory>
#include <mutex>
#include <numeric>
#include <string>
#include <thread>
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

TEST_CASE("a coroutine waiting for a mutex gets it when a fiber unlocks", "[bridge][mutex]") {
  bridge::runtime rt(test_options("mutex"));
  bridge::mutex m(rt.get_executor());
  bridge::event release(rt.get_executor());
  std::vector<std::string> steps;  // loop thread only
  std::promise<void> fiber_holds, coro_waiting;

  auto holder = in_fiber(rt, [&] {
    m.lock();
    steps.push_back("fiber locked");
    fiber_holds.set_value();
    release.wait();
    steps.push_back("fiber unlocks");
    m.unlock();
  });
  get(fiber_holds.get_future());

  auto waiter = [&]() -> asio::awaitable<error_code> {
    coro_waiting.set_value();
    auto [ec] = co_await m.async_lock(asio::as_tuple(asio::use_awaitable));
    if (!ec) {
      steps.push_back("coroutine locked");
      m.unlock();
    }
    co_return ec;
  };
  auto acquired = in_coro(rt, waiter());
  get(coro_waiting.get_future());
  settle(rt);
  CHECK(acquired.wait_for(0s) == std::future_status::timeout);

  release.set();
  get(holder);
  CHECK_FALSE(get(acquired));
  CHECK(steps == std::vector<std::string>{"fiber locked", "fiber unlocks", "coroutine locked"});
  CHECK(m.try_lock());
}

TEST_CASE("a fiber waiting for a mutex gets it when a coroutine unlocks", "[bridge][mutex]") {
  bridge::runtime rt(test_options("mutex"));
  bridge::mutex m(rt.get_executor());
  bridge::event release(rt.get_executor());
  std::vector<std::string> steps;  // loop thread only
  std::promise<void> coro_holds, fiber_waiting;

  auto holder = [&]() -> asio::awaitable<void> {
    co_await m.async_lock(asio::use_awaitable);
    steps.push_back("coroutine locked");
    coro_holds.set_value();
    co_await release.async_wait(asio::use_awaitable);
    steps.push_back("coroutine unlocks");
    m.unlock();
  };
  auto held = in_coro(rt, holder());
  get(coro_holds.get_future());

  auto waiter = in_fiber(rt, [&] {
    fiber_waiting.set_value();
    m.lock();
    steps.push_back("fiber locked");
    m.unlock();
  });
  get(fiber_waiting.get_future());
  settle(rt);
  CHECK(waiter.wait_for(0s) == std::future_status::timeout);

  release.set();
  get(held);
  get(waiter);
  CHECK(steps == std::vector<std::string>{"coroutine locked", "coroutine unlocks", "fiber locked"});
  CHECK(m.try_lock());
}

TEST_CASE("fibers and coroutines waiting for a mutex are served in FIFO order",
          "[bridge][mutex]") {
  constexpr int waiters = 12;
  bridge::runtime rt(test_options("mutex"));
  bridge::mutex m(rt.get_executor());
  REQUIRE(m.try_lock());  // the test thread holds it while the queue forms

  std::vector<int> order;  // appended to under `m` only
  auto coro_waiter = [&](int id, std::promise<void> queued) -> asio::awaitable<void> {
    queued.set_value();
    co_await m.async_lock(asio::use_awaitable);
    order.push_back(id);
    m.unlock();
  };
  std::vector<std::future<void>> done;
  for (int id = 0; id < waiters; ++id) {
    std::promise<void> queued;
    auto is_queued = queued.get_future();
    if (id % 3 == 1) {
      done.push_back(in_coro(rt, coro_waiter(id, std::move(queued))));
    } else {
      done.push_back(in_fiber(rt, [&m, &order, id, q = std::move(queued)]() mutable {
        q.set_value();
        std::unique_lock lk(m);
        order.push_back(id);
      }));
    }
    // The next waiter starts only once this one is queued.
    get(is_queued);
    settle(rt);
  }

  m.unlock();
  for (auto& f : done) get(f);

  std::vector<int> expected(waiters);
  std::iota(expected.begin(), expected.end(), 0);
  CHECK(order == expected);
  CHECK(m.try_lock());
}

TEST_CASE("fibers and coroutines holding a mutex exclude each other under contention",
          "[bridge][mutex]") {
  constexpr int workers_per_kind = 20;
  constexpr int rounds = 200;
  bridge::runtime rt(test_options("mutex"));
  bridge::mutex m(rt.get_executor());

  // Plain ints: every access is made under `m` (and on the loop thread).
  int counter = 0;
  int inside = 0;
  int overlaps = 0;
  auto enter = [&] {
    if (++inside != 1) ++overlaps;
  };
  auto leave = [&] { --inside; };

  auto coro_worker = [&](int id) -> asio::awaitable<void> {
    for (int r = 0; r < rounds; ++r) {
      if (id % 2 == 0) {
        auto lk = co_await m.scoped_lock();
        enter();
        const int seen = counter;
        co_await asio::post(asio::use_awaitable);  // let everyone else run
        counter = seen + 1;
        leave();
      } else {
        co_await m.async_lock(asio::use_awaitable);
        enter();
        const int seen = counter;
        co_await asio::post(asio::use_awaitable);
        counter = seen + 1;
        leave();
        m.unlock();
      }
    }
  };
  std::vector<std::future<void>> done;
  for (int id = 0; id < workers_per_kind; ++id) {
    done.push_back(in_fiber(rt, [&, id] {
      for (int r = 0; r < rounds; ++r) {
        if (id % 2 == 0) {
          std::unique_lock lk(m);
          enter();
          const int seen = counter;
          boost::this_fiber::yield();  // let everyone else run
          counter = seen + 1;
          leave();
        } else {
          m.lock();
          enter();
          const int seen = counter;
          boost::this_fiber::yield();
          counter = seen + 1;
          leave();
          m.unlock();
        }
      }
    }));
    done.push_back(in_coro(rt, coro_worker(id)));
  }
  for (auto& f : done) get(f);

  CHECK(overlaps == 0);
  CHECK(counter == 2 * workers_per_kind * rounds);
  CHECK(m.try_lock());
}

TEST_CASE("a mutex shared by fibers and coroutines on two runtimes of a pool excludes them",
          "[bridge][mutex]") {
  constexpr int workers_per_kind_and_loop = 8;
  constexpr int rounds = 200;
  bridge::runtime_pool pool(2, test_options("mutex-pool"));
  bridge::mutex m(pool[0].get_executor());

  int counter = 0;  // under `m` only, from both loop threads
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  auto enter = [&] {
    if (inside.fetch_add(1) != 0) overlaps.fetch_add(1);
  };
  auto leave = [&] { inside.fetch_sub(1); };

  auto coro_worker = [&]() -> asio::awaitable<void> {
    for (int r = 0; r < rounds; ++r) {
      auto lk = co_await m.scoped_lock();
      enter();
      const int seen = counter;
      co_await asio::post(asio::use_awaitable);
      counter = seen + 1;
      leave();
    }
  };
  std::vector<std::future<void>> done;
  for (std::size_t loop = 0; loop < pool.size(); ++loop) {
    for (int i = 0; i < workers_per_kind_and_loop; ++i) {
      done.push_back(in_fiber(pool[loop], [&] {
        for (int r = 0; r < rounds; ++r) {
          std::unique_lock lk(m);
          enter();
          const int seen = counter;
          boost::this_fiber::yield();
          counter = seen + 1;
          leave();
        }
      }));
      done.push_back(in_coro(pool[loop], coro_worker()));
    }
  }
  for (auto& f : done) get(f);

  CHECK(overlaps.load() == 0);
  CHECK(counter == static_cast<int>(pool.size()) * 2 * workers_per_kind_and_loop * rounds);
  CHECK(m.try_lock());
}

TEST_CASE("try_lock succeeds only on a free mutex and never overtakes a waiter",
          "[bridge][mutex]") {
  bridge::runtime rt(test_options("mutex"));
  bridge::mutex m(rt.get_executor());
  bridge::event release(rt.get_executor());

  REQUIRE(m.try_lock());
  CHECK_FALSE(m.try_lock());
  m.unlock();
  REQUIRE(m.try_lock());

  std::promise<void> waiting;
  auto waiter = in_fiber(rt, [&] {
    waiting.set_value();
    m.lock();
    release.wait();
    m.unlock();
  });
  get(waiting.get_future());
  settle(rt);

  // The lock passes straight to the queued fiber: it is never free between.
  m.unlock();
  CHECK_FALSE(m.try_lock());

  release.set();
  get(waiter);
  CHECK(m.try_lock());
}

TEST_CASE("std::unique_lock of a bridge mutex locks and unlocks it in a fiber", "[bridge][mutex]") {
  bridge::runtime rt(test_options("mutex"));
  bridge::mutex m(rt.get_executor());

  struct observed {
    bool owned = false;
    bool free_inside = true;
    bool free_after = false;
    bool try_to_lock_while_held = true;
  };
  const auto seen = get(in_fiber(rt, [&] {
    observed o;
    {
      std::unique_lock lk(m);
      o.owned = lk.owns_lock();
      o.free_inside = m.try_lock();
      o.try_to_lock_while_held = std::unique_lock(m, std::try_to_lock).owns_lock();
    }
    o.free_after = m.try_lock();
    if (o.free_after) m.unlock();
    return o;
  }));
  CHECK(seen.owned);
  CHECK_FALSE(seen.free_inside);
  CHECK_FALSE(seen.try_to_lock_while_held);
  CHECK(seen.free_after);
}

TEST_CASE("a coroutine holds a mutex across co_await while a fiber waits for it",
          "[bridge][mutex]") {
  bridge::runtime rt(test_options("mutex"));
  bridge::mutex m(rt.get_executor());
  bridge::event release(rt.get_executor());
  std::vector<std::string> steps;  // loop thread only
  std::promise<void> coro_holds, fiber_waiting;

  auto holder = [&]() -> asio::awaitable<void> {
    auto lk = co_await m.scoped_lock();
    steps.push_back("coroutine locked");
    coro_holds.set_value();
    co_await release.async_wait(asio::use_awaitable);
    co_await asio::post(asio::use_awaitable);
    steps.push_back("coroutine unlocks");
  };
  auto held = in_coro(rt, holder());
  get(coro_holds.get_future());

  auto waiter = in_fiber(rt, [&] {
    fiber_waiting.set_value();
    std::unique_lock lk(m);
    steps.push_back("fiber locked");
  });
  get(fiber_waiting.get_future());
  settle(rt);
  CHECK_FALSE(m.try_lock());

  release.set();
  get(held);
  get(waiter);
  CHECK(steps == std::vector<std::string>{"coroutine locked", "coroutine unlocks", "fiber locked"});
  CHECK(m.try_lock());
}

TEST_CASE("a coroutine may unlock a mutex on another runtime's thread", "[bridge][mutex]") {
  bridge::runtime rt1(test_options("mutex-1"));
  bridge::runtime rt2(test_options("mutex-2"));
  bridge::mutex m(rt1.get_executor());
  bridge::event go(rt1.get_executor());
  std::promise<void> coro_holds, fiber_waiting;

  auto holder = [&]() -> asio::awaitable<std::thread::id> {
    co_await m.async_lock(asio::use_awaitable);
    coro_holds.set_value();
    co_await go.async_wait(asio::use_awaitable);
    // Unlock from a coroutine running on the other loop.
    co_return co_await asio::co_spawn(
        rt2.get_executor(),
        [&]() -> asio::awaitable<std::thread::id> {
          m.unlock();
          co_return std::this_thread::get_id();
        },
        asio::use_awaitable);
  };
  auto unlocked_on = in_coro(rt1, holder());
  get(coro_holds.get_future());

  auto waiter = in_fiber(rt2, [&] {
    fiber_waiting.set_value();
    return failure_of([&] {
      m.lock();
      m.unlock();
    });
  });
  get(fiber_waiting.get_future());
  settle(rt2);

  go.set();
  CHECK(get(unlocked_on) == rt2.thread_id());
  CHECK_FALSE(get(waiter));
  CHECK(m.try_lock());
}

TEST_CASE("a coroutine's lock attempt cancelled through its slot ends with operation_aborted "
          "and is never handed the mutex",
          "[bridge][mutex]") {
  bridge::runtime rt(test_options("mutex"));
  bridge::mutex m(rt.get_executor());
  REQUIRE(m.try_lock());

  std::promise<void> first_queued, second_queued;
  auto waiter = [&](std::promise<void>& queued) -> asio::awaitable<error_code> {
    queued.set_value();
    auto [ec] = co_await m.async_lock(asio::as_tuple(asio::use_awaitable));
    if (!ec) m.unlock();
    co_return ec;
  };
  asio::cancellation_signal sig;
  auto cancelled = asio::co_spawn(rt.get_executor(), waiter(first_queued),
                                  asio::bind_cancellation_slot(sig.slot(), asio::use_future));
  get(first_queued.get_future());
  settle(rt);
  auto served = in_coro(rt, waiter(second_queued));
  get(second_queued.get_future());
  settle(rt);

  get(emit_on_loop(rt, sig));
  CHECK(get(cancelled) == asio::error::operation_aborted);

  // The lock skips the withdrawn waiter and reaches the one behind it.
  m.unlock();
  CHECK_FALSE(get(served));
  CHECK(m.try_lock());
}

TEST_CASE("a fiber blocked in lock is interrupted by a stop with operation_aborted",
          "[bridge][mutex]") {
  bridge::runtime rt(test_options("mutex"));
  bridge::mutex m(rt.get_executor());
  REQUIRE(m.try_lock());

  std::promise<void> waiting;
  asio::cancellation_signal sig;
  auto stopped = bridge::async_run_in_fiber(
      rt.get_executor(),
      [&] {
        waiting.set_value();
        return failure_of([&] {
          m.lock();
          m.unlock();
        });
      },
      asio::bind_cancellation_slot(sig.slot(), asio::use_future));
  get(waiting.get_future());
  settle(rt);

  get(emit_on_loop(rt, sig));
  CHECK(get(stopped) == asio::error::operation_aborted);

  // The stopped fiber left the queue: unlocking frees the mutex.
  m.unlock();
  CHECK(m.try_lock());
}

TEST_CASE("a stop or cancellation racing with an unlock never loses the mutex",
          "[bridge][mutex]") {
  constexpr int attempts = 200;
  bridge::runtime rt(test_options("mutex"));
  bridge::mutex m(rt.get_executor());

  int acquired = 0;
  int aborted = 0;
  int other = 0;
  auto tally = [&](error_code ec) {
    if (!ec) {
      ++acquired;
    } else if (ec == asio::error::operation_aborted) {
      ++aborted;
    } else {
      ++other;
    }
  };

  SECTION("a fiber's stop") {
    for (int i = 0; i < attempts; ++i) {
      REQUIRE(m.try_lock());
      std::promise<void> waiting;
      asio::cancellation_signal sig;
      auto outcome = bridge::async_run_in_fiber(
          rt.get_executor(),
          [&] {
            waiting.set_value();
            return failure_of([&] {
              m.lock();
              m.unlock();
            });
          },
          asio::bind_cancellation_slot(sig.slot(), asio::use_future));
      get(waiting.get_future());
      settle(rt);
      auto emitted = emit_on_loop(rt, sig);
      m.unlock();  // races with the stop on the loop thread
      tally(get(outcome));
      get(emitted);  // before `sig` goes, also when the value or unlock won
    }
  }
  SECTION("a coroutine's cancellation") {
    auto waiter = [&](std::promise<void>& queued) -> asio::awaitable<error_code> {
      queued.set_value();
      auto [ec] = co_await m.async_lock(asio::as_tuple(asio::use_awaitable));
      if (!ec) m.unlock();
      co_return ec;
    };
    for (int i = 0; i < attempts; ++i) {
      REQUIRE(m.try_lock());
      std::promise<void> queued;
      asio::cancellation_signal sig;
      auto outcome = asio::co_spawn(rt.get_executor(), waiter(queued),
                                    asio::bind_cancellation_slot(sig.slot(), asio::use_future));
      get(queued.get_future());
      settle(rt);
      auto emitted = emit_on_loop(rt, sig);
      m.unlock();  // races with the cancellation on the loop thread
      tally(get(outcome));
      get(emitted);  // before `sig` goes, also when the value or unlock won
    }
  }
  CAPTURE(acquired, aborted);
  CHECK(other == 0);
  CHECK(acquired + aborted == attempts);
  CHECK(m.try_lock());
}

TEST_CASE("locking a mutex on the loop fiber throws blocking_on_loop", "[bridge][mutex]") {
  bridge::runtime rt(test_options("mutex"));
  bridge::mutex m(rt.get_executor());

  SECTION("from a native coroutine") {
    auto native = [&]() -> asio::awaitable<error_code> {
      co_return bridge_error_of([&] { m.lock(); });
    };
    CHECK(get(in_coro(rt, native())) == bridge::errc::blocking_on_loop);
  }
  SECTION("from a task posted to the loop") {
    auto outcome = std::make_shared<std::promise<error_code>>();
    auto f = outcome->get_future();
    rt.post([&m, outcome] {
      try {
        outcome->set_value(bridge_error_of([&] { m.lock(); }));
      } catch (...) {
        outcome->set_exception(std::current_exception());
      }
    });
    CHECK(get(f) == bridge::errc::blocking_on_loop);
  }
  // The refused call did not take the mutex.
  CHECK(m.try_lock());
}
