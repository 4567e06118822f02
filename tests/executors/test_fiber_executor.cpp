#include <coport/bridge/bridge.hpp>
#include <coport/fiber_executor/fiber_executor.hpp>
#include <coport/messaging/rpc/client.hpp>

#include <catch2/catch.hpp>

#include "executor_test_support.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace json = boost::json;
namespace msg = coport::messaging;
namespace bridge = coport::bridge;
using namespace coport::test;
using namespace std::chrono_literals;
using coport::coroutine_mode;

namespace {

bridge::runtime_options quiet(std::string name) {
  bridge::runtime_options o;
  o.name = std::move(name);
  o.stall_threshold = std::chrono::milliseconds(0);
  return o;
}

/// One coport loop or a pool of them, to serve on.
class loops {
 public:
  explicit loops(std::size_t n) {
    if (n == 1) rt_.emplace(quiet("exec"));
    else pool_.emplace(n, quiet("exec"));
  }
  std::size_t size() const noexcept { return rt_ ? 1 : pool_->size(); }
  std::unique_ptr<coport::fiber_executor> serve(const msg::service& s, coport::fiber_executor_options o = {}) {
    if (rt_) return std::make_unique<coport::fiber_executor>(s, *rt_, std::move(o));
    return std::make_unique<coport::fiber_executor>(s, *pool_, std::move(o));
  }
  /// The first loop's executor (for events shared by every loop).
  bridge::loop_executor executor() { return rt_ ? rt_->get_executor() : (*pool_)[0].get_executor(); }
  std::set<std::thread::id> threads() {
    std::set<std::thread::id> ids;
    if (rt_) ids.insert(rt_->thread_id());
    else
      for (std::size_t i = 0; i < pool_->size(); ++i) ids.insert((*pool_)[i].thread_id());
    return ids;
  }

 private:
  std::optional<bridge::runtime> rt_;
  std::optional<bridge::runtime_pool> pool_;
};

/// Thread ids collected from methods.
class thread_set {
 public:
  void here() {
    std::lock_guard lk(m_);
    ids_.insert(std::this_thread::get_id());
  }
  std::set<std::thread::id> get() const {
    std::lock_guard lk(m_);
    return ids_;
  }

 private:
  mutable std::mutex m_;
  std::set<std::thread::id> ids_;
};

/// Which executor the running coroutine is on.
asio::awaitable<std::string> executor_kind() {
  auto ex = co_await asio::this_coro::executor;
  if (ex.target<bridge::hosted_executor>()) co_return "hosted";
  if (ex.target<bridge::loop_executor>()) co_return "loop";
  co_return "other";
}

/// Ported code a legacy fiber waits for.
asio::awaitable<int> ported_triple(int n) {
  asio::steady_timer timer(co_await asio::this_coro::executor, 1ms);
  co_await timer.async_wait(asio::use_awaitable);
  co_return 3 * n;
}

/// Unported legacy code: blocks its fiber.
int legacy_double(int n) {
  bridge::this_fiber::sleep_for(1ms);
  return 2 * n;
}

/// The three ways fiber_executor runs a method, for GENERATE.
enum class kind { fiber, hosted, native };

const char* name_of(kind k) {
  switch (k) {
    case kind::fiber: return "fiber";
    case kind::hosted: return "hosted";
    case kind::native: return "native";
  }
  return "?";
}

}  // namespace

// ------------------------------------------------------------- method kinds

TEST_CASE("fiber_executor serves each method kind", "[executors][fiber_executor]") {
  const std::size_t n_loops = GENERATE(1, 2);
  INFO(n_loops << " loop(s)");
  loops where(n_loops);
  auto t = memory_transport();
  thread_set ran_on, plain_ran_on;
  auto e = std::make_shared<msg::endpoint>("calc");
  // Fiber (legacy) method: may block its fiber.
  e->add("mul", {"a", "b"}, [&](int a, int b) {
    plain_ran_on.here();
    bridge::this_fiber::sleep_for(1ms);
    return a * b;
  });
  // Coroutine method, hosted (the default): may call fiber-blocking code
  // directly, and co_await.
  e->add("add", {"a", "b"}, [&](int a, int b) -> asio::awaitable<std::string> {
    ran_on.here();
    const std::string on = co_await executor_kind();
    bridge::this_fiber::sleep_for(1ms);  // blocks its host fiber only
    asio::steady_timer timer(co_await asio::this_coro::executor, 1ms);
    co_await timer.async_wait(asio::use_awaitable);
    co_return on + " " + std::to_string(a + b);
  });
  // Coroutine method, native: on the loop fiber, where blocking is refused.
  e->add("sub", {"a", "b"}, [&](int a, int b) -> asio::awaitable<std::string> {
    ran_on.here();
    const std::string on = co_await executor_kind();
    std::string blocking = "blocking allowed";
    try {
      bridge::this_fiber::sleep_for(1ms);
    } catch (const bridge::error& x) {
      if (x.code() == bridge::errc::blocking_on_loop) blocking = "blocking refused";
    }
    asio::steady_timer timer(co_await asio::this_coro::executor, 1ms);
    co_await timer.async_wait(asio::use_awaitable);
    co_return on + " " + blocking + " " + std::to_string(a - b);
  });
  // Both forms while being ported: the ported one runs.
  e->add("version", {}, [] { return std::string("legacy"); });
  e->add("version", {}, []() -> asio::awaitable<std::string> { co_return "ported"; });
  coport::fiber_executor_options o;
  o.modes["calc.sub"] = coroutine_mode::native;
  auto ex = where.serve({t, server_target("calc"), dispatch_to({e})}, o);
  CHECK(ex->name() == "fiber_executor");
  CHECK(ex->mode_of("calc", "sub") == coroutine_mode::native);
  CHECK(ex->mode_of("calc", "add") == coroutine_mode::hosted);
  ex->start();
  CHECK_THROWS_AS(ex->start(), std::logic_error);

  msg::rpc_client client(t, msg::target{.topic = "calc"});
  CHECK(wait(client.async_call<std::string>("add", msg::args("a", 2, "b", 3), asio::use_future)) == "hosted 5");
  CHECK(wait(client.async_call<std::string>("sub", msg::args("a", 2, "b", 3), asio::use_future)) ==
        "loop blocking refused -1");
  CHECK(wait(client.async_call<std::string>("version", msg::args(), asio::use_future)) == "ported");
  // Sequential calls alternate between the loops' dispatch fibers.
  for (int i = 0; i < 6; ++i) {
    CHECK(wait(client.async_call<int>("mul", msg::args("a", i, "b", 3), asio::use_future)) == 3 * i);
  }
  wait(ex->async_stop(asio::use_future));

  const auto loop_threads = where.threads();
  for (const auto& id : ran_on.get()) CHECK(loop_threads.count(id) == 1);
  // Every loop of a pool served.
  CHECK(plain_ran_on.get() == loop_threads);

  const auto m = ex->metrics();
  REQUIRE(m.size() == 5);
  const auto* legacy = find_report(m, "calc", "version", msg::method_kind::fiber);
  const auto* ported = find_report(m, "calc", "version", msg::method_kind::coroutine);
  REQUIRE(legacy);
  REQUIRE(ported);
  CHECK(legacy->calls == 0);
  CHECK(ported->calls == 1);
  CHECK(find_report(m, "calc", "mul", msg::method_kind::fiber)->calls == 6);
}

// ------------------------------------------------------------ mixed service

TEST_CASE("fiber_executor serves a mixed service: coroutines call unported fiber code, fibers wait for "
          "coroutines",
          "[executors][fiber_executor]") {
  loops where(1);
  auto t = memory_transport();
  bridge::event ready(where.executor());
  counter waiting;
  auto e = std::make_shared<msg::endpoint>("mixed");
  // Native coroutine calling unported fiber code through run_in_fiber.
  e->add("native_double", {"n"}, [](int n) -> asio::awaitable<int> {
    const int v = co_await bridge::run_in_fiber([n] { return legacy_double(n); });
    co_return v + 1;
  });
  // Hosted coroutine calling fiber-blocking code directly: an event wait
  // and an interruptible sleep block only its host fiber.
  e->add("hosted_wait", {}, [&]() -> asio::awaitable<std::string> {
    waiting.add();
    ready.wait();
    bridge::this_fiber::sleep_for(1ms);
    const int v = legacy_double(5);
    co_return "released " + std::to_string(v);
  });
  // Legacy fiber method that sets the event, while the hosted coroutine
  // still blocks its own fiber.
  e->add("release", {}, [&] {
    ready.set();
    return true;
  });
  // Legacy fiber method waiting for ported coroutine code.
  e->add("legacy_triple", {"n"}, [](int n) { return bridge::await(ported_triple(n)) + 1; });
  // Legacy fiber method calling another method of the service over RPC,
  // blocking its fiber on the reply.
  msg::rpc_client client(t, msg::target{.topic = "mixed"});
  e->add("legacy_rpc", {"n"}, [&client](int n) {
    return client.async_call<int>("native_double", msg::args("n", n), bridge::use_fiber) * 10;
  });
  coport::fiber_executor_options o;
  o.modes["native_double"] = coroutine_mode::native;  // by method name alone
  auto ex = where.serve({t, server_target("mixed"), dispatch_to({e})}, o);
  ex->start();

  CHECK(wait(client.async_call<int>("native_double", msg::args("n", 20), asio::use_future)) == 41);
  CHECK(wait(client.async_call<int>("legacy_triple", msg::args("n", 7), asio::use_future)) == 22);
  CHECK(wait(client.async_call<int>("legacy_rpc", msg::args("n", 1), asio::use_future)) == 30);

  auto blocked = client.async_call<std::string>("hosted_wait", msg::args(), asio::use_future);
  REQUIRE(waiting.wait_for(1));
  // The loop still serves while the hosted coroutine blocks its fiber; the
  // call that releases it comes through the same single loop.
  CHECK(blocked.wait_for(0s) != std::future_status::ready);
  CHECK(wait(client.async_call<int>("native_double", msg::args("n", 1), asio::use_future)) == 3);
  CHECK(wait(client.async_call<bool>("release", msg::args(), asio::use_future)));
  CHECK(wait(std::move(blocked)) == "released 10");
  wait(ex->async_stop(asio::use_future));

  const auto m = ex->metrics();
  CHECK(find_report(m, "mixed", "native_double", msg::method_kind::coroutine)->mode == "native");
  CHECK(find_report(m, "mixed", "native_double", msg::method_kind::coroutine)->calls == 3);
  CHECK(find_report(m, "mixed", "hosted_wait", msg::method_kind::coroutine)->mode == "hosted");
  CHECK(find_report(m, "mixed", "legacy_triple", msg::method_kind::fiber)->mode == "fiber");
  for (const auto& r : m) CHECK(r.errors == 0);
}

// ------------------------------------------------------------- backpressure

TEST_CASE("fiber_executor never runs more than max_in_flight requests in total, on a loop or a pool",
          "[executors][fiber_executor]") {
  struct variant {
    std::size_t loops;
    int limit;
  };
  const variant v = GENERATE(variant{1, 4}, variant{2, 4}, variant{2, 5});
  INFO(v.loops << " loop(s), max_in_flight " << v.limit);
  constexpr int calls = 24;
  constexpr int casts = 6;
  loops where(v.loops);
  auto t = memory_transport();
  bridge::event release(where.executor());
  counter entered, finished_casts;
  concurrency conc;
  std::atomic<std::size_t> max_seen_by_executor{0};
  msg::executor* exec = nullptr;  // set before start()
  auto note = [&] {
    conc.enter();
    const std::size_t now = exec->in_flight();
    std::size_t seen = max_seen_by_executor.load();
    while (now > seen && !max_seen_by_executor.compare_exchange_weak(seen, now)) {
    }
    entered.add();
  };
  auto e = std::make_shared<msg::endpoint>("work");
  e->add("hold_fiber", {"i"}, [&](int i) {
    note();
    release.wait();
    conc.leave();
    return i * 10;
  });
  e->add("hold_hosted", {"i"}, [&](int i) -> asio::awaitable<int> {
    note();
    co_await release.async_wait(asio::use_awaitable);
    conc.leave();
    co_return i * 10;
  });
  e->add("hold_native", {"i"}, [&](int i) -> asio::awaitable<int> {
    note();
    co_await release.async_wait(asio::use_awaitable);
    conc.leave();
    co_return i * 10;
  });
  e->add("hold_cast", {}, [&] {
    note();
    release.wait();
    conc.leave();
    finished_casts.add();
  });
  coport::fiber_executor_options o;
  o.max_in_flight = static_cast<std::size_t>(v.limit);
  o.modes["hold_native"] = coroutine_mode::native;
  auto ex = where.serve({t, server_target("work"), dispatch_to({e})}, o);
  exec = ex.get();
  ex->start();

  msg::rpc_client client(t, msg::target{.topic = "work"});
  const char* methods[] = {"hold_fiber", "hold_hosted", "hold_native"};
  std::vector<std::future<int>> results;
  std::vector<std::future<void>> sent;
  for (int i = 0; i < calls; ++i) {
    results.push_back(client.async_call<int>(methods[i % 3], msg::args("i", i), asio::use_future));
    if (i < casts) sent.push_back(client.async_cast("hold_cast", msg::args(), asio::use_future));
  }
  for (auto& f : sent) wait(std::move(f));

  REQUIRE(entered.wait_for(v.limit));
  CHECK(ex->in_flight() == static_cast<std::size_t>(v.limit));
  CHECK(ready_count(results) == 0);

  release.set();
  for (int i = 0; i < calls; ++i) CHECK(wait(std::move(results[static_cast<std::size_t>(i)])) == i * 10);
  REQUIRE(finished_casts.wait_for(casts));
  wait(ex->async_stop(asio::use_future));

  CHECK(entered.value() == calls + casts);
  CHECK(ex->peak_in_flight() == static_cast<std::size_t>(v.limit));
  CHECK(conc.max_active.load() == v.limit);
  CHECK(max_seen_by_executor.load() <= static_cast<std::size_t>(v.limit));
  CHECK(ex->in_flight() == 0);
}

// ------------------------------------------------------------ graceful stop

TEST_CASE("fiber_executor's graceful stop under load loses no reply and leaves untaken messages to the next "
          "server",
          "[executors][fiber_executor]") {
  const std::size_t n_loops = GENERATE(1, 2);
  INFO(n_loops << " loop(s)");
  constexpr std::size_t limit = 4;
  constexpr std::size_t calls = 12;
  loops where(n_loops);
  auto t = memory_transport();
  bridge::event release(where.executor());
  counter entered;
  auto e = std::make_shared<msg::endpoint>("work");
  e->add("hold_fiber", {"i"}, [&](int i) {
    entered.add();
    release.wait();
    return i + 1000;
  });
  e->add("hold_hosted", {"i"}, [&](int i) -> asio::awaitable<int> {
    entered.add();
    co_await release.async_wait(asio::use_awaitable);
    co_return i + 1000;
  });
  e->add("hold_native", {"i"}, [&](int i) -> asio::awaitable<int> {
    entered.add();
    co_await release.async_wait(asio::use_awaitable);
    co_return i + 1000;
  });
  const msg::service svc{t, server_target("work"), dispatch_to({e})};
  coport::fiber_executor_options o;
  o.max_in_flight = limit;
  o.modes["hold_native"] = coroutine_mode::native;
  auto first = where.serve(svc, o);
  first->start();

  msg::rpc_client client(t, msg::target{.topic = "work"});
  const char* methods[] = {"hold_fiber", "hold_hosted", "hold_native"};
  replies got(calls);
  for (std::size_t i = 0; i < calls; ++i) {
    client.async_call<int>(methods[i % 3], msg::args("i", i), got.handler(i));
  }
  REQUIRE(entered.wait_for(static_cast<int>(limit)));
  REQUIRE(first->in_flight() == limit);

  auto stopped = first->async_stop(asio::use_future);
  CHECK(stopped.wait_for(0s) != std::future_status::ready);
  CHECK(got.count() == 0);

  release.set();
  wait(std::move(stopped));
  // Every request taken replied, with its real result, before the stop
  // completed; nothing more was taken.
  CHECK(got.count() == limit);
  CHECK(got.failures() == 0);
  CHECK(entered.value() == static_cast<int>(limit));
  std::uint64_t served = 0;
  for (const auto& r : first->metrics()) {
    served += r.calls;
    CHECK(r.cancelled == 0);
    CHECK(r.errors == 0);
  }
  CHECK(served == limit);
  first.reset();

  // The others stayed in the transport: a second server on the same
  // transport and topic serves them.
  auto second = where.serve(svc, o);
  second->start();
  REQUIRE(got.wait_for(calls));
  CHECK(got.failures() == 0);
  const auto values = got.values();
  for (std::size_t i = 0; i < calls; ++i) {
    INFO("call " << i);
    CHECK(values[i] == std::optional<int>(static_cast<int>(i) + 1000));
  }
  wait(second->async_stop(asio::use_future));
}

// --------------------------------------------------------------- drain time

namespace {

/// An endpoint "work" with a method "stuck" of kind `k` that ignores any
/// release and waits 10 s, counting how often that wait is aborted.
std::shared_ptr<msg::endpoint> stuck_endpoint(kind k, counter& entered, counter& aborted) {
  auto e = std::make_shared<msg::endpoint>("work");
  if (k == kind::fiber) {
    e->add("stuck", {}, [&entered, &aborted] {
      entered.add();
      try {
        bridge::this_fiber::sleep_for(10s);
      } catch (const boost::system::system_error& x) {
        if (x.code() == asio::error::operation_aborted) aborted.add();
        throw;
      }
      return 1;
    });
  } else {
    e->add("stuck", {}, [&entered, &aborted]() -> asio::awaitable<int> {
      asio::steady_timer timer(co_await asio::this_coro::executor, 10s);
      entered.add();
      try {
        co_await timer.async_wait(asio::use_awaitable);
      } catch (const boost::system::system_error& x) {
        if (x.code() == asio::error::operation_aborted) aborted.add();
        throw;
      }
      co_return 1;
    });
  }
  return e;
}

coport::fiber_executor_options options_for(kind k) {
  coport::fiber_executor_options o;
  if (k == kind::native) o.modes["stuck"] = coroutine_mode::native;
  return o;
}

msg::method_kind method_kind_of(kind k) { return k == kind::fiber ? msg::method_kind::fiber : msg::method_kind::coroutine; }

}  // namespace

TEST_CASE("fiber_executor cancels what is left when the drain time is over, and the caller gets a failure",
          "[executors][fiber_executor]") {
  const kind k = GENERATE(kind::fiber, kind::hosted, kind::native);
  const std::size_t n_loops = GENERATE(1, 2);
  INFO(name_of(k) << ", " << n_loops << " loop(s)");
  loops where(n_loops);
  auto t = memory_transport();
  counter entered, aborted;
  auto o = options_for(k);
  o.drain_time = 50ms;
  auto ex = where.serve({t, server_target("work"), dispatch_to({stuck_endpoint(k, entered, aborted)})}, o);
  ex->start();
  msg::rpc_client client(t, msg::target{.topic = "work"});
  auto result = client.async_call<int>("stuck", msg::args(), asio::use_future);
  REQUIRE(entered.wait_for(1));

  const auto began = std::chrono::steady_clock::now();
  wait(ex->async_stop(asio::use_future), 5s);
  CHECK(std::chrono::steady_clock::now() - began >= 50ms);  // it did drain first
  CHECK(aborted.value() == 1);
  CHECK_THROWS_AS(wait(std::move(result), 5s), msg::remote_error);
  const auto m = ex->metrics();
  REQUIRE(m.size() == 1);
  CHECK(m[0].kind == method_kind_of(k));
  CHECK(m[0].calls == 1);
  CHECK(m[0].cancelled == 1);
  CHECK(m[0].errors == 1);
  CHECK(m[0].in_flight == 0);
}

TEST_CASE("fiber_executor: a second async_stop cancels the requests in flight at once",
          "[executors][fiber_executor]") {
  const std::size_t n_loops = GENERATE(1, 2);
  INFO(n_loops << " loop(s)");
  loops where(n_loops);
  auto t = memory_transport();
  counter entered, aborted;
  // One stuck method of each kind, on three endpoints of one service.
  auto fiber_ep = stuck_endpoint(kind::fiber, entered, aborted);
  auto hosted_ep = std::make_shared<msg::endpoint>("hosted", msg::endpoint_target{std::string("h"), "1.0"});
  auto native_ep = std::make_shared<msg::endpoint>("native", msg::endpoint_target{std::string("n"), "1.0"});
  for (auto* ep : {hosted_ep.get(), native_ep.get()}) {
    ep->add("stuck", {}, [&entered, &aborted]() -> asio::awaitable<int> {
      asio::steady_timer timer(co_await asio::this_coro::executor, 10s);
      entered.add();
      try {
        co_await timer.async_wait(asio::use_awaitable);
      } catch (const boost::system::system_error& x) {
        if (x.code() == asio::error::operation_aborted) aborted.add();
        throw;
      }
      co_return 1;
    });
  }
  coport::fiber_executor_options o;
  o.modes["native.stuck"] = coroutine_mode::native;
  o.drain_time = 30s;  // far beyond the test's ceilings
  auto ex = where.serve({t, server_target("work"), dispatch_to({fiber_ep, hosted_ep, native_ep})}, o);
  ex->start();
  msg::rpc_client client(t, msg::target{.topic = "work"});
  auto r1 = client.async_call<int>("stuck", msg::args(), asio::use_future);
  auto r2 = client.prepare({.ns = "h"}).async_call<int>("stuck", msg::args(), asio::use_future);
  auto r3 = client.prepare({.ns = "n"}).async_call<int>("stuck", msg::args(), asio::use_future);
  REQUIRE(entered.wait_for(3));

  auto first_stop = ex->async_stop(asio::use_future);
  CHECK(first_stop.wait_for(0s) != std::future_status::ready);
  wait(ex->async_stop(asio::use_future), 5s);
  wait(std::move(first_stop), 5s);
  CHECK(aborted.value() == 3);
  CHECK_THROWS_AS(wait(std::move(r1), 5s), msg::remote_error);
  CHECK_THROWS_AS(wait(std::move(r2), 5s), msg::remote_error);
  CHECK_THROWS_AS(wait(std::move(r3), 5s), msg::remote_error);
  const auto m = ex->metrics();
  REQUIRE(m.size() == 3);
  for (const auto& r : m) {
    INFO(r.endpoint << " " << r.mode);
    CHECK(r.cancelled == 1);
  }
  CHECK(find_report(m, "native", "stuck", msg::method_kind::coroutine)->mode == "native");
  CHECK(find_report(m, "hosted", "stuck", msg::method_kind::coroutine)->mode == "hosted");
}

// ----------------------------------------------------------------- deadline

TEST_CASE("fiber_executor cancels a request when the caller's deadline passes", "[executors][fiber_executor]") {
  const kind k = GENERATE(kind::fiber, kind::hosted, kind::native);
  const std::size_t n_loops = GENERATE(1, 2);
  INFO(name_of(k) << ", " << n_loops << " loop(s)");
  loops where(n_loops);
  auto t = memory_transport();
  counter aborted;
  using seen_t = std::pair<std::optional<std::chrono::steady_clock::time_point>, std::chrono::steady_clock::time_point>;
  std::promise<seen_t> seen;
  auto e = std::make_shared<msg::endpoint>("work");
  if (k == kind::fiber) {
    e->add("slow", {}, [&](const msg::request_context& ctx) {
      seen.set_value({ctx.deadline, std::chrono::steady_clock::now()});
      try {
        bridge::this_fiber::sleep_for(10s);
      } catch (const boost::system::system_error& x) {
        if (x.code() == asio::error::operation_aborted) aborted.add();
        throw;
      }
      return 1;
    });
  } else {
    e->add("slow", {}, [&](const msg::request_context& ctx) -> asio::awaitable<int> {
      seen.set_value({ctx.deadline, std::chrono::steady_clock::now()});
      asio::steady_timer timer(co_await asio::this_coro::executor, 10s);
      try {
        co_await timer.async_wait(asio::use_awaitable);
      } catch (const boost::system::system_error& x) {
        if (x.code() == asio::error::operation_aborted) aborted.add();
        throw;
      }
      co_return 1;
    });
  }
  coport::fiber_executor_options o;
  if (k == kind::native) o.modes["work.slow"] = coroutine_mode::native;
  auto ex = where.serve({t, server_target("work"), dispatch_to({e})}, o);
  ex->start();
  auto client = msg::rpc_client(t, msg::target{.topic = "work"}).prepare({.timeout = 100ms});

  const auto sent_at = std::chrono::steady_clock::now();
  auto result = client.async_call<int>("slow", msg::args(), asio::use_future);
  CHECK_THROWS_AS(wait(std::move(result), 5s), msg::timeout_error);
  auto [deadline, entered_at] = wait(seen.get_future());
  REQUIRE(deadline.has_value());
  CHECK(*deadline >= sent_at + 99ms);
  CHECK(*deadline <= entered_at + 101ms);
  // The method's wait was aborted well before its 10 s.
  REQUIRE(aborted.wait_for(1, 5s));

  wait(ex->async_stop(asio::use_future));
  const auto m = ex->metrics();
  REQUIRE(m.size() == 1);
  CHECK(m[0].mode == name_of(k));
  CHECK(m[0].calls == 1);
  CHECK(m[0].cancelled == 1);
  CHECK(m[0].errors == 1);
}

TEST_CASE("fiber_executor: a short deadline is enforced while requests with long ones are in flight, and only "
          "that request is cancelled",
          "[executors][fiber_executor]") {
  const std::size_t n_loops = GENERATE(1, 2);
  INFO(n_loops << " loop(s)");
  loops where(n_loops);
  auto t = memory_transport();
  bridge::event release(where.executor());
  counter held, aborted;
  auto e = std::make_shared<msg::endpoint>("work");
  e->add("hold", {"i"}, [&](int i) -> asio::awaitable<int> {
    held.add();
    co_await release.async_wait(asio::use_awaitable);
    co_return i;
  });
  e->add("slow", {}, [&] {
    try {
      bridge::this_fiber::sleep_for(10s);
    } catch (const boost::system::system_error& x) {
      if (x.code() == asio::error::operation_aborted) aborted.add();
      throw;
    }
    return 1;
  });
  auto ex = where.serve({t, server_target("work"), dispatch_to({e})});
  ex->start();
  msg::rpc_client client(t, msg::target{.topic = "work"});
  // Requests with long deadlines (the default 60 s, and 30 s) come first.
  auto long1 = client.async_call<int>("hold", msg::args("i", 1), asio::use_future);
  auto long2 = client.prepare({.timeout = 30s}).async_call<int>("hold", msg::args("i", 2), asio::use_future);
  REQUIRE(held.wait_for(2));
  // Then two short ones; the later one is due first.
  auto short1 = client.prepare({.timeout = 300ms}).async_call<int>("slow", msg::args(), asio::use_future);
  auto short2 = client.prepare({.timeout = 100ms}).async_call<int>("slow", msg::args(), asio::use_future);
  CHECK_THROWS_AS(wait(std::move(short2), 5s), msg::timeout_error);
  CHECK_THROWS_AS(wait(std::move(short1), 5s), msg::timeout_error);
  REQUIRE(aborted.wait_for(2, 5s));
  // The long ones were left alone (the slow ones may still be finishing).
  CHECK(long1.wait_for(0s) != std::future_status::ready);
  CHECK(long2.wait_for(0s) != std::future_status::ready);
  CHECK(ex->in_flight() >= 2);
  release.set();
  CHECK(wait(std::move(long1)) == 1);
  CHECK(wait(std::move(long2)) == 2);
  wait(ex->async_stop(asio::use_future));
  const auto m = ex->metrics();
  const auto* hold = find_report(m, "work", "hold", msg::method_kind::coroutine);
  const auto* slow = find_report(m, "work", "slow", msg::method_kind::fiber);
  REQUIRE(hold);
  REQUIRE(slow);
  CHECK(hold->cancelled == 0);
  CHECK(hold->errors == 0);
  CHECK(slow->cancelled == 2);
}

// ------------------------------------------------------------------- errors

TEST_CASE("fiber_executor: errors inside methods reach the caller and never take the executor down",
          "[executors][fiber_executor]") {
  const std::size_t n_loops = GENERATE(1, 2);
  INFO(n_loops << " loop(s)");
  loops where(n_loops);
  auto t = memory_transport();
  auto e = std::make_shared<msg::endpoint>("calc");
  e->add("fiber_checked", {"n"}, [](int n) {
    bridge::this_fiber::sleep_for(1ms);
    if (n < 0) throw std::invalid_argument("negative size");
    return n * 2;
  });
  e->add("hosted_checked", {"n"}, [](int n) -> asio::awaitable<int> {
    asio::steady_timer timer(co_await asio::this_coro::executor, 1ms);
    co_await timer.async_wait(asio::use_awaitable);
    if (n < 0) throw msg::endpoint_exception("ValueError", "builtins", "bad value");
    co_return n * 3;
  });
  e->add("native_checked", {"n"}, [](int n) -> asio::awaitable<int> {
    asio::steady_timer timer(co_await asio::this_coro::executor, 1ms);
    co_await timer.async_wait(asio::use_awaitable);
    if (n < 0) throw std::out_of_range("too small");
    co_return n * 4;
  });
  e->add("_secret", {}, [] { return 7; });
  coport::fiber_executor_options o;
  o.modes["native_checked"] = coroutine_mode::native;
  auto ex = where.serve({t, server_target("calc"), dispatch_to({e})}, o);
  ex->start();
  msg::rpc_client client(t, msg::target{.topic = "calc"});

  struct expected {
    const char* method;
    const char* exc_type;
    const char* module;
    const char* message;
    int factor;
  };
  for (const expected& x : {expected{"fiber_checked", "invalid_argument", "std", "negative size", 2},
                            expected{"hosted_checked", "ValueError", "builtins", "bad value", 3},
                            expected{"native_checked", "out_of_range", "std", "too small", 4}}) {
    INFO(x.method);
    try {
      wait(client.async_call<int>(x.method, msg::args("n", -1), asio::use_future));
      FAIL("no error");
    } catch (const msg::remote_error& r) {
      CHECK(r.exc_type() == x.exc_type);
      CHECK(r.module() == x.module);
      CHECK(r.value() == x.message);
    }
    // A failing cast is logged; the executor goes on.
    wait(client.async_cast(x.method, msg::args("n", -2), asio::use_future));
    CHECK(wait(client.async_call<int>(x.method, msg::args("n", 5), asio::use_future)) == 5 * x.factor);
  }
  try {
    wait(client.async_call<int>("no_such", msg::args(), asio::use_future));
    FAIL("no error");
  } catch (const msg::remote_error& r) {
    CHECK(r.exc_type() == "NoSuchMethod");
  }
  // A private method is never dispatched: turned away like an unknown one.
  try {
    wait(client.async_call<int>("_secret", msg::args(), asio::use_future));
    FAIL("no error");
  } catch (const msg::remote_error& r) {
    CHECK(r.exc_type() == "NoSuchMethod");
  }
  // A bad argument is the method's own error, not a rejection.
  CHECK_THROWS_AS(wait(client.async_call<int>("fiber_checked", msg::args("n", "x"), asio::use_future)),
                  msg::remote_error);
  CHECK(wait(client.async_call<int>("fiber_checked", msg::args("n", 1), asio::use_future)) == 2);
  wait(ex->async_stop(asio::use_future));

  CHECK(ex->rejected() == 2);
  const auto m = ex->metrics();
  REQUIRE(m.size() == 4);
  const auto* secret = find_report(m, "calc", "_secret", msg::method_kind::fiber);
  REQUIRE(secret);
  CHECK(secret->calls == 0);
  for (const auto& r : m) {
    if (r.method == "_secret") continue;
    INFO(r.method);
    const bool fiber = r.method == "fiber_checked";
    CHECK(r.calls == (fiber ? 5u : 3u));
    CHECK(r.errors == (fiber ? 3u : 2u));
    CHECK(r.cancelled == 0);
    CHECK(r.in_flight == 0);
  }
}

// ------------------------------------------------------------------ metrics

TEST_CASE("fiber_executor reports per-method metrics: kind, mode, executor, counts, latency",
          "[executors][fiber_executor]") {
  loops where(1);
  auto t = memory_transport();
  bridge::event release(where.executor());
  counter held;
  auto calc = std::make_shared<msg::endpoint>("calc");
  calc->add("mul", {"a", "b"}, [](int a, int b) {
    bridge::this_fiber::sleep_for(1ms);
    return a * b;
  });
  calc->add("add", {"a", "b"}, [](int a, int b) -> asio::awaitable<int> {
    asio::steady_timer timer(co_await asio::this_coro::executor, 1ms);
    co_await timer.async_wait(asio::use_awaitable);
    co_return a + b;
  });
  calc->add("sub", {"a", "b"}, [](int a, int b) -> asio::awaitable<int> { co_return a - b; });
  calc->add("hold", {}, [&]() -> asio::awaitable<bool> {
    held.add();
    co_await release.async_wait(asio::use_awaitable);
    co_return true;
  });
  auto other = std::make_shared<msg::endpoint>("other", msg::endpoint_target{std::string("o"), "1.0"});
  other->add("sub", {"a", "b"}, [](int a, int b) -> asio::awaitable<int> { co_return b - a; });
  coport::fiber_executor_options o;
  o.default_mode = coroutine_mode::native;
  o.modes["add"] = coroutine_mode::hosted;          // by method name, any endpoint
  o.modes["other.sub"] = coroutine_mode::hosted;    // endpoint.method wins over...
  o.modes["sub"] = coroutine_mode::native;          // ...the method name
  auto ex = where.serve({t, server_target("calc"), dispatch_to({calc, other})}, o);
  CHECK(ex->metrics().empty());  // before start()
  CHECK(ex->mode_of("other", "sub") == coroutine_mode::hosted);
  CHECK(ex->mode_of("calc", "sub") == coroutine_mode::native);
  CHECK(ex->mode_of("calc", "hold") == coroutine_mode::native);
  ex->start();
  msg::rpc_client client(t, msg::target{.topic = "calc"});

  // A request in flight shows in its method's in_flight.
  auto held_call = client.async_call<bool>("hold", msg::args(), asio::use_future);
  REQUIRE(held.wait_for(1));
  {
    const auto m = ex->metrics();
    const auto* hold = find_report(m, "calc", "hold", msg::method_kind::coroutine);
    REQUIRE(hold);
    CHECK(hold->in_flight == 1);
    CHECK(hold->calls == 0);
    CHECK(ex->in_flight() == 1);
  }
  release.set();
  CHECK(wait(std::move(held_call)));

  for (int i = 0; i < 4; ++i) CHECK(wait(client.async_call<int>("mul", msg::args("a", i, "b", 2), asio::use_future)) == 2 * i);
  for (int i = 0; i < 3; ++i) CHECK(wait(client.async_call<int>("add", msg::args("a", i, "b", 2), asio::use_future)) == i + 2);
  CHECK(wait(client.async_call<int>("sub", msg::args("a", 5, "b", 2), asio::use_future)) == 3);
  CHECK(wait(client.prepare({.ns = "o"}).async_call<int>("sub", msg::args("a", 5, "b", 2), asio::use_future)) == -3);
  CHECK_THROWS_AS(wait(client.async_call<int>("mul", msg::args("a", "x", "b", 2), asio::use_future)),
                  msg::remote_error);
  wait(ex->async_stop(asio::use_future));

  const auto m = ex->metrics();
  REQUIRE(m.size() == 5);
  for (const auto& r : m) {
    INFO(r.endpoint << "." << r.method);
    CHECK(r.executor == "fiber_executor");
    CHECK(r.in_flight == 0);
    CHECK(r.cancelled == 0);
    CHECK(r.calls > 0);
    CHECK(r.p50 > std::chrono::nanoseconds::zero());
    CHECK(r.p50 <= r.p99);
  }
  const auto* mul = find_report(m, "calc", "mul", msg::method_kind::fiber);
  REQUIRE(mul);
  CHECK(mul->mode == "fiber");
  CHECK(mul->calls == 5);
  CHECK(mul->errors == 1);
  const auto* add = find_report(m, "calc", "add", msg::method_kind::coroutine);
  REQUIRE(add);
  CHECK(add->mode == "hosted");
  CHECK(add->calls == 3);
  CHECK(add->errors == 0);
  CHECK(add->p50 >= 1ms);
  const auto* sub = find_report(m, "calc", "sub", msg::method_kind::coroutine);
  REQUIRE(sub);
  CHECK(sub->mode == "native");
  CHECK(sub->calls == 1);
  const auto* other_sub = find_report(m, "other", "sub", msg::method_kind::coroutine);
  REQUIRE(other_sub);
  CHECK(other_sub->mode == "hosted");
  CHECK(other_sub->calls == 1);
  const auto* hold = find_report(m, "calc", "hold", msg::method_kind::coroutine);
  REQUIRE(hold);
  CHECK(hold->mode == "native");
  CHECK(hold->calls == 1);
}

TEST_CASE("fiber_executor keeps serving callers on another thread: no wake-up of its loop is lost",
          "[executors][fiber_executor]") {
  // Every request reaches the loop from another thread (the callers'),
  // readying fibers remotely all the time. The loop once could lose such a
  // wake-up (the scheduler's Asio poll ran the wake handler while the fiber
  // it announced was not yet in the ready queue) and sleep with work ready
  // until the calls' deadlines woke it; a lost wake-up shows here as a call
  // that times out although the server is idle.
  loops where(1);
  auto t = memory_transport();
  auto e = std::make_shared<msg::endpoint>("echo");
  e->add("echo", {"value"}, [](int v) { return v; });
  e->add("echo", {"value"}, [](int v) -> asio::awaitable<int> { co_return v; });
  auto ex = where.serve({t, server_target("echo"), dispatch_to({e})});
  ex->start();

  asio_loop callers;
  msg::rpc_client client(t, msg::target{.topic = "echo"}, msg::client_options{.timeout = 5s});
  constexpr int per_caller = 1500;
  std::vector<std::future<int>> done;
  for (int c = 0; c < 8; ++c) {
    done.push_back(asio::co_spawn(
        callers.get_executor(),
        [&client]() -> asio::awaitable<int> {
          int answered = 0;
          for (int i = 0; i < per_caller; ++i) {
            auto a = msg::args("value", i);
            const int r = co_await client.async_call<int>("echo", a, asio::use_awaitable);
            if (r == i) ++answered;
          }
          co_return answered;
        },
        asio::use_future));
  }
  int answered = 0;
  for (auto& f : done) answered += wait(std::move(f), 120s);  // a timeout_error would throw here
  CHECK(answered == 8 * per_caller);
  wait(ex->async_stop(asio::use_future));
}

TEST_CASE("fiber_executor under 10 000 calls in flight holds at most max_in_flight and answers every call",
          "[executors][fiber_executor][load]") {
  // The rest wait as messages in the transport: memory is bounded by
  // max_in_flight requests, not by the callers.
  bridge::runtime rt(quiet("load"));
  auto t = memory_transport();
  parking_lot lot(rt.get_executor(), 1000);
  coport::fiber_executor_options o;
  o.max_in_flight = 1000;
  o.default_mode = coport::coroutine_mode::native;
  coport::fiber_executor ex({t, server_target("load"), dispatch_to({lot.endpoint()})}, rt, o);
  ex.start();
  call_all_at_once(t, "load", 10000);
  CHECK(ex.peak_in_flight() == 1000);
  wait(ex.async_stop(asio::use_future));
}

TEST_CASE("fiber_executor: a connection dropped mid-call fails the call or times it out, runs it at most once, "
          "and serving goes on",
          "[executors][fiber_executor][faults]") {
  bridge::runtime rt(quiet("faults"));
  check_connection_dropped_mid_call([&](std::shared_ptr<msg::transport> t, std::shared_ptr<msg::dispatcher> d) {
    coport::fiber_executor_options o;
    o.default_mode = coport::coroutine_mode::native;
    auto ex = std::make_shared<coport::fiber_executor>(msg::service{std::move(t), server_target("counted"), std::move(d)},
                                                       rt, o);
    ex->start();
    return [ex] { wait(ex->async_stop(asio::use_future)); };
  });
}
