// Faults injected into memory:// (memory_faults): what a server, a client
// and a notification listener still guarantee when a broker connection
// drops mid-call. RPC is at most once, every call ends with a reply, an
// error or its timeout, and notifications are at least once.
#include <coport/messaging/client.hpp>
#include <coport/messaging/errors.hpp>
#include <coport/messaging/memory.hpp>
#include <coport/messaging/notify.hpp>
#include <coport/messaging/server.hpp>

#include <catch2/catch.hpp>

#include "messaging_test_support.hpp"

#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

namespace asio = boost::asio;
namespace json = boost::json;
using namespace coport::messaging;
using namespace coport::test;
using namespace std::chrono_literals;

namespace {

target topic(std::string t, std::string server = "") {
  target x;
  x.topic = std::move(t);
  x.server = std::move(server);
  return x;
}

/// A server whose `count` method counts its executions.
struct counted_server {
  std::atomic<int> runs{0};
  std::shared_ptr<dispatcher> d = std::make_shared<dispatcher>();
  explicit counted_server() {
    auto e = std::make_shared<endpoint>("counted");
    e->add("count", {"v"}, [this](std::int64_t v) {
      ++runs;
      return v;
    });
    d->add(e);
  }
};

/// A counted_server on a memory:// broker of its own, with its faults.
struct faulty_service {
  asio_loop loop;
  const std::string url = unique_memory_url("faults");
  std::shared_ptr<transport> tr = transport::create(url);
  memory_faults faults{url};
  counted_server s;
  rpc_server server{tr, topic("counted", "s1"), s.d, loop.get_executor()};
  faulty_service() { server.start(); }
};

/// Event types seen by handlers, from any thread.
class seen_events {
 public:
  void add(const std::string& e) {
    std::lock_guard lk(mutex_);
    events_.push_back(e);
    cv_.notify_all();  // under the lock: a waiter may destroy cv_ once it sees the change
  }
  /// Waits (30 s at most) for `n` events and returns all so far.
  std::vector<std::string> wait_for(std::size_t n) {
    std::unique_lock lk(mutex_);
    if (!cv_.wait_for(lk, 30s, [&] { return events_.size() >= n; })) {
      throw std::runtime_error("timed out waiting for " + std::to_string(n) + " events");
    }
    return events_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::string> events_;
};

/// Shut until opened; waiting has a 30 s ceiling.
class latch {
 public:
  void open() {
    std::lock_guard lk(mutex_);
    open_ = true;
    cv_.notify_all();  // under the lock: a waiter may destroy cv_ once it sees the change
  }
  bool wait() {
    std::unique_lock lk(mutex_);
    return cv_.wait_for(lk, 30s, [&] { return open_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool open_ = false;
};

}  // namespace

TEST_CASE("memory_faults takes only memory:// URLs", "[messaging][faults]") {
  CHECK_THROWS_AS(memory_faults("rabbit://guest:guest@localhost/"), invalid_url);
  CHECK_THROWS_AS(memory_faults("memory://a/b"), invalid_url);
  CHECK_NOTHROW(memory_faults("memory://faults-url"));
}

TEST_CASE("a call whose send fails on a dropped connection gets a transport_error and runs nowhere",
          "[messaging][faults]") {
  faulty_service f;
  auto& [loop, url, tr, faults, s, server] = f;
  rpc_client client(tr, topic("counted"), {.timeout = 30s});

  faults.fail_sends(1);
  CHECK_THROWS_AS(wait(client.async_call("count", {{"v", 1}}, asio::use_future)), transport_error);
  CHECK(tr->pending_calls() == 0);  // ended at once, not left to its 30 s timeout
  faults.fail_sends(1);
  CHECK_THROWS_AS(wait(client.async_cast("count", {{"v", 2}}, asio::use_future)), transport_error);

  // The connection is back: the next call is answered, and the two that
  // failed never ran.
  CHECK(wait(client.async_call("count", {{"v", 3}}, asio::use_future)) == 3);
  CHECK(s.runs == 1);
  CHECK(faults.done().sends_failed == 2);
  wait(server.async_stop(asio::use_future));
}

TEST_CASE("a reply lost to a dropped connection: the method ran once and the caller times out",
          "[messaging][faults]") {
  faulty_service f;
  auto& [loop, url, tr, faults, s, server] = f;
  rpc_client client(tr, topic("counted"), {.timeout = 200ms});

  faults.lose_replies(1);
  CHECK_THROWS_AS(wait(client.async_call("count", {{"v", 1}}, asio::use_future)), timeout_error);
  // At most once: the request was taken, so it is not delivered again.
  CHECK(s.runs == 1);
  CHECK(faults.done().replies_lost == 1);
  CHECK(tr->pending_calls() == 0);

  // Every call after it is answered, and each runs once.
  for (int i = 0; i < 20; ++i) {
    CHECK(wait(client.async_call("count", {{"v", i}}, asio::use_future)) == i);
  }
  CHECK(s.runs == 21);
  wait(server.async_stop(asio::use_future));
  CHECK(server.served() == 21);
}

TEST_CASE("a notification whose listener's connection drops mid-handler is delivered again",
          "[messaging][faults]") {
  // At least once: the message was taken but not acknowledged when the
  // connection dropped, so the broker gives it out again; the handler that
  // was running finishes, and its acknowledgement of the old copy counts
  // for nothing.
  const std::string url = unique_memory_url("faults");
  auto tr = transport::create(url);
  memory_faults faults(url);
  seen_events seen;
  latch entered, release;
  std::atomic<int> first_run{0};
  auto ep = std::make_shared<notification_endpoint>("slow-first");
  ep->on(priority::info, [&](const notification& n) {
    seen.add(n.event_type);
    if (n.event_type == "order.created" && first_run++ == 0) {
      entered.open();
      release.wait();  // a plain handler holding its thread: the loop has two
    }
    return notification_result::handled;
  });
  asio_loop loop(2);
  notification_listener_options o;
  o.max_in_flight = 2;
  notification_listener l(tr, {topic("orders")}, {ep}, loop.get_executor(), o);
  l.start();
  const notifier sender(tr, "shop", {"orders"});
  wait(sender.async_notify({}, priority::info, "order.created", json::object{{"id", 7}}, asio::use_future));
  REQUIRE(entered.wait());

  CHECK(faults.drop_listener_connections() == 1);
  // The copy comes again, to the listener's free slot, while the first
  // handler still runs.
  CHECK(seen.wait_for(2) == std::vector<std::string>{"order.created", "order.created"});
  release.open();

  // Nothing is left over: the next notification is the next one seen, and
  // the first copy does not come a third time.
  wait(sender.async_notify({}, priority::info, "order.paid", json::object{{"id", 7}}, asio::use_future));
  CHECK(seen.wait_for(3) == std::vector<std::string>{"order.created", "order.created", "order.paid"});
  wait(l.async_stop(asio::use_future));
  CHECK(l.handled() == 3);
  CHECK(faults.done().notifications_requeued == 1);
  CHECK(faults.drop_listener_connections() == 0);  // all answered now
}
