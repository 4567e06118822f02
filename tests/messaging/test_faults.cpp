// Faults injected into memory:// (memory_faults): what a server, a client
// and a notification listener still guarantee when a broker connection
// drops mid-call. RPC is at most once, every call ends with a reply, an
// error or its timeout, and notifications are at least once.
#include <coport/messaging/rpc/client.hpp>
#include <coport/messaging/wire/errors.hpp>
#include <coport/messaging/transport/memory.hpp>
#include <coport/messaging/notify/notify.hpp>
#include <coport/messaging/rpc/server.hpp>

#include <catch2/catch.hpp>

#include "executor_test_support.hpp"
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

TEST_CASE("rpc_server: a connection dropped mid-call fails the call or times it out, runs it at most once, "
          "and serving goes on",
          "[messaging][faults]") {
  asio_loop loop;
  check_connection_dropped_mid_call([&](std::shared_ptr<transport> t, std::shared_ptr<dispatcher> d) {
    auto server = std::make_shared<rpc_server>(std::move(t), target{.topic = "counted", .server = "s1"},
                                               std::move(d), loop.get_executor());
    server->start();
    return [server] {
      wait(server->async_stop(asio::use_future));
      CHECK(server->served() == 21);  // the lost reply's call and the 20 after it
    };
  });
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
  notification_listener l(tr, {target{.topic = "orders"}}, {ep}, loop.get_executor(), o);
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
