// coport::admin::http_server: what /metrics exposes (equal to the report,
// read at scrape time), /migration.json and the page, POST /policy and its
// token, and hostile clients thrown at it while a service answers calls.
#include <coport/admin/http_server.hpp>

#include <coport/bridge/bridge.hpp>
#include <coport/coro_executor/coro_executor.hpp>
#include <coport/messaging/serving/migration.hpp>
#include <coport/migration/points.hpp>

#include <catch2/catch.hpp>

#include "executor_test_support.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json.hpp>

#include <atomic>
#include <future>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace json = boost::json;
namespace mig = coport::migration;
namespace msg = coport::messaging;
namespace admin = coport::admin;
using tcp = asio::ip::tcp;
using namespace coport::test;
using namespace std::chrono_literals;

namespace {

struct answer {
  unsigned status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

/// One request on a connection of its own (Connection: close).
answer request(std::uint16_t port, http::verb method, std::string target, std::string body = {},
               std::map<std::string, std::string> headers = {}) {
  asio::io_context io;
  tcp::socket s(io);
  s.connect({asio::ip::make_address("127.0.0.1"), port});
  http::request<http::string_body> req{method, target, 11};
  req.set(http::field::host, "127.0.0.1");
  req.set(http::field::connection, "close");
  for (const auto& [k, v] : headers) req.set(k, v);
  req.body() = std::move(body);
  req.prepare_payload();
  http::write(s, req);
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(s, buffer, res);
  answer a;
  a.status = res.result_int();
  for (const auto& f : res) {
    std::string name(f.name_string());
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    a.headers[name] = std::string(f.value());
  }
  a.body = res.body();
  return a;
}

answer get(std::uint16_t port, std::string target) { return request(port, http::verb::get, std::move(target)); }

answer post_policy(std::uint16_t port, std::string body, std::string token) {
  std::map<std::string, std::string> h{{"Content-Type", "application/json"}};
  if (!token.empty()) h["Authorization"] = "Bearer " + token;
  return request(port, http::verb::post, "/policy", std::move(body), h);
}

/// Writes `bytes` as they are and reads until the server closes the
/// connection: what it answered, if anything.
std::string raw(std::uint16_t port, const std::string& bytes) {
  asio::io_context io;
  tcp::socket s(io);
  s.connect({asio::ip::make_address("127.0.0.1"), port});
  boost::system::error_code ec;
  asio::write(s, asio::buffer(bytes), ec);  // the server may close before it read everything
  std::string out;
  asio::read(s, asio::dynamic_buffer(out), ec);  // until EOF (or reset)
  return out;
}

/// Sends half a request and waits: what the server answered before it
/// closed the connection (nothing, at its request timeout).
std::string raw_partial(std::uint16_t port) {
  asio::io_context io;
  tcp::socket s(io);
  s.connect({asio::ip::make_address("127.0.0.1"), port});
  asio::write(s, asio::buffer(std::string("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")));
  std::string out;
  boost::system::error_code ec;
  asio::read(s, asio::dynamic_buffer(out), ec);
  return out;
}

/// The samples of an exposition, by "name{labels}".
std::map<std::string, double> samples(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto space = line.rfind(' ');
    out[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return out;
}

std::string error_of(const answer& a) { return std::string(json::parse(a.body).at("error").as_string()); }

/// A registry of two points with known records: "pipeline.parse" (both
/// forms, shadow) and "pipeline.store" (legacy only).
struct pipeline {
  mig::registry points{"pipeline"};
  mig::point_record& parse;
  mig::point_record& store;

  pipeline()
      : parse(points.declare("parse", true, true)), store(points.declare("store", true, false)) {
    points.set_policy("parse", mig::policy::shadow());
    auto& legacy = parse.metrics(mig::form_kind::fiber);
    legacy.record(3us, false, false);    // below 4 µs
    legacy.record(100us, false, false);  // below 256 µs
    legacy.record(2ms, true, false);     // below 4.096 ms, failed
    auto& ported = parse.metrics(mig::form_kind::coroutine);
    ported.record(5s, false, true);  // below 16.8 s, cancelled
    ported.in_flight = 2;
    parse.record_shadow(true, {}, "1", "1");
    parse.record_shadow(false, {{"line", 7}}, "1", "2");
  }
};

}  // namespace

TEST_CASE("/metrics shows each form's calls, errors, latency histogram and policy as the report has them",
          "[admin]") {
  pipeline p;
  coport::bridge::diagnostics work;
  work.tag("pipeline.parse")->stalls.store(2);
  admin::http_server server;
  server.add(admin::source_of(p.points));
  server.add_work_counters("loop-a", work);
  server.start();

  const answer a = get(server.port(), "/metrics");
  REQUIRE(a.status == 200);
  CHECK(a.headers.at("content-type") == "text/plain; version=0.0.4; charset=utf-8");
  const auto s = samples(a.body);
  const std::string legacy = "{point=\"pipeline.parse\",form=\"legacy\"";
  const std::string ported = "{point=\"pipeline.parse\",form=\"ported\"";
  CHECK(s.at("coport_migration_calls_total" + legacy + "}") == 3);
  CHECK(s.at("coport_migration_errors_total" + legacy + "}") == 1);
  CHECK(s.at("coport_migration_cancelled_total" + ported + "}") == 1);
  CHECK(s.at("coport_migration_in_flight" + ported + "}") == 2);
  CHECK(s.at("coport_migration_calls_total{point=\"pipeline.store\",form=\"legacy\"}") == 0);
  CHECK(s.count("coport_migration_calls_total{point=\"pipeline.store\",form=\"ported\"}") == 0);  // no such form
  // The histogram: cumulative counts at powers of four from 1 µs, exact.
  const std::string bucket = "coport_migration_call_duration_seconds_bucket" + legacy;
  CHECK(s.at(bucket + ",le=\"1e-06\"}") == 0);
  CHECK(s.at(bucket + ",le=\"4e-06\"}") == 1);
  CHECK(s.at(bucket + ",le=\"6.4e-05\"}") == 1);
  CHECK(s.at(bucket + ",le=\"0.000256\"}") == 2);
  CHECK(s.at(bucket + ",le=\"0.001024\"}") == 2);
  CHECK(s.at(bucket + ",le=\"0.004096\"}") == 3);
  CHECK(s.at(bucket + ",le=\"+Inf\"}") == 3);
  CHECK(s.at("coport_migration_call_duration_seconds_count" + legacy + "}") == 3);
  CHECK(s.at("coport_migration_call_duration_seconds_sum" + legacy + "}") == Approx(0.002103));
  CHECK(s.at("coport_migration_call_duration_seconds_bucket" + ported + ",le=\"4.194304\"}") == 0);
  CHECK(s.at("coport_migration_call_duration_seconds_bucket" + ported + ",le=\"16.777216\"}") == 1);
  CHECK(s.at("coport_migration_shadow_calls_total{point=\"pipeline.parse\"}") == 2);
  CHECK(s.at("coport_migration_shadow_mismatches_total{point=\"pipeline.parse\"}") == 1);
  CHECK(s.at("coport_migration_policy{point=\"pipeline.parse\",policy=\"shadow\"}") == 1);
  CHECK(s.at("coport_migration_policy{point=\"pipeline.store\",policy=\"legacy\"}") == 1);
  CHECK(s.at("coport_migration_ready") == 0);
  CHECK(s.at("coport_migration_not_ready_reasons") == static_cast<double>(server.report().not_ready.size()));
  CHECK(s.at("coport_work_stalls_total{runtime=\"loop-a\",work=\"pipeline.parse\"}") == 2);

  SECTION("read at scrape time: a call recorded since is in the next scrape") {
    p.store.metrics(mig::form_kind::fiber).record(10us, false, false);
    const auto again = samples(get(server.port(), "/metrics").body);
    CHECK(again.at("coport_migration_calls_total{point=\"pipeline.store\",form=\"legacy\"}") == 1);
    CHECK(again.at("coport_admin_requests_total") >= 2);
  }
}

TEST_CASE("/metrics shows each loop's busy and idle time, stalls and the work alive on it", "[admin]") {
  namespace bridge = coport::bridge;
  bridge::runtime_options ro;
  ro.name = "served";
  ro.stall_threshold = 20ms;
  bridge::runtime rt(ro);
  admin::http_server server;
  server.add_loop(rt);
  server.start();

#if COPORT_BRIDGE_FIBERS
  // A fiber job: its pooled fiber stays alive, parked for the next job. (Its
  // end is counted just after its result is handed over.)
  CHECK(bridge::async_run_in_fiber(rt.get_executor(), [] { return 7; }, asio::use_future).get() == 7);
  for (int i = 0; i < 20000 && rt.stats().tracked_work != 0; ++i) std::this_thread::sleep_for(1ms);
#endif
  // A coroutine parked on the loop until the test opens its gate.
  auto gate = std::make_shared<asio::steady_timer>(rt.get_executor(), std::chrono::steady_clock::time_point::max());
  std::promise<void> parked, ended;
  bridge::spawn(rt.get_executor("parked"), [gate, &parked, &ended]() -> asio::awaitable<void> {
    parked.set_value();
    co_await gate->async_wait(asio::as_tuple(asio::use_awaitable));
    ended.set_value();
  });
  parked.get_future().wait();
  const auto s = samples(get(server.port(), "/metrics").body);
  CHECK(s.at("coport_loop_tracked_work{loop=\"served\"}") == 1);
  CHECK(s.at("coport_loop_busy_seconds_total{loop=\"served\"}") > 0);
  CHECK(s.at("coport_loop_idle_seconds_total{loop=\"served\"}") > 0);
  // Native work that holds the loop five thresholds long: a stall.
  std::promise<void> hogged;
  asio::post(rt.get_executor("hog"), [&hogged] {
    const auto until = std::chrono::steady_clock::now() + 100ms;
    while (std::chrono::steady_clock::now() < until) std::this_thread::yield();
    hogged.set_value();
  });
  hogged.get_future().wait();
  for (int i = 0; i < 20000 && rt.stats().stalls == 0; ++i) std::this_thread::sleep_for(1ms);
  CHECK(samples(server.metrics_text()).at("coport_loop_stalls_total{loop=\"served\"}") >= 1);
#if COPORT_BRIDGE_FIBERS
  CHECK(s.at("coport_loop_fibers{loop=\"served\"}") >= 1);
#else
  CHECK(s.at("coport_loop_fibers{loop=\"served\"}") == 0);
#endif
  asio::post(rt.get_executor(), [gate] { gate->cancel(); });
  auto done = ended.get_future();
  done.wait();
  // The coroutine's end is counted once its frame is gone, just after.
  for (int i = 0; i < 20000 && rt.stats().tracked_work != 0; ++i) std::this_thread::sleep_for(1ms);
  CHECK(samples(server.metrics_text()).at("coport_loop_tracked_work{loop=\"served\"}") == 0);
  const auto stats = rt.stats();
  CHECK(stats.busy + stats.idle > 0ns);
}

TEST_CASE("/migration.json is the joined report and /migration the self-contained page", "[admin]") {
  pipeline p;
  mig::registry other("other");
  other.declare("step", false, true);
  admin::http_server server;
  server.add(admin::source_of(p.points));
  server.add(admin::source_of(other));
  server.start();

  const answer j = get(server.port(), "/migration.json");
  REQUIRE(j.status == 200);
  CHECK(j.headers.at("content-type") == "application/json");
  const auto r = mig::report::from_json(json::parse(j.body));
  REQUIRE(r.methods.size() == 3);
  CHECK(r.methods[2].endpoint == "other");
  CHECK(r.verdict() == server.report().verdict());
  CHECK(r.mismatches.size() == 1);

  const answer page = get(server.port(), "/migration?refresh=1");
  REQUIRE(page.status == 200);
  CHECK(page.headers.at("content-type") == "text/html; charset=utf-8");
  CHECK_THAT(page.headers.at("content-security-policy"), Catch::Contains("connect-src 'self'"));
  CHECK_THAT(page.body, Catch::Contains("<html") || Catch::Contains("<!doctype html"));
  // Nothing fetched from elsewhere: no address but SVG's namespace name.
  std::string addresses = page.body;
  for (std::size_t at; (at = addresses.find("http://www.w3.org/2000/svg")) != std::string::npos;) {
    addresses.erase(at, 26);
  }
  CHECK(addresses.find("http://") == std::string::npos);
  CHECK(addresses.find("https://") == std::string::npos);

  CHECK(get(server.port(), "/nowhere").status == 404);
  CHECK(request(server.port(), http::verb::post, "/metrics").status == 405);
  CHECK(request(server.port(), http::verb::delete_, "/migration.json").headers.at("allow") == "GET");
}

TEST_CASE("POST /policy changes a policy only with the server's token, and logs who did it", "[admin]") {
  pipeline p;
  admin::server_options o;
  o.token = "s3cret";
  admin::http_server server(o);
  server.add(admin::source_of(p.points));
  server.start();
  const auto port = server.port();
  const auto policy_of = [&](const char* name) { return p.points.find(name)->current().to_string(); };
  const auto changes = [&] { return json::parse(get(port, "/policy/changes").body).at("changes").as_array(); };

  SECTION("without the token, or with a wrong one: 401, nothing changes") {
    const answer none = post_policy(port, R"({"point":"parse","policy":"ported"})", "");
    CHECK(none.status == 401);
    CHECK(none.headers.at("www-authenticate") == "Bearer realm=\"coport\"");
    CHECK(post_policy(port, R"({"point":"parse","policy":"ported"})", "s3cre").status == 401);
    CHECK(post_policy(port, R"({"point":"parse","policy":"ported"})", "s3cret2").status == 401);
    CHECK(request(port, http::verb::post, "/policy", R"({"point":"parse","policy":"ported"})",
                  {{"Authorization", "Basic czNjcmV0"}})
              .status == 401);
    // Without a valid token the body is not even read.
    CHECK(post_policy(port, "not json", "wrong").status == 401);
    CHECK(policy_of("parse") == "shadow");
    CHECK(changes().empty());
    CHECK(samples(server.metrics_text()).at("coport_admin_refused_total{reason=\"unauthorized\"}") == 5);
  }
  SECTION("with it: set, listed with who and from where, then rolled back") {
    const answer set = post_policy(port, R"({"point":"pipeline.parse","policy":"canary:30","by":"ops-alice"})",
                                   "s3cret");
    REQUIRE(set.status == 200);
    CHECK(json::parse(set.body) == json::parse(R"({"point":"pipeline.parse","policy":"canary:30",
                                                   "previous":"shadow"})"));
    CHECK(policy_of("parse") == "canary:30");
    const auto list = changes();
    REQUIRE(list.size() == 1);
    CHECK(list[0].at("who") == "ops-alice");
    CHECK(list[0].at("from") == "shadow");
    CHECK(list[0].at("to") == "canary:30");
    CHECK(std::string(list[0].at("remote").as_string()).starts_with("127.0.0.1:"));
    CHECK(std::string(list[0].at("when").as_string()).ends_with("Z"));

    const answer back = post_policy(port, R"({"point":"pipeline.parse","rollback":true})", "s3cret");
    REQUIRE(back.status == 200);
    CHECK(policy_of("parse") == "shadow");
    CHECK(changes().size() == 2);
    CHECK(changes()[1].at("who") == "anonymous");
  }
  SECTION("bad bodies: 400 with the reason, nothing changes") {
    const std::vector<std::pair<std::string, std::string>> cases{
        {"{", "the body is not JSON"},
        {"[1]", "the body must be a JSON object"},
        {R"({"policy":"ported"})", "\"point\" must be a non-empty string"},
        {R"({"point":"parse"})", "give either \"policy\" or \"rollback\": true"},
        {R"({"point":"parse","policy":"ported","rollback":true})", "give either"},
        {R"({"point":"parse","policy":"canary:150"})", "canary"},
        {R"({"point":"parse","policy":7})", "\"policy\" must be a string"},
        {R"({"point":"store","policy":"ported"})", "store"},  // it has no ported form
        {R"({"point":"parse","rollback":true})", "nothing to roll back"},
        {R"({"point":"parse","policy":"ported","by":"a\nforged log line"})", "without control characters"},
        {"{\"point\":\"parse\",\"policy\":\"ported\",\"by\":\"\xff\"}", "the body is not JSON"},  // not UTF-8
    };
    for (const auto& [body, why] : cases) {
      INFO(body);
      const answer a = post_policy(port, body, "s3cret");
      CHECK(a.status == 400);
      CHECK_THAT(error_of(a), Catch::Contains(why));
    }
    CHECK(policy_of("parse") == "shadow");
    CHECK(policy_of("store") == "legacy");
    const answer unknown = post_policy(port, R"({"point":"nowhere","policy":"ported"})", "s3cret");
    CHECK(unknown.status == 404);
    CHECK(error_of(unknown) == "no migration point named 'nowhere'");
    CHECK(changes().empty());
  }
}

TEST_CASE("POST /policy is refused with 403 when the server has no token", "[admin]") {
  pipeline p;
  admin::http_server server;
  server.add(admin::source_of(p.points));
  server.start();
  const answer a = post_policy(server.port(), R"({"point":"parse","policy":"ported"})", "anything");
  CHECK(a.status == 403);
  CHECK_THAT(error_of(a), Catch::Contains("COPORT_ADMIN_TOKEN"));
  CHECK(p.points.find("parse")->current() == mig::policy::shadow());
  CHECK(json::parse(get(server.port(), "/policy/changes").body).at("changes_allowed") == false);
}

TEST_CASE("hostile clients get refusals and cost the service nothing: every call answered within its deadline",
          "[admin]") {
  // The service: coro_executor on a thread of its own, over memory://.
  asio::io_context io;
  auto guard = asio::make_work_guard(io);
  std::thread loop([&] { io.run(); });
  auto t = memory_transport();
  auto e = std::make_shared<msg::endpoint>("metering");
  e->add("echo", {"v"}, [](int v) -> asio::awaitable<int> { co_return v; });
  auto d = dispatch_to({e});
  auto controls = std::make_shared<msg::migration_controls>(d);
  coport::coro_executor ex({t, server_target("metering"), d, controls}, io.get_executor());
  ex.start();

  admin::server_options o;
  o.token = "s3cret";
  o.max_connections = 16;
  o.request_timeout = 500ms;
  admin::http_server server(o);
  server.add({[&ex] { return mig::report(ex.report()); },
              [&controls](std::string_view n, mig::policy p) { return controls->set_policy(n, p); }});
  server.add_transport("service", t);
  server.start();
  const auto port = server.port();

  // Calls all along, each with a deadline.
  std::atomic<bool> attacking{true};
  std::atomic<int> answered{0}, wrong{0}, late{0};
  std::thread caller([&] {
    msg::rpc_client c(t, msg::target{.topic = "metering"}, {.timeout = 10s});
    for (int i = 0; attacking.load(); ++i) {
      try {
        if (c.async_call<int>("echo", msg::args("v", i), asio::use_future).get() == i) ++answered;
        else ++wrong;
      } catch (const msg::timeout_error&) {
        ++late;
      }
    }
  });

  const auto refused = [&](const char* reason) {
    return samples(server.metrics_text()).at(std::string("coport_admin_refused_total{reason=\"") + reason + "\"}");
  };

  // A request line that is not HTTP.
  CHECK_THAT(raw(port, "GARBAGE\r\n\r\n"), Catch::StartsWith("HTTP/1.1 400"));
  CHECK_THAT(raw(port, "GET\r\n\r\n"), Catch::StartsWith("HTTP/1.1 400"));
  CHECK(refused("malformed") == 2);
  // Headers past the limit: 64 KiB of one header.
  CHECK_THAT(raw(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(64 * 1024, 'a') + "\r\n\r\n"),
             Catch::StartsWith("HTTP/1.1 431"));
  CHECK(refused("header_limit") == 1);
  // A body past the limit, announced: refused before it is read.
  CHECK_THAT(raw(port, "POST /policy HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nContent-Length: "
                       "1048576\r\n\r\n" + std::string(1024, '{')),
             Catch::StartsWith("HTTP/1.1 413"));
  CHECK(refused("body_limit") == 1);
  // A path that is not UTF-8, and one with a NUL: refused or not found,
  // answered with JSON that parses.
  for (const std::string target : {"/\xff\xfe\x80metrics", "/migration%00.json", "/%ff%fe"}) {
    const std::string a = raw(port, "GET " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    INFO(target);
    CHECK((a.starts_with("HTTP/1.1 404") || a.starts_with("HTTP/1.1 400")));
    if (a.starts_with("HTTP/1.1 404")) CHECK_NOTHROW(json::parse(a.substr(a.find("\r\n\r\n") + 4)));
  }
  // Slow clients: ten connections that send half a request and wait; the
  // server closes each at its request timeout.
  {
    std::vector<std::thread> slow;
    std::atomic<int> closed{0};
    for (int i = 0; i < 10; ++i) {
      slow.emplace_back([&] {
        const std::string got = raw_partial(port);
        if (got.empty()) ++closed;
      });
    }
    for (auto& s : slow) s.join();
    CHECK(closed == 10);
    // The timeout closes the socket first, then the server counts it.
    for (int i = 0; i < 20000 && refused("timeout") < 10; ++i) std::this_thread::sleep_for(1ms);
    CHECK(refused("timeout") == 10);
  }
  // More connections than allowed: the ones over the limit are closed at
  // once; when the others go, the server answers again. (A server of its
  // own, whose idle connections are not closed by a short timeout meanwhile.)
  {
    admin::server_options co;
    co.max_connections = 16;
    admin::http_server crowded(co);
    crowded.start();
    const auto connections = [&] { return samples(crowded.metrics_text()).at("coport_admin_connections"); };
    const auto crowded_refused = [&] {
      return samples(crowded.metrics_text()).at("coport_admin_refused_total{reason=\"connections\"}");
    };
    asio::io_context cio;
    std::vector<tcp::socket> held;
    for (int i = 0; i < 16; ++i) {
      held.emplace_back(cio);
      held.back().connect({asio::ip::make_address("127.0.0.1"), crowded.port()});
    }
    // The server accepted all sixteen (it counts them as it accepts).
    for (int i = 0; i < 20000 && connections() < 16; ++i) std::this_thread::sleep_for(1ms);
    REQUIRE(connections() == 16);
    for (int i = 0; i < 24; ++i) CHECK(raw(crowded.port(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").empty());
    CHECK(crowded_refused() == 24);
    held.clear();
    for (int i = 0; i < 20000 && connections() > 0; ++i) std::this_thread::sleep_for(1ms);
    CHECK(connections() == 0);
    CHECK(get(crowded.port(), "/metrics").status == 200);
  }
  // Many requests on one connection, pipelined: each answered in order.
  {
    std::string burst;
    for (int i = 0; i < 50; ++i) burst += "GET /migration.json HTTP/1.1\r\nHost: x\r\n\r\n";
    burst += "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    const std::string all = raw(port, burst);
    std::size_t answers = 0;
    for (auto at = all.find("HTTP/1.1 200 OK"); at != std::string::npos; at = all.find("HTTP/1.1 200 OK", at + 1)) {
      ++answers;
    }
    CHECK(answers == 51);
  }

  // The server still serves, the service answered every call in time.
  CHECK(get(port, "/metrics").status == 200);
  const int before = answered.load();
  for (int i = 0; i < 20000 && answered.load() < before + 10; ++i) std::this_thread::sleep_for(1ms);
  attacking = false;
  caller.join();
  CHECK(late == 0);
  CHECK(wrong == 0);
  CHECK(answered > before);
  ex.async_stop(asio::use_future).get();  // every call recorded
  const auto s = samples(get(port, "/metrics").body);
  CHECK(s.at("coport_migration_calls_total{point=\"metering.echo\",form=\"ported\"}") == answered.load());
  CHECK(s.at("coport_migration_errors_total{point=\"metering.echo\",form=\"ported\"}") == 0);
  // The transport, shared by the client and the service: each call is a
  // request and a reply, published and received.
  CHECK(s.at("coport_transport_connected{transport=\"service\",driver=\"memory\"}") == 1);
  CHECK(s.at("coport_transport_publishes_total{transport=\"service\"}") == 2 * answered.load());
  CHECK(s.at("coport_transport_received_total{transport=\"service\"}") == 2 * answered.load());
  CHECK(s.at("coport_transport_returns_total{transport=\"service\"}") == 0);

  server.stop();
  guard.reset();
  loop.join();
}
