// Migration controls at work in the executors: routing per policy, canary
// share, shadow comparison, policy changes while calls are in flight, the
// admin endpoint, strict mode, the report of a running service.
#include <coport/bridge/bridge.hpp>
#include <coport/coro_executor/coro_executor.hpp>
#include <coport/fiber_executor/fiber_executor.hpp>
#include <coport/messaging/rpc/client.hpp>

#include <catch2/catch.hpp>

#include "executor_test_support.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace json = boost::json;
namespace msg = coport::messaging;
namespace bridge = coport::bridge;
using namespace coport::test;
using namespace std::chrono_literals;
using msg::policy;

namespace {

bridge::runtime_options loop_options(std::chrono::milliseconds stall_threshold = 0ms) {
  bridge::runtime_options o;
  o.name = "migrate";
  o.stall_threshold = stall_threshold;
  return o;
}

/// "which": each form answers with its name; "stats": the ported form
/// rounds the mean down where the legacy one rounds it to nearest (a porting
/// bug shadow finds for odd sums).
std::shared_ptr<msg::endpoint> metering() {
  auto e = std::make_shared<msg::endpoint>("metering");
  e->add("which", {}, [] { return std::string("legacy"); });
  e->add("which", {}, []() -> asio::awaitable<std::string> { co_return "ported"; });
  e->add("stats", {"a", "b"}, [](int a, int b) {
    json::object o;
    o["sum"] = a + b;
    o["mean"] = (a + b + 1) / 2;
    return o;
  });
  e->add("stats", {"a", "b"}, [](int a, int b) -> asio::awaitable<json::object> {
    json::object o;
    o["mean"] = (a + b) / 2;
    o["sum"] = a + b;
    co_return o;
  });
  return e;
}

std::string which(const msg::rpc_client& c) {
  return wait(c.async_call<std::string>("which", msg::args(), asio::use_future));
}

msg::rpc_client admin_client(const std::shared_ptr<msg::transport>& t, std::string topic) {
  return msg::rpc_client(t, msg::target{.topic = std::move(topic), .ns = std::string(msg::admin_namespace),
                                        .version = "1.0"});
}

}  // namespace

TEST_CASE("fiber_executor runs the form each policy chooses, counted per form", "[executors][migration]") {
  bridge::runtime rt(loop_options());
  auto t = memory_transport();
  auto d = dispatch_to({metering()});
  msg::migration_options o;
  o.policies["metering.which"] = policy::legacy();
  auto controls = std::make_shared<msg::migration_controls>(d, o);
  coport::fiber_executor ex({t, server_target("m"), d, controls}, rt);
  CHECK(ex.controls() == controls);
  ex.start();
  msg::rpc_client c(t, msg::target{.topic = "m"});

  CHECK(which(c) == "legacy");
  CHECK(which(c) == "legacy");
  controls->set_policy("metering.which", policy::ported());
  CHECK(which(c) == "ported");
  // Rollback.
  controls->set_all(policy::legacy());
  CHECK(which(c) == "legacy");
  // Shadow answers with the legacy result.
  controls->set_policy("metering.which", policy::shadow());
  CHECK(which(c) == "legacy");
  wait(ex.async_stop(asio::use_future));

  const auto m = ex.metrics();
  // 3 legacy answers + 1 shadow's legacy run; 1 ported answer + 1 shadow run.
  CHECK(find_report(m, "metering", "which", msg::method_kind::fiber)->calls == 4);
  CHECK(find_report(m, "metering", "which", msg::method_kind::coroutine)->calls == 2);
  // The two forms of "which" answer differently by design.
  CHECK(controls->shadow_counts(*d->endpoints()[0], *d->endpoints()[0]->find("which")) ==
        std::pair<std::uint64_t, std::uint64_t>{1, 1});
}

TEST_CASE("fiber_executor: a canary sends its share of calls to the ported form", "[executors][migration]") {
  bridge::runtime rt(loop_options());
  auto t = memory_transport();
  auto d = dispatch_to({metering()});
  msg::migration_options o;
  o.seed = 7;
  o.policies["metering.which"] = policy::canary(30);
  coport::fiber_executor ex({t, server_target("m"), d, std::make_shared<msg::migration_controls>(d, o)}, rt);
  ex.start();
  msg::rpc_client c(t, msg::target{.topic = "m"});
  const int n = 2000;
  std::vector<std::future<std::string>> answers;
  for (int i = 0; i < n; ++i) answers.push_back(c.async_call<std::string>("which", msg::args(), asio::use_future));
  int ported = 0;
  for (auto& f : answers) ported += wait(std::move(f)) == "ported";
  wait(ex.async_stop(asio::use_future));
  // 2000 draws at 30 %: standard deviation 20.5 calls; 4.5 % is over four.
  CHECK(std::abs(ported / double(n) - 0.30) <= 0.045);
  const auto m = ex.metrics();
  CHECK(find_report(m, "metering", "which", msg::method_kind::coroutine)->calls == std::uint64_t(ported));
  CHECK(find_report(m, "metering", "which", msg::method_kind::fiber)->calls == std::uint64_t(n - ported));
  CHECK(ex.report().methods[1].policy == "canary:30");
}

TEST_CASE("fiber_executor: shadow answers with the legacy result and records each difference with its arguments",
          "[executors][migration]") {
  bridge::runtime rt(loop_options());
  auto t = memory_transport();
  auto d = dispatch_to({metering()});
  msg::migration_options o;
  o.policies["metering.stats"] = policy::shadow();
  o.mismatches_kept = 2;
  auto controls = std::make_shared<msg::migration_controls>(d, o);
  coport::fiber_executor ex({t, server_target("m"), d, controls}, rt);
  ex.start();
  msg::rpc_client c(t, msg::target{.topic = "m"});
  for (int a = 0; a < 6; ++a) {
    const auto r = wait(c.async_call<json::object>("stats", msg::args("a", a, "b", 2), asio::use_future));
    CHECK(r.at("mean") == (a + 3) / 2);  // the legacy rounding, always
  }
  wait(ex.async_stop(asio::use_future));  // every shadow run is over
  const auto& e = *d->endpoints()[0];
  // a + 2 is odd for a = 1, 3, 5: three differences.
  CHECK(controls->shadow_counts(e, *e.find("stats")) == std::pair<std::uint64_t, std::uint64_t>{6, 3});
  const auto kept = controls->mismatches();
  REQUIRE(kept.size() == 2);
  CHECK(kept[0].args.at("a") == 1);
  CHECK(kept[0].args.at("b") == 2);
  CHECK(kept[0].legacy == R"({"sum":3,"mean":2})");
  CHECK(kept[0].ported == R"({"mean":1,"sum":3})");
  CHECK(kept[1].args.at("a") == 3);
  const auto report = ex.report();
  CHECK(report.methods[0].method == "stats");
  CHECK(report.methods[0].shadow_calls == 6);
  CHECK(report.methods[0].shadow_mismatches == 3);
  CHECK(report.methods[0].forms[1].calls == 6);  // the ported form ran each time, counted
  bool named = false;
  for (const auto& reason : report.not_ready) named |= reason == "metering.stats: 3 of 6 shadow call(s) answered differently";
  CHECK(named);
}

TEST_CASE("fiber_executor: a policy change takes the next call; calls in flight finish on their form",
          "[executors][migration]") {
  bridge::runtime rt(loop_options());
  auto t = memory_transport();
  bridge::event legacy_entered(rt.get_executor()), release(rt.get_executor());
  auto e = std::make_shared<msg::endpoint>("metering");
  e->add("slow", {}, [&] {
    legacy_entered.set();
    release.wait();
    return std::string("legacy");
  });
  e->add("slow", {}, []() -> asio::awaitable<std::string> { co_return "ported"; });
  auto d = dispatch_to({e});
  msg::migration_options o;
  o.default_policy = policy::legacy();
  auto controls = std::make_shared<msg::migration_controls>(d, o);
  coport::fiber_executor ex({t, server_target("m"), d, controls}, rt);
  ex.start();
  msg::rpc_client c(t, msg::target{.topic = "m"});
  auto first = c.async_call<std::string>("slow", msg::args(), asio::use_future);
  wait(legacy_entered.async_wait(asio::use_future));
  CHECK(controls->set_policy("metering.slow", policy::ported()) == policy::legacy());
  // The next call runs ported and answers while the first still waits.
  CHECK(wait(c.async_call<std::string>("slow", msg::args(), asio::use_future)) == "ported");
  CHECK(first.wait_for(0s) == std::future_status::timeout);
  release.set();
  CHECK(wait(std::move(first)) == "legacy");
  wait(ex.async_stop(asio::use_future));
}

TEST_CASE("the admin endpoint is off by default; when configured it serves the report and policy changes",
          "[executors][migration]") {
  bridge::runtime rt(loop_options());
  auto t = memory_transport();
  auto d = dispatch_to({metering()});
  msg::rpc_client c(t, msg::target{.topic = "m"});
  auto admin = admin_client(t, "m");

  SECTION("off") {
    coport::fiber_executor ex({t, server_target("m"), d}, rt);
    ex.start();
    CHECK(which(c) == "ported");
    // No endpoint serves the namespace: oslo.messaging's UnsupportedVersion.
    auto refused = [&](const char* method, json::object args) {
      try {
        wait(admin.async_call<json::value>(method, std::move(args), asio::use_future));
      } catch (const msg::remote_error& x) {
        return x.exc_type();
      }
      return std::string("accepted");
    };
    CHECK(refused("migration_report", msg::args()) == "UnsupportedVersion");
    CHECK(refused("set_policy", msg::args("method", "metering.which", "policy", "legacy")) == "UnsupportedVersion");
    CHECK(which(c) == "ported");  // nothing changed
    wait(ex.async_stop(asio::use_future));
  }
  SECTION("on, with a token") {
    coport::fiber_executor_options o;
    o.admin = msg::admin_options{.token = "s3cret"};
    coport::fiber_executor ex({t, server_target("m"), d}, rt, o);
    ex.start();
    CHECK(which(c) == "ported");
    // Without the token, or with another: refused, nothing changed.
    try {
      wait(admin.async_call<json::value>("set_policy", msg::args("method", "metering.which", "policy", "legacy"),
                                         asio::use_future));
      FAIL("set_policy without the token was accepted");
    } catch (const msg::remote_error& x) {
      CHECK(x.exc_type() == "admin_denied");
    }
    msg::context wrong;
    wrong[msg::admin_token_key] = "guess";
    CHECK_THROWS_AS(wait(admin.async_call<json::value>(wrong, "migration_report", msg::args(), asio::use_future)),
                    msg::remote_error);
    CHECK(which(c) == "ported");

    msg::context ctx;
    ctx[msg::admin_token_key] = "s3cret";
    const auto changed = wait(admin.async_call<json::value>(
        ctx, "set_policy", msg::args("method", "metering.which", "policy", "legacy"), asio::use_future));
    CHECK(changed.at("previous") == "ported");
    CHECK(changed.at("policy") == "legacy");
    CHECK(which(c) == "legacy");
    // A bad policy or method: a typed error, no change.
    try {
      wait(admin.async_call<json::value>(ctx, "set_policy", msg::args("method", "metering.which", "policy", "fast"),
                                         asio::use_future));
      FAIL("an unknown policy was accepted");
    } catch (const msg::remote_error& x) {
      CHECK(x.exc_type() == "invalid_policy");
      CHECK_THAT(x.value(), Catch::Contains("unknown policy 'fast'"));
    }
    CHECK_THROWS_AS(wait(admin.async_call<json::value>(ctx, "set_policy", msg::args("method", "metering.nope", "policy",
                                                                                      "legacy"),
                                                       asio::use_future)),
                    msg::remote_error);
    try {
      wait(admin.async_call<json::value>(ctx, "reboot", msg::args(), asio::use_future));
      FAIL("an unknown admin method was accepted");
    } catch (const msg::remote_error& x) {
      CHECK(x.exc_type() == "NoSuchMethod");
    }
    CHECK(which(c) == "legacy");

    const auto json_report = wait(admin.async_call<json::value>(ctx, "migration_report", msg::args(), asio::use_future));
    const auto report = msg::migration_report::from_json(json_report);
    CHECK(report.executor == "fiber_executor");
    REQUIRE(report.methods.size() == 2);
    CHECK(report.methods[1].method == "which");
    CHECK(report.methods[1].policy == "legacy");
    CHECK(report.methods[1].forms[0].calls == 2);  // two legacy answers, after two ported ones
    CHECK(report.methods[1].forms[1].calls == 2);
    CHECK_FALSE(report.ready());
    wait(ex.async_stop(asio::use_future));
  }
}

TEST_CASE("the report counts implicit yields of a hosted coroutine form and names the reasons",
          "[executors][migration]") {
  bridge::runtime rt(loop_options());
  auto t = memory_transport();
  auto e = std::make_shared<msg::endpoint>("metering");
  // Ported, but still calls unported fiber code: two implicit yields a call.
  e->add("half", {"n"}, [](int n) -> asio::awaitable<int> {
    bridge::this_fiber::sleep_for(100us);
    bridge::this_fiber::sleep_for(100us);
    co_return n / 2;
  });
  e->add("clean", {}, []() -> asio::awaitable<int> {
    asio::steady_timer timer(co_await asio::this_coro::executor, 100us);
    co_await timer.async_wait(asio::use_awaitable);
    co_return 1;
  });
  e->add("legacy_only", {}, [] { return 0; });
  auto d = dispatch_to({e});
  coport::fiber_executor_options o;
  o.modes["metering.clean"] = coport::coroutine_mode::native;
  coport::fiber_executor ex({t, server_target("m"), d}, rt, o);
  ex.start();
  msg::rpc_client c(t, msg::target{.topic = "m"});
  for (int i = 0; i < 5; ++i) {
    CHECK(wait(c.async_call<int>("half", msg::args("n", 8), asio::use_future)) == 4);
    CHECK(wait(c.async_call<int>("clean", msg::args(), asio::use_future)) == 1);
  }
  wait(ex.async_stop(asio::use_future));
  const auto report = ex.report();
  REQUIRE(report.methods.size() == 3);
  const auto& half = report.methods[1];
  CHECK(half.method == "half");
  REQUIRE(half.forms.size() == 1);
  CHECK(half.forms[0].mode == "hosted");
  CHECK(half.forms[0].implicit_yields == 10);
  CHECK(report.methods[0].forms[0].implicit_yields == 0);  // clean, native
  CHECK(report.methods[0].forms[0].mode == "native");
  REQUIRE(report.not_ready.size() == 2);
  CHECK_THAT(report.not_ready[0], Catch::Contains("only a fiber form: metering.legacy_only"));
  CHECK_THAT(report.not_ready[1], Catch::Contains("metering.half: its coroutine form blocked fibers 10 time(s)"));
  const std::string text = report.to_text();
  CHECK_THAT(text, Catch::Contains("metering.half") && Catch::Contains("not ready for coro_executor: 2 reason(s)"));

  // A second executor on the same runtime starts from zero.
  coport::fiber_executor again({t, server_target("m"), d}, rt, o);
  again.start();
  CHECK(wait(c.async_call<int>("half", msg::args("n", 8), asio::use_future)) == 4);
  wait(again.async_stop(asio::use_future));
  CHECK(again.report().methods[1].forms[0].implicit_yields == 2);
}

TEST_CASE("strict mode: a coroutine form that blocks fibers or stalls its loop fails the call",
          "[executors][migration]") {
  bridge::runtime rt(loop_options(20ms));
  auto t = memory_transport();
  auto e = std::make_shared<msg::endpoint>("metering");
  e->add("yields", {}, []() -> asio::awaitable<int> {
    bridge::this_fiber::sleep_for(100us);  // unported: blocks the host fiber
    co_return 1;
  });
  e->add("stalls", {}, []() -> asio::awaitable<int> {
    std::this_thread::sleep_for(150ms);  // keeps the loop from Asio
    co_return 2;
  });
  e->add("clean", {}, []() -> asio::awaitable<int> {
    asio::steady_timer timer(co_await asio::this_coro::executor, 1ms);
    co_await timer.async_wait(asio::use_awaitable);
    co_return 3;
  });
  auto d = dispatch_to({e});
  coport::fiber_executor_options o;
  o.modes["metering.stalls"] = coport::coroutine_mode::native;
  msg::rpc_client c(t, msg::target{.topic = "m"});

  SECTION("off: the calls succeed and are counted") {
    coport::fiber_executor ex({t, server_target("m"), d}, rt, o);
    ex.start();
    CHECK(wait(c.async_call<int>("yields", msg::args(), asio::use_future)) == 1);
    CHECK(wait(c.async_call<int>("stalls", msg::args(), asio::use_future)) == 2);
    wait(ex.async_stop(asio::use_future));
    const auto m = ex.metrics();
    CHECK(find_report(m, "metering", "yields", msg::method_kind::coroutine)->implicit_yields == 1);
    CHECK(find_report(m, "metering", "stalls", msg::method_kind::coroutine)->stalls == 1);
  }
  SECTION("on: they fail with strict_mode_violation; clean code passes") {
    msg::migration_options mo;
    mo.strict = true;
    coport::fiber_executor ex({t, server_target("m"), d, std::make_shared<msg::migration_controls>(d, mo)}, rt, o);
    ex.start();
    try {
      wait(c.async_call<int>("yields", msg::args(), asio::use_future));
      FAIL("an implicit yield passed strict mode");
    } catch (const msg::remote_error& x) {
      CHECK(x.exc_type() == "strict_mode_violation");
      CHECK_THAT(x.value(), Catch::Contains("'metering.yields' blocked fibers 1 time(s)"));
    }
    try {
      wait(c.async_call<int>("stalls", msg::args(), asio::use_future));
      FAIL("a stall passed strict mode");
    } catch (const msg::remote_error& x) {
      CHECK(x.exc_type() == "strict_mode_violation");
      CHECK_THAT(x.value(), Catch::Contains("'metering.stalls' stalled its loop 1 time(s)"));
    }
    CHECK(wait(c.async_call<int>("clean", msg::args(), asio::use_future)) == 3);
    wait(ex.async_stop(asio::use_future));
    const auto m = ex.metrics();
    CHECK(find_report(m, "metering", "yields", msg::method_kind::coroutine)->errors == 1);
    CHECK(find_report(m, "metering", "clean", msg::method_kind::coroutine)->errors == 0);
  }
}

TEST_CASE("coro_executor runs the ported form whatever the policy, and reports it", "[executors][migration]") {
  asio::io_context io;
  auto t = memory_transport();
  auto d = dispatch_to({metering()});
  msg::migration_options mo;
  mo.policies["metering.which"] = policy::legacy();
  auto controls = std::make_shared<msg::migration_controls>(d, mo);
  coport::coro_executor_options co;
  co.single_thread = true;
  coport::coro_executor ex({t, server_target("m"), d, controls}, io.get_executor(), co);
  ex.start();
  std::thread runner([&] { io.run(); });
  msg::rpc_client c(t, msg::target{.topic = "m"});
  CHECK(which(c) == "ported");
  wait(ex.async_stop(asio::use_future));
  const auto report = ex.report();
  CHECK(report.executor == "coro_executor");
  CHECK(report.methods[1].policy == "legacy");
  CHECK(report.methods[1].forms[0].mode == "unused");
  CHECK(report.methods[1].forms[1].calls == 1);
  bool named = false;
  for (const auto& reason : report.not_ready) named |= reason == "metering.which is served under policy legacy, not ported";
  CHECK(named);
  runner.join();
}

TEST_CASE("migration controls made for another dispatcher are refused", "[executors][migration]") {
  bridge::runtime rt(loop_options());
  auto t = memory_transport();
  auto d = dispatch_to({metering()});
  auto other = std::make_shared<msg::migration_controls>(dispatch_to({metering()}));
  CHECK_THROWS_AS(coport::fiber_executor({t, server_target("m"), d, other}, rt), std::invalid_argument);
}

TEST_CASE("fiber_executor on two loops: a method that blocks its loop is reported as a stall while the other "
          "loop serves every call",
          "[executors][migration]") {
  bridge::runtime_pool pool(2, loop_options(20ms));
  auto t = memory_transport();
  auto e = std::make_shared<msg::endpoint>("metering");
  std::atomic<bool> release{false};
  std::atomic<bool> hogging{false};
  e->add("hog", {}, [&]() -> asio::awaitable<int> {
    // Keeps its thread (not just its fiber) until the test has seen the
    // other calls answered, and for at least a few stall thresholds.
    hogging = true;
    const auto until = std::chrono::steady_clock::now() + 100ms;
    while (!release.load() || std::chrono::steady_clock::now() < until) std::this_thread::yield();
    co_return 1;
  });
  e->add("echo", {"value"}, [](int value) -> asio::awaitable<int> { co_return value; });
  coport::fiber_executor_options o;
  o.default_mode = coport::coroutine_mode::native;
  // One request per loop: the blocked loop, at its share, has no receive
  // outstanding, so no call waits behind the hog (a loop with room left
  // may already hold the next message when it blocks).
  o.max_in_flight = 2;
  coport::fiber_executor ex({t, server_target("m"), dispatch_to({e})}, pool, o);
  ex.start();
  msg::rpc_client c(t, msg::target{.topic = "m"});
  auto hog = c.async_call<int>("hog", msg::args(), asio::use_future);
  while (!hogging.load()) std::this_thread::yield();  // one loop is now blocked
  for (int i = 0; i < 20; ++i) CHECK(wait(c.async_call<int>("echo", msg::args("value", i), asio::use_future)) == i);
  release = true;
  CHECK(wait(std::move(hog)) == 1);
  wait(ex.async_stop(asio::use_future));
  const auto m = ex.metrics();
  CHECK(find_report(m, "metering", "hog", msg::method_kind::coroutine)->stalls == 1);
  CHECK(find_report(m, "metering", "echo", msg::method_kind::coroutine)->stalls == 0);
  CHECK(find_report(m, "metering", "echo", msg::method_kind::coroutine)->calls == 20);
}
