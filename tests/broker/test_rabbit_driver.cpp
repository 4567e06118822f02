// The rabbit:// driver against a real RabbitMQ broker: the ctest entry runs
// this program under tests/rabbit/with_broker.py, which starts a private
// broker and sets COPORT_TEST_RABBIT_URL (and COPORT_TEST_RABBIT_STATE, for
// the restart case).

#include <coport/coro_executor/coro_executor.hpp>
#include <coport/messaging/rpc/client.hpp>
#include <coport/messaging/notify/notify.hpp>
#include <coport/messaging/rpc/server.hpp>

#include <catch2/catch.hpp>

#include "executor_test_support.hpp"
#include "messaging_test_support.hpp"

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <sys/time.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

namespace asio = boost::asio;
namespace json = boost::json;
using namespace coport::messaging;
using namespace coport::test;
using namespace std::chrono_literals;

namespace {

std::string broker_url(const std::string& query = "") {
  const char* url = std::getenv("COPORT_TEST_RABBIT_URL");
  if (!url || !*url) {
    FAIL("COPORT_TEST_RABBIT_URL is not set: run this program under tests/rabbit/with_broker.py");
  }
  std::string u = url;
  if (!query.empty()) u += (u.find('?') == std::string::npos ? "?" : "&") + query;
  return u;
}

std::string password_of(const std::string& url) {
  auto u = boost::urls::parse_uri(url);
  return u ? std::string(u->password()) : std::string();
}

// Everything the driver logs, kept for inspection (thread-safe sink).
// Everything the driver logs, kept for inspection: written by the driver's
// threads and read by the test, both under the sink's own mutex (an
// ostream_sink's stream read from outside it was a data race, which TSan
// found).
class text_sink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  std::string text() {
    std::lock_guard lk(mutex_);
    return text_;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t line;
    formatter_->format(msg, line);
    text_.append(line.data(), line.size());
  }
  void flush_() override {}

 private:
  std::string text_;
};

struct captured_log {
  std::shared_ptr<text_sink> sink = std::make_shared<text_sink>();
  std::shared_ptr<spdlog::logger> logger;
  captured_log() {
    logger = std::make_shared<spdlog::logger>("rabbit-test", sink);
    logger->set_level(spdlog::level::debug);
  }
  std::string text() { return sink->text(); }
};

std::shared_ptr<transport> open(const std::string& url, captured_log& log, std::string exchange = "") {
  transport_options o;
  o.logger = log.logger;
  if (!exchange.empty()) o.control_exchange = std::move(exchange);
  return transport::create(url, o);
}

target topic(std::string t, std::string server = "", bool fanout = false) {
  target x;
  x.topic = std::move(t);
  x.server = std::move(server);
  x.fanout = fanout;
  return x;
}

std::string fresh_topic(const std::string& prefix) { return prefix + "_" + make_unique_id().substr(0, 8); }

std::shared_ptr<dispatcher> make_service(std::string name, std::shared_ptr<counter> seen = nullptr) {
  auto e = std::make_shared<endpoint>("example", endpoint_target{std::nullopt, "1.3"});
  e->add("echo", {"value"}, [](json::value v) { return v; });
  e->add("add", {"a", "b"}, [](std::int64_t a, std::int64_t b) -> asio::awaitable<std::int64_t> {
    co_return a + b;
  });
  e->add("whoami", {}, [name] { return name; });
  e->add("note", {}, [seen] {
    if (seen) seen->add();
    return 0;
  });
  e->add("fail", {"message"}, [](std::string m) -> json::value { throw std::invalid_argument(m); });
  auto d = std::make_shared<dispatcher>();
  d->add(e);
  return d;
}

json::value call(rpc_client& c, const std::string& method, json::object a, std::chrono::seconds ceiling = 30s) {
  return wait(c.async_call(method, std::move(a), asio::use_future), ceiling);
}

// A plain rabbitmq-c connection to the broker, with channel 1 open.
amqp_connection_state_t open_raw(const std::string& url) {
  auto u = boost::urls::parse_uri(url);
  REQUIRE(u);
  amqp_connection_state_t c = amqp_new_connection();
  amqp_socket_t* s = amqp_tcp_socket_new(c);
  REQUIRE(amqp_socket_open(s, std::string(u->host()).c_str(), static_cast<int>(u->port_number())) == 0);
  REQUIRE(amqp_login(c, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, std::string(u->user()).c_str(),
                     std::string(u->password()).c_str())
              .reply_type == AMQP_RESPONSE_NORMAL);
  amqp_channel_open(c, 1);
  REQUIRE(amqp_get_rpc_reply(c).reply_type == AMQP_RESPONSE_NORMAL);
  return c;
}

void close_raw(amqp_connection_state_t c) {
  amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
  amqp_connection_close(c, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(c);
}

// `inner` in oslo.messaging's version 2.0 envelope, serialized.
std::string sealed(const std::string& inner) {
  json::object env;
  env["oslo.version"] = "2.0";
  env["oslo.message"] = inner;
  return json::serialize(env);
}

// Publishes raw bytes to the control exchange with routing key `key`, the
// way a broken peer would.
void publish_raw(const std::string& url, const std::string& key, const std::string& body) {
  amqp_connection_state_t c = open_raw(url);
  amqp_bytes_t b{body.size(), const_cast<char*>(body.data())};
  REQUIRE(amqp_basic_publish(c, 1, amqp_cstring_bytes("openstack"), amqp_cstring_bytes(key.c_str()), 0, 0,
                             nullptr, b) == 0);
  close_raw(c);
}

}  // namespace

TEST_CASE("calls, casts and fanout casts cross the broker between two servers", "[rabbit]") {
  captured_log log;
  const std::string url = broker_url();
  auto server_side = open(url, log);
  auto client_side = open(url, log);
  const std::string t = fresh_topic("calc");
  asio_loop loop;
  auto seen = std::make_shared<counter>();
  rpc_server s1(server_side, topic(t, "s1"), make_service("s1", seen), loop.get_executor());
  rpc_server s2(server_side, topic(t, "s2"), make_service("s2", seen), loop.get_executor());
  s1.start();
  s2.start();

  rpc_client client(client_side, topic(t));
  CHECK(call(client, "add", args("a", 20, "b", 22)) == 42);
  json::value nested = json::parse(R"({"k": [1, 2.5, "é", null, true, {"x": "y"}]})");
  CHECK(call(client, "echo", json::object{{"value", nested}}) == nested);

  // Server-specific targets reach that server only.
  rpc_client to_s2(client_side, topic(t, "s2"));
  for (int i = 0; i < 5; ++i) CHECK(call(to_s2, "whoami", {}) == "s2");

  // Both servers take calls on the shared topic queue.
  std::set<std::string> answered;
  for (int i = 0; i < 40 && answered.size() < 2; ++i) answered.insert(json::value_to<std::string>(call(client, "whoami", {})));
  CHECK(answered.size() == 2);

  // A fanout cast reaches every server; a plain cast one of them.
  rpc_client fan(client_side, topic(t, "", true));
  wait(fan.async_cast("note", {}, asio::use_future));
  REQUIRE(seen->wait_for(2));
  wait(client.async_cast("note", {}, asio::use_future));
  REQUIRE(seen->wait_for(3));

  // A method's exception comes back with its class and message.
  try {
    call(client, "fail", args("message", "boom"));
    FAIL("no error");
  } catch (const remote_error& e) {
    CHECK(e.exc_type() == "invalid_argument");
    CHECK(std::string(e.what()).find("boom") != std::string::npos);
  }
  wait(s1.async_stop(asio::use_future));
  wait(s2.async_stop(asio::use_future));
  CHECK(log.text().find(password_of(url)) == std::string::npos);
}

TEST_CASE("a call nobody serves times out; its message expires with it", "[rabbit]") {
  captured_log log;
  const std::string url = broker_url();
  auto tr = open(url, log);
  const std::string t = fresh_topic("nobody");
  // A queue of the test's own, bound to the call's topic and consumed before
  // the call is sent: the broker hands it a copy of the request at once.
  amqp_connection_state_t spy = open_raw(url);
  amqp_exchange_declare(spy, 1, amqp_cstring_bytes("openstack"), amqp_cstring_bytes("topic"), 0, 0, 0, 0,
                        amqp_empty_table);  // as the driver declares it
  REQUIRE(amqp_get_rpc_reply(spy).reply_type == AMQP_RESPONSE_NORMAL);
  amqp_queue_declare_ok_t* declared = amqp_queue_declare(spy, 1, amqp_empty_bytes, 0, 0, 1, 1, amqp_empty_table);
  REQUIRE(declared);
  const amqp_bytes_t spy_queue = amqp_bytes_malloc_dup(declared->queue);
  amqp_queue_bind(spy, 1, spy_queue, amqp_cstring_bytes("openstack"), amqp_cstring_bytes(t.c_str()),
                  amqp_empty_table);
  REQUIRE(amqp_get_rpc_reply(spy).reply_type == AMQP_RESPONSE_NORMAL);
  amqp_basic_consume(spy, 1, spy_queue, amqp_empty_bytes, 0, 1, 1, amqp_empty_table);
  REQUIRE(amqp_get_rpc_reply(spy).reply_type == AMQP_RESPONSE_NORMAL);
  amqp_bytes_free(spy_queue);

  rpc_client client(tr, topic(t), client_options{.timeout = 1s});
  auto reply = client.async_call("echo", args("value", 1), asio::use_future);
  amqp_envelope_t copy;
  timeval ceiling{30, 0};
  REQUIRE(amqp_consume_message(spy, &copy, &ceiling, 0).reply_type == AMQP_RESPONSE_NORMAL);
  const amqp_basic_properties_t& props = copy.message.properties;
  std::string expiration;
  if (props._flags & AMQP_BASIC_EXPIRATION_FLAG) {
    expiration.assign(static_cast<const char*>(props.expiration.bytes), props.expiration.len);
  }
  amqp_destroy_envelope(&copy);
  close_raw(spy);
  // The broker drops the request when its caller gives up.
  CHECK(expiration == "1000");

  CHECK_THROWS_AS(wait(std::move(reply)), timeout_error);
  CHECK(tr->pending_calls() == 0);
}

TEST_CASE("notifications cross the broker; a requeued one comes back", "[rabbit]") {
  captured_log log;
  const std::string url = broker_url();
  auto tr = open(url, log);
  const std::string t = fresh_topic("events");
  // Sent before anyone listens: the notifier declares the queue, so the
  // listener finds it there.
  notifier n(tr, "compute.host-1", {t});
  wait(n.async_info({}, "instance.create", json::parse(R"({"id": 7})"), asio::use_future));

  asio_loop loop;
  std::mutex m;
  std::vector<std::string> got;
  counter handled;
  int attempts = 0;
  auto ep = std::make_shared<notification_endpoint>("audit");
  ep->on(priority::info, [&](const notification& note) -> notification_result {
    std::lock_guard lk(m);
    if (note.event_type == "instance.delete" && attempts++ == 0) return notification_result::requeue;
    got.push_back(note.event_type + " " + json::serialize(note.payload) + " " + note.publisher_id);
    handled.add();
    return notification_result::handled;
  });
  notification_listener listener(tr, {topic(t)}, {ep}, loop.get_executor());
  listener.start();
  wait(n.async_info({}, "instance.delete", json::parse(R"({"id": 8})"), asio::use_future));
  REQUIRE(handled.wait_for(2, 20s));
  wait(listener.async_stop(asio::use_future));
  std::lock_guard lk(m);
  CHECK(got[0] == R"(instance.create {"id":7} compute.host-1)");
  CHECK(got[1] == R"(instance.delete {"id":8} compute.host-1)");
  CHECK(attempts == 2);
}

// Counts the lines of `text` that contain `needle`.
std::size_t count_lines(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) n += line.find(needle) != std::string::npos;
  return n;
}

TEST_CASE("bad messages are dropped once each, with their message id, and the server goes on serving",
          "[rabbit]") {
  captured_log log;
  const std::string url = broker_url();
  transport_options o;
  o.logger = log.logger;
  o.limits.max_bytes = 64 * 1024;  // so that a "huge" body stays quick to send
  auto tr = transport::create(url, o);
  const std::string t = fresh_topic("poison");
  asio_loop loop;
  rpc_server s(tr, topic(t, "s1"), make_service("s1"), loop.get_executor());
  s.start();
  // Five bodies no decoder accepts; two carry a message id, the last is
  // over the size limit (its id is not read: the limit is there to spare
  // parsing it).
  publish_raw(url, t, "this is not JSON");
  publish_raw(url, t, R"({"oslo.version": "9.0", "oslo.message": "{}"})");
  publish_raw(url, t, R"({"oslo.version": "2.0", "oslo.message": "{\"args\": {}}"})");
  publish_raw(url, t, sealed(R"({"method": 5, "args": [], "_msg_id": "wrong-types-1", "_reply_q": "nowhere"})"));
  publish_raw(url, t, sealed(R"({"method": "echo", "args": {"value": ")" + std::string(100 * 1024, 'x') +
                                 R"("}, "_msg_id": "huge-1", "_reply_q": "nowhere"})"));
  // Well-formed calls the service refuses: answered with the error, not
  // dropped.
  rpc_client client(tr, topic(t));
  try {
    call(client, "no_such_method", args());
    FAIL("an unknown method was served");
  } catch (const remote_error& e) {
    CHECK(e.exc_type() == "NoSuchMethod");
  }
  try {
    call(client, "echo", args("wrong", 1));
    FAIL("a call with the wrong arguments was served");
  } catch (const remote_error& e) {
    INFO(e.exc_type() << ": " << e.value());
    CHECK(e.value().find("wrong") != std::string::npos);
  }
  CHECK(call(client, "echo", args("value", "after")) == "after");
  wait(s.async_stop(asio::use_future));
  const std::string text = log.text();
  INFO(text);
  // Logged once each: acknowledged, not requeued into a loop.
  CHECK(count_lines(text, "dropped an undecodable message") == 5);
  CHECK(count_lines(text, "(message id wrong-types-1)") == 1);
  CHECK(count_lines(text, "more than the limit of 65536") == 1);
}

TEST_CASE("coro_executor serves over the broker with many calls in flight", "[rabbit]") {
  captured_log log;
  auto tr = open(broker_url(), log);
  const std::string t = fresh_topic("load");
  asio_loop loop;
  coport::coro_executor_options options;
  options.fiber_method_threads = 2;  // the service's plain methods
  coport::coro_executor ex(coport::messaging::service{tr, topic(t, "s1"), make_service("s1")}, loop.get_executor(),
                           options);
  ex.start();
  rpc_client client(tr, topic(t));
  std::vector<std::future<json::value>> calls;
  for (int i = 0; i < 500; ++i) calls.push_back(client.async_call("add", args("a", i, "b", 1), asio::use_future));
  for (int i = 0; i < 500; ++i) CHECK(wait(std::move(calls[static_cast<std::size_t>(i)])) == i + 1);
  wait(ex.async_stop(asio::use_future));
}

TEST_CASE("heartbeats keep an idle connection open", "[rabbit][slow]") {
  captured_log log;
  auto tr = open(broker_url("heartbeat=1"), log);
  const std::string t = fresh_topic("idle");
  asio_loop loop;
  rpc_server s(tr, topic(t, "s1"), make_service("s1"), loop.get_executor());
  s.start();
  rpc_client client(tr, topic(t));
  CHECK(call(client, "echo", args("value", 1)) == 1);
  // The broker closes a connection that misses two heartbeats (2 s here):
  // stay idle well past that, then use the same connection.
  std::this_thread::sleep_for(5s);
  CHECK(call(client, "echo", args("value", 2)) == 2);
  wait(s.async_stop(asio::use_future));
  const std::string text = log.text();
  INFO(text);
  CHECK(text.find("connection lost") == std::string::npos);
}

TEST_CASE("after a broker restart the driver reconnects, re-declares and serves", "[rabbit][restart]") {
  const char* state = std::getenv("COPORT_TEST_RABBIT_STATE");
  const char* broker_py = std::getenv("COPORT_TEST_BROKER_PY");
  REQUIRE(state);
  REQUIRE(broker_py);
  captured_log log;
  const std::string url = broker_url("retry_interval=0.2&retry_backoff=0.2&interval_max=1");
  auto server_side = open(url, log);
  auto client_side = open(url, log);
  const std::string t = fresh_topic("restart");
  asio_loop loop;
  rpc_server s(server_side, topic(t, "s1"), make_service("s1"), loop.get_executor());
  s.start();
  rpc_client client(client_side, topic(t), client_options{.timeout = 5s});
  CHECK(call(client, "echo", args("value", "before")) == "before");

  // With durable queues, casts the broker confirmed survive its restart.
  // (Their own exchange: an exchange's durability is fixed when declared.)
  const std::string durable_url = broker_url("amqp_durable_queues=true&retry_interval=0.2&interval_max=1");
  target durable_target = topic(fresh_topic("durable"), "d1");
  durable_target.exchange = "coport_durable_test";
  auto durable_side = open(durable_url, log);
  {
    // A server declares the queues, then goes away: the casts wait there.
    rpc_server first(durable_side, durable_target, make_service("d1"), loop.get_executor());
    first.start();
    wait(first.async_stop(asio::use_future));
  }
  target durable_topic = durable_target;
  durable_topic.server.clear();
  rpc_client durable_client(durable_side, durable_topic);
  for (int i = 0; i < 20; ++i) wait(durable_client.async_cast("note", {}, asio::use_future));

  // Load across the restart: four callers call without pause until told to
  // stop; every call must end (a reply, an error or its 5 s timeout).
  asio_loop callers;
  std::atomic<bool> stop_load{false};
  counter load_ok;
  std::atomic<int> load_failed{0};  // timed out, or the send cut by the reconnection: expected
  std::atomic<int> load_wrong{0};   // any other error, or a reply that is not the value sent
  std::vector<std::future<void>> load;
  for (int c = 0; c < 4; ++c) {
    load.push_back(asio::co_spawn(
        callers.get_executor(),
        [&]() -> asio::awaitable<void> {
          while (!stop_load) {
            try {
              auto a = args("value", "load");
              json::value r = co_await client.async_call("echo", a, asio::use_awaitable);
              if (r == "load") {
                load_ok.add();
              } else {
                ++load_wrong;
              }
            } catch (const timeout_error&) {
              ++load_failed;
            } catch (const transport_error&) {
              ++load_failed;
            } catch (const std::exception&) {
              ++load_wrong;
            }
          }
        },
        asio::use_future));
  }
  REQUIRE(load_ok.wait_for(100, 30s));

  const std::string cmd = std::string("/usr/bin/python3 ") + broker_py + " restart " + state;
  REQUIRE(std::system(cmd.c_str()) == 0);
  const int ok_at_restart = load_ok.value();

  // Calls made while the driver reconnects may fail or time out (never
  // hang: each has a 5 s timeout); within a minute they succeed again.
  bool served = false;
  int failures = 0;
  const auto until = std::chrono::steady_clock::now() + 60s;
  while (!served && std::chrono::steady_clock::now() < until) {
    try {
      served = call(client, "echo", args("value", "after"), 20s) == "after";
    } catch (const timeout_error&) {
      ++failures;  // made while the driver reconnects
    } catch (const transport_error&) {
      ++failures;
    }
  }
  CHECK(served);
  // The load goes on after the restart, then every caller ends: no call hung.
  CHECK(load_ok.wait_for(load_ok.value() + 100, 30s));
  stop_load = true;
  for (auto& f : load) wait(std::move(f), 60s);
  CHECK(load_ok.value() > ok_at_restart + 100);
  // Around the restart a call may time out or fail to go out, and only so.
  CHECK(load_wrong == 0);
  INFO("load: " << load_ok.value() << " answered, " << load_failed << " failed or timed out around the restart; "
                 << failures << " single call(s) before the first answered");
  wait(s.async_stop(asio::use_future));

  auto seen = std::make_shared<counter>();
  rpc_server again(durable_side, durable_target, make_service("d1", seen), loop.get_executor());
  again.start();
  CHECK(seen->wait_for(20, 30s));
  wait(again.async_stop(asio::use_future));
  CHECK(seen->value() == 20);

  const std::string text = log.text();
  INFO(text);
  CHECK(text.find("connection lost") != std::string::npos);
  CHECK(text.find("connected to") != std::string::npos);
  CHECK(text.find(password_of(url)) == std::string::npos);
  // Both sides answered after the restart: connected again, and counted so
  // (more than once if a connection made while the broker started was lost).
  for (const auto& side : {server_side, client_side}) {
    const transport_stats st = side->stats();
    CHECK(st.connected);
    CHECK(st.reconnects >= 1);
    CHECK(st.connects == st.reconnects + 1);
  }
}

TEST_CASE("a reply queue deleted under a client: calls end, the queue is declared again, calls are answered",
          "[rabbit][restart]") {
  // An operator (or a broker policy) deletes the client's reply queue. The
  // broker cancels its consumer; the driver reconnects and declares the
  // queue again. A call whose reply was on its way may time out (the reply
  // has nowhere to go); none hangs, and later calls are answered.
  const char* state = std::getenv("COPORT_TEST_RABBIT_STATE");
  const char* broker_py = std::getenv("COPORT_TEST_BROKER_PY");
  REQUIRE(state);
  REQUIRE(broker_py);
  captured_log log;
  const std::string url = broker_url("retry_interval=0.2&retry_backoff=0.2&interval_max=1");
  auto server_side = open(url, log);
  auto client_side = open(url, log);
  const std::string t = fresh_topic("replyq");
  asio_loop loop;
  rpc_server s(server_side, topic(t, "s1"), make_service("s1"), loop.get_executor());
  s.start();
  rpc_client client(client_side, topic(t), client_options{.timeout = 5s});
  CHECK(call(client, "echo", args("value", "before")) == "before");

  // Every reply queue of the broker goes: this client's and those of
  // transports earlier test cases closed.
  const std::string cmd = std::string("/usr/bin/python3 ") + broker_py + " delete-queues " + state + " reply_";
  REQUIRE(std::system(cmd.c_str()) == 0);

  bool served = false;
  int failures = 0;
  const auto until = std::chrono::steady_clock::now() + 60s;
  while (!served && std::chrono::steady_clock::now() < until) {
    try {
      served = call(client, "echo", args("value", "after"), 20s) == "after";
    } catch (const timeout_error&) {
      ++failures;  // the reply was on its way to the deleted queue
    } catch (const transport_error&) {
      ++failures;  // the send was cut by the reconnection
    }
  }
  CHECK(served);
  for (int i = 0; i < 20; ++i) CHECK(call(client, "add", args("a", i, "b", 1)) == i + 1);
  INFO("reply queue deleted: " << failures << " call(s) failed or timed out before the next was answered");
  wait(s.async_stop(asio::use_future));
  const std::string text = log.text();
  INFO(text);
  CHECK(text.find("cancelled a consumer") != std::string::npos);
  // The client's connection was made again, once; the server's, holding
  // no reply queue, stayed.
  const transport_stats c = client_side->stats();
  CHECK(c.connected);
  CHECK(c.connects == 2);
  CHECK(c.reconnects == 1);
  CHECK(server_side->stats().reconnects == 0);
}

TEST_CASE("TLS: calls cross a TLS connection verified against the CA; a wrong CA is refused", "[rabbit][tls]") {
  const char* tls = std::getenv("COPORT_TEST_RABBIT_TLS_URL");
  const char* wrong_ca = std::getenv("COPORT_TEST_RABBIT_WRONG_CA");
  const char* ca = std::getenv("COPORT_TEST_RABBIT_CA");
  REQUIRE(tls);
  REQUIRE(wrong_ca);
  REQUIRE(ca);
  // rabbitmq-c verifies the certificate against a host name, not an IP
  // address: connect by name (the broker's certificate is for localhost).
  std::string url = tls;
  if (auto at = url.find("@127.0.0.1:"); at != std::string::npos) url.replace(at + 1, 9, "localhost");
  {
    captured_log log;
    auto tr = open(url, log);
    const std::string t = fresh_topic("tls");
    asio_loop loop;
    rpc_server s(tr, topic(t, "s1"), make_service("s1"), loop.get_executor());
    s.start();
    rpc_client client(tr, topic(t), client_options{.timeout = 10s});
    json::value r;
    try {
      r = call(client, "echo", args("value", "over TLS"));
      CHECK(r == "over TLS");
    } catch (const std::exception& e) {
      FAIL(e.what() << "; the driver's log:\n" << log.text());
    }
    wait(s.async_stop(asio::use_future));
    CHECK(log.text().find(password_of(url)) == std::string::npos);
  }
  {
    // The same URL with an unrelated CA: the broker's certificate does not
    // verify, nothing connects, and the call fails at once (not at its
    // timeout: retrying cannot help) with the reason in the log.
    std::string bad = url;
    bad.replace(bad.find(ca), std::strlen(ca), wrong_ca);
    captured_log log;
    auto tr = open(bad + "&retry_interval=0.2", log);
    rpc_client client(tr, topic(fresh_topic("tls")), client_options{.timeout = 60s});
    CHECK_THROWS_AS(call(client, "echo", args("value", 1), 20s), transport_error);
    const transport_stats st = tr->stats();
    CHECK_FALSE(st.connected);
    CHECK(st.connects == 0);
    CHECK(st.publishes == 0);
    const std::string text = log.text();
    INFO(text);
    CHECK(text.find("cannot connect") != std::string::npos);
    CHECK(text.find(password_of(url)) == std::string::npos);
  }
}

TEST_CASE("a graceful stop loses no reply, even when the transport closes right after", "[rabbit]") {
  captured_log log;
  const std::string url = broker_url();
  auto server_side = open(url, log);
  auto client_side = open(url, log);
  const std::string t = fresh_topic("drain");
  auto e = std::make_shared<endpoint>("example", endpoint_target{std::nullopt, "1.3"});
  auto started = std::make_shared<counter>();
  asio_loop loop;
  // Holds every call until the test cancels it, on the loop's one thread
  // (each call starts its wait in the step that counts it).
  asio::steady_timer release(loop.get_executor(), asio::steady_timer::time_point::max());
  e->add("slow", {"value"}, [started, &release](int v) -> asio::awaitable<int> {
    started->add();
    boost::system::error_code released;
    co_await release.async_wait(asio::redirect_error(asio::use_awaitable, released));
    co_return v;
  });
  auto d = std::make_shared<dispatcher>();
  d->add(e);
  auto server = std::make_unique<rpc_server>(server_side, topic(t, "s1"), d, loop.get_executor());
  server->start();
  rpc_client client(client_side, topic(t));
  std::vector<std::future<json::value>> calls;
  for (int i = 0; i < 20; ++i) calls.push_back(client.async_call("slow", args("value", i), asio::use_future));
  // Every call taken by the server, none answered yet: then stop, release
  // them, and let the server's transport go at once (its thread writes what
  // is left).
  REQUIRE(started->wait_for(20, 30s));
  auto stopped = server->async_stop(asio::use_future);  // stops taking calls before it returns
  CHECK(stopped.wait_for(0s) == std::future_status::timeout);  // the held calls keep it
  asio::post(loop.get_executor(), [&] { release.cancel(); });
  wait(std::move(stopped));
  server.reset();
  server_side.reset();
  for (int i = 0; i < 20; ++i) CHECK(wait(std::move(calls[static_cast<std::size_t>(i)])) == i);
}

namespace {

// Waits up to `d` for `needle` to show in the log.
bool logged_within(captured_log& log, const std::string& needle, std::chrono::seconds d) {
  const auto until = std::chrono::steady_clock::now() + d;
  while (log.text().find(needle) == std::string::npos) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

}  // namespace

TEST_CASE("quorum queues: a server, its calls, casts and notifications on rabbit_quorum_queue", "[rabbit][quorum]") {
  // Quorum makes the control exchange durable, as in oslo.messaging: every
  // service on an exchange must agree, so these cases use one of their own.
  captured_log log;
  const std::string url = broker_url("rabbit_quorum_queue=true&rabbit_quorum_delivery_limit=4");
  const std::string t = fresh_topic("quorum");
  const std::string exchange = "x_" + t;
  auto tr = open(url, log, exchange);
  asio_loop loop;
  auto seen = std::make_shared<counter>();
  rpc_server s(tr, topic(t, "s1"), make_service("s1", seen), loop.get_executor());
  s.start();
  rpc_client client(tr, topic(t));
  CHECK(call(client, "add", args("a", 2, "b", 3)) == 5);
  rpc_client to_s1(tr, topic(t, "s1"));
  CHECK(call(to_s1, "whoami", {}) == "s1");
  wait(client.async_cast("note", {}, asio::use_future));
  rpc_client fan(tr, topic(t, "", true));
  wait(fan.async_cast("note", {}, asio::use_future));
  REQUIRE(seen->wait_for(2));

  // The topic queue is a quorum queue: declaring it as a durable classic
  // queue is refused, and the broker says what it has.
  captured_log other_log;
  auto classic = open(broker_url("amqp_durable_queues=true"), other_log, exchange);
  try {
    rpc_server c(classic, topic(t, "s2"), make_service("s2"), loop.get_executor());
    c.start();
    FAIL("a classic server started on a quorum topic queue");
  } catch (const declare_refused& e) {
    INFO(e.what());
    CHECK(e.code() == make_error_code(errc::declare_refused));
    CHECK(e.kind() == "queue");
    CHECK(e.name() == t);
    CHECK(e.argument() == "x-queue-type");
    CHECK(e.broker_has().find("quorum") != std::string::npos);
    CHECK(e.requested() == "none (a classic queue)");
  }

  // Notifications: the notifier declares the quorum queue the listener
  // consumes, so one sent first is kept.
  const std::string notes = t + "_notes";
  notifier n(tr, "quorum-test", {notes});
  wait(n.async_info({}, "thing.happened", json::parse(R"({"n": 1})"), asio::use_future));
  counter handled;
  auto ep = std::make_shared<notification_endpoint>("quorum");
  ep->on(priority::info, [&](const notification& note) -> notification_result {
    if (note.event_type == "thing.happened") handled.add();
    return notification_result::handled;
  });
  notification_listener nl(tr, {topic(notes)}, {ep}, loop.get_executor());
  nl.start();
  CHECK(handled.wait_for(1, 30s));
  wait(nl.async_stop(asio::use_future));
  wait(s.async_stop(asio::use_future));
}

TEST_CASE("a queue that exists with other arguments: the start fails with a named error, once, never retried",
          "[rabbit][quorum]") {
  captured_log log;
  const std::string t = fresh_topic("inequivalent");
  const std::string exchange = "x_" + t;
  asio_loop loop;
  auto quorum = open(broker_url("rabbit_quorum_queue=true"), log, exchange);
  rpc_server q(quorum, topic(t, "s1"), make_service("s1"), loop.get_executor());
  q.start();

  captured_log classic_log;
  auto classic = open(broker_url(), classic_log, exchange);
  try {
    rpc_server c(classic, topic(t, "s2"), make_service("s2"), loop.get_executor());
    c.start();
    FAIL("a classic, transient server started on a quorum topic queue");
  } catch (const declare_refused& e) {
    const std::string what = e.what();
    INFO(what);
    // RabbitMQ names the first argument that differs, durability; the
    // driver learns the queue type as well, which is what differs here.
    CHECK(e.argument() == "x-queue-type");
    CHECK(e.name() == t);
    CHECK(e.broker_has().find("quorum") != std::string::npos);
    CHECK(e.requested() == "none (a classic queue)");
    CHECK(what.find("queue '" + t + "' cannot be declared: it exists on the broker with durable = 'true' and "
                    "x-queue-type = the value 'quorum'") != std::string::npos);
    CHECK(what.find("coport declared durable = 'false' and x-queue-type = none (a classic queue)") !=
          std::string::npos);
    CHECK(what.find("PRECONDITION_FAILED") != std::string::npos);
    CHECK(what.find(password_of(broker_url())) == std::string::npos);
  }
  // The refused listener is not declared again: the transport goes on
  // working for everything else, and the refusal was logged once.
  target elsewhere = topic(t + "_other", "s3");
  elsewhere.exchange = exchange + "_classic";
  rpc_client client(classic, elsewhere);
  rpc_server other(classic, elsewhere, make_service("s3"), loop.get_executor());
  other.start();
  CHECK(call(client, "echo", args("value", "still")) == "still");
  // The quorum server was not disturbed.
  rpc_client qc(quorum, topic(t));
  CHECK(call(qc, "whoami", {}) == "s1");
  wait(other.async_stop(asio::use_future));
  wait(q.async_stop(asio::use_future));
  const std::string text = classic_log.text();
  INFO(text);
  CHECK(count_lines(text, "cannot be declared") == 1);

  // A call through a transport whose topic exchange differs in durability
  // fails at once, saying so, and the log names the exchange.
  rpc_client bad(classic, topic(t));
  try {
    call(bad, "echo", args("value", "x"));
    FAIL("a call went through an exchange of another durability");
  } catch (const transport_error& e) {
    CHECK(std::string(e.what()) == "could not send the call: the broker refused a declaration");
  }
  const std::string after = classic_log.text();
  CHECK(count_lines(after, "exchange '" + exchange + "' cannot be declared: it exists on the broker with durable = 'true'") == 1);
}

TEST_CASE("a reply whose queue is gone comes back from the broker: logged once with its message id, dropped",
          "[rabbit]") {
  captured_log log;
  const std::string url = broker_url();
  auto tr = open(url, log);
  const std::string t = fresh_topic("returned");
  asio_loop loop;
  rpc_server s(tr, topic(t, "s1"), make_service("s1"), loop.get_executor());
  s.start();
  json::object inner;
  inner["method"] = "echo";
  inner["args"] = json::object{{"value", "lost"}};
  inner["_msg_id"] = "returned-reply-1";
  inner["_reply_q"] = "reply_" + make_unique_id();  // never declared
  inner["version"] = "1.3";
  publish_raw(url, t, sealed(json::serialize(inner)));
  CHECK(logged_within(log, "(message id returned-reply-1)", 30s));
  CHECK(tr->stats().returns == 1);  // counted before it is logged
  rpc_client client(tr, topic(t));
  CHECK(call(client, "echo", args("value", "after")) == "after");
  wait(s.async_stop(asio::use_future));
  const std::string text = log.text();
  INFO(text);
  CHECK(count_lines(text, "was returned by the broker") == 1);
  CHECK(count_lines(text, "the reply (message id returned-reply-1) to queue reply_") == 1);
  CHECK(tr->stats().returns == 1);  // the later reply was routed
}

TEST_CASE("a call the broker delivers again is dropped, once, with its message id (at most once); a cast runs",
          "[rabbit]") {
  captured_log log;
  const std::string url = broker_url();
  auto tr = open(url, log);
  const std::string t = fresh_topic("redelivered");
  asio_loop loop;
  auto seen = std::make_shared<counter>();
  {
    // The topic queue, declared by a server that stops at once.
    rpc_server first(tr, topic(t, "s0"), make_service("s0"), loop.get_executor());
    first.start();
    wait(first.async_stop(asio::use_future));
  }
  json::object inner;
  inner["method"] = "note";
  inner["args"] = json::object{};
  inner["_msg_id"] = "delivered-twice-1";
  inner["_reply_q"] = "reply_" + make_unique_id();
  publish_raw(url, t, sealed(json::serialize(inner)));
  json::object cast_inner;
  cast_inner["method"] = "note";
  cast_inner["args"] = json::object{};
  publish_raw(url, t, sealed(json::serialize(cast_inner)));

  // A consumer takes both and goes away without acknowledging them, as a
  // server whose connection or node is lost: the broker delivers them
  // again, marked redelivered.
  amqp_connection_state_t raw = open_raw(url);
  amqp_basic_consume(raw, 1, amqp_cstring_bytes(t.c_str()), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
  REQUIRE(amqp_get_rpc_reply(raw).reply_type == AMQP_RESPONSE_NORMAL);
  for (int i = 0; i < 2; ++i) {
    amqp_envelope_t envelope;
    timeval limit{30, 0};
    REQUIRE(amqp_consume_message(raw, &envelope, &limit, 0).reply_type == AMQP_RESPONSE_NORMAL);
    CHECK_FALSE(envelope.redelivered);
    amqp_destroy_envelope(&envelope);
  }
  close_raw(raw);

  rpc_server s(tr, topic(t, "s1"), make_service("s1", seen), loop.get_executor());
  s.start();
  CHECK(logged_within(log, "(message id delivered-twice-1) that the broker delivered again", 30s));
  // The server goes on serving; the dropped call never ran, the cast
  // (at least once: the broker confirmed it) did.
  rpc_client client(tr, topic(t));
  CHECK(call(client, "echo", args("value", "after")) == "after");
  wait(client.async_cast("note", {}, asio::use_future));
  REQUIRE(seen->wait_for(2));
  wait(s.async_stop(asio::use_future));
  CHECK(seen->value() == 2);
  CHECK(count_lines(log.text(), "that the broker delivered again") == 1);
  // The dropped call and the cast that ran, both marked by the broker; the
  // later call, its reply and cast were not.
  CHECK(tr->stats().redeliveries == 2);
}

namespace {

// Waits up to `d` for `pred` to hold: the broker confirms a reply when it
// has routed it, and no completion tells the test when that is.
template <class Pred>
bool holds_within(std::chrono::seconds d, Pred pred) {
  const auto until = std::chrono::steady_clock::now() + d;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

}  // namespace

TEST_CASE("a transport's stats count its connection, publishes, confirms and deliveries, on each side",
          "[rabbit][stats]") {
  captured_log log;
  const std::string url = broker_url();
  auto server_side = open(url, log);
  auto client_side = open(url, log);
  const std::string t = fresh_topic("stats");
  asio_loop loop;
  auto seen = std::make_shared<counter>();
  rpc_server s(server_side, topic(t, "s1"), make_service("s1", seen), loop.get_executor());
  s.start();
  // A started server consumes its queues: its connection is up.
  const transport_stats started = server_side->stats();
  CHECK(started.driver == "rabbit");
  CHECK(started.connected);
  CHECK(started.connects == 1);
  CHECK(started.publishes == 0);
  CHECK(started.received == 0);
  counter noted;
  auto ep = std::make_shared<notification_endpoint>("audit");
  ep->on(priority::info, [&](const notification&) -> notification_result {
    noted.add();
    return notification_result::handled;
  });
  notification_listener listener(server_side, {topic(t + "_events")}, {ep}, loop.get_executor());
  listener.start();

  constexpr int calls = 10;
  constexpr int casts = 4;
  rpc_client client(client_side, topic(t));
  for (int i = 0; i < calls; ++i) CHECK(call(client, "add", args("a", i, "b", 1)) == i + 1);
  for (int i = 0; i < casts; ++i) wait(client.async_cast("note", {}, asio::use_future));
  REQUIRE(seen->wait_for(casts, 30s));
  notifier n(client_side, "stats-test", {t + "_events"});
  wait(n.async_info({}, "thing.done", json::object{}, asio::use_future));
  REQUIRE(noted.wait_for(1, 30s));
  wait(listener.async_stop(asio::use_future));
  wait(s.async_stop(asio::use_future));

  transport_stats c = client_side->stats();
  CHECK(c.publishes == calls + casts + 1);  // the calls, the casts, the notification
  CHECK(c.received == calls);               // the replies
  transport_stats sv = server_side->stats();
  CHECK(sv.publishes == calls);             // the replies
  CHECK(sv.received == calls + casts + 1);  // the calls, the casts, the notification
  // Every publish is confirmed, once: the casts and the notification before
  // they completed, the calls and replies when the broker got to them.
  CHECK(holds_within(30s, [&] {
    c = client_side->stats();
    sv = server_side->stats();
    return c.confirms == c.publishes && sv.confirms == sv.publishes;
  }));
  INFO("client confirms " << c.confirms << " of " << c.publishes << ", server " << sv.confirms << " of "
                          << sv.publishes);
  CHECK(c.confirms == calls + casts + 1);
  CHECK(sv.confirms == calls);
  for (const auto& x : {c, sv}) {
    CHECK(x.connected);
    CHECK(x.connects == 1);
    CHECK(x.reconnects == 0);
    CHECK(x.nacks == 0);
    CHECK(x.returns == 0);
    CHECK(x.redeliveries == 0);
  }
}
