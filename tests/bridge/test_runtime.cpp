#include <coport/bridge/runtime.hpp>

#include <catch2/catch.hpp>

#include "bridge_test_support.hpp"
#include "wakeups.hpp"

#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/fiber/all.hpp>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <set>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using namespace coport::test;

namespace {

// Runs `fn` on a thread of its own and waits for it: a runtime on the
// caller's thread takes over that thread's Boost.Fiber scheduler, and the
// thread's exit proves that no fiber was left for the scheduler to wait for.
template <class Fn>
void on_new_thread(Fn fn) {
  std::thread t(std::move(fn));
  t.join();
}

// A logger that keeps its last lines, at every level.
std::pair<std::shared_ptr<spdlog::logger>, std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt>>
capturing_logger(const std::string& name) {
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(32);
  auto logger = std::make_shared<spdlog::logger>(name, sink);
  logger->set_level(spdlog::level::trace);
  return {logger, sink};
}

bool contains(const std::vector<std::string>& lines, std::string_view text) {
  for (const auto& l : lines)
    if (l.find(text) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST_CASE("sleeping fibers, fibers woken from other threads, handlers and timers all progress on one loop",
          "[bridge][runtime]") {
  bridge::runtime rt(test_options("mixed"));

  // A fiber that sleeps in small steps.
  auto sleeper = in_fiber(rt, [] {
    for (int i = 0; i < 5; ++i) boost::this_fiber::sleep_for(1ms);
    return 5;
  });
  // A fiber woken by a plain Boost.Fiber promise fulfilled on another thread
  // once the fiber waits on it.
  boost::fibers::promise<int> from_thread;
  std::promise<void> about_to_wait;
  auto woken = in_fiber(rt, [&about_to_wait, f = from_thread.get_future()]() mutable {
    about_to_wait.set_value();
    return f.get() + 1;
  });
  // An Asio timer handler.
  std::promise<bool> timer_fired;
  asio::steady_timer timer(rt.get_executor(), 2ms);
  timer.async_wait([&](boost::system::error_code ec) { timer_fired.set_value(!ec); });
  // A plain handler posted from this thread.
  std::promise<std::thread::id> posted;
  rt.post([&] { posted.set_value(std::this_thread::get_id()); });

  get(about_to_wait.get_future());
  settle(rt);  // the fiber is parked in f.get(): the wake-up has to cross threads
  std::thread other([&] { from_thread.set_value(41); });
  other.join();

  CHECK(get(sleeper) == 5);
  CHECK(get(woken) == 42);
  CHECK(get(timer_fired.get_future()));
  CHECK(get(posted.get_future()) == rt.thread_id());
}

TEST_CASE("a fiber sleeping on the loop sleeps at least as long as asked", "[bridge][runtime]") {
  bridge::runtime rt(test_options("sleep"));
  auto elapsed = in_fiber(rt, [] {
    auto start = std::chrono::steady_clock::now();
    boost::this_fiber::sleep_for(20ms);
    return std::chrono::steady_clock::now() - start;
  });
  CHECK(get(elapsed) >= 20ms);
}

TEST_CASE("posts from many threads all run, on the loop thread", "[bridge][runtime]") {
  bridge::runtime rt(test_options("posts"));
  constexpr int threads = 4;
  constexpr int per_thread = 10000;
  std::atomic<int> ran{0};
  std::atomic<int> wrong_thread{0};
  std::promise<void> all_done;
  const auto loop_thread = rt.thread_id();
  std::vector<std::thread> posters;
  for (int t = 0; t < threads; ++t) {
    posters.emplace_back([&] {
      for (int i = 0; i < per_thread; ++i) {
        rt.post([&] {
          if (std::this_thread::get_id() != loop_thread) ++wrong_thread;
          if (++ran == threads * per_thread) all_done.set_value();
        });
      }
    });
  }
  for (auto& p : posters) p.join();
  get(all_done.get_future());
  CHECK(ran == threads * per_thread);
  CHECK(wrong_thread == 0);
}

TEST_CASE("an idle runtime makes no periodic wake-ups of its own", "[bridge][runtime]") {
  // Default options but the name: the stall watchdog is on too (it once
  // woke every 6 ms, about 80 times in this window). The runtime's threads
  // are named "idle" and "idle watch". Time is the subject here: the window
  // is a measurement period, not a synchronisation step.
  bridge::runtime_options opts;
  opts.name = "idle";
  REQUIRE(opts.stall_threshold.count() > 0);
  bridge::runtime rt(opts);
  get(in_fiber(rt, [] { return 0; }));  // the loop has started
  // The loop goes idle as the fiber ends, and the watchdog sleeps after its
  // next look at it (within 6 ms): this first window lets both settle.
  std::this_thread::sleep_for(100ms);
  REQUIRE(thread_wakeups("idle watch") > 0);  // the watchdog has run, and is counted
  const auto before = thread_wakeups("idle");
  std::this_thread::sleep_for(500ms);
  const auto woken = thread_wakeups("idle") - before;
  CHECK(woken <= 1);

  // The watchdog slept through the window; work that then hogs the loop
  // wakes it and is still reported as a stall.
  get(asio::co_spawn(rt.get_executor("hog.after.idle"), []() -> asio::awaitable<void> {
    const auto end = std::chrono::steady_clock::now() + 300ms;  // the stall itself
    while (std::chrono::steady_clock::now() < end) {
    }
    co_return;
  }, asio::use_future));
  get(in_fiber(rt, [] { return 0; }));  // the watchdog reports once the piece ends at the latest
  CHECK(rt.registry().counters("hog.after.idle").stalls == 1);
}

TEST_CASE("stop interrupts a fiber blocked forever and the loop thread exits", "[bridge][runtime]") {
  bridge::runtime rt(test_options("stop"));
  bridge::event never(rt.get_executor());
  std::promise<bool> saw_abort;
  std::promise<void> waiting;
  bridge::spawn_fiber(rt.get_executor(), [&] {
    waiting.set_value();
    try {
      never.wait();
      saw_abort.set_value(false);
    } catch (const boost::system::system_error& e) {
      saw_abort.set_value(e.code() == asio::error::operation_aborted);
    }
  });
  get(waiting.get_future());
  CHECK(rt.tracked_work() == 1);
  rt.stop();
  rt.join();
  CHECK(get(saw_abort.get_future()));
  CHECK(rt.tracked_work() == 0);
}

TEST_CASE("stop cancels a tracked native coroutine and waits for it", "[bridge][runtime]") {
  bridge::runtime rt(test_options("stop-coro"));
  std::promise<boost::system::error_code> outcome;
  std::promise<void> started;
  bridge::spawn(rt.get_executor("stop.coro"), [&]() -> asio::awaitable<void> {
    asio::steady_timer t(co_await asio::this_coro::executor, 1h);
    started.set_value();
    auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    outcome.set_value(ec);
  });
  get(started.get_future());
  rt.stop();
  rt.join();
  CHECK(get(outcome.get_future()) == asio::error::operation_aborted);
}

TEST_CASE("work posted after stop is discarded: destroyed with the runtime, never run",
          "[bridge][runtime]") {
  // Flags its own destruction; moved-from copies flag nothing.
  struct destroy_flag {
    std::atomic<bool>* flag;
    explicit destroy_flag(std::atomic<bool>& f) : flag(&f) {}
    destroy_flag(destroy_flag&& o) noexcept : flag(std::exchange(o.flag, nullptr)) {}
    ~destroy_flag() {
      if (flag) *flag = true;
    }
  };
  std::atomic<bool> ran{false};
  std::atomic<bool> destroyed{false};
  {
    bridge::runtime rt(test_options("late"));
    rt.stop();
    rt.join();
    rt.post([&ran, guard = destroy_flag(destroyed)] { ran = true; });
  }
  CHECK(destroyed);
  CHECK_FALSE(ran);
}

TEST_CASE("an exception escaping native work is logged and the loop keeps running",
          "[bridge][runtime]") {
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(16);
  auto opts = test_options("throwing");
  opts.logger = std::make_shared<spdlog::logger>("throwing-test", sink);
  bridge::runtime rt(opts);
  asio::post(rt.get_executor("thrower"), [] { throw std::runtime_error("boom from a handler"); });
  std::promise<int> after;
  rt.post([&] { after.set_value(7); });
  CHECK(get(after.get_future()) == 7);
  auto lines = sink->last_formatted();
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].find("boom from a handler") != std::string::npos);
  CHECK(lines[0].find("thrower") != std::string::npos);
}

TEST_CASE("fibers created with plain Boost.Fiber calls run on the loop", "[bridge][runtime]") {
  bridge::runtime rt(test_options("raw"));
  auto result = in_fiber(rt, [] {
    int a = 0, b = 0;
    boost::fibers::fiber f1([&] { boost::this_fiber::yield(); a = 1; });
    boost::fibers::fiber f2([&] { boost::this_fiber::sleep_for(1ms); b = 2; });
    f1.join();
    f2.join();
    return a + b;
  });
  CHECK(get(result) == 3);
}

TEST_CASE("a pool runs one loop per thread and spreads work round robin", "[bridge][runtime]") {
  auto opts = test_options("pool");
  bridge::runtime_pool pool(3, opts);
  REQUIRE(pool.size() == 3);
  std::set<std::thread::id> threads;
  for (std::size_t i = 0; i < pool.size(); ++i) {
    std::promise<std::thread::id> p;
    pool.next().post([&] { p.set_value(std::this_thread::get_id()); });
    threads.insert(get(p.get_future()));
  }
  CHECK(threads.size() == 3);
  CHECK(pool[0].options().name == "pool-0");
  CHECK(&pool[1].registry() == &pool.registry());  // counters add up across loops
}

TEST_CASE("a loop executor is an Asio executor that any_io_executor accepts", "[bridge][runtime]") {
  bridge::runtime rt(test_options("exec"));
  asio::any_io_executor any = rt.get_executor("named");
  REQUIRE(any.target<bridge::loop_executor>() != nullptr);
  CHECK(any.target<bridge::loop_executor>()->tag()->name == "named");
  CHECK(&asio::query(any, asio::execution::context) == &rt.io_context());
  CHECK(&bridge::runtime::of(rt.get_executor()) == &rt);
  CHECK_FALSE(rt.get_executor().running_in_this_thread());
  auto on_loop = in_coro(rt, [&]() -> asio::awaitable<bool> {
    co_return rt.get_executor().running_in_this_thread();
  });
  CHECK(get(on_loop));
}

TEST_CASE("a runtime on the caller's thread runs raw fibers over the caller's io_context until a fiber stops it",
          "[bridge][runtime][caller]") {
  boost::system::error_code timer_ec;
  bool event_seen = false;
  bool blocked_fiber_aborted = false;
  int in_pooled_fiber = 0;
  bool same_thread = false;
  bool io_left_stopped = false;
  on_new_thread([&] {
    auto io = std::make_shared<asio::io_context>();
    bridge::runtime rt(io, test_options("caller"));
    bridge::event ready(rt.get_executor());
    // Blocked when the io_context is stopped: run() stops it before returning.
    boost::fibers::fiber([&] {
      asio::steady_timer forever(*io, 1h);
      try {
        forever.async_wait(bridge::use_fiber);
      } catch (const boost::system::system_error& e) {
        blocked_fiber_aborted = e.code() == asio::error::operation_aborted;
      }
    }).detach();
    boost::fibers::fiber([&] {
      asio::steady_timer t(*io, 1ms);
      t.async_wait(bridge::use_fiber[timer_ec]);
      ready.set();
    }).detach();
    boost::fibers::fiber([&] {
      ready.wait();
      event_seen = true;
      // The rest of the runtime works as on a loop thread of its own.
      in_pooled_fiber =
          bridge::async_run_in_fiber(rt.get_executor("caller.job"), [] { return 7; }, bridge::use_fiber);
      same_thread = rt.thread_id() == std::this_thread::get_id();
      io->stop();
    }).detach();
    rt.run();
    io_left_stopped = io->stopped();
  });
  CHECK_FALSE(timer_ec);
  CHECK(event_seen);
  CHECK(in_pooled_fiber == 7);
  CHECK(same_thread);
  CHECK(blocked_fiber_aborted);
  CHECK(io_left_stopped);
}

TEST_CASE("stop ends a raw-fiber server cleanly: its I/O, mutex and event waits end as cancelled operations",
          "[bridge][runtime][caller]") {
  auto [logger, sink] = capturing_logger("raw-stop");
  boost::system::error_code read_ec;
  boost::system::error_code lock_error;
  boost::system::error_code wait_error;
  std::promise<void> all_waiting;
  std::thread stopper;
  on_new_thread([&] {
    auto io = std::make_shared<asio::io_context>();
    auto opts = test_options("raw-server");
    opts.logger = logger;
    bridge::runtime rt(io, opts);
    asio::local::stream_protocol::socket a(*io), b(*io);
    asio::local::connect_pair(a, b);
    bridge::mutex held(rt.get_executor());
    REQUIRE(held.try_lock());
    bridge::event never(rt.get_executor());
    int waiting = 0;
    auto about_to_wait = [&] {
      if (++waiting == 3) all_waiting.set_value();
    };
    boost::fibers::fiber([&] {
      char buf[16];
      about_to_wait();
      a.async_read_some(asio::buffer(buf), bridge::use_fiber[read_ec]);
    }).detach();
    boost::fibers::fiber([&] {
      try {
        about_to_wait();
        held.lock();
      } catch (const boost::system::system_error& e) {
        lock_error = e.code();
      }
    }).detach();
    boost::fibers::fiber([&] {
      try {
        about_to_wait();
        never.wait();
      } catch (const boost::system::system_error& e) {
        wait_error = e.code();
      }
    }).detach();
    // As a signal handler would, from outside the loop.
    stopper = std::thread([&rt, f = all_waiting.get_future()]() mutable {
      f.wait();
      rt.stop();
    });
    rt.run();
    held.unlock();
  });
  stopper.join();
  CHECK(read_ec == asio::error::operation_aborted);
  CHECK(lock_error == asio::error::operation_aborted);
  CHECK(wait_error == asio::error::operation_aborted);
  CHECK(sink->last_formatted().empty());  // nothing to report: everything ended
}

TEST_CASE("a raw fiber that a stop cannot reach is named in the stop report and abandoned, and run() returns",
          "[bridge][runtime][caller]") {
  auto [logger, sink] = capturing_logger("raw-abandon");
  // Waited on for ever by the abandoned fiber, so never destroyed.
  static auto* cv = new boost::fibers::condition_variable_any();
  static auto* m = new boost::fibers::mutex();
  on_new_thread([&] {
    auto io = std::make_shared<asio::io_context>();
    auto opts = test_options("raw-abandon");
    opts.logger = logger;
    opts.stop_report_after = 10ms;
    bridge::runtime rt(io, opts);
    boost::fibers::fiber([] {
      std::unique_lock lk(*m);
      cv->wait(lk);  // stock Boost.Fiber: no stop reaches it
    }).detach();
    boost::fibers::fiber([&] { io->stop(); }).detach();
    rt.run();
  });
  auto lines = sink->last_formatted();
  CHECK(contains(lines, "1 raw fiber(s) did not end after the stop"));
  CHECK(contains(lines, "raw fiber (work '<raw fiber>')"));
  CHECK(contains(lines, "abandoned"));
}

TEST_CASE("a runtime on the caller's thread refuses what it cannot be made from or run on",
          "[bridge][runtime][caller]") {
  on_new_thread([] {
    CHECK_THROWS_AS(bridge::runtime(std::shared_ptr<asio::io_context>(), test_options("null")),
                    std::invalid_argument);
  });
  on_new_thread([] {
    auto io = std::make_shared<asio::io_context>();
    bridge::runtime rt(io, test_options("first"));
    CHECK_THROWS_AS(bridge::runtime(std::make_shared<asio::io_context>(), test_options("second")),
                    std::logic_error);
    bool threw_in_fiber = false;
    boost::fibers::fiber([&] {
      try {
        bridge::runtime nested(std::make_shared<asio::io_context>(), test_options("nested"));
      } catch (const std::logic_error&) {
        threw_in_fiber = true;
      }
      io->stop();
    }).detach();
    rt.run();
    CHECK(threw_in_fiber);
    CHECK_THROWS_AS(rt.run(), std::logic_error);  // once
  });
  bridge::runtime own_thread(test_options("own"));
  CHECK_THROWS_AS(own_thread.run(), std::logic_error);
  on_new_thread([] {
    // The io_context is free again once its runtime is gone.
    auto io = std::make_shared<asio::io_context>();
    { bridge::runtime first(io, test_options("again-1")); }
    io->restart();
    bridge::runtime second(io, test_options("again-2"));
    boost::fibers::fiber([&] { io->stop(); }).detach();
    second.run();
  });
}

TEST_CASE("a coroutine cancelled by the stop is logged at debug, other exceptions at error",
          "[bridge][runtime]") {
  auto [logger, sink] = capturing_logger("stop-log");
  auto opts = test_options("stop-log");
  opts.logger = logger;
  bridge::runtime rt(opts);
  std::promise<void> waiting;
  bridge::spawn(rt.get_executor("waits.long"), [&]() -> asio::awaitable<void> {
    asio::steady_timer t(co_await asio::this_coro::executor, 1h);
    waiting.set_value();
    co_await t.async_wait(asio::use_awaitable);  // throws operation_aborted on stop
  });
  std::promise<void> throwing;
  bridge::spawn(rt.get_executor("throws"), [&]() -> asio::awaitable<void> {
    throwing.set_value();
    throw std::runtime_error("boom in a coroutine");
    co_return;
  });
  get(waiting.get_future());
  get(throwing.get_future());
  rt.stop();
  rt.join();
  int errors = 0, debugs = 0;
  for (const auto& msg : sink->last_raw()) {
    const std::string text(msg.payload.data(), msg.payload.size());
    if (msg.level == spdlog::level::err) {
      ++errors;
      CHECK(text.find("boom in a coroutine") != std::string::npos);
    } else if (msg.level == spdlog::level::debug) {
      ++debugs;
      CHECK(text.find("'waits.long' was cancelled by the stop") != std::string::npos);
    }
  }
  CHECK(errors == 1);
  CHECK(debugs == 1);
}
