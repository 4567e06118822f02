#ifndef COPORT_TESTS_EXECUTOR_TEST_SUPPORT_HPP
#define COPORT_TESTS_EXECUTOR_TEST_SUPPORT_HPP

// What the tests of both executors share. Nothing from Boost.Fiber or
// coport::bridge: coro_executor's tests are also built without fibers.

#include <coport/messaging/rpc/client.hpp>
#include <coport/messaging/wire/errors.hpp>
#include <coport/messaging/serving/executor.hpp>
#include <coport/messaging/transport/memory.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>

#include "messaging_test_support.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <future>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace coport::test {

namespace msg = coport::messaging;
using namespace std::chrono_literals;

/// A count that the test thread can wait for (with a ceiling), bumped from
/// any thread or fiber (the lock is only held for the update).
class counter {
 public:
  void add(int k = 1) {
    std::lock_guard lk(m_);
    n_ += k;
    cv_.notify_all();  // under the lock: a waiter may destroy cv_ once it sees the change
  }
  int value() const {
    std::lock_guard lk(m_);
    return n_;
  }
  /// True once the count reached `at_least`; false if the ceiling passed
  /// first (the code under test is broken).
  bool wait_for(int at_least, std::chrono::seconds ceiling = 10s) const {
    std::unique_lock lk(m_);
    return cv_.wait_for(lk, ceiling, [&] { return n_ >= at_least; });
  }

 private:
  mutable std::mutex m_;
  mutable std::condition_variable cv_;
  int n_ = 0;
};

/// Replies to calls made with plain callbacks, which the transport runs as
/// the reply arrives (inside the server's reply): a reply counted here was
/// delivered before the server went on.
class replies {
 public:
  explicit replies(std::size_t n) : values_(n) {}
  auto handler(std::size_t i) {
    return [this, i](std::exception_ptr e, int v) {
      std::lock_guard lk(m_);
      if (e) ++failures_;
      else values_[i] = v;
      ++count_;
      cv_.notify_all();  // under the lock: a waiter may destroy cv_ once it sees the change
    };
  }
  std::size_t count() const {
    std::lock_guard lk(m_);
    return count_;
  }
  std::size_t failures() const {
    std::lock_guard lk(m_);
    return failures_;
  }
  std::vector<std::optional<int>> values() const {
    std::lock_guard lk(m_);
    return values_;
  }
  bool wait_for(std::size_t at_least, std::chrono::seconds ceiling = 10s) const {
    std::unique_lock lk(m_);
    return cv_.wait_for(lk, ceiling, [&] { return count_ >= at_least; });
  }

 private:
  mutable std::mutex m_;
  mutable std::condition_variable cv_;
  std::vector<std::optional<int>> values_;
  std::size_t count_ = 0;
  std::size_t failures_ = 0;
};

/// Requests running now and the most ever running at once, as the methods
/// see it.
struct concurrency {
  std::atomic<int> active{0};
  std::atomic<int> max_active{0};
  void enter() {
    const int now = ++active;
    int seen = max_active.load();
    while (now > seen && !max_active.compare_exchange_weak(seen, now)) {
    }
  }
  void leave() { --active; }
};

/// A memory:// transport of its own.
inline std::shared_ptr<msg::transport> memory_transport() { return msg::transport::create(unique_memory_url()); }

inline std::shared_ptr<msg::dispatcher> dispatch_to(std::initializer_list<std::shared_ptr<msg::endpoint>> endpoints) {
  auto d = std::make_shared<msg::dispatcher>();
  for (const auto& e : endpoints) d->add(e);
  return d;
}

inline msg::target server_target(std::string topic, std::string server = "s1") {
  return msg::target{.topic = std::move(topic), .server = std::move(server)};
}

inline const msg::method_report* find_report(const std::vector<msg::method_report>& reports, const std::string& endpoint,
                                      const std::string& method, msg::method_kind kind) {
  auto it = std::find_if(reports.begin(), reports.end(), [&](const msg::method_report& r) {
    return r.endpoint == endpoint && r.method == method && r.kind == kind;
  });
  return it == reports.end() ? nullptr : &*it;
}

/// Number of futures already holding their result.
template <class T>
std::size_t ready_count(const std::vector<std::future<T>>& fs) {
  return static_cast<std::size_t>(std::count_if(fs.begin(), fs.end(), [](const std::future<T>& f) {
    return f.wait_for(0s) == std::future_status::ready;
  }));
}

/// The load check of both executors: `calls` calls in flight at once
/// against a server whose executor admits `bound` (all on one thread).
/// Method `park(i)` holds each request until `bound` of them are held at
/// once, then every request passes and answers `i`.
struct parking_lot {
  parking_lot(boost::asio::any_io_executor ex, int bound)
      : gate(std::move(ex), std::chrono::steady_clock::time_point::max()), bound(bound) {}
  boost::asio::steady_timer gate;  // cancelled when `bound` are held
  const int bound;
  int held = 0;
  bool open = false;

  std::shared_ptr<msg::endpoint> endpoint() {
    auto e = std::make_shared<msg::endpoint>("load");
    e->add("park", {"i"}, [this](int i) -> boost::asio::awaitable<int> {
      if (!open && ++held == bound) {
        open = true;
        gate.cancel();
      }
      if (!open) {
        boost::system::error_code cancelled;
        co_await gate.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, cancelled));
      }
      co_return i;
    });
    return e;
  }
};

/// Sends `calls` calls of park at once and checks that each is answered
/// with its own value.
inline void call_all_at_once(const std::shared_ptr<msg::transport>& t, const std::string& topic, int calls) {
  msg::rpc_client c(t, msg::target{.topic = topic});
  replies r(static_cast<std::size_t>(calls));
  for (int i = 0; i < calls; ++i) c.async_call<int>("park", msg::args("i", i), r.handler(static_cast<std::size_t>(i)));
  REQUIRE(r.wait_for(static_cast<std::size_t>(calls), 120s));
  CHECK(r.failures() == 0);
  const auto values = r.values();
  int right = 0;
  for (int i = 0; i < calls; ++i) right += values[static_cast<std::size_t>(i)] == i;
  CHECK(right == calls);
}

/// A broker connection dropped mid-call, on memory:// with injected faults,
/// against a server that `serve(transport, dispatcher)` starts; it returns
/// a function that stops it. A call or cast that cannot go out fails at
/// once (not at its timeout) and runs nowhere; a reply lost after its
/// method ran ends in the caller's timeout, and the method ran once (at
/// most once: the request is not given out again); serving goes on.
template <class Serve>
void check_connection_dropped_mid_call(Serve serve) {
  const std::string url = unique_memory_url("faults");
  auto t = msg::transport::create(url);
  msg::memory_faults faults(url);
  auto runs = std::make_shared<std::atomic<int>>(0);
  auto e = std::make_shared<msg::endpoint>("counted");
  e->add("count", {"v"}, [runs](int v) -> boost::asio::awaitable<int> {
    ++*runs;
    co_return v;
  });
  auto stop = serve(t, dispatch_to({e}));
  const msg::target to{.topic = "counted"};
  msg::rpc_client patient(t, to, {.timeout = 30s});

  faults.fail_sends(1);
  CHECK_THROWS_AS(wait(patient.async_call<int>("count", msg::args("v", 1), boost::asio::use_future)),
                  msg::transport_error);
  CHECK(t->pending_calls() == 0);  // ended at once, not left to its 30 s timeout
  faults.fail_sends(1);
  CHECK_THROWS_AS(wait(patient.async_cast("count", msg::args("v", 2), boost::asio::use_future)),
                  msg::transport_error);
  CHECK(*runs == 0);

  msg::rpc_client hasty(t, to, {.timeout = 200ms});
  faults.lose_replies(1);
  CHECK_THROWS_AS(wait(hasty.async_call<int>("count", msg::args("v", 3), boost::asio::use_future)),
                  msg::timeout_error);
  CHECK(*runs == 1);
  CHECK(t->pending_calls() == 0);

  // The connection is back: every call is answered, and each runs once.
  for (int i = 0; i < 20; ++i) {
    CHECK(wait(patient.async_call<int>("count", msg::args("v", i), boost::asio::use_future)) == i);
  }
  CHECK(*runs == 21);
  const auto done = faults.done();
  CHECK(done.sends_failed == 2);
  CHECK(done.replies_lost == 1);
  stop();
}

}  // namespace coport::test

#endif
