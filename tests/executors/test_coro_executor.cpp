#include <coport/coro_executor/coro_executor.hpp>
#include <coport/messaging/rpc/client.hpp>

#include <catch2/catch.hpp>

#include "executor_test_support.hpp"

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <list>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

// This file is also built without fibers: nothing from Boost.Fiber or
// coport::bridge may be included here.

namespace asio = boost::asio;
namespace json = boost::json;
namespace msg = coport::messaging;
using namespace coport::test;
using namespace std::chrono_literals;
using polling = coport::coro_executor_options::polling;

namespace {

/// A one-shot gate coroutines wait on (from any thread) until the test opens
/// it; waits after open() complete at once. Opened on destruction so that a
/// failed test does not leave coroutines parked in it.
class gate {
 public:
  gate() = default;
  gate(const gate&) = delete;
  gate& operator=(const gate&) = delete;
  ~gate() { open(); }

  template <class CompletionToken>
  auto async_wait(CompletionToken&& token) {
    return asio::async_initiate<CompletionToken, void(boost::system::error_code)>(
        [this](auto handler) {
          // Erased with its executor already looked up: the waiter resumes
          // there, never inside open().
          posting<decltype(handler)> p{std::move(handler)};
          std::unique_lock lk(m_);
          if (!open_) {
            waiters_.emplace_back(std::move(p));
            return;
          }
          lk.unlock();
          std::move(p)(boost::system::error_code());
        },
        token);
  }

  void open() {
    std::list<asio::any_completion_handler<void(boost::system::error_code)>> waiters;
    {
      std::lock_guard lk(m_);
      open_ = true;
      waiters.swap(waiters_);
    }
    for (auto& h : waiters) std::move(h)(boost::system::error_code());
  }

 private:
  template <class Handler>
  struct posting {
    Handler handler;
    void operator()(boost::system::error_code ec) {
      auto ex = asio::get_associated_executor(handler);
      asio::post(ex, asio::append(std::move(handler), ec));
    }
  };

  std::mutex m_;
  bool open_ = false;
  std::list<asio::any_completion_handler<void(boost::system::error_code)>> waiters_;
};

/// How the executor is set up in the GENERATE'd variants: io_context threads
/// and where messages are taken from.
struct setup {
  int threads;
  polling poll;
};

std::string describe(const setup& s) {
  return std::to_string(s.threads) + " thread(s), " +
         (s.poll == polling::thread ? "polling thread" : "intake on the executor");
}

}  // namespace

// ------------------------------------------------------------- method kinds

TEST_CASE("coro_executor serves a coroutine method", "[executors][coro_executor]") {
  asio_loop loop;
  auto t = memory_transport();
  auto e = std::make_shared<msg::endpoint>("calc");
  e->add("add", {"a", "b"}, [](int a, int b) -> asio::awaitable<int> { co_return a + b; });
  auto d = std::make_shared<msg::dispatcher>();
  d->add(e);
  coport::coro_executor ex({t, msg::target{.topic = "calc", .server = "s1"}, d}, loop.get_executor());
  ex.start();
  msg::rpc_client client(t, msg::target{.topic = "calc"});
  CHECK(wait(client.async_call<int>("add", msg::args("a", 2, "b", 3), asio::use_future)) == 5);
  wait(ex.async_stop(asio::use_future));
  auto m = ex.metrics();
  REQUIRE(m.size() == 1);
  CHECK(m[0].calls == 1);
}

TEST_CASE("coro_executor serves a suspending coroutine method on one or two threads, taking messages on the "
          "executor or from a polling thread",
          "[executors][coro_executor]") {
  const setup s = GENERATE(setup{1, polling::automatic}, setup{2, polling::automatic}, setup{1, polling::thread},
                           setup{2, polling::thread});
  INFO(describe(s));
  asio_loop loop(s.threads);
  auto t = memory_transport();
  std::mutex ids_mutex;
  std::set<std::thread::id> ran_on;
  auto e = std::make_shared<msg::endpoint>("calc");
  e->add("add", {"a", "b"}, [&](int a, int b) -> asio::awaitable<int> {
    // A real suspension: the method resumes from the timer's completion.
    asio::steady_timer timer(co_await asio::this_coro::executor, 1ms);
    co_await timer.async_wait(asio::use_awaitable);
    {
      std::lock_guard lk(ids_mutex);
      ran_on.insert(std::this_thread::get_id());
    }
    co_return a + b;
  });
  coport::coro_executor_options o;
  o.poll = s.poll;
  coport::coro_executor ex({t, server_target("calc"), dispatch_to({e})}, loop.get_executor(), o);
  CHECK_FALSE(ex.polls_from_thread());  // not before start()
  ex.start();
  // memory:// does not block: intake is on the executor unless asked otherwise.
  CHECK(ex.polls_from_thread() == (s.poll == polling::thread));
  CHECK(ex.name() == "coro_executor");

  msg::rpc_client client(t, msg::target{.topic = "calc"});
  std::vector<std::future<int>> sums;
  for (int i = 0; i < 16; ++i) sums.push_back(client.async_call<int>("add", msg::args("a", i, "b", 100), asio::use_future));
  for (int i = 0; i < 16; ++i) CHECK(wait(std::move(sums[static_cast<std::size_t>(i)])) == i + 100);
  wait(ex.async_stop(asio::use_future));

  {
    // The methods ran on the io_context's threads, never on the test thread
    // or the polling thread.
    std::lock_guard lk(ids_mutex);
    CHECK_FALSE(ran_on.empty());
    CHECK(ran_on.size() <= static_cast<std::size_t>(s.threads));
    CHECK(ran_on.count(std::this_thread::get_id()) == 0);
  }
  const auto m = ex.metrics();
  REQUIRE(m.size() == 1);
  CHECK(m[0].calls == 16);
  CHECK(m[0].errors == 0);
  CHECK(m[0].in_flight == 0);
  CHECK(ex.in_flight() == 0);
}

// ------------------------------------------------------------------ refusal

TEST_CASE("coro_executor refuses a service with fiber-only methods, names each of them and consumes nothing; "
          "with a thread pool the same service starts",
          "[executors][coro_executor]") {
  asio_loop loop;
  auto t = memory_transport();
  auto orders = std::make_shared<msg::endpoint>("orders");
  orders->add("create", {"n"}, [](int n) { return n + 1; });                               // fiber only
  orders->add("cancel", {}, [] { return std::string("cancelled"); });                      // fiber only
  orders->add("list", {}, [] { return std::string("legacy list"); });                      // both forms
  orders->add("list", {}, []() -> asio::awaitable<std::string> { co_return "ported list"; });
  orders->add("count", {}, []() -> asio::awaitable<int> { co_return 3; });                 // coroutine only
  orders->add("_audit", {}, [] { return 0; });                                             // private
  auto billing = std::make_shared<msg::endpoint>("billing", msg::endpoint_target{std::nullopt, "1.0"});
  billing->add("charge", {"amount"}, [](double amount) { return amount * 2; });            // fiber only
  billing->add("refund", {}, []() -> asio::awaitable<bool> { co_return true; });           // coroutine only
  auto d = dispatch_to({orders, billing});
  const msg::service svc{t, server_target("shop"), d};

  // A call is already waiting in the transport before anyone serves.
  msg::rpc_client client(t, msg::target{.topic = "shop"});
  auto early = client.async_call<int>("create", msg::args("n", 41), asio::use_future);

  {
    coport::coro_executor refused(svc, loop.get_executor());
    std::string what;
    std::vector<std::string> listed;
    try {
      refused.start();
      FAIL("start() accepted fiber-only methods");
    } catch (const coport::fiber_methods_remain& e) {
      what = e.what();
      listed = e.methods();
    }
    INFO(what);
    CHECK(listed == std::vector<std::string>{"orders.cancel", "orders.create", "billing.charge"});
    for (const char* name : {"orders.cancel", "orders.create", "billing.charge"}) {
      CHECK(what.find(name) != std::string::npos);
    }
    for (const char* name : {"orders.list", "_audit", "orders.count", "billing.refund"}) {
      CHECK(what.find(name) == std::string::npos);
    }
    // Nothing was taken: no request in flight, none turned away, no metrics.
    CHECK(refused.in_flight() == 0);
    CHECK(refused.peak_in_flight() == 0);
    CHECK(refused.rejected() == 0);
    CHECK(refused.metrics().empty());
    CHECK(early.wait_for(0s) != std::future_status::ready);
    // Stopping an executor that never started completes at once.
    wait(refused.async_stop(asio::use_future));
  }

  coport::coro_executor_options o;
  o.fiber_method_threads = 2;
  coport::coro_executor ex(svc, loop.get_executor(), o);
  REQUIRE_NOTHROW(ex.start());
  // The call sent before the refused start is still there and is answered.
  CHECK(wait(std::move(early)) == 42);
  CHECK(wait(client.async_call<double>("charge", msg::args("amount", 1.25), asio::use_future)) == 2.5);
  CHECK(wait(client.async_call<std::string>("cancel", msg::args(), asio::use_future)) == "cancelled");
  // The method with both forms runs its ported form.
  CHECK(wait(client.async_call<std::string>("list", msg::args(), asio::use_future)) == "ported list");
  CHECK(wait(client.async_call<int>("count", msg::args(), asio::use_future)) == 3);
  CHECK(wait(client.async_call<bool>("refund", msg::args(), asio::use_future)));
  wait(ex.async_stop(asio::use_future));

  const auto m = ex.metrics();
  const auto* create = find_report(m, "orders", "create", msg::method_kind::fiber);
  REQUIRE(create);
  CHECK(create->mode == "thread pool");
  CHECK(create->calls == 1);
  const auto* list_ported = find_report(m, "orders", "list", msg::method_kind::coroutine);
  const auto* list_legacy = find_report(m, "orders", "list", msg::method_kind::fiber);
  REQUIRE(list_ported);
  REQUIRE(list_legacy);
  CHECK(list_ported->calls == 1);
  CHECK(list_legacy->calls == 0);
  CHECK(list_ported->mode == "native");
}

TEST_CASE("coro_executor runs plain methods on its thread pool, off the io_context's threads",
          "[executors][coro_executor]") {
  asio_loop loop;
  auto t = memory_transport();
  std::promise<std::thread::id> loop_thread;
  asio::post(loop.get_executor(), [&] { loop_thread.set_value(std::this_thread::get_id()); });
  const auto loop_id = wait(loop_thread.get_future());
  auto e = std::make_shared<msg::endpoint>("legacy");
  e->add("where", {}, [] {
    std::ostringstream s;
    s << std::this_thread::get_id();
    return s.str();
  });
  coport::coro_executor_options o;
  o.fiber_method_threads = 1;
  coport::coro_executor ex({t, server_target("legacy"), dispatch_to({e})}, loop.get_executor(), o);
  ex.start();
  msg::rpc_client client(t, msg::target{.topic = "legacy"});
  const auto where = wait(client.async_call<std::string>("where", msg::args(), asio::use_future));
  std::ostringstream loop_s, test_s;
  loop_s << loop_id;
  test_s << std::this_thread::get_id();
  CHECK(where != loop_s.str());
  CHECK(where != test_s.str());
  wait(ex.async_stop(asio::use_future));
}

// ------------------------------------------------------------- backpressure

TEST_CASE("coro_executor never runs more than max_in_flight requests and takes the rest as slots free",
          "[executors][coro_executor]") {
  const setup s = GENERATE(setup{1, polling::automatic}, setup{2, polling::automatic}, setup{2, polling::thread});
  INFO(describe(s));
  constexpr int limit = 4;
  constexpr int calls = 20;
  constexpr int casts = 6;
  asio_loop loop(s.threads);
  auto t = memory_transport();
  counter entered, finished_casts;
  concurrency conc;
  std::atomic<std::size_t> max_seen_by_executor{0};
  msg::executor* exec = nullptr;  // set before start()
  gate release;
  auto e = std::make_shared<msg::endpoint>("work");
  e->add("hold", {"i"}, [&](int i) -> asio::awaitable<int> {
    conc.enter();
    const std::size_t now = exec->in_flight();
    std::size_t seen = max_seen_by_executor.load();
    while (now > seen && !max_seen_by_executor.compare_exchange_weak(seen, now)) {
    }
    entered.add();
    co_await release.async_wait(asio::use_awaitable);
    conc.leave();
    co_return i * 10;
  });
  e->add("hold_cast", {}, [&]() -> asio::awaitable<void> {
    conc.enter();
    entered.add();
    co_await release.async_wait(asio::use_awaitable);
    conc.leave();
    finished_casts.add();
  });
  coport::coro_executor_options o;
  o.max_in_flight = limit;
  o.poll = s.poll;
  coport::coro_executor ex({t, server_target("work"), dispatch_to({e})}, loop.get_executor(), o);
  exec = &ex;
  ex.start();

  msg::rpc_client client(t, msg::target{.topic = "work"});
  std::vector<std::future<int>> results;
  std::vector<std::future<void>> sent;
  for (int i = 0; i < calls; ++i) {
    results.push_back(client.async_call<int>("hold", msg::args("i", i), asio::use_future));
    if (i < casts) sent.push_back(client.async_cast("hold_cast", msg::args(), asio::use_future));
  }
  for (auto& f : sent) wait(std::move(f));  // casts are in the transport

  REQUIRE(entered.wait_for(limit));
  CHECK(ex.in_flight() == limit);
  CHECK(ready_count(results) == 0);

  release.open();
  for (int i = 0; i < calls; ++i) CHECK(wait(std::move(results[static_cast<std::size_t>(i)])) == i * 10);
  REQUIRE(finished_casts.wait_for(casts));
  wait(ex.async_stop(asio::use_future));

  CHECK(entered.value() == calls + casts);
  CHECK(ex.peak_in_flight() == limit);
  CHECK(conc.max_active.load() == limit);
  CHECK(max_seen_by_executor.load() <= limit);
  CHECK(ex.in_flight() == 0);
}

// ------------------------------------------------------------ graceful stop

TEST_CASE("coro_executor's graceful stop under load loses no reply and leaves untaken messages to the next "
          "server",
          "[executors][coro_executor]") {
  const setup s = GENERATE(setup{1, polling::automatic}, setup{2, polling::automatic}, setup{1, polling::thread});
  INFO(describe(s));
  constexpr std::size_t limit = 4;
  constexpr std::size_t calls = 10;
  asio_loop loop(s.threads);
  auto t = memory_transport();
  counter entered;
  gate release;
  auto e = std::make_shared<msg::endpoint>("work");
  e->add("hold", {"i"}, [&](int i) -> asio::awaitable<int> {
    entered.add();
    co_await release.async_wait(asio::use_awaitable);
    co_return i + 1000;
  });
  const msg::service svc{t, server_target("work"), dispatch_to({e})};
  coport::coro_executor_options o;
  o.max_in_flight = limit;
  o.poll = s.poll;
  auto first = std::make_unique<coport::coro_executor>(svc, loop.get_executor(), o);
  first->start();

  msg::rpc_client client(t, msg::target{.topic = "work"});
  replies got(calls);
  for (std::size_t i = 0; i < calls; ++i) client.async_call<int>("hold", msg::args("i", i), got.handler(i));
  REQUIRE(entered.wait_for(static_cast<int>(limit)));
  REQUIRE(first->in_flight() == limit);

  auto stopped = first->async_stop(asio::use_future);
  // The requests in flight hold the stop.
  CHECK(stopped.wait_for(0s) != std::future_status::ready);
  CHECK(got.count() == 0);

  release.open();
  wait(std::move(stopped));
  // Every request that was taken replied, with its real result, before the
  // stop completed; nothing more was taken.
  CHECK(got.count() == limit);
  CHECK(got.failures() == 0);
  CHECK(entered.value() == static_cast<int>(limit));
  auto m = first->metrics();
  REQUIRE(m.size() == 1);
  CHECK(m[0].calls == limit);
  CHECK(m[0].cancelled == 0);
  CHECK(m[0].errors == 0);
  first.reset();

  // The others stayed in the transport: a second server on the same
  // transport and topic serves them.
  coport::coro_executor second(svc, loop.get_executor(), o);
  second.start();
  REQUIRE(got.wait_for(calls));
  CHECK(got.failures() == 0);
  const auto values = got.values();
  for (std::size_t i = 0; i < calls; ++i) {
    INFO("call " << i);
    CHECK(values[i] == std::optional<int>(static_cast<int>(i) + 1000));
  }
  wait(second.async_stop(asio::use_future));
  CHECK(second.metrics()[0].calls == calls - limit);
}

// --------------------------------------------------------------- drain time

TEST_CASE("coro_executor cancels what is left when the drain time is over, and the caller gets a failure",
          "[executors][coro_executor]") {
  const int threads = GENERATE(1, 2);
  INFO(threads << " thread(s)");
  asio_loop loop(threads);
  auto t = memory_transport();
  counter entered, aborted;
  auto e = std::make_shared<msg::endpoint>("work");
  e->add("stuck", {}, [&]() -> asio::awaitable<int> {
    asio::steady_timer timer(co_await asio::this_coro::executor, 10s);  // ignores any release
    entered.add();
    try {
      co_await timer.async_wait(asio::use_awaitable);
    } catch (const boost::system::system_error& x) {
      if (x.code() == asio::error::operation_aborted) aborted.add();
      throw;
    }
    co_return 1;
  });
  coport::coro_executor_options o;
  o.drain_time = 50ms;
  coport::coro_executor ex({t, server_target("work"), dispatch_to({e})}, loop.get_executor(), o);
  ex.start();
  msg::rpc_client client(t, msg::target{.topic = "work"});
  auto result = client.async_call<int>("stuck", msg::args(), asio::use_future);
  REQUIRE(entered.wait_for(1));

  const auto began = std::chrono::steady_clock::now();
  wait(ex.async_stop(asio::use_future), 5s);
  CHECK(std::chrono::steady_clock::now() - began >= 50ms);  // it did drain first
  CHECK(aborted.value() == 1);
  CHECK_THROWS_AS(wait(std::move(result), 5s), msg::remote_error);
  const auto m = ex.metrics();
  REQUIRE(m.size() == 1);
  CHECK(m[0].calls == 1);
  CHECK(m[0].cancelled == 1);
  CHECK(m[0].errors == 1);
  CHECK(m[0].in_flight == 0);
}

TEST_CASE("coro_executor: a second async_stop cancels the requests in flight at once", "[executors][coro_executor]") {
  asio_loop loop(2);
  auto t = memory_transport();
  counter entered, aborted;
  auto e = std::make_shared<msg::endpoint>("work");
  e->add("stuck", {}, [&]() -> asio::awaitable<int> {
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
  coport::coro_executor_options o;
  o.drain_time = 30s;  // far beyond the test's ceilings
  coport::coro_executor ex({t, server_target("work"), dispatch_to({e})}, loop.get_executor(), o);
  ex.start();
  msg::rpc_client client(t, msg::target{.topic = "work"});
  auto r1 = client.async_call<int>("stuck", msg::args(), asio::use_future);
  auto r2 = client.async_call<int>("stuck", msg::args(), asio::use_future);
  REQUIRE(entered.wait_for(2));

  auto first_stop = ex.async_stop(asio::use_future);
  CHECK(first_stop.wait_for(0s) != std::future_status::ready);
  auto second_stop = ex.async_stop(asio::use_future);
  wait(std::move(second_stop), 5s);
  wait(std::move(first_stop), 5s);
  CHECK(aborted.value() == 2);
  CHECK_THROWS_AS(wait(std::move(r1), 5s), msg::remote_error);
  CHECK_THROWS_AS(wait(std::move(r2), 5s), msg::remote_error);
  const auto m = ex.metrics();
  REQUIRE(m.size() == 1);
  CHECK(m[0].cancelled == 2);
}

// ----------------------------------------------------------------- deadline

TEST_CASE("coro_executor cancels a request when the caller's deadline passes", "[executors][coro_executor]") {
  const setup s = GENERATE(setup{1, polling::automatic}, setup{2, polling::automatic}, setup{1, polling::thread});
  INFO(describe(s));
  asio_loop loop(s.threads);
  auto t = memory_transport();
  counter aborted;
  std::promise<std::pair<std::optional<std::chrono::steady_clock::time_point>, std::chrono::steady_clock::time_point>>
      seen;
  auto e = std::make_shared<msg::endpoint>("work");
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
  coport::coro_executor_options o;
  o.poll = s.poll;
  coport::coro_executor ex({t, server_target("work"), dispatch_to({e})}, loop.get_executor(), o);
  ex.start();
  auto client = msg::rpc_client(t, msg::target{.topic = "work"}).prepare({.timeout = 100ms});

  const auto sent_at = std::chrono::steady_clock::now();
  auto result = client.async_call<int>("slow", msg::args(), asio::use_future);
  CHECK_THROWS_AS(wait(std::move(result), 5s), msg::timeout_error);
  // The method's deadline is the caller's: sent time + timeout, at most
  // the method's start + timeout.
  auto [deadline, entered_at] = wait(seen.get_future());
  REQUIRE(deadline.has_value());
  CHECK(*deadline >= sent_at + 99ms);
  CHECK(*deadline <= entered_at + 101ms);
  // The method's wait was aborted well before its 10 s.
  REQUIRE(aborted.wait_for(1, 5s));

  wait(ex.async_stop(asio::use_future));
  const auto m = ex.metrics();
  REQUIRE(m.size() == 1);
  CHECK(m[0].calls == 1);
  CHECK(m[0].cancelled == 1);
  CHECK(m[0].errors == 1);
}

TEST_CASE("coro_executor: a short deadline is enforced while requests with long ones are in flight, and only "
          "that request is cancelled",
          "[executors][coro_executor]") {
  asio_loop loop(2);
  auto t = memory_transport();
  counter held, aborted;
  gate release;
  auto e = std::make_shared<msg::endpoint>("work");
  e->add("hold", {"i"}, [&](int i) -> asio::awaitable<int> {
    held.add();
    co_await release.async_wait(asio::use_awaitable);
    co_return i;
  });
  e->add("slow", {}, [&]() -> asio::awaitable<int> {
    asio::steady_timer timer(co_await asio::this_coro::executor, 10s);
    try {
      co_await timer.async_wait(asio::use_awaitable);
    } catch (const boost::system::system_error& x) {
      if (x.code() == asio::error::operation_aborted) aborted.add();
      throw;
    }
    co_return 1;
  });
  coport::coro_executor ex({t, server_target("work"), dispatch_to({e})}, loop.get_executor());
  ex.start();
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
  CHECK(ex.in_flight() >= 2);
  release.open();
  CHECK(wait(std::move(long1)) == 1);
  CHECK(wait(std::move(long2)) == 2);
  wait(ex.async_stop(asio::use_future));
  const auto m = ex.metrics();
  const auto* hold = find_report(m, "work", "hold", msg::method_kind::coroutine);
  const auto* slow = find_report(m, "work", "slow", msg::method_kind::coroutine);
  REQUIRE(hold);
  REQUIRE(slow);
  CHECK(hold->cancelled == 0);
  CHECK(hold->errors == 0);
  CHECK(slow->cancelled == 2);
}

// ------------------------------------------------------------------- errors

TEST_CASE("coro_executor: errors inside methods reach the caller and never take the executor down",
          "[executors][coro_executor]") {
  asio_loop loop;
  auto t = memory_transport();
  auto e = std::make_shared<msg::endpoint>("calc");
  e->add("checked", {"n"}, [](int n) -> asio::awaitable<int> {
    asio::steady_timer timer(co_await asio::this_coro::executor, 1ms);
    co_await timer.async_wait(asio::use_awaitable);  // throws after a suspension
    if (n < 0) throw std::invalid_argument("negative size");
    co_return n * 2;
  });
  e->add("boom", {}, []() -> asio::awaitable<int> {
    throw msg::endpoint_exception("ValueError", "builtins", "bad value");
    co_return 0;
  });
  coport::coro_executor ex({t, server_target("calc"), dispatch_to({e})}, loop.get_executor());
  ex.start();
  msg::rpc_client client(t, msg::target{.topic = "calc"});

  try {
    wait(client.async_call<int>("checked", msg::args("n", -1), asio::use_future));
    FAIL("no error");
  } catch (const msg::remote_error& x) {
    CHECK(x.exc_type() == "invalid_argument");
    CHECK(x.module() == "std");
    CHECK(x.value() == "negative size");
  }
  CHECK(wait(client.async_call<int>("checked", msg::args("n", 4), asio::use_future)) == 8);
  try {
    wait(client.async_call<int>("boom", msg::args(), asio::use_future));
    FAIL("no error");
  } catch (const msg::remote_error& x) {
    CHECK(x.exc_type() == "ValueError");
    CHECK(x.module() == "builtins");
    CHECK(x.value() == "bad value");
  }
  // A cast that throws is logged; the next call still works.
  wait(client.async_cast("boom", msg::args(), asio::use_future));
  try {
    wait(client.async_call<int>("no_such", msg::args(), asio::use_future));
    FAIL("no error");
  } catch (const msg::remote_error& x) {
    CHECK(x.exc_type() == "NoSuchMethod");
  }
  CHECK(wait(client.async_call<int>("checked", msg::args("n", 5), asio::use_future)) == 10);
  wait(ex.async_stop(asio::use_future));

  CHECK(ex.rejected() == 1);
  const auto m = ex.metrics();
  const auto* checked = find_report(m, "calc", "checked", msg::method_kind::coroutine);
  const auto* boom = find_report(m, "calc", "boom", msg::method_kind::coroutine);
  REQUIRE(checked);
  REQUIRE(boom);
  CHECK(checked->calls == 3);
  CHECK(checked->errors == 1);
  CHECK(boom->calls == 2);
  CHECK(boom->errors == 2);
  CHECK(checked->cancelled == 0);
}

// ------------------------------------------------------------------ metrics

TEST_CASE("coro_executor reports per-method metrics", "[executors][coro_executor]") {
  asio_loop loop(2);
  auto t = memory_transport();
  auto calc = std::make_shared<msg::endpoint>("calc");
  calc->add("add", {"a", "b"}, [](int a, int b) -> asio::awaitable<int> {
    asio::steady_timer timer(co_await asio::this_coro::executor, 1ms);
    co_await timer.async_wait(asio::use_awaitable);
    co_return a + b;
  });
  calc->add("fail", {}, []() -> asio::awaitable<int> {
    throw std::runtime_error("no");
    co_return 0;
  });
  calc->add("square", {"x"}, [](int x) { return x * x; });
  auto legacy = std::make_shared<msg::endpoint>("legacy");
  legacy->add("ping", {}, [] { return std::string("pong"); });
  coport::coro_executor_options o;
  o.fiber_method_threads = 1;
  coport::coro_executor ex({t, server_target("calc"), dispatch_to({calc, legacy})}, loop.get_executor(), o);
  CHECK(ex.metrics().empty());  // before start()
  ex.start();
  msg::rpc_client client(t, msg::target{.topic = "calc"});
  for (int i = 0; i < 5; ++i) CHECK(wait(client.async_call<int>("add", msg::args("a", i, "b", 1), asio::use_future)) == i + 1);
  CHECK_THROWS_AS(wait(client.async_call<int>("fail", msg::args(), asio::use_future)), msg::remote_error);
  CHECK(wait(client.async_call<int>("square", msg::args("x", 3), asio::use_future)) == 9);
  CHECK(wait(client.async_call<int>("square", msg::args("x", 4), asio::use_future)) == 16);
  CHECK(wait(client.async_call<std::string>("ping", msg::args(), asio::use_future)) == "pong");
  wait(ex.async_stop(asio::use_future));

  const auto m = ex.metrics();
  REQUIRE(m.size() == 4);
  for (const auto& r : m) {
    INFO(r.endpoint << "." << r.method);
    CHECK(r.executor == "coro_executor");
    CHECK(r.in_flight == 0);
    CHECK(r.cancelled == 0);
    CHECK(r.p50 > std::chrono::nanoseconds::zero());
    CHECK(r.p50 <= r.p99);
  }
  const auto* add = find_report(m, "calc", "add", msg::method_kind::coroutine);
  REQUIRE(add);
  CHECK(add->mode == "native");
  CHECK(add->calls == 5);
  CHECK(add->errors == 0);
  CHECK(add->p50 >= 1ms);  // each call waited for its 1 ms timer
  const auto* fail = find_report(m, "calc", "fail", msg::method_kind::coroutine);
  REQUIRE(fail);
  CHECK(fail->calls == 1);
  CHECK(fail->errors == 1);
  const auto* square = find_report(m, "calc", "square", msg::method_kind::fiber);
  REQUIRE(square);
  CHECK(square->mode == "thread pool");
  CHECK(square->calls == 2);
  const auto* ping = find_report(m, "legacy", "ping", msg::method_kind::fiber);
  REQUIRE(ping);
  CHECK(ping->mode == "thread pool");
  CHECK(ping->calls == 1);
}

TEST_CASE("coro_executor under 10 000 calls in flight holds at most max_in_flight and answers every call",
          "[executors][coro_executor][load]") {
  // The rest wait as messages in the transport: memory is bounded by
  // max_in_flight requests, not by the callers.
  asio_loop loop;
  auto t = memory_transport();
  parking_lot lot(loop.get_executor(), 1000);
  coport::coro_executor_options o;
  o.max_in_flight = 1000;
  o.single_thread = true;
  coport::coro_executor ex({t, server_target("load"), dispatch_to({lot.endpoint()})}, loop.get_executor(), o);
  ex.start();
  call_all_at_once(t, "load", 10000);
  CHECK(ex.peak_in_flight() == 1000);
  wait(ex.async_stop(asio::use_future));
}

TEST_CASE("coro_executor: a connection dropped mid-call fails the call or times it out, runs it at most once, "
          "and serving goes on",
          "[executors][coro_executor][faults]") {
  asio_loop loop(2);
  check_connection_dropped_mid_call([&](std::shared_ptr<msg::transport> t, std::shared_ptr<msg::dispatcher> d) {
    auto ex = std::make_shared<coport::coro_executor>(msg::service{std::move(t), server_target("counted"), std::move(d)},
                                                      loop.get_executor());
    ex->start();
    return [ex] { wait(ex->async_stop(asio::use_future)); };
  });
}
