#include <coport/bridge/fiber.hpp>

#include <catch2/catch.hpp>

#include "bridge_test_support.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/strand.hpp>
#include <boost/fiber/all.hpp>

#include <set>

using namespace std::chrono_literals;
using namespace coport::test;

TEST_CASE("a coroutine awaiting fiber work gets its value", "[bridge][run_in_fiber]") {
  bridge::runtime rt(test_options("rif"));
  auto v = in_coro(rt, []() -> asio::awaitable<int> {
    co_return co_await bridge::run_in_fiber([] {
      boost::this_fiber::sleep_for(1ms);  // legacy blocking code
      return 6 * 7;
    });
  });
  CHECK(get(v) == 42);
}

TEST_CASE("void fiber work and exceptions come back to the coroutine", "[bridge][run_in_fiber]") {
  bridge::runtime rt(test_options("rif"));
  auto what = in_coro(rt, []() -> asio::awaitable<std::string> {
    bool ran = false;
    co_await bridge::run_in_fiber([&] { ran = true; });
    if (!ran) co_return "void work did not run";
    try {
      co_await bridge::run_in_fiber([]() -> int { throw std::out_of_range("raised in a fiber"); });
    } catch (const std::out_of_range& e) {
      co_return e.what();
    }
    co_return "no exception";
  });
  CHECK(get(what) == "raised in a fiber");
}

TEST_CASE("the coroutine resumes on its own executor", "[bridge][run_in_fiber]") {
  bridge::runtime rt(test_options("rif"));
  SECTION("a loop executor") {
    auto on_loop = in_coro(rt, [&]() -> asio::awaitable<bool> {
      co_await bridge::run_in_fiber([] { return 0; });
      co_return rt.get_executor().running_in_this_thread();
    });
    CHECK(get(on_loop));
  }
  SECTION("a strand") {
    auto strand = asio::make_strand(rt.get_executor());
    auto on_strand = asio::co_spawn(
        strand,
        [&]() -> asio::awaitable<bool> {
          co_await bridge::run_in_fiber([] { return 0; });
          co_return strand.running_in_this_thread();
        },
        asio::use_future);
    CHECK(get(on_strand));
  }
}

TEST_CASE("fiber work runs in pooled fibers: sequential calls reuse one fiber",
          "[bridge][run_in_fiber]") {
  bridge::runtime rt(test_options("rif"));
  auto distinct = in_coro(rt, []() -> asio::awaitable<std::size_t> {
    std::set<boost::fibers::fiber::id> ids;
    for (int i = 0; i < 200; ++i) {
      ids.insert(co_await bridge::run_in_fiber([] { return boost::this_fiber::get_id(); }));
    }
    co_return ids.size();
  });
  CHECK(get(distinct) == 1);
}

TEST_CASE("a burst of concurrent calls is served and the fibers are reused by the next burst",
          "[bridge][run_in_fiber]") {
  bridge::runtime rt(test_options("rif"));
  constexpr int burst = 100;
  auto distinct = in_coro(rt, [&]() -> asio::awaitable<std::size_t> {
    std::set<boost::fibers::fiber::id> ids;
    for (int round = 0; round < 3; ++round) {
      bridge::event go(rt.get_executor());
      bridge::event all_blocked(rt.get_executor());
      bridge::event all_done(rt.get_executor());
      int blocked = 0;  // loop thread only
      int done = 0;     // loop thread only
      for (int i = 0; i < burst; ++i) {
        // Each call blocks until all have started, so `burst` fibers are live.
        bridge::async_run_in_fiber(
            rt.get_executor(),
            [&] {
              if (++blocked == burst) all_blocked.set();
              go.wait();
              return boost::this_fiber::get_id();
            },
            // Runs once the call's fiber is back in the pool.
            [&](std::exception_ptr e, boost::fibers::fiber::id id) {
              if (!e) ids.insert(id);
              if (++done == burst) all_done.set();
            });
      }
      co_await all_blocked.async_wait(asio::use_awaitable);
      go.set();
      co_await all_done.async_wait(asio::use_awaitable);
    }
    co_return ids.size();
  });
  CHECK(get(distinct) == burst);
}

TEST_CASE("cancelling the coroutine's wait interrupts the fiber at its next blocking point",
          "[bridge][run_in_fiber][cancel]") {
  bridge::runtime rt(test_options("rif"));
  std::promise<bool> fiber_interrupted;
  SECTION("through a cancellation slot") {
    auto outcome = in_coro(rt, [&]() -> asio::awaitable<boost::system::error_code> {
      asio::cancellation_signal cancel;
      auto ex = co_await asio::this_coro::executor;
      // Emit once the fiber is blocked: the fiber posts the emission itself.
      auto [e] = co_await bridge::async_run_in_fiber(
          ex,
          [&] {
            asio::post(ex, [&] { cancel.emit(asio::cancellation_type::terminal); });
            try {
              bridge::this_fiber::sleep_for(1h);
              fiber_interrupted.set_value(false);
            } catch (const boost::system::system_error& err) {
              fiber_interrupted.set_value(err.code() == asio::error::operation_aborted);
              throw;
            }
          },
          asio::bind_cancellation_slot(cancel.slot(), asio::as_tuple(asio::use_awaitable)));
      try {
        if (e) std::rethrow_exception(e);
      } catch (const boost::system::system_error& err) {
        co_return err.code();
      }
      co_return boost::system::error_code{};
    });
    CHECK(get(outcome) == asio::error::operation_aborted);
    CHECK(get(fiber_interrupted.get_future()));
  }
  SECTION("through a timeout with awaitable operators") {
    using namespace asio::experimental::awaitable_operators;
    auto winner = in_coro(rt, [&]() -> asio::awaitable<std::size_t> {
      asio::steady_timer deadline(co_await asio::this_coro::executor, 5ms);
      auto r = co_await (bridge::run_in_fiber([&] {
                           try {
                             bridge::event never(rt.get_executor());
                             never.wait();
                           } catch (const boost::system::system_error& err) {
                             fiber_interrupted.set_value(err.code() == asio::error::operation_aborted);
                             throw;
                           }
                         }) ||
                         deadline.async_wait(asio::use_awaitable));
      co_return r.index();
    });
    CHECK(get(winner) == 1);
    CHECK(get(fiber_interrupted.get_future()));
  }
}

TEST_CASE("fiber work without blocking points notices a stop at an explicit interruption point",
          "[bridge][run_in_fiber][cancel]") {
  bridge::runtime rt(test_options("rif"));
  std::promise<int> iterations;
  auto outcome = in_coro(rt, [&]() -> asio::awaitable<bool> {
    asio::cancellation_signal cancel;
    auto ex = co_await asio::this_coro::executor;
    auto [e] = co_await bridge::async_run_in_fiber(
        ex,
        [&] {
          int i = 0;
          try {
            for (;; ++i) {
              if (i == 10) asio::post(ex, [&] { cancel.emit(asio::cancellation_type::terminal); });
              boost::this_fiber::yield();  // lets the loop deliver the cancellation
              bridge::this_fiber::interruption_point();
            }
          } catch (...) {
            iterations.set_value(i);
            throw;
          }
        },
        asio::bind_cancellation_slot(cancel.slot(), asio::as_tuple(asio::use_awaitable)));
    co_return e != nullptr;
  });
  CHECK(get(outcome));
  CHECK(get(iterations.get_future()) >= 10);
}

TEST_CASE("fiber work is counted under the executor's work name", "[bridge][run_in_fiber]") {
  bridge::runtime rt(test_options("rif"));
  auto name = bridge::async_run_in_fiber(rt.get_executor("legacy.fetch"),
                                         [] { return std::string(bridge::this_fiber::work_name()); },
                                         asio::use_future);
  CHECK(get(name) == "legacy.fetch");
}

TEST_CASE("run_in_fiber rejects an executor that is not a coport loop", "[bridge][run_in_fiber]") {
  asio::io_context plain;
  try {
    (void)bridge::async_run_in_fiber(plain.get_executor(), [] { return 1; }, asio::use_future);
    FAIL("a foreign executor was accepted");
  } catch (const bridge::error& e) {
    CHECK(e.code() == bridge::errc::foreign_executor);
  }
}

TEST_CASE("run_in_fiber with arguments owns copies of them, also written inline in a co_await expression",
          "[bridge][run_in_fiber]") {
  bridge::runtime rt(test_options("rif"));
  auto shared = std::make_shared<int>(40);
  // Longer than the small-string buffer, so that each copy owns heap memory
  // and the ASan tree sees any copy freed twice.
  const std::string name(64, 'n');
  auto r = in_coro(rt, [&]() -> asio::awaitable<std::string> {
    // Inline, as ported code writes it: the state travels as arguments, the
    // lambda captures nothing (g++ 12 frees a capturing one twice here).
    std::string inline_form = co_await bridge::run_in_fiber(
        [](std::string s, std::shared_ptr<int> p, std::string t, int k) {
          boost::this_fiber::yield();  // legacy fiber code between the steps
          return std::to_string(s.size()) + " " + t + " " + std::to_string(*p + k) + " " +
                 std::to_string(p.use_count());
        },
        name, shared, std::string(20, 't'), 2);
    // A capturing lambda is named first, then moved in.
    auto job = [name, shared] { return name.substr(0, 3) + std::to_string(shared.use_count()); };
    std::string named_form = co_await bridge::run_in_fiber(std::move(job));
    co_return inline_form + " | " + named_form;
  });
  // In the fiber the test's pointer and the fiber's own copy; every copy is
  // gone once the operations have completed.
  CHECK(get(r) == "64 tttttttttttttttttttt 42 2 | nnn2");
  CHECK(shared.use_count() == 1);
}
