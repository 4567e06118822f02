// The coroutine side of the bridge, which every tree builds: with fibers,
// and in the fiber-free build (COPORT_WITH_FIBERS=OFF), where it is all the
// bridge has. Nothing here includes a fiber header: this file is the ported
// code that must compile, and behave the same, once fibers are removed.

#include <coport/bridge/channel.hpp>
#include <coport/bridge/diagnostics.hpp>
#include <coport/bridge/event.hpp>
#include <coport/bridge/mutex.hpp>
#include <coport/bridge/report.hpp>
#include <coport/bridge/runtime.hpp>
#include <coport/bridge/spawn.hpp>
#include <coport/migration/point.hpp>

#include <catch2/catch.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <chrono>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace bridge = coport::bridge;
namespace migration = coport::migration;
using boost::system::error_code;
using namespace std::chrono_literals;

// A ceiling for waits on the loop: reached only when the code under test hung.
template <class T>
T get(std::future<T> f) {
  if (f.wait_for(30s) != std::future_status::ready) {
    throw std::runtime_error("timed out waiting for the loop: the code under test hung");
  }
  return f.get();
}

bridge::runtime_options quiet(std::string name) {
  bridge::runtime_options o;
  o.name = std::move(name);
  o.stall_threshold = 0ms;
  return o;
}

}  // namespace

TEST_CASE("coroutines on a runtime run on its thread, under their executor's work tag",
          "[bridge][core]") {
  bridge::runtime rt(quiet("core-run"));
  auto f = asio::co_spawn(rt.get_executor("core.work"), []() -> asio::awaitable<std::string> {
    co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    co_return std::string(bridge::detail::current_tag()->name);
  }, asio::use_future);
  CHECK(get(std::move(f)) == "core.work");
  std::promise<std::thread::id> where;
  rt.post([&] { where.set_value(std::this_thread::get_id()); });
  CHECK(get(where.get_future()) == rt.thread_id());
}

TEST_CASE("a mutex held across co_await excludes the other coroutines, in FIFO order",
          "[bridge][core]") {
  bridge::runtime_pool pool(2, quiet("core-mutex"));
  bridge::mutex m(pool[0].get_executor());
  int inside = 0;
  int most_inside = 0;
  std::vector<int> order;
  constexpr int workers = 8;
  std::atomic<int> done{0};
  std::promise<void> all_done;
  for (int i = 0; i < workers; ++i) {
    bridge::spawn(pool[i % 2].get_executor("core.mutex"), [&, i]() -> asio::awaitable<void> {
      for (int round = 0; round < 50; ++round) {
        auto lk = co_await m.scoped_lock();
        ++inside;
        most_inside = std::max(most_inside, inside);
        if (round == 0) order.push_back(i);
        // Held across a suspension, on a loop that runs the others meanwhile.
        co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
        --inside;
      }
      if (++done == workers) all_done.set_value();
    });
  }
  get(all_done.get_future());
  CHECK(most_inside == 1);
  CHECK(order.size() == workers);
  CHECK(m.try_lock());
  m.unlock();
}

TEST_CASE("a lock attempt cancelled through its slot ends with operation_aborted (scoped_lock "
          "throws it) and leaves the mutex to the next owner", "[bridge][core]") {
  bridge::runtime rt(quiet("core-mutex-cancel"));
  bridge::mutex m(rt.get_executor());
  REQUIRE(m.try_lock());
  asio::cancellation_signal cancel;
  std::promise<error_code> outcome;
  std::promise<void> queued;
  asio::co_spawn(rt.get_executor(), [&]() -> asio::awaitable<void> {
    auto wait = m.async_lock(asio::bind_cancellation_slot(cancel.slot(), asio::as_tuple(asio::use_awaitable)));
    asio::post(rt.get_executor(), [&] { queued.set_value(); });
    auto [ec] = co_await std::move(wait);
    outcome.set_value(ec);
  }, asio::detached);
  get(queued.get_future());
  asio::post(rt.get_executor(), [&] { cancel.emit(asio::cancellation_type::terminal); });
  CHECK(get(outcome.get_future()) == asio::error::operation_aborted);
  // scoped_lock() throws the cancellation.
  std::promise<error_code> thrown;
  std::promise<void> queued_again;
  asio::co_spawn(rt.get_executor(), [&]() -> asio::awaitable<void> {
    asio::post(rt.get_executor(), [&] { queued_again.set_value(); });
    try {
      auto lk = co_await m.scoped_lock();
      thrown.set_value(error_code{});
    } catch (const boost::system::system_error& e) {
      thrown.set_value(e.code());
    }
  }, asio::bind_cancellation_slot(cancel.slot(), asio::detached));
  get(queued_again.get_future());
  asio::post(rt.get_executor(), [&] { cancel.emit(asio::cancellation_type::terminal); });
  CHECK(get(thrown.get_future()) == asio::error::operation_aborted);
  m.unlock();
  auto relock = asio::co_spawn(rt.get_executor(), [&]() -> asio::awaitable<bool> {
    auto lk = co_await m.scoped_lock();
    co_return lk.owns_lock();
  }, asio::use_future);
  CHECK(get(std::move(relock)));
}

TEST_CASE("an event wakes every coroutine waiting on it, on both loops of a pool",
          "[bridge][core]") {
  bridge::runtime_pool pool(2, quiet("core-event"));
  bridge::event ev(pool[0].get_executor());
  std::atomic<int> waiting{0};
  std::promise<void> all_waiting;
  std::vector<std::future<error_code>> woken;
  for (int i = 0; i < 6; ++i) {
    woken.push_back(asio::co_spawn(pool[i % 2].get_executor(), [&]() -> asio::awaitable<error_code> {
      auto wait = ev.async_wait(asio::as_tuple(asio::use_awaitable));
      if (++waiting == 6) all_waiting.set_value();
      auto [ec] = co_await std::move(wait);
      co_return ec;
    }, asio::use_future));
  }
  get(all_waiting.get_future());
  CHECK_FALSE(ev.is_set());
  ev.set();  // from the test's own thread
  for (auto& f : woken) CHECK(get(std::move(f)) == error_code{});
  ev.reset();
  CHECK_FALSE(ev.is_set());
}

TEST_CASE("a channel carries every value in order between coroutines of two loops, and close "
          "drains before it fails", "[bridge][core]") {
  bridge::runtime_pool pool(2, quiet("core-channel"));
  for (std::size_t capacity : {std::size_t{0}, std::size_t{1}, std::size_t{16}}) {
    CAPTURE(capacity);
    bridge::channel<int> ch(pool[0].get_executor(), capacity);
    constexpr int n = 2000;
    bridge::spawn(pool[0].get_executor("core.producer"), [&]() -> asio::awaitable<void> {
      for (int i = 0; i < n; ++i) co_await ch.async_push(i, asio::use_awaitable);
      ch.close();
    });
    auto received = asio::co_spawn(pool[1].get_executor("core.consumer"), [&]() -> asio::awaitable<std::vector<int>> {
      std::vector<int> got;
      for (;;) {
        auto [ec, v] = co_await ch.async_pop(asio::as_tuple(asio::use_awaitable));
        if (ec) {
          CHECK(ec == bridge::make_error_code(bridge::errc::channel_closed));
          break;
        }
        got.push_back(v);
      }
      co_return got;
    }, asio::use_future);
    const std::vector<int> got = get(std::move(received));
    REQUIRE(got.size() == n);
    for (int i = 0; i < n; ++i) REQUIRE(got[i] == i);
  }
}

TEST_CASE("a coroutine's channel push that was accepted is never lost when the channel closes",
          "[bridge][core]") {
  bridge::runtime rt(quiet("core-channel-close"));
  bridge::channel<int> ch(rt.get_executor(), 2);
  auto pushes = asio::co_spawn(rt.get_executor(), [&]() -> asio::awaitable<int> {
    int accepted = 0;
    for (int i = 0; i < 5; ++i) {
      auto [ec] = co_await ch.async_push(i, asio::as_tuple(asio::use_awaitable));
      if (ec) co_return accepted;
      ++accepted;
    }
    co_return accepted;
  }, asio::use_future);
  // Two values fill the buffer, the third push waits; close it then.
  std::promise<int> drained;
  asio::co_spawn(rt.get_executor(), [&]() -> asio::awaitable<void> {
    while (ch.size() < 2) co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    ch.close();
    int n = 0;
    for (;;) {
      auto [ec, v] = co_await ch.async_pop(asio::as_tuple(asio::use_awaitable));
      if (ec) break;
      CHECK(v == n);
      ++n;
    }
    drained.set_value(n);
  }, asio::detached);
  CHECK(get(drained.get_future()) == 2);
  CHECK(get(std::move(pushes)) == 2);  // the waiting push failed: its value was not accepted
}

TEST_CASE("stop cancels spawned coroutines waiting on the primitives and waits for them",
          "[bridge][core]") {
  auto rt = std::make_unique<bridge::runtime>(quiet("core-stop"));
  bridge::mutex m(rt->get_executor());
  bridge::event ev(rt->get_executor());
  bridge::channel<int> ch(rt->get_executor(), 0);
  REQUIRE(m.try_lock());
  std::atomic<int> started{0};
  std::promise<void> all_started;
  std::vector<std::string> ended;
  std::mutex ended_mutex;
  auto note = [&](std::string what) {
    std::lock_guard lk(ended_mutex);
    ended.push_back(std::move(what));
  };
  auto begin = [&] {
    if (++started == 4) all_started.set_value();
  };
  bridge::spawn(rt->get_executor("stop.mutex"), [&]() -> asio::awaitable<void> {
    begin();
    auto [ec] = co_await m.async_lock(asio::as_tuple(asio::use_awaitable));
    note("mutex: " + ec.message());
  });
  bridge::spawn(rt->get_executor("stop.event"), [&]() -> asio::awaitable<void> {
    begin();
    auto [ec] = co_await ev.async_wait(asio::as_tuple(asio::use_awaitable));
    note("event: " + ec.message());
  });
  bridge::spawn(rt->get_executor("stop.channel"), [&]() -> asio::awaitable<void> {
    begin();
    auto [ec, v] = co_await ch.async_pop(asio::as_tuple(asio::use_awaitable));
    note("channel: " + ec.message());
  });
  bridge::spawn(rt->get_executor("stop.timer"), [&]() -> asio::awaitable<void> {
    asio::steady_timer t(co_await asio::this_coro::executor, 1h);
    begin();
    auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    note("timer: " + ec.message());
  });
  get(all_started.get_future());
  rt->stop();
  rt->join();
  CHECK(rt->tracked_work() == 0);
  std::sort(ended.begin(), ended.end());
  const std::string aborted = error_code(asio::error::operation_aborted).message();
  CHECK(ended == std::vector<std::string>{"channel: " + aborted, "event: " + aborted,
                                          "mutex: " + aborted, "timer: " + aborted});
  m.unlock();
}

TEST_CASE("a runtime on the caller's thread runs coroutines over the caller's io_context until "
          "it is stopped", "[bridge][core]") {
  auto io = std::make_shared<asio::io_context>();
  std::vector<std::string> steps;
  {
    bridge::runtime rt(io, quiet("core-here"));
    bridge::channel<int> ch(rt.get_executor(), 0);
    bridge::spawn(rt.get_executor("here.consumer"), [&]() -> asio::awaitable<void> {
      int sum = 0;
      for (int i = 0; i < 3; ++i) sum += co_await ch.async_pop(asio::use_awaitable);
      steps.push_back("sum " + std::to_string(sum));
      io->stop();  // ends run(), as a program on Boost.Asio ends
    });
    bridge::spawn(rt.get_executor("here.producer"), [&]() -> asio::awaitable<void> {
      for (int i = 1; i <= 3; ++i) co_await ch.async_push(i, asio::use_awaitable);
      steps.push_back("pushed");
    });
    // A coroutine still waiting when run() returns is cancelled by the stop.
    bridge::spawn(rt.get_executor("here.sleeper"), [&]() -> asio::awaitable<void> {
      asio::steady_timer t(co_await asio::this_coro::executor, 1h);
      auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
      steps.push_back("sleeper: " + std::string(ec == asio::error::operation_aborted ? "aborted" : "other"));
    });
    rt.run();
    CHECK(rt.tracked_work() == 0);
  }
  std::sort(steps.begin(), steps.end());
  CHECK(steps == std::vector<std::string>{"pushed", "sleeper: aborted", "sum 6"});
  CHECK(io->stopped());
}

TEST_CASE("a coroutine that keeps the loop busy is charged a stall under its own work tag",
          "[bridge][core]") {
  bridge::runtime_options o = quiet("core-stall");
  o.stall_threshold = 20ms;
  std::promise<bridge::violation> seen;
  std::atomic<bool> once{false};
  o.on_violation = [&](const bridge::violation& v) {
    if (!once.exchange(true)) seen.set_value(v);
  };
  bridge::runtime rt(o);
  bridge::spawn(rt.get_executor("core.hog"), [&]() -> asio::awaitable<void> {
    co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    // Busy until the watchdog has seen it, measured by the watchdog itself.
    while (!once.load()) {
    }
  });
  const bridge::violation v = get(seen.get_future());
  CHECK(v.what == bridge::violation::kind::stall);
  CHECK(v.work == "core.hog");
  CHECK(rt.registry().counters("core.hog").stalls >= 1);
}

TEST_CASE("the bridge report of coroutine-only code has no fiber figures and says ready",
          "[bridge][core][report]") {
  bridge::runtime rt(quiet("core-report"));
  bridge::channel<int> ch(rt.get_executor(), 4);
  std::promise<int> got;
  bridge::spawn(rt.get_executor("core.consumer"), [&]() -> asio::awaitable<void> {
    got.set_value(co_await ch.async_pop(asio::use_awaitable));
  });
  bridge::spawn(rt.get_executor("core.producer"), [&]() -> asio::awaitable<void> {
    co_await ch.async_push(7, asio::use_awaitable);
  });
  CHECK(get(got.get_future()) == 7);
  const auto r = bridge::report::of(rt.registry());
  CHECK(r.ready());
  CHECK(r.verdict() == "ready for removing Boost.Fiber");
  for (const auto& row : r.rows) {
    INFO(row.work);
    CHECK(row.fiber_time == 0ns);
    CHECK(row.raw_fibers == 0);
    CHECK(row.awaits + row.runs_in_fiber + row.use_fiber_waits + row.hosted_steps == 0);
  }
  REQUIRE(r.find("core.consumer") != nullptr);
  CHECK(r.find("core.consumer")->calls == 1);
  CHECK(r.to_text().find("verdict: ready for removing Boost.Fiber") != std::string::npos);
  CHECK(boost::json::serialize(r.to_json()).find("\"ready\":true") != std::string::npos);
}

TEST_CASE("a migration point with its ported form only is called from coroutines and reported",
          "[bridge][core][migration]") {
  bridge::runtime rt(quiet("core-point"));
  migration::registry reg("core");
  using point_t = migration::point<int(int)>;
  point_t twice(reg, "twice", point_t::forms{.ported = [](int x) -> asio::awaitable<int> { co_return 2 * x; }}, rt);
  CHECK_THROWS_AS(reg.set_policy("twice", migration::policy::legacy()), migration::invalid_policy);
  auto sum = asio::co_spawn(rt.get_executor(), [&]() -> asio::awaitable<int> {
    int s = 0;
    for (int i = 0; i < 10; ++i) s += co_await twice.async_call(i);
    co_return s;
  }, asio::use_future);
  CHECK(get(std::move(sum)) == 90);
  const migration::report r = reg.make_report();
  REQUIRE(r.methods.size() == 1);
  CHECK(r.methods[0].kinds == "coroutine");
  CHECK(r.methods[0].policy == "ported");
  std::uint64_t coroutine_calls = 0;
  for (const auto& f : r.methods[0].forms) {
    if (f.kind == migration::form_kind::coroutine) coroutine_calls += f.calls;
    if (f.kind == migration::form_kind::fiber) CHECK(f.calls == 0);
  }
  CHECK(coroutine_calls == 10);
  CHECK(r.not_ready.empty());
}
