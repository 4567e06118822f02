#include <coport/bridge/diagnostics.hpp>

#include <catch2/catch.hpp>

#include "bridge_test_support.hpp"

#include <boost/fiber/all.hpp>

#include <csignal>
#include <sys/wait.h>
#include <unistd.h>

#include <mutex>

using namespace std::chrono_literals;
using namespace coport::test;

namespace {

// Collects violations reported by a runtime (called on loop/watchdog threads).
struct violation_log {
  std::mutex m;
  std::vector<bridge::violation> seen;
  std::function<void(const bridge::violation&)> handler() {
    return [this](const bridge::violation& v) {
      std::lock_guard lk(m);
      seen.push_back(v);
    };
  }
  std::size_t count(bridge::violation::kind k) {
    std::lock_guard lk(m);
    return std::count_if(seen.begin(), seen.end(), [k](auto& v) { return v.what == k; });
  }
};

// The watchdog measures wall time, so time is the subject of these tests:
// a hog runs twice the threshold (plus the watchdog's period) and must be
// reported; short pieces run a hundredth of it each, far below anything a
// loaded 2-core machine's scheduler could stretch them to, and must not be.
constexpr auto threshold = 100ms;
constexpr auto hog = 2 * threshold + threshold / 4;
constexpr auto short_piece = threshold / 100;

bridge::runtime_options stall_options(violation_log& log) {
  auto o = test_options("stalls");
  o.stall_threshold = threshold;
  o.on_violation = log.handler();
  return o;
}

}  // namespace

TEST_CASE("a native coroutine that hogs the loop is reported as one stall under its name",
          "[bridge][diagnostics]") {
  violation_log log;
  bridge::runtime rt(stall_options(log));
  get(asio::co_spawn(rt.get_executor("slow.native"), []() -> asio::awaitable<void> {
    busy_for(hog);
    co_return;
  }, asio::use_future));
  // The watchdog reports once the piece ends at the latest.
  get(in_fiber(rt, [] { return 0; }));
  auto c = rt.registry().counters("slow.native");
  CHECK(c.stalls == 1);
  CHECK(c.longest_stall >= threshold);
  CHECK(log.count(bridge::violation::kind::stall) == 1);
}

TEST_CASE("a fiber that hogs the loop is reported under its work name", "[bridge][diagnostics]") {
  violation_log log;
  bridge::runtime rt(stall_options(log));
  get(bridge::async_run_in_fiber(rt.get_executor("slow.fiber"), [] { busy_for(hog); },
                                 asio::use_future));
  CHECK(rt.registry().counters("slow.fiber").stalls == 1);
}

TEST_CASE("many short pieces of work are not stalls, though together they last longer than the threshold",
          "[bridge][diagnostics]") {
  violation_log log;
  bridge::runtime rt(stall_options(log));
  get(asio::co_spawn(rt.get_executor("short.pieces"), []() -> asio::awaitable<void> {
    for (int i = 0; i < 300; ++i) {  // three thresholds in all
      busy_for(short_piece);
      co_await asio::post(asio::use_awaitable);
    }
  }, asio::use_future));
  CHECK(rt.registry().counters("short.pieces").stalls == 0);
  CHECK(log.count(bridge::violation::kind::stall) == 0);
}

TEST_CASE("implicit yields of a hosted coroutine are counted exactly", "[bridge][diagnostics]") {
  bridge::runtime rt(test_options("yields"));
  SECTION("each fiber-blocking call counts once") {
    get(bridge::co_spawn_hosted(rt.get_executor("hosted.legacy"), []() -> asio::awaitable<void> {
      boost::this_fiber::sleep_for(1ms);        // 1
      boost::fibers::promise<int> p;
      bridge::spawn_fiber(co_await asio::this_coro::executor, [&] { p.set_value(1); });
      (void)p.get_future().get();                // 2
      co_await asio::post(asio::use_awaitable);  // explicit: not counted
      boost::this_fiber::yield();                // 3
    }, asio::use_future));
    CHECK(rt.registry().counters("hosted.legacy").implicit_yields == 3);
  }
  SECTION("co_await alone counts nothing") {
    get(bridge::co_spawn_hosted(rt.get_executor("hosted.ported"), []() -> asio::awaitable<void> {
      for (int i = 0; i < 10; ++i) {
        asio::steady_timer t(co_await asio::this_coro::executor, 1ms);
        co_await t.async_wait(asio::use_awaitable);
      }
    }, asio::use_future));
    CHECK(rt.registry().counters("hosted.ported").implicit_yields == 0);
  }
  SECTION("fibers and native coroutines have no implicit yields") {
    get(bridge::async_run_in_fiber(rt.get_executor("plain.fiber"),
                                   [] { boost::this_fiber::sleep_for(1ms); }, asio::use_future));
    CHECK(rt.registry().counters("plain.fiber").implicit_yields == 0);
  }
}

TEST_CASE("native work that blocks the loop fiber on a fiber primitive is reported as an error",
          "[bridge][diagnostics]") {
  violation_log log;
  auto opts = test_options("loopblock");
  opts.on_violation = log.handler();
  bridge::runtime rt(opts);
  SECTION("a stock Boost.Fiber call is detected by the scheduler") {
    get(asio::co_spawn(rt.get_executor("native.blocker"), []() -> asio::awaitable<void> {
      boost::this_fiber::yield();  // a fiber-world call on the loop fiber
      co_return;
    }, asio::use_future));
    CHECK(rt.registry().counters("native.blocker").loop_blocks == 1);
    REQUIRE(log.count(bridge::violation::kind::loop_block) == 1);
    CHECK(log.seen[0].work == "native.blocker");
  }
  SECTION("a bridge blocking call is refused before it blocks") {
    bridge::event ev(rt.get_executor());
    auto code = asio::co_spawn(rt.get_executor("native.waiter"), [&]() -> asio::awaitable<boost::system::error_code> {
      try {
        ev.wait();
      } catch (const bridge::error& e) {
        co_return e.code();
      }
      co_return boost::system::error_code{};
    }, asio::use_future);
    CHECK(get(code) == bridge::errc::blocking_on_loop);
    CHECK(rt.registry().counters("native.waiter").loop_blocks == 1);
  }
}

TEST_CASE("strict mode turns bridge blocking calls in hosted coroutines into errors",
          "[bridge][diagnostics][strict]") {
  violation_log log;
  auto opts = test_options("strict");
  opts.strict = true;
  opts.on_violation = log.handler();
  bridge::runtime rt(opts);
  bridge::event ev(rt.get_executor(), true);
  auto code = bridge::co_spawn_hosted(rt.get_executor("strict.hosted"), [&]() -> asio::awaitable<boost::system::error_code> {
    try {
      ev.wait();
    } catch (const bridge::error& e) {
      co_return e.code();
    }
    co_return boost::system::error_code{};
  }, asio::use_future);
  CHECK(get(code) == bridge::errc::implicit_yield);
  CHECK(rt.registry().counters("strict.hosted").implicit_yields == 1);
  SECTION("and a stock fiber call is passed to the violation handler") {
    get(bridge::co_spawn_hosted(rt.get_executor("strict.stock"), []() -> asio::awaitable<void> {
      boost::this_fiber::yield();
      co_return;
    }, asio::use_future));
    CHECK(log.count(bridge::violation::kind::implicit_yield) == 1);
  }
}

TEST_CASE("strict mode aborts by default on a violation the scheduler detects",
          "[bridge][diagnostics][strict]") {
  // The default handler logs and aborts: run that in a child process.
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // Catch2's own handlers would report the abort as a failure of this
    // test in the child; the parent judges the child's exit instead.
    std::signal(SIGABRT, SIG_DFL);
    auto opts = test_options("strict-abort");
    opts.strict = true;
    {
      bridge::runtime rt(opts);
      auto f = bridge::co_spawn_hosted(rt.get_executor(), []() -> asio::awaitable<void> {
        boost::this_fiber::yield();
        co_return;
      }, asio::use_future);
      f.wait();
    }
    _exit(0);  // reached only if strict mode did not abort
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGABRT);
}
