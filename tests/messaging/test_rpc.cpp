#include <coport/messaging/rpc/client.hpp>
#include <coport/messaging/rpc/server.hpp>
#include <coport/messaging/notify/notify.hpp>

#include <catch2/catch.hpp>

#include "messaging_test_support.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <future>
#include <mutex>
#include <set>
#include <thread>

namespace asio = boost::asio;
namespace json = boost::json;
using namespace coport::messaging;
using namespace coport::test;
using namespace std::chrono_literals;

namespace {

// The example service of the project: version 1.3, namespace unset.
std::shared_ptr<dispatcher> example_service(std::string server_name = "") {
  auto e = std::make_shared<endpoint>("example", endpoint_target{std::nullopt, "1.3"});
  e->add("echo", {"value"}, [](json::value v) { return v; });
  e->add("add", {"a", "b"}, [](std::int64_t a, std::int64_t b) -> asio::awaitable<std::int64_t> {
    co_return a + b;
  });
  e->add("fail", {"message"}, [](std::string m) -> json::value { throw std::invalid_argument(m); });
  e->add("whoami", {}, [server_name] { return server_name; });
  auto d = std::make_shared<dispatcher>();
  d->add(e);
  return d;
}

target topic(std::string t, std::string server = "") {
  target x;
  x.topic = std::move(t);
  x.server = std::move(server);
  return x;
}

}  // namespace

TEST_CASE("a coroutine client calls a coroutine method over memory://", "[messaging][rpc]") {
  asio_loop loop;
  auto tr = transport::create(unique_memory_url());
  rpc_server server(tr, topic("calc", "s1"), example_service(), loop.get_executor());
  server.start();
  rpc_client client(tr, topic("calc"));
  auto sum = asio::co_spawn(
      loop.get_executor(),
      [&]() -> asio::awaitable<std::int64_t> {
        // args() rather than a braced list: g++ 12 rejects the latter in a co_await.
        co_return co_await client.async_call<std::int64_t>("add", args("a", 20, "b", 22),
                                                            asio::use_awaitable);
      },
      asio::use_future);
  CHECK(wait(std::move(sum)) == 42);
  wait(server.async_stop(asio::use_future));
}

TEST_CASE("the same call works with a future, a callback and a coroutine", "[messaging][rpc]") {
  asio_loop loop;
  auto tr = transport::create(unique_memory_url());
  rpc_server server(tr, topic("calc", "s1"), example_service(), loop.get_executor());
  server.start();
  rpc_client client(tr, topic("calc"));
  json::value arg = json::parse(R"({"k": [1, 2.5, "x", null, true]})");

  CHECK(wait(client.async_call("echo", json::object{{"value", arg}}, asio::use_future)) == arg);

  std::promise<json::value> via_callback;
  client.async_call("echo", json::object{{"value", arg}}, [&](std::exception_ptr e, json::value v) {
    if (e) via_callback.set_exception(e);
    else via_callback.set_value(std::move(v));
  });
  CHECK(wait(via_callback.get_future()) == arg);

  auto via_coroutine = asio::co_spawn(
      loop.get_executor(),
      [&]() -> asio::awaitable<json::value> {
        co_return co_await client.async_call("echo", args("value", arg), asio::use_awaitable);
      },
      asio::use_future);
  CHECK(wait(std::move(via_coroutine)) == arg);
  wait(server.async_stop(asio::use_future));
}

TEST_CASE("once a call's result is delivered, the transport no longer touches the caller's executor",
          "[messaging][rpc]") {
  // The server's thread delivers the reply by posting to the caller's
  // executor. Right after the post the caller may take the result, return
  // from run() and destroy its io_context while that thread is still inside
  // the post, waking the io_context: TSan saw it as the example client
  // exited after its call. The result must wait for the post to return.
  asio_loop server_loop;
  auto tr = transport::create(unique_memory_url());
  rpc_server server(tr, topic("calc", "s1"), example_service(), server_loop.get_executor());
  server.start();
  rpc_client client(tr, topic("calc"));
  constexpr int rounds = 3;
  std::size_t handoffs = 0;
  for (int round = 0; round < rounds; ++round) {
    asio::io_context io;
    slow_handoff_watch watch;
    watch.loop_thread = std::this_thread::get_id();
    json::value result;
    // The executor tracks no work: this guard keeps run() going until the result.
    auto work = asio::make_work_guard(io);
    client.async_call("echo", json::object{{"value", round}},
                      asio::bind_executor(asio::any_io_executor(slow_handoff_executor(io.get_executor(), &watch)),
                                          [&](std::exception_ptr e, json::value v) {
                                            if (!e) result = std::move(v);
                                            watch.done();
                                            work.reset();
                                          }));
    io.run();
    CHECK(result == json::value(round));
    handoffs += watch.handoffs_outside;
    CHECK(watch.done_during_handoff == 0);
  }
  CHECK(handoffs >= rounds);  // the replies did come from the server's thread
  wait(server.async_stop(asio::use_future));
}

TEST_CASE("a method's exception reaches the caller as a remote_error with class and message",
          "[messaging][rpc]") {
  asio_loop loop;
  auto tr = transport::create(unique_memory_url());
  rpc_server server(tr, topic("calc", "s1"), example_service(), loop.get_executor());
  server.start();
  rpc_client client(tr, topic("calc"));
  try {
    wait(client.async_call("fail", {{"message", "the disk is full"}}, asio::use_future));
    FAIL("no error");
  } catch (const remote_error& e) {
    CHECK(e.exc_type() == "invalid_argument");
    CHECK(e.module() == "std");
    CHECK(e.value() == "the disk is full");
    CHECK(e.code() == errc::remote_error);
  }
  wait(server.async_stop(asio::use_future));
}

TEST_CASE("dispatcher errors come back as oslo.messaging's remote errors", "[messaging][rpc]") {
  asio_loop loop;
  auto tr = transport::create(unique_memory_url());
  rpc_server server(tr, topic("calc", "s1"), example_service(), loop.get_executor());
  server.start();
  rpc_client client(tr, topic("calc"));
  auto remote = [&](const rpc_client& c, std::string method, json::object args) {
    try {
      wait(c.async_call(std::move(method), std::move(args), asio::use_future));
    } catch (const remote_error& e) {
      return std::make_pair(e.exc_type(), e.value());
    }
    return std::make_pair(std::string("no error"), std::string());
  };
  CHECK(remote(client, "nope", {}).first == "NoSuchMethod");
  CHECK(remote(client.prepare({.version = "1.4"}), "echo", {{"value", 1}}).first == "UnsupportedVersion");
  CHECK(remote(client.prepare({.version = "2.0"}), "echo", {{"value", 1}}).first == "UnsupportedVersion");
  CHECK(remote(client.prepare({.ns = "other"}), "echo", {{"value", 1}}).first == "UnsupportedVersion");
  auto [type, message] = remote(client, "add", {{"a", 1}});
  CHECK(type == "bad_arguments");
  CHECK_THAT(message, Catch::Contains("'b' is missing"));
  CHECK(remote(client.prepare({.version = "1.2"}), "echo", {{"value", 1}}).first == "no error");
  wait(server.async_stop(asio::use_future));
}

TEST_CASE("a call nobody answers times out with a typed error", "[messaging][rpc]") {
  asio_loop loop;
  auto tr = transport::create(unique_memory_url());
  rpc_client client(tr, topic("nobody"), {.timeout = 20ms});
  CHECK_THROWS_AS(wait(client.async_call("echo", {{"value", 1}}, asio::use_future)), timeout_error);
  auto from_coroutine = asio::co_spawn(
      loop.get_executor(),
      [&]() -> asio::awaitable<boost::system::error_code> {
        try {
          co_await client.async_call("echo", args("value", 1), asio::use_awaitable);
        } catch (const timeout_error& e) {
          co_return e.code();
        }
        co_return boost::system::error_code{};
      },
      asio::use_future);
  CHECK(wait(std::move(from_coroutine)) == errc::timeout);
  CHECK(tr->pending_calls() == 0);
}

TEST_CASE("a late reply after a timeout is dropped without harm", "[messaging][rpc]") {
  asio_loop loop;
  auto tr = transport::create(unique_memory_url());
  std::promise<void> release;
  auto released = release.get_future().share();
  auto e = std::make_shared<endpoint>("slow");
  e->add("slow", {}, [released] {
    released.wait();  // a plain method holding the server's thread: fine for this test
    return 1;
  });
  auto d = std::make_shared<dispatcher>();
  d->add(e);
  asio_loop server_loop;
  rpc_server server(tr, topic("slow", "s1"), d, server_loop.get_executor());
  server.start();
  rpc_client client(tr, topic("slow"), {.timeout = 20ms});
  CHECK_THROWS_AS(wait(client.async_call("slow", {}, asio::use_future)), timeout_error);
  release.set_value();
  wait(server.async_stop(asio::use_future));  // the reply went out after the caller gave up
  CHECK(server.served() == 1);
  CHECK(tr->pending_calls() == 0);
}

TEST_CASE("casts reach the server and a cast to nowhere is not an error", "[messaging][rpc]") {
  asio_loop loop;
  auto tr = transport::create(unique_memory_url());
  std::promise<std::int64_t> got;
  auto e = std::make_shared<endpoint>("sink");
  e->add("put", {"v"}, [&](std::int64_t v) { got.set_value(v); });
  auto d = std::make_shared<dispatcher>();
  d->add(e);
  rpc_server server(tr, topic("sink", "s1"), d, loop.get_executor());
  server.start();
  rpc_client client(tr, topic("sink"));
  wait(client.async_cast("put", {{"v", 7}}, asio::use_future));
  CHECK(wait(got.get_future()) == 7);
  wait(rpc_client(tr, topic("nowhere")).async_cast("put", {{"v", 1}}, asio::use_future));
  wait(server.async_stop(asio::use_future));
}

TEST_CASE("topic, server-specific and fanout targets route as oslo.messaging does",
          "[messaging][rpc]") {
  asio_loop loop;
  auto tr = transport::create(unique_memory_url());
  std::promise<std::string> pinged_a;
  std::promise<std::string> pinged_b;
  auto service = [](std::string name, std::promise<std::string>& pinged) {
    auto d = example_service(name);
    auto e = std::make_shared<endpoint>("fanout", endpoint_target{std::nullopt, "1.3"});
    e->add("ping_fanout", {}, [&pinged, name] { pinged.set_value(name); });
    d->add(e);
    return d;
  };
  rpc_server a(tr, topic("svc", "a"), service("a", pinged_a), loop.get_executor());
  rpc_server b(tr, topic("svc", "b"), service("b", pinged_b), loop.get_executor());
  a.start();
  b.start();
  rpc_client client(tr, topic("svc"));

  // Server-specific: always that server.
  for (int i = 0; i < 5; ++i) {
    CHECK(wait(client.prepare({.server = "b"}).async_call<std::string>("whoami", {}, asio::use_future)) == "b");
  }
  // Topic: competing consumers; both take calls.
  std::set<std::string> answered;
  std::vector<std::future<std::string>> calls;
  for (int i = 0; i < 40; ++i) calls.push_back(client.async_call<std::string>("whoami", {}, asio::use_future));
  for (auto& c : calls) answered.insert(wait(std::move(c)));
  CHECK(answered == std::set<std::string>{"a", "b"});
  // Fanout: every server gets the cast. Each server's endpoint reports it.
  wait(client.prepare({.fanout = true}).async_cast("ping_fanout", {}, asio::use_future));
  CHECK(wait(pinged_a.get_future()) == "a");
  CHECK(wait(pinged_b.get_future()) == "b");
  // A call to a fanout target is refused before sending.
  CHECK_THROWS_AS(wait(client.prepare({.fanout = true}).async_call("echo", {{"value", 1}}, asio::use_future)),
                  invalid_target);
  wait(a.async_stop(asio::use_future));
  wait(b.async_stop(asio::use_future));
}

TEST_CASE("prepare overrides a copy and leaves the original alone", "[messaging][rpc]") {
  auto tr = transport::create(unique_memory_url());
  target t = topic("svc");
  t.version = "1.0";
  rpc_client base(tr, t, {.timeout = 5s});
  rpc_client p = base.prepare({.server = "s9", .version = "1.2", .ns = "n", .timeout = 1s});
  CHECK(p.get_target().server == "s9");
  CHECK(p.get_target().version == "1.2");
  CHECK(p.get_target().ns == "n");
  CHECK(p.options().timeout == 1s);
  CHECK(base.get_target().server.empty());
  CHECK(base.get_target().version == "1.0");
  CHECK(base.options().timeout == 5s);
}

TEST_CASE("a version cap refuses newer versions before sending", "[messaging][rpc]") {
  auto tr = transport::create(unique_memory_url());
  target t = topic("svc");
  rpc_client client(tr, t, {.timeout = 1s, .version_cap = "1.2"});
  CHECK(client.can_send_version("1.1"));
  CHECK(client.can_send_version("1.2"));
  CHECK_FALSE(client.can_send_version("1.3"));
  CHECK_FALSE(client.can_send_version("2.0"));
  CHECK_THROWS_AS(wait(client.prepare({.version = "1.3"}).async_call("echo", {}, asio::use_future)),
                  version_cap_error);
  CHECK_THROWS_AS(wait(client.prepare({.version = "1.3"}).async_cast("echo", {}, asio::use_future)),
                  version_cap_error);
}

TEST_CASE("invalid targets are refused with a clear error", "[messaging][rpc]") {
  auto tr = transport::create(unique_memory_url());
  CHECK_THROWS_AS(wait(rpc_client(tr, topic("")).async_call("echo", {}, asio::use_future)), invalid_target);
  CHECK_THROWS_WITH(wait(rpc_client(tr, topic("has space")).async_cast("echo", {}, asio::use_future)),
                    Catch::Contains("topic"));
  target bad_version = topic("svc");
  bad_version.version = "x.y";
  CHECK_THROWS_AS(wait(rpc_client(tr, bad_version).async_call("echo", {}, asio::use_future)), invalid_target);
  CHECK_THROWS_AS(tr->listen(topic("svc")), invalid_target);  // a server needs a name
}

TEST_CASE("transport URLs are checked and passwords never shown", "[messaging][rpc]") {
  CHECK_THROWS_AS(transport::create("nothing-here"), invalid_url);
  try {
    transport::create("kafka://user:s3cret@host:9092/");
    FAIL("accepted");
  } catch (const invalid_url& e) {
    CHECK_THAT(e.what(), !Catch::Contains("s3cret"));
    CHECK_THAT(e.what(), Catch::Contains("user:****@host"));
  }
  CHECK_THROWS_AS(transport::create("memory://a/b"), invalid_url);
  CHECK(transport::create("memory://named")->describe() == "memory://named");
}

TEST_CASE("the server never has more requests in flight than its bound", "[messaging][rpc]") {
  asio_loop loop;
  auto tr = transport::create(unique_memory_url());
  // Loop thread only: the methods, and what the test posts, run there.
  int now = 0;
  int peak = 0;
  bool open = false;
  std::promise<void> three_held;
  // Each call is held until the test opens the gate, so without the bound
  // every call sent would be in flight by then.
  asio::steady_timer gate(loop.get_executor(), asio::steady_timer::time_point::max());
  auto e = std::make_shared<endpoint>("bounded");
  e->add("work", {}, [&]() -> asio::awaitable<int> {
    const int n = ++now;
    peak = std::max(peak, n);
    if (n == 3 && !open) three_held.set_value();
    if (!open) {
      boost::system::error_code opened;
      co_await gate.async_wait(asio::redirect_error(asio::use_awaitable, opened));
    }
    --now;
    co_return n;
  });
  auto d = std::make_shared<dispatcher>();
  d->add(e);
  rpc_server server(tr, topic("b", "s1"), d, loop.get_executor(), {.max_in_flight = 3});
  server.start();
  rpc_client client(tr, topic("b"));
  std::vector<std::future<json::value>> calls;
  for (int i = 0; i < 30; ++i) calls.push_back(client.async_call("work", {}, asio::use_future));
  // Every call is out and three are held: a server past its bound has taken
  // more, and the loop runs them before it opens the gate.
  wait(three_held.get_future());
  auto opened = asio::post(loop.get_executor(), asio::use_future([&] {
    open = true;
    gate.cancel();
    return peak;
  }));
  CHECK(wait(std::move(opened)) == 3);  // reached, not passed while the first three were held
  for (auto& c : calls) wait(std::move(c));
  CHECK(wait(asio::post(loop.get_executor(), asio::use_future([&] { return peak; }))) == 3);  // never passed
  wait(server.async_stop(asio::use_future));
}

TEST_CASE("stopping a server lets in-flight calls reply and takes no new ones", "[messaging][rpc]") {
  asio_loop loop;
  auto tr = transport::create(unique_memory_url());
  std::promise<void> entered;
  // Holds the call until the test cancels it (on the loop's one thread,
  // which has by then started the wait: entered is set just before it).
  asio::steady_timer release(loop.get_executor(), asio::steady_timer::time_point::max());
  auto e = std::make_shared<endpoint>("drain");
  e->add("hold", {}, [&]() -> asio::awaitable<std::string> {
    entered.set_value();
    boost::system::error_code released;
    co_await release.async_wait(asio::redirect_error(asio::use_awaitable, released));
    co_return "done";
  });
  auto d = std::make_shared<dispatcher>();
  d->add(e);
  rpc_server server(tr, topic("d", "s1"), d, loop.get_executor());
  server.start();
  rpc_client client(tr, topic("d"), {.timeout = 30s});
  auto held = client.async_call<std::string>("hold", {}, asio::use_future);
  wait(entered.get_future());
  auto stopped = server.async_stop(asio::use_future);
  CHECK(stopped.wait_for(0s) != std::future_status::ready);
  CHECK(server.in_flight() == 1);
  asio::post(loop.get_executor(), [&] { release.cancel(); });
  CHECK(wait(std::move(held)) == "done");  // its reply was sent
  wait(std::move(stopped));
  // A call sent now waits in the transport for a server.
  CHECK_THROWS_AS(wait(rpc_client(tr, topic("d"), {.timeout = 20ms}).async_call("hold", {}, asio::use_future)),
                  timeout_error);
}

TEST_CASE("clients and servers on several threads share one memory transport", "[messaging][rpc]") {
  asio_loop server_loop(2);
  auto tr = transport::create(unique_memory_url());
  rpc_server server(tr, topic("mt", "s1"), example_service(), server_loop.get_executor(), {.max_in_flight = 16});
  server.start();
  constexpr int threads = 4;
  constexpr int per_thread = 200;
  std::vector<std::thread> callers;
  std::atomic<int> right{0};
  for (int t = 0; t < threads; ++t) {
    callers.emplace_back([&, t] {
      rpc_client client(tr, topic("mt"));
      for (int i = 0; i < per_thread; ++i) {
        auto v = client.async_call<std::int64_t>("add", {{"a", t}, {"b", i}}, asio::use_future).get();
        if (v == t + i) ++right;
      }
    });
  }
  for (auto& c : callers) c.join();
  CHECK(right == threads * per_thread);
  wait(server.async_stop(asio::use_future));
}

TEST_CASE("a transport whose last owner is a call's timeout handler closes on the transport's own thread",
          "[messaging][rpc]") {
  // The handler has no executor, so it runs on the transport's deadline
  // thread, and it holds the last reference: the transport is destroyed on
  // the thread it would join.
  for (int round = 0; round < 20; ++round) {
    std::promise<std::pair<std::thread::id, bool>> ran_on;  // (thread, timed out)
    {
      auto t = transport::create(unique_memory_url());
      rpc_client client(t, topic("nobody"), {.timeout = 5ms});
      client.async_call("m", args(), [t, &ran_on](std::exception_ptr e, json::value) mutable {
        bool timed_out = false;
        try {
          if (e) std::rethrow_exception(e);
        } catch (const timeout_error&) {
          timed_out = true;
        } catch (...) {
        }
        t.reset();
        ran_on.set_value({std::this_thread::get_id(), timed_out});
      });
    }
    const auto [thread, timed_out] = wait(ran_on.get_future());
    CHECK(thread != std::this_thread::get_id());
    CHECK(timed_out);
  }
}

TEST_CASE("a memory transport's stats count each call, reply, cast and notification, on each side",
          "[messaging][rpc][stats]") {
  const std::string url = unique_memory_url();
  auto client_side = transport::create(url);
  auto server_side = transport::create(url);  // the same broker, counted apart
  CHECK(client_side->stats().driver == "memory");
  CHECK(client_side->stats().connected);
  CHECK(client_side->stats().publishes == 0);
  CHECK(client_side->stats().received == 0);

  constexpr int calls = 7;
  constexpr int casts = 3;
  asio_loop loop;
  std::promise<void> all_cast;
  std::atomic<int> cast_count{0};
  auto d = example_service("s1");
  auto e = std::make_shared<endpoint>("notes", endpoint_target{std::nullopt, "1.3"});
  e->add("note", {}, [&] {
    if (++cast_count == casts) all_cast.set_value();
  });
  d->add(e);
  rpc_server server(server_side, topic("stats", "s1"), d, loop.get_executor());
  server.start();
  std::promise<void> noted;
  auto ne = std::make_shared<notification_endpoint>("audit");
  ne->on(priority::info, [&](const notification&) {
    noted.set_value();
    return notification_result::handled;
  });
  notification_listener notes(server_side, {topic("stats_events")}, {ne}, loop.get_executor());
  notes.start();

  rpc_client client(client_side, topic("stats"));
  for (int i = 0; i < calls; ++i) CHECK(wait(client.async_call("add", args("a", i, "b", 1), asio::use_future)) == i + 1);
  for (int i = 0; i < casts; ++i) wait(client.async_cast("note", {}, asio::use_future));
  wait(all_cast.get_future());
  notifier n(client_side, "stats-test", {"stats_events"});
  wait(n.async_info({}, "thing.done", json::object{}, asio::use_future));
  wait(noted.get_future());
  wait(notes.async_stop(asio::use_future));
  wait(server.async_stop(asio::use_future));

  const transport_stats c = client_side->stats();
  CHECK(c.publishes == calls + casts + 1);  // the calls, the casts, the notification
  CHECK(c.received == calls);               // the replies
  const transport_stats s = server_side->stats();
  CHECK(s.publishes == calls);               // the replies
  CHECK(s.received == calls + casts + 1);    // the calls, the casts, the notification
  for (const auto& x : {c, s}) {
    CHECK(x.connected);
    CHECK(x.connects == 0);
    CHECK(x.reconnects == 0);
    CHECK(x.confirms == 0);
    CHECK(x.nacks == 0);
    CHECK(x.returns == 0);
    CHECK(x.redeliveries == 0);
  }
}

TEST_CASE("a memory reply whose caller's transport is gone counts as returned on the server's side",
          "[messaging][rpc][stats]") {
  const std::string url = unique_memory_url();
  auto server_side = transport::create(url);
  auto client_side = transport::create(url);
  asio_loop loop;
  std::promise<void> entered;
  asio::steady_timer release(loop.get_executor(), asio::steady_timer::time_point::max());
  auto e = std::make_shared<endpoint>("held");
  e->add("hold", {}, [&]() -> asio::awaitable<int> {
    entered.set_value();
    boost::system::error_code released;
    co_await release.async_wait(asio::redirect_error(asio::use_awaitable, released));
    co_return 1;
  });
  auto d = std::make_shared<dispatcher>();
  d->add(e);
  rpc_server server(server_side, topic("gone", "s1"), d, loop.get_executor());
  server.start();
  auto held = std::make_unique<rpc_client>(client_side, topic("gone"), client_options{.timeout = 30s});
  auto reply = held->async_call("hold", {}, asio::use_future);
  wait(entered.get_future());
  // The caller goes, and its reply queue with it; then the method replies.
  held.reset();
  client_side.reset();
  CHECK_THROWS_AS(wait(std::move(reply)), transport_error);
  asio::post(loop.get_executor(), [&] { release.cancel(); });
  wait(server.async_stop(asio::use_future));  // once the reply was sent
  const transport_stats s = server_side->stats();
  CHECK(s.received == 1);
  CHECK(s.publishes == 1);
  CHECK(s.returns == 1);
}
