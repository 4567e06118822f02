#include <coport/messaging/notify/notify.hpp>

#include <catch2/catch.hpp>

#include "messaging_test_support.hpp"

#include <coport/messaging/wire/errors.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace json = boost::json;
using namespace coport::messaging;
using coport::test::asio_loop;
using coport::test::slow_handoff_executor;
using coport::test::slow_handoff_watch;

namespace {

using namespace std::chrono_literals;

std::string fresh_url() { return coport::test::unique_memory_url("notify"); }

// Each test declares its loop after what its handlers use and before its
// listeners: should a check fail early, the loop joins its threads (and
// their handlers) before that state is destroyed.

/// Things handlers saw, collected from any thread; the test thread waits
/// for them.
template <class T>
class inbox {
 public:
  void add(T item) {
    std::lock_guard lk(mutex_);
    items_.push_back(std::move(item));
    cv_.notify_all();  // under the lock: a waiter may destroy cv_ once it sees the change
  }
  /// Waits until at least `count` items arrived (throws after 30 s) and
  /// returns every item so far.
  std::vector<T> wait_for(std::size_t count) {
    std::unique_lock lk(mutex_);
    if (!cv_.wait_for(lk, 30s, [&] { return items_.size() >= count; })) {
      throw std::runtime_error("timed out waiting for " + std::to_string(count) + " items, got " +
                               std::to_string(items_.size()));
    }
    return items_;
  }
  std::vector<T> items() {
    std::lock_guard lk(mutex_);
    return items_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<T> items_;
};

/// A one-shot event a handler can wait on with a ceiling.
class gate {
 public:
  void open() {
    std::lock_guard lk(mutex_);
    if (!opened_) {
      opened_ = true;
      promise_.set_value();
    }
  }
  /// False if the gate stayed shut for 30 s (the test then fails).
  bool wait() const { return future_.wait_for(30s) == std::future_status::ready; }

 private:
  std::mutex mutex_;
  bool opened_ = false;
  std::promise<void> promise_;
  std::shared_future<void> future_ = promise_.get_future().share();
};

void send(const notifier& n, priority p, std::string event_type, json::value payload = {},
          context ctxt = {}) {
  coport::test::wait(
      n.async_notify(std::move(ctxt), p, std::move(event_type), std::move(payload), asio::use_future));
}

void stop(notification_listener& l) { coport::test::wait(l.async_stop(asio::use_future)); }

std::vector<std::string> events_of(const std::vector<notification>& ns) {
  std::vector<std::string> out;
  for (const auto& n : ns) out.push_back(n.event_type);
  return out;
}

target on_topic(std::string topic) {
  target t;
  t.topic = std::move(topic);
  return t;
}

const std::vector<target> notifications_target{on_topic("notifications")};

// What a listener started now on notifications_target takes first, once it
// has taken at least one notification; the listener is stopped again.
std::vector<std::string> taken_by_a_new_listener(const std::shared_ptr<transport>& t, asio_loop& loop) {
  inbox<std::string> taken;
  auto ep = std::make_shared<notification_endpoint>("later");
  ep->on(priority::info, [&](const notification& n) { taken.add(n.event_type); });
  notification_listener l(t, notifications_target, {ep}, loop.get_executor());
  l.start();
  auto seen = taken.wait_for(1);
  stop(l);
  return seen;
}

constexpr priority all_priorities[] = {priority::audit, priority::debug, priority::info,
                                       priority::warn,  priority::error, priority::critical,
                                       priority::sample};

}  // namespace

// ------------------------------------------------------------------- basics

TEST_CASE("a notification sent at each priority reaches that priority's handler",
          "[messaging][notify]") {
  auto t = transport::create(fresh_url());
  inbox<std::pair<priority, notification>> got;
  auto ep = std::make_shared<notification_endpoint>("all");
  for (priority p : all_priorities) {
    ep->on(p, [&got, p](const notification& n) { got.add({p, n}); });
  }
  asio_loop loop;
  notification_listener l(t, notifications_target, {ep}, loop.get_executor());
  l.start();

  notifier sender(t, "compute.host1");
  const context ctxt{{"project_id", "p-1"}, {"user_id", "u-1"}, {"auth_token", "secret"}};
  send(sender, priority::audit, "e.audit", {{"n", 0}}, ctxt);
  coport::test::wait(sender.async_debug(ctxt, "e.debug", {{"n", 1}}, asio::use_future));
  coport::test::wait(sender.async_info(ctxt, "e.info", {{"n", 2}}, asio::use_future));
  coport::test::wait(sender.async_warn(ctxt, "e.warn", {{"n", 3}}, asio::use_future));
  coport::test::wait(sender.async_error(ctxt, "e.error", {{"n", 4}}, asio::use_future));
  coport::test::wait(sender.async_critical(ctxt, "e.critical", {{"n", 5}}, asio::use_future));
  coport::test::wait(sender.async_sample(ctxt, "e.sample", {{"n", 6}}, asio::use_future));

  const auto seen = got.wait_for(7);
  stop(l);
  REQUIRE(seen.size() == 7);
  std::set<std::string> ids;
  for (const auto& [handler_prio, n] : seen) {
    CHECK(handler_prio == n.prio);
    CHECK(n.event_type == "e." + std::string(to_string(n.prio)));
    CHECK(n.payload.at("n") == json::value(static_cast<int>(n.prio)));
    CHECK(n.publisher_id == "compute.host1");
    // The context is sanitized as oslo.messaging's notifier does.
    CHECK(n.ctxt == context{{"project_id", "p-1"}, {"user_id", "u-1"}});
    // str(uuid.uuid4()): 36 characters with dashes.
    CHECK(n.message_id.size() == 36);
    CHECK(n.message_id[8] == '-');
    CHECK_FALSE(n.timestamp.empty());
    ids.insert(n.message_id);
  }
  CHECK(ids.size() == 7);
  CHECK(l.handled() == 7);
  CHECK(l.requeued() == 0);
}

TEST_CASE("sanitize_context keeps only the keys oslo.messaging lets onto the bus",
          "[messaging][notify]") {
  const context in{{"user_id", "u"},       {"project_id", "p"},      {"roles", json::array{"admin"}},
                   {"is_admin", true},      {"request_id", "req-1"},  {"global_request_id", "g"},
                   {"auth_token", "secret"}, {"service_token", "s2"}, {"tenant", "old-name"}};
  const context out = sanitize_context(in);
  CHECK(out == context{{"user_id", "u"},
                       {"project_id", "p"},
                       {"roles", json::array{"admin"}},
                       {"is_admin", true},
                       {"request_id", "req-1"},
                       {"global_request_id", "g"}});
}

TEST_CASE("prepare makes a notifier that sends with another publisher_id", "[messaging][notify]") {
  auto t = transport::create(fresh_url());
  inbox<notification> got;
  auto ep = std::make_shared<notification_endpoint>("e");
  ep->on(priority::info, [&](const notification& n) { got.add(n); });
  asio_loop loop;
  notification_listener l(t, notifications_target, {ep}, loop.get_executor());
  l.start();

  const notifier base(t, "compute.host1");
  const notifier prepared = base.prepare("compute.host2");
  CHECK(base.publisher_id() == "compute.host1");
  CHECK(prepared.publisher_id() == "compute.host2");
  CHECK(prepared.topics() == base.topics());
  send(base, priority::info, "first");
  send(prepared, priority::info, "second");

  const auto seen = got.wait_for(2);
  stop(l);
  std::map<std::string, std::string> publisher_of;
  for (const auto& n : seen) publisher_of[n.event_type] = n.publisher_id;
  CHECK(publisher_of == std::map<std::string, std::string>{{"first", "compute.host1"},
                                                           {"second", "compute.host2"}});
}

TEST_CASE("a notifier with several topics sends to each of them", "[messaging][notify]") {
  auto t = transport::create(fresh_url());
  inbox<notification> on_a, on_b, on_both;
  auto ep_a = std::make_shared<notification_endpoint>("a");
  ep_a->on(priority::info, [&](const notification& n) { on_a.add(n); });
  auto ep_b = std::make_shared<notification_endpoint>("b");
  ep_b->on(priority::info, [&](const notification& n) { on_b.add(n); });
  auto ep_both = std::make_shared<notification_endpoint>("both");
  ep_both->on(priority::info, [&](const notification& n) { on_both.add(n); });
  asio_loop loop;
  notification_listener la(t, {on_topic("topic_a")}, {ep_a}, loop.get_executor());
  notification_listener lb(t, {on_topic("topic_b")}, {ep_b}, loop.get_executor());
  notification_listener lboth(t, {on_topic("topic_a"), on_topic("topic_b")}, {ep_both},
                              loop.get_executor(), {.pool = "both"});
  la.start();
  lb.start();
  lboth.start();

  const notifier sender(t, "svc", {"topic_a", "topic_b"});
  send(sender, priority::info, "fan.out");

  const auto a = on_a.wait_for(1);
  const auto b = on_b.wait_for(1);
  const auto both = on_both.wait_for(2);
  stop(la);
  stop(lb);
  stop(lboth);
  CHECK(events_of(a) == std::vector<std::string>{"fan.out"});
  CHECK(events_of(b) == std::vector<std::string>{"fan.out"});
  REQUIRE(both.size() == 2);
  // The same notification, once per topic.
  CHECK(both[0].message_id == both[1].message_id);
  CHECK(a[0].message_id == b[0].message_id);
}

namespace {

/// A driver that refuses notifications for topic "broken" and records the
/// topics of the others (fault injection for the notifier).
class refusing_driver final : public driver {
 public:
  explicit refusing_driver(std::shared_ptr<std::vector<std::string>> taken) : taken_(std::move(taken)) {}
  void async_send(const target&, rpc_request, send_handler h) override {
    std::move(h)(make_error_code(errc::transport_error));
  }
  void async_notify(const target& to, notification n, send_handler h) override {
    if (to.topic == "broken") return std::move(h)(make_error_code(errc::transport_error));
    taken_->push_back(to.topic + "." + std::string(to_string(n.prio)));
    std::move(h)(boost::system::error_code{});
  }
  std::shared_ptr<listener_impl> listen(const target&) override {
    throw std::logic_error("not used");
  }
  std::shared_ptr<listener_impl> listen_notifications(const std::vector<target>&,
                                                      const std::optional<std::string>&) override {
    throw std::logic_error("not used");
  }
  std::string start_replies(std::function<void(rpc_reply)>) override { return "unused"; }
  std::string describe() const override { return "refusing://"; }
  void shutdown() override {}

 private:
  std::shared_ptr<std::vector<std::string>> taken_;
};

}  // namespace

TEST_CASE("a notification the transport refuses fails naming the topic, others still go",
          "[messaging][notify]") {
  // Drivers are registered per process: this scheme is this test's own.
  auto taken = std::make_shared<std::vector<std::string>>();
  register_driver("notify-refusing", [taken](std::string_view, const transport_options&) {
    return std::make_unique<refusing_driver>(taken);
  });
  auto t = transport::create("notify-refusing://");
  const notifier sender(t, "p", {"broken", "fine"});
  try {
    send(sender, priority::error, "e");
    FAIL("the notification was reported as sent");
  } catch (const transport_error& e) {
    CHECK_THAT(e.what(), Catch::Matchers::Contains("'broken'"));
  }
  CHECK(*taken == std::vector<std::string>{"fine.error"});
  // A driver that counts nothing reports the default: its scheme, connected.
  const transport_stats st = t->stats();
  CHECK(st.driver == "refusing");
  CHECK(st.connected);
  CHECK(st.publishes == 0);
}

TEST_CASE("a notifier refuses an empty topic list and bad topic names", "[messaging][notify]") {
  auto t = transport::create(fresh_url());
  CHECK_THROWS_AS(notifier(t, "p", {}), std::invalid_argument);
  CHECK_THROWS_AS(notifier(t, "p", {"has space"}), invalid_target);
}

// ------------------------------------------------------------------ filters

TEST_CASE("an event_type filter lets only matching notifications through", "[messaging][notify]") {
  auto t = transport::create(fresh_url());
  inbox<notification> filtered, all;
  auto instances = std::make_shared<notification_endpoint>(
      "instances", notification_filter{.event_type = R"(compute\.instance\.)"});
  instances->on(priority::info, [&](const notification& n) { filtered.add(n); });
  // Endpoints run in order for each message: once the catch-all has seen
  // every message, the filtered endpoint has had its turn with each.
  auto catch_all = std::make_shared<notification_endpoint>("all");
  catch_all->on(priority::info, [&](const notification& n) { all.add(n); });
  asio_loop loop;
  notification_listener l(t, notifications_target, {instances, catch_all}, loop.get_executor());
  l.start();

  const notifier sender(t, "compute.host1");
  send(sender, priority::info, "compute.instance.create.end");
  send(sender, priority::info, "network.port.update");
  send(sender, priority::info, "compute.instance.delete.start");
  // Anchored at the start, as Python's re.match.
  send(sender, priority::info, "x.compute.instance.create");

  all.wait_for(4);
  stop(l);
  auto events = events_of(filtered.items());
  std::sort(events.begin(), events.end());
  CHECK(events == std::vector<std::string>{"compute.instance.create.end", "compute.instance.delete.start"});
}

TEST_CASE("publisher_id, context and payload filters must all match", "[messaging][notify]") {
  auto t = transport::create(fresh_url());
  inbox<notification> filtered, all;
  auto ep = std::make_shared<notification_endpoint>(
      "active-p1", notification_filter{.publisher_id = "compute",
                                       .context = {{"project_id", "^p1$"}},
                                       .payload = {{"state", "active"}}});
  ep->on(priority::info, [&](const notification& n) { filtered.add(n); });
  auto catch_all = std::make_shared<notification_endpoint>("all");
  catch_all->on(priority::info, [&](const notification& n) { all.add(n); });
  asio_loop loop;
  notification_listener l(t, notifications_target, {ep, catch_all}, loop.get_executor());
  l.start();

  const notifier compute(t, "compute.host1");
  const notifier network(t, "network.host1");
  const context p1{{"project_id", "p1"}};
  send(compute, priority::info, "match", {{"state", "active"}}, p1);
  send(network, priority::info, "wrong-publisher", {{"state", "active"}}, p1);
  send(compute, priority::info, "wrong-project", {{"state", "active"}}, {{"project_id", "p10"}});
  send(compute, priority::info, "no-project", {{"state", "active"}});
  send(compute, priority::info, "wrong-state", {{"state", "deleted"}}, p1);
  send(compute, priority::info, "state-not-a-string", {{"state", 1}}, p1);
  send(compute, priority::info, "payload-not-an-object", json::array{"active"}, p1);

  all.wait_for(7);
  stop(l);
  CHECK(events_of(filtered.items()) == std::vector<std::string>{"match"});
}

TEST_CASE("notification_filter matches as oslo.messaging's NotificationFilter",
          "[messaging][notify]") {
  notification n;
  n.message_id = "0f2e-msg";
  n.publisher_id = "compute.host1";
  n.event_type = "compute.instance.create.end";
  n.timestamp = "2026-11-26 10:20:30.123456";
  n.ctxt = {{"project_id", "p1"}, {"is_admin", true}};
  n.payload = {{"state", "active"}, {"size", 3}};

  CHECK(notification_filter{}.matches(n));
  CHECK(notification_filter{.event_type = "compute"}.matches(n));
  CHECK_FALSE(notification_filter{.event_type = "instance"}.matches(n));  // re.match, not re.search
  CHECK(notification_filter{.event_type = ".*instance"}.matches(n));
  CHECK(notification_filter{.publisher_id = "^compute\\.host[0-9]$"}.matches(n));
  CHECK_FALSE(notification_filter{.publisher_id = "network"}.matches(n));
  CHECK(notification_filter{.context = {{"project_id", "p"}}}.matches(n));
  CHECK_FALSE(notification_filter{.context = {{"user_id", ".*"}}}.matches(n));  // missing key
  CHECK_FALSE(notification_filter{.context = {{"is_admin", ".*"}}}.matches(n));  // not a string
  CHECK(notification_filter{.metadata = {{"timestamp", "2026-11"}}}.matches(n));
  CHECK(notification_filter{.metadata = {{"message_id", "0f2e"}}}.matches(n));
  CHECK_FALSE(notification_filter{.metadata = {{"priority", ".*"}}}.matches(n));
  CHECK(notification_filter{.payload = {{"state", "act"}}}.matches(n));
  CHECK_FALSE(notification_filter{.payload = {{"size", ".*"}}}.matches(n));
  CHECK_FALSE(notification_filter{.event_type = "compute", .payload = {{"state", "deleted"}}}.matches(n));

  CHECK_THROWS_AS(notification_endpoint("bad", notification_filter{.event_type = "compute.("}),
                  std::invalid_argument);
  CHECK_THROWS_AS(notification_endpoint("bad", notification_filter{.payload = {{"k", "[a"}}}),
                  std::invalid_argument);
}

// -------------------------------------------------------------------- pools

TEST_CASE("listeners of one pool share the messages, each handled exactly once",
          "[messaging][notify]") {
  auto t = transport::create(fresh_url());
  constexpr int count = 10;
  inbox<std::pair<int, std::string>> got;  // (listener, message id)
  // The first listener to get a message holds it until the other has taken
  // one: both must get some, whatever the timing.
  std::atomic<int> first{-1};
  gate other_took;
  std::atomic<bool> gate_timed_out{false};
  auto make_endpoint = [&](int who) {
    auto ep = std::make_shared<notification_endpoint>("worker" + std::to_string(who));
    ep->on(priority::info, [&, who](const notification& n) {
      int expected = -1;
      if (first.compare_exchange_strong(expected, who)) {
        if (!other_took.wait()) gate_timed_out = true;
      } else if (expected != who) {
        other_took.open();
      }
      got.add({who, n.message_id});
    });
    return ep;
  };
  asio_loop loop_a, loop_b;
  notification_listener a(t, notifications_target, {make_endpoint(0)}, loop_a.get_executor(),
                          {.pool = "workers"});
  notification_listener b(t, notifications_target, {make_endpoint(1)}, loop_b.get_executor(),
                          {.pool = "workers"});
  a.start();
  b.start();

  const notifier sender(t, "p");
  for (int i = 0; i < count; ++i) send(sender, priority::info, "e" + std::to_string(i));

  const auto seen = got.wait_for(count);
  stop(a);
  stop(b);
  CHECK_FALSE(gate_timed_out);
  REQUIRE(seen.size() == count);
  std::set<std::string> ids;
  int by_a = 0, by_b = 0;
  for (const auto& [who, id] : seen) {
    ids.insert(id);
    (who == 0 ? by_a : by_b) += 1;
  }
  CHECK(ids.size() == count);
  CHECK(by_a > 0);
  CHECK(by_b > 0);
  CHECK(a.handled() + b.handled() == count);
}

TEST_CASE("each pool and the listeners without a pool get every message", "[messaging][notify]") {
  auto t = transport::create(fresh_url());
  inbox<notification> in_red, in_blue, in_none;
  auto endpoint_for = [](inbox<notification>& box) {
    auto ep = std::make_shared<notification_endpoint>("e");
    ep->on(priority::warn, [&box](const notification& n) { box.add(n); });
    return ep;
  };
  asio_loop loop(2);
  notification_listener red(t, notifications_target, {endpoint_for(in_red)}, loop.get_executor(),
                            {.pool = "red"});
  notification_listener blue(t, notifications_target, {endpoint_for(in_blue)}, loop.get_executor(),
                             {.pool = "blue"});
  notification_listener none(t, notifications_target, {endpoint_for(in_none)}, loop.get_executor());
  red.start();
  blue.start();
  none.start();

  const notifier sender(t, "p");
  for (int i = 0; i < 5; ++i) send(sender, priority::warn, "e" + std::to_string(i));

  const auto r = in_red.wait_for(5);
  const auto b = in_blue.wait_for(5);
  const auto n = in_none.wait_for(5);
  stop(red);
  stop(blue);
  stop(none);
  auto sorted = [](std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
  };
  const std::vector<std::string> expected{"e0", "e1", "e2", "e3", "e4"};
  CHECK(sorted(events_of(r)) == expected);
  CHECK(sorted(events_of(b)) == expected);
  CHECK(sorted(events_of(n)) == expected);
}

// -------------------------------------------------------- requeue and acks

TEST_CASE("a requeue result delivers the message again", "[messaging][notify]") {
  auto t = transport::create(fresh_url());
  std::atomic<int> calls{0};
  inbox<std::string> deliveries;
  auto ep = std::make_shared<notification_endpoint>("flaky");
  ep->on(priority::info, [&](const notification& n) {
    deliveries.add(n.message_id);
    return ++calls == 1 ? notification_result::requeue : notification_result::handled;
  });
  asio_loop loop;
  notification_listener l(t, notifications_target, {ep}, loop.get_executor());
  l.start();

  send(notifier(t, "p"), priority::info, "again");
  const auto seen = deliveries.wait_for(2);
  stop(l);
  REQUIRE(seen.size() == 2);
  CHECK(seen[0] == seen[1]);
  CHECK(l.requeued() == 1);
  CHECK(l.handled() == 1);
}

TEST_CASE("a handler that throws has its message requeued", "[messaging][notify]") {
  auto t = transport::create(fresh_url());
  std::atomic<int> calls{0};
  inbox<std::string> deliveries;
  auto ep = std::make_shared<notification_endpoint>("throws-once");
  ep->on(priority::error, [&](const notification& n) {
    deliveries.add(n.message_id);
    if (++calls == 1) throw std::runtime_error("database is away");
  });
  asio_loop loop;
  notification_listener l(t, notifications_target, {ep}, loop.get_executor());
  l.start();

  send(notifier(t, "p"), priority::error, "again");
  const auto seen = deliveries.wait_for(2);
  stop(l);
  REQUIRE(seen.size() == 2);
  CHECK(seen[0] == seen[1]);
  CHECK(l.requeued() == 1);
  CHECK(l.handled() == 1);
}

TEST_CASE("a requeue from one endpoint stops the endpoints after it", "[messaging][notify]") {
  auto t = transport::create(fresh_url());
  std::atomic<int> first_calls{0};
  inbox<std::string> second_calls;
  auto first = std::make_shared<notification_endpoint>("first");
  first->on(priority::info, [&](const notification&) {
    return ++first_calls == 1 ? notification_result::requeue : notification_result::handled;
  });
  auto second = std::make_shared<notification_endpoint>("second");
  second->on(priority::info, [&](const notification& n) { second_calls.add(n.event_type); });
  asio_loop loop;
  notification_listener l(t, notifications_target, {first, second}, loop.get_executor());
  l.start();

  send(notifier(t, "p"), priority::info, "once");
  second_calls.wait_for(1);
  stop(l);
  CHECK(first_calls == 2);
  CHECK(second_calls.items().size() == 1);
}

TEST_CASE("with allow_requeue false a requeue result is acknowledged", "[messaging][notify]") {
  auto t = transport::create(fresh_url());
  inbox<std::string> calls;
  auto ep = std::make_shared<notification_endpoint>("stubborn");
  ep->on(priority::info, [&](const notification& n) {
    calls.add(n.event_type);
    return notification_result::requeue;
  });
  asio_loop loop;
  notification_listener l(t, notifications_target, {ep}, loop.get_executor(),
                          {.allow_requeue = false});
  l.start();
  const notifier sender(t, "p");
  send(sender, priority::info, "first");
  calls.wait_for(1);
  stop(l);
  CHECK(l.handled() == 1);
  CHECK(l.requeued() == 0);

  // Gone from the queue: a later listener's first message is one sent later
  // (a requeued message would be at the front).
  send(sender, priority::info, "marker");
  CHECK(taken_by_a_new_listener(t, loop).front() == "marker");
  CHECK(calls.items().size() == 1);
}

TEST_CASE("a notification at a priority no endpoint handles is acknowledged", "[messaging][notify]") {
  auto t = transport::create(fresh_url());
  inbox<std::string> infos;
  auto ep = std::make_shared<notification_endpoint>("info-only");
  ep->on(priority::info, [&](const notification& n) { infos.add(n.event_type); });
  inbox<std::string> criticals;
  asio_loop loop;
  notification_listener l(t, notifications_target, {ep}, loop.get_executor());
  l.start();
  const notifier sender(t, "p");
  send(sender, priority::critical, "unhandled");
  send(sender, priority::info, "handled");
  infos.wait_for(1);
  stop(l);
  CHECK(l.handled() == 2);
  CHECK(l.requeued() == 0);

  send(sender, priority::critical, "marker");
  auto ep2 = std::make_shared<notification_endpoint>("critical");
  ep2->on(priority::critical, [&](const notification& n) { criticals.add(n.event_type); });
  notification_listener l2(t, notifications_target, {ep2}, loop.get_executor());
  l2.start();
  const auto seen = criticals.wait_for(1);
  stop(l2);
  CHECK(seen.front() == "marker");
}

// ----------------------------------------------------------------- batches

TEST_CASE("a batch listener delivers batch_size messages at once", "[messaging][notify]") {
  auto t = transport::create(fresh_url());
  const notifier sender(t, "p");
  for (int i = 0; i < 6; ++i) send(sender, priority::info, "e" + std::to_string(i));

  inbox<std::vector<notification>> batches;
  auto ep = std::make_shared<notification_endpoint>("batched");
  ep->on_batch(priority::info, [&](std::vector<notification>& ns) { batches.add(ns); });
  asio_loop loop;
  notification_listener l(t, notifications_target, {ep}, loop.get_executor(), {.batch_size = 3});
  l.start();

  const auto seen = batches.wait_for(2);
  stop(l);
  REQUIRE(seen.size() == 2);
  CHECK(events_of(seen[0]) == std::vector<std::string>{"e0", "e1", "e2"});
  CHECK(events_of(seen[1]) == std::vector<std::string>{"e3", "e4", "e5"});
  CHECK(l.handled() == 6);
}

TEST_CASE("a batch is grouped by priority for the batch handlers", "[messaging][notify]") {
  auto t = transport::create(fresh_url());
  const notifier sender(t, "p");
  send(sender, priority::info, "i0");
  send(sender, priority::error, "e0");
  send(sender, priority::info, "i1");
  send(sender, priority::error, "e1");

  inbox<std::pair<priority, std::vector<std::string>>> batches;
  auto ep = std::make_shared<notification_endpoint>("batched");
  ep->on_batch(priority::info, [&](std::vector<notification>& ns) {
    batches.add({priority::info, events_of(ns)});
  });
  ep->on_batch(priority::error, [&](std::vector<notification>& ns) {
    batches.add({priority::error, events_of(ns)});
  });
  asio_loop loop;
  notification_listener l(t, notifications_target, {ep}, loop.get_executor(), {.batch_size = 4});
  l.start();

  const auto seen = batches.wait_for(2);
  stop(l);
  REQUIRE(seen.size() == 2);
  // oslo's order: groups by priority (info before error), each in arrival order.
  CHECK(seen[0] == std::pair<priority, std::vector<std::string>>{priority::info, {"i0", "i1"}});
  CHECK(seen[1] == std::pair<priority, std::vector<std::string>>{priority::error, {"e0", "e1"}});
}

TEST_CASE("a partial batch is delivered once batch_timeout has passed since its first message",
          "[messaging][notify]") {
  auto t = transport::create(fresh_url());
  constexpr auto batch_timeout = 20ms;
  inbox<std::string> got;
  inbox<std::chrono::steady_clock::time_point> delivered_at;
  auto ep = std::make_shared<notification_endpoint>("batched");
  ep->on_batch(priority::sample, [&](std::vector<notification>& ns) {
    delivered_at.add(std::chrono::steady_clock::now());
    for (const auto& n : ns) got.add(n.event_type);
  });
  asio_loop loop;
  notification_listener l(t, notifications_target, {ep}, loop.get_executor(),
                          {.batch_size = 10, .batch_timeout = batch_timeout});
  l.start();
  const notifier sender(t, "p");
  const auto first_sent = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) send(sender, priority::sample, "s" + std::to_string(i));

  // Timing is the behaviour under test: the batch never fills, so only its
  // timeout delivers it, and never before the timeout has passed (a lower
  // bound, which a slow machine cannot break).
  auto seen = got.wait_for(3);
  stop(l);
  std::sort(seen.begin(), seen.end());
  CHECK(seen == std::vector<std::string>{"s0", "s1", "s2"});
  for (auto at : delivered_at.items()) CHECK(at - first_sent >= batch_timeout);
}

TEST_CASE("a batch handler's requeue delivers its whole group again", "[messaging][notify]") {
  auto t = transport::create(fresh_url());
  const notifier sender(t, "p");
  send(sender, priority::info, "a");
  send(sender, priority::info, "b");

  std::atomic<int> calls{0};
  inbox<std::vector<std::string>> batches;
  auto ep = std::make_shared<notification_endpoint>("batched");
  ep->on_batch(priority::info, [&](std::vector<notification>& ns) {
    batches.add(events_of(ns));
    return ++calls == 1 ? notification_result::requeue : notification_result::handled;
  });
  asio_loop loop;
  notification_listener l(t, notifications_target, {ep}, loop.get_executor(), {.batch_size = 2});
  l.start();

  const auto seen = batches.wait_for(2);
  stop(l);
  REQUIRE(seen.size() == 2);
  auto sorted = [](std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
  };
  CHECK(sorted(seen[0]) == std::vector<std::string>{"a", "b"});
  CHECK(sorted(seen[1]) == std::vector<std::string>{"a", "b"});
  CHECK(l.requeued() == 2);
  CHECK(l.handled() == 2);
}

TEST_CASE("handlers of the other form serve single messages and batches", "[messaging][notify]") {
  auto t = transport::create(fresh_url());
  const notifier sender(t, "p");

  SECTION("a batch handler gets single messages as batches of one") {
    inbox<std::size_t> sizes;
    auto ep = std::make_shared<notification_endpoint>("batch-only");
    ep->on_batch(priority::info, [&](std::vector<notification>& ns) { sizes.add(ns.size()); });
    asio_loop loop;
    notification_listener l(t, notifications_target, {ep}, loop.get_executor());
    l.start();
    send(sender, priority::info, "a");
    send(sender, priority::info, "b");
    const auto seen = sizes.wait_for(2);
    stop(l);
    CHECK(seen == std::vector<std::size_t>{1, 1});
  }
  SECTION("a single handler gets a batch message by message") {
    send(sender, priority::info, "a");
    send(sender, priority::info, "b");
    inbox<std::string> got;
    auto ep = std::make_shared<notification_endpoint>("single-only");
    ep->on(priority::info, [&](const notification& n) { got.add(n.event_type); });
    asio_loop loop;
    notification_listener l(t, notifications_target, {ep}, loop.get_executor(), {.batch_size = 2});
    l.start();
    const auto seen = got.wait_for(2);
    stop(l);
    CHECK(seen == std::vector<std::string>{"a", "b"});
  }
}

// ------------------------------------------------ backpressure and shutdown

TEST_CASE("a listener takes at most max_in_flight messages", "[messaging][notify]") {
  auto t = transport::create(fresh_url());
  std::atomic<int> running{0};
  std::atomic<int> most_running{0};
  std::atomic<bool> release_timed_out{false};
  gate two_running, release;
  auto slow = std::make_shared<notification_endpoint>("slow");
  slow->on(priority::info, [&](const notification&) {
    const int now = ++running;
    int seen = most_running.load();
    while (now > seen && !most_running.compare_exchange_weak(seen, now)) {
    }
    if (now == 2) two_running.open();
    if (!release.wait()) release_timed_out = true;
    --running;
  });
  inbox<std::string> other;
  asio_loop loop(4);
  notification_listener blocked(t, notifications_target, {slow}, loop.get_executor(),
                                {.pool = "bp", .max_in_flight = 2});
  blocked.start();
  // After start: a pool's queue exists from its first listener on.
  const notifier sender(t, "p");
  for (int i = 0; i < 5; ++i) send(sender, priority::info, "e" + std::to_string(i));
  REQUIRE(two_running.wait());
  CHECK(blocked.in_flight() == 2);

  // With both its handlers blocked, the listener has no receive pending: a
  // second listener of the pool gets every other message.
  auto fast = std::make_shared<notification_endpoint>("fast");
  fast->on(priority::info, [&](const notification& n) { other.add(n.event_type); });
  notification_listener second(t, notifications_target, {fast}, loop.get_executor(), {.pool = "bp"});
  second.start();
  const auto taken_by_second = other.wait_for(3);
  release.open();
  stop(blocked);
  stop(second);
  CHECK_FALSE(release_timed_out);
  CHECK(taken_by_second.size() == 3);
  CHECK(blocked.handled() == 2);
  CHECK(most_running == 2);
  CHECK(blocked.in_flight() == 0);
}

TEST_CASE("async_stop waits for the handlers in flight", "[messaging][notify]") {
  auto t = transport::create(fresh_url());
  gate entered, release;
  std::atomic<bool> release_timed_out{false};
  auto ep = std::make_shared<notification_endpoint>("slow");
  ep->on(priority::info, [&](const notification&) {
    entered.open();
    if (!release.wait()) release_timed_out = true;
  });
  asio_loop loop(2);
  notification_listener l(t, notifications_target, {ep}, loop.get_executor());
  l.start();
  const notifier sender(t, "p");
  send(sender, priority::info, "slow");
  REQUIRE(entered.wait());

  auto stopped = l.async_stop(asio::use_future);
  // The handler cannot end before release: the stop cannot have completed.
  CHECK(stopped.wait_for(0s) == std::future_status::timeout);
  release.open();
  coport::test::wait(std::move(stopped));
  CHECK_FALSE(release_timed_out);
  CHECK(l.handled() == 1);
  CHECK(l.in_flight() == 0);

  // A stopped listener takes nothing more: the next message waits for others.
  send(sender, priority::info, "after-stop");
  CHECK(taken_by_a_new_listener(t, loop) == std::vector<std::string>{"after-stop"});
  CHECK(l.handled() == 1);
}

TEST_CASE("a listener with nothing taken stops, started or not, and takes nothing after",
          "[messaging][notify]") {
  auto t = transport::create(fresh_url());
  inbox<std::string> stopped_ones;
  auto ep = std::make_shared<notification_endpoint>("e");
  ep->on(priority::info, [&](const notification& n) { stopped_ones.add(n.event_type); });
  asio_loop loop;
  notification_listener never_started(t, notifications_target, {ep}, loop.get_executor());
  stop(never_started);  // fails the test if the stop never completes
  notification_listener started(t, notifications_target, {ep}, loop.get_executor());
  started.start();
  stop(started);  // its pending receive ends: the stop completes

  // A message sent now is left for a later listener, not taken by the
  // stopped ones.
  const notifier sender(t, "p");
  send(sender, priority::info, "after-stop");
  CHECK(taken_by_a_new_listener(t, loop) == std::vector<std::string>{"after-stop"});
  CHECK(stopped_ones.items().empty());
  CHECK(started.handled() == 0);
}

TEST_CASE("once async_stop completes, the transport no longer touches the listener's executor",
          "[messaging][notify]") {
  // A publisher's thread hands a message to the waiting receive by posting
  // to the listener's executor. Right after the post the listener may run,
  // stop and destroy its io_context while that thread is still inside the
  // post, holding a copy of the executor: under ASan a heap-use-after-free
  // of the listener's strand, seen as the example listener exited after
  // --count. The stop must wait for such hand-offs.
  auto t = transport::create(fresh_url());
  const notifier sender(t, "p");
  constexpr int rounds = 3;
  std::size_t handoffs = 0;
  for (int round = 0; round < rounds; ++round) {
    asio::io_context io;
    slow_handoff_watch watch;
    std::optional<notification_listener> l;
    auto ep = std::make_shared<notification_endpoint>("first-only");
    // The executor tracks no work: this guard keeps run() going until the stop.
    auto work = asio::make_work_guard(io);
    ep->on(priority::info, [&](const notification&) {
      asio::post(io, [&] {
        l->async_stop([&] {
          watch.done();
          work.reset();
        });
      });
      return notification_result::handled;
    });
    l.emplace(t, notifications_target, std::vector<std::shared_ptr<const notification_endpoint>>{ep},
              asio::any_io_executor(slow_handoff_executor(io.get_executor(), &watch)));
    watch.loop_thread = std::this_thread::get_id();
    l->start();
    io.poll();  // the listener's receive now waits in the transport
    std::thread publisher([&] { send(sender, priority::info, "one"); });  // hands it over
    io.run();
    publisher.join();
    CHECK(l->handled() == 1);
    handoffs += watch.handoffs_outside;
    CHECK(watch.done_during_handoff == 0);
  }
  CHECK(handoffs >= rounds);  // the hand-offs did run on this thread
}

// --------------------------------------------------------- handler kinds

TEST_CASE("coroutine and plain handlers both work", "[messaging][notify]") {
  auto t = transport::create(fresh_url());
  inbox<std::string> got;
  std::atomic<int> co_result_calls{0};
  auto ep = std::make_shared<notification_endpoint>("mixed");
  ep->on(priority::info, [&](const notification& n) -> asio::awaitable<void> {
    co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    got.add("co-void:" + n.event_type);
  });
  ep->on(priority::warn, [&](const notification& n) -> asio::awaitable<notification_result> {
    co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    got.add("co-result:" + n.event_type);
    co_return ++co_result_calls == 1 ? notification_result::requeue : notification_result::handled;
  });
  ep->on(priority::error, [&](const notification& n) { got.add("plain-void:" + n.event_type); });
  ep->on(priority::audit, [&](const notification& n) {
    got.add("plain-result:" + n.event_type);
    return notification_result::handled;
  });
  asio_loop loop(2);
  notification_listener l(t, notifications_target, {ep}, loop.get_executor());
  l.start();
  const notifier sender(t, "p");
  send(sender, priority::info, "x");
  send(sender, priority::warn, "x");
  send(sender, priority::error, "x");
  send(sender, priority::audit, "x");

  auto seen = got.wait_for(5);
  stop(l);
  std::sort(seen.begin(), seen.end());
  CHECK(seen == std::vector<std::string>{"co-result:x", "co-result:x", "co-void:x", "plain-result:x",
                                         "plain-void:x"});
  CHECK(l.requeued() == 1);
  CHECK(l.handled() == 4);
}

TEST_CASE("a coroutine handler that throws has its message requeued", "[messaging][notify]") {
  auto t = transport::create(fresh_url());
  std::atomic<int> calls{0};
  inbox<std::string> deliveries;
  auto ep = std::make_shared<notification_endpoint>("co-throws-once");
  ep->on(priority::debug, [&](const notification& n) -> asio::awaitable<void> {
    deliveries.add(n.message_id);
    co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    if (++calls == 1) throw std::runtime_error("not yet");
  });
  asio_loop loop;
  notification_listener l(t, notifications_target, {ep}, loop.get_executor());
  l.start();
  send(notifier(t, "p"), priority::debug, "again");
  const auto seen = deliveries.wait_for(2);
  stop(l);
  CHECK(seen[0] == seen[1]);
  CHECK(l.requeued() == 1);
  CHECK(l.handled() == 1);
}

TEST_CASE("an endpoint refuses a second handler for one priority", "[messaging][notify]") {
  notification_endpoint ep("e");
  ep.on(priority::info, [](const notification&) {});
  ep.on_batch(priority::info, [](std::vector<notification>&) {});
  CHECK_THROWS_AS(ep.on(priority::info, [](const notification&) {}), std::invalid_argument);
  CHECK_THROWS_AS(ep.on_batch(priority::info, [](std::vector<notification>&) {}),
                  std::invalid_argument);
  CHECK(ep.handles(priority::info));
  CHECK_FALSE(ep.handles(priority::warn));
  REQUIRE(ep.handler(priority::info));
  CHECK(ep.handler(priority::info)->kind == method_kind::fiber);
  CHECK_FALSE(ep.batch_handler(priority::warn));
}

TEST_CASE("a notification listener refuses settings it cannot honour", "[messaging][notify]") {
  auto t = transport::create(fresh_url());
  auto ep = std::make_shared<notification_endpoint>("e");
  ep->on(priority::info, [](const notification&) {});
  asio_loop loop;
  auto ex = loop.get_executor();
  CHECK_THROWS_AS(notification_listener(t, notifications_target, {}, ex), std::invalid_argument);
  CHECK_THROWS_AS(notification_listener(t, notifications_target, {nullptr}, ex), std::invalid_argument);
  CHECK_THROWS_AS(notification_listener(t, {}, {ep}, ex), std::invalid_argument);
  CHECK_THROWS_AS(notification_listener(t, notifications_target, {ep}, ex, {.max_in_flight = 0}),
                  std::invalid_argument);
  CHECK_THROWS_AS(notification_listener(t, notifications_target, {ep}, ex, {.batch_size = 0}),
                  std::invalid_argument);
  CHECK_THROWS_AS(
      notification_listener(t, notifications_target, {ep}, ex, {.batch_size = 8, .max_in_flight = 4}),
      std::invalid_argument);
  notification_listener bad_topic(t, {on_topic("has space")}, {ep}, ex);
  CHECK_THROWS_AS(bad_topic.start(), invalid_target);
  notification_listener twice(t, notifications_target, {ep}, ex);
  twice.start();
  CHECK_THROWS_AS(twice.start(), std::logic_error);
  stop(twice);
}

// ------------------------------------------------------------------ interop

TEST_CASE("a notification sent by Python's oslo.messaging decodes", "[messaging][notify]") {
  // Produced with oslo.messaging 14.0.3 (python3.11, Debian): the dict its
  // Notifier._notify builds (message_id=str(uuid4()), publisher_id,
  // event_type, priority='INFO', payload, timestamp=str(utcnow())), with
  // amqp._add_unique_id and amqp.pack_context applied to
  // _sanitize_context({... 'auth_token': 'SECRET'}) as amqpdriver._send does
  // for a notification, then json.dumps(common.serialize_msg(msg)).
  const std::string body =
      R"({"oslo.version": "2.0", "oslo.message": "{\"message_id\": \"83e83fff-cf5e-426e-a71b-8840d68d2103\", \"publisher_id\": \"compute.host1\", \"event_type\": \"compute.instance.create.end\", \"priority\": \"INFO\", \"payload\": {\"instance_id\": \"i-123\", \"state\": \"active\", \"memory_mb\": 512, \"tags\": [\"a\", \"b\"]}, \"timestamp\": \"2026-11-26 04:53:54.486845\", \"_unique_id\": \"5e33d52c5fdb4520806149f519c2aae3\", \"_context_user_id\": \"u-42\", \"_context_project_id\": \"p-7\", \"_context_request_id\": \"req-1f0e\", \"_context_roles\": [\"admin\", \"member\"], \"_context_is_admin\": true}"})";
  const notification n = decode_notification(body);
  CHECK(n.message_id == "83e83fff-cf5e-426e-a71b-8840d68d2103");
  CHECK(n.publisher_id == "compute.host1");
  CHECK(n.event_type == "compute.instance.create.end");
  CHECK(n.prio == priority::info);
  CHECK(n.payload == json::parse(R"({"instance_id": "i-123", "state": "active", "memory_mb": 512,
                                     "tags": ["a", "b"]})"));
  CHECK(n.timestamp == "2026-11-26 04:53:54.486845");
  CHECK(n.unique_id == "5e33d52c5fdb4520806149f519c2aae3");
  CHECK(n.ctxt == context{{"user_id", "u-42"},
                          {"project_id", "p-7"},
                          {"request_id", "req-1f0e"},
                          {"roles", json::array{"admin", "member"}},
                          {"is_admin", true}});
  // A filter written for the Python endpoint accepts it.
  CHECK(notification_filter{.publisher_id = "^compute\\.",
                            .event_type = "compute\\.instance\\.create",
                            .context = {{"project_id", "^p-7$"}},
                            .payload = {{"state", "^active$"}}}
            .matches(n));
}
