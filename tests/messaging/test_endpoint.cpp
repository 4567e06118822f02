#include <coport/messaging/rpc/endpoint.hpp>

#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/describe/class.hpp>
#include <boost/json.hpp>

namespace asio = boost::asio;
namespace json = boost::json;
using namespace coport::messaging;

namespace metering {

struct sample {
  std::string meter;
  double volume = 0;
  std::vector<std::string> tags;
};
BOOST_DESCRIBE_STRUCT(sample, (), (meter, volume, tags))

}  // namespace metering

namespace {

json::value call_plain(const method& m, json::object args) {
  rpc_request r;
  r.method = m.name();
  request_context ctx = request_context::of(r);
  return m.legacy()->call(ctx, args);
}

json::value call_coro(const method& m, json::object args) {
  asio::io_context io;
  auto f = asio::co_spawn(
      io,
      [&]() -> asio::awaitable<json::value> {
        rpc_request r;
        r.method = m.name();
        request_context ctx = request_context::of(r);
        co_return co_await m.ported()->co_call(ctx, args);
      },
      asio::use_future);
  io.run();
  return f.get();
}

}  // namespace

TEST_CASE("a plain function registers the fiber form of a method", "[messaging][endpoint]") {
  endpoint e("calc");
  e.add("add", {"a", "b"}, [](int a, int b) { return a + b; });
  const method* m = e.find("add");
  REQUIRE(m);
  CHECK(m->legacy());
  CHECK(m->legacy()->kind == method_kind::fiber);
  CHECK_FALSE(m->ported());
  CHECK(m->parameters() == std::vector<std::string>{"a", "b"});
  CHECK(call_plain(*m, {{"a", 2}, {"b", 40}}) == json::value(42));
}

TEST_CASE("a function returning an awaitable registers the coroutine form", "[messaging][endpoint]") {
  endpoint e("calc");
  e.add("add", {"a", "b"}, [](int a, int b) -> asio::awaitable<int> { co_return a + b; });
  const method* m = e.find("add");
  REQUIRE(m);
  CHECK_FALSE(m->legacy());
  REQUIRE(m->ported());
  CHECK(m->ported()->kind == method_kind::coroutine);
  CHECK(call_coro(*m, {{"a", 1}, {"b", 2}}) == json::value(3));
}

TEST_CASE("one name carries a legacy and a ported form", "[messaging][endpoint]") {
  endpoint e("calc");
  e.add("add", {"a", "b"}, [](int a, int b) { return a + b; });
  e.add("add", {"a", "b"}, [](int a, int b) -> asio::awaitable<int> { co_return a + b + 0; });
  const method* m = e.find("add");
  REQUIRE(m);
  CHECK(m->has_both_forms());
  CHECK(call_plain(*m, {{"a", 3}, {"b", 4}}) == call_coro(*m, {{"a", 3}, {"b", 4}}));
  SECTION("but not two of the same form") {
    CHECK_THROWS_AS(e.add("add", {"a", "b"}, [](int a, int b) { return a * b; }), std::invalid_argument);
  }
  SECTION("and both forms must name the parameters alike") {
    endpoint f("calc");
    f.add("sub", {"a", "b"}, [](int a, int b) { return a - b; });
    CHECK_THROWS_AS(f.add("sub", {"x", "y"}, [](int a, int b) -> asio::awaitable<int> { co_return a - b; }),
                    std::invalid_argument);
  }
}

TEST_CASE("a parameter count that does not match the names is refused", "[messaging][endpoint]") {
  endpoint e("calc");
  CHECK_THROWS_AS(e.add("add", {"a"}, [](int a, int b) { return a + b; }), std::invalid_argument);
}

TEST_CASE("a method may take the request context first", "[messaging][endpoint]") {
  endpoint e("ctx");
  e.add("whoami", {}, [](const request_context& ctx) {
    return std::string(ctx.ctxt.at("user").as_string()) + "@" + ctx.method;
  });
  rpc_request r;
  r.method = "whoami";
  r.ctxt["user"] = "alice";
  r.msg_id = "m1";
  r.reply_q = "q";
  r.timeout = 5.0;
  request_context ctx = request_context::of(r);
  REQUIRE(ctx.deadline);
  CHECK(*ctx.deadline > std::chrono::steady_clock::now());
  CHECK(ctx.msg_id == "m1");
  json::object args;
  CHECK(e.find("whoami")->legacy()->call(ctx, args) == json::value("alice@whoami"));
}

TEST_CASE("user structs convert through Boost.Describe in both directions", "[messaging][endpoint]") {
  endpoint e("metering");
  e.add("scale", {"s", "factor"}, [](metering::sample s, double factor) {
    s.volume *= factor;
    s.tags.push_back("scaled");
    return s;
  });
  json::value in = json::value_from(metering::sample{"cpu", 2.0, {"a"}});
  json::value out = call_plain(*e.find("scale"), {{"s", in}, {"factor", 1.5}});
  auto back = json::value_to<metering::sample>(out);
  CHECK(back.meter == "cpu");
  CHECK(back.volume == 3.0);
  CHECK(back.tags == std::vector<std::string>{"a", "scaled"});
}

TEST_CASE("bad arguments are reported naming the parameter", "[messaging][endpoint]") {
  endpoint e("calc");
  e.add("add", {"a", "b"}, [](int a, int b) { return a + b; });
  const method& m = *e.find("add");
  auto problem = [&](json::object args) -> std::pair<std::string, std::string> {
    try {
      call_plain(m, std::move(args));
    } catch (const bad_arguments& x) {
      return {x.parameter(), x.what()};
    }
    return {"", "no error"};
  };
  SECTION("missing") {
    auto [param, what] = problem({{"a", 1}});
    CHECK(param == "b");
    CHECK_THAT(what, Catch::Contains("'b' is missing"));
  }
  SECTION("unexpected") {
    auto [param, what] = problem({{"a", 1}, {"b", 2}, {"c", 3}});
    CHECK(param == "c");
    CHECK_THAT(what, Catch::Contains("'c' is not a parameter"));
  }
  SECTION("wrongly typed") {
    auto [param, what] = problem({{"a", "one"}, {"b", 2}});
    CHECK(param == "a");
    CHECK_THAT(what, Catch::Contains("'a' expects an integer, got a string"));
  }
  SECTION("a struct missing a field") {
    endpoint s("metering");
    s.add("scale", {"s"}, [](metering::sample x) { return x.volume; });
    try {
      call_plain(*s.find("scale"), {{"s", json::object{{"meter", "cpu"}}}});
      FAIL("no error");
    } catch (const bad_arguments& x) {
      CHECK(x.parameter() == "s");
    }
  }
}

TEST_CASE("a raw method gets the JSON arguments as they came", "[messaging][endpoint]") {
  endpoint e("raw");
  e.add_raw("keys", [](request_context&, json::object& args) {
    json::array keys;
    for (auto& kv : args) keys.emplace_back(kv.key());
    return json::value(std::move(keys));
  });
  e.add_raw("keys", [](request_context&, json::object& args) -> asio::awaitable<json::value> {
    co_return json::value(static_cast<std::int64_t>(args.size()));
  });
  const method& m = *e.find("keys");
  CHECK(m.parameters().empty());
  CHECK(call_plain(m, {{"x", 1}, {"y", 2}}).as_array().size() == 2);
  CHECK(call_coro(m, {{"x", 1}, {"y", 2}}) == json::value(2));
}

TEST_CASE("a void method returns null", "[messaging][endpoint]") {
  endpoint e("v");
  int touched = 0;
  e.add("touch", {}, [&] { ++touched; });
  e.add("touch", {}, [&]() -> asio::awaitable<void> {
    ++touched;
    co_return;
  });
  CHECK(call_plain(*e.find("touch"), {}).is_null());
  CHECK(call_coro(*e.find("touch"), {}).is_null());
  CHECK(touched == 2);
}

TEST_CASE("an endpoint refuses a bad namespace or version", "[messaging][endpoint]") {
  CHECK_THROWS_AS(endpoint("x", endpoint_target{std::string("bad ns"), "1.0"}), invalid_target);
  CHECK_THROWS_AS(endpoint("x", endpoint_target{std::nullopt, "one"}), invalid_target);
}

TEST_CASE("the dispatcher follows oslo.messaging's namespace and version rules",
          "[messaging][dispatcher]") {
  auto v13 = std::make_shared<endpoint>("v13", endpoint_target{std::nullopt, "1.3"});
  v13->add("ping", {}, [] { return "v13"; });
  v13->add("_private", {}, [] { return "hidden"; });
  auto v21 = std::make_shared<endpoint>("v21", endpoint_target{std::nullopt, "2.1"});
  v21->add("ping", {}, [] { return "v21"; });
  auto admin = std::make_shared<endpoint>("admin", endpoint_target{std::string("admin"), "1.0"});
  admin->add("report", {}, [] { return "report"; });
  dispatcher d({v13, v21, admin});

  auto find = [&](std::string method, std::optional<std::string> version,
                  std::optional<std::string> ns = std::nullopt) {
    rpc_request r;
    r.method = std::move(method);
    r.version = std::move(version);
    r.ns = std::move(ns);
    return d.find(r);
  };
  CHECK(find("ping", "1.0").first->name() == "v13");
  CHECK(find("ping", "1.3").first->name() == "v13");
  CHECK(find("ping", std::nullopt).first->name() == "v13");  // absent version means 1.0
  CHECK(find("ping", "2.0").first->name() == "v21");
  CHECK(find("report", "1.0", "admin").second->name() == "report");

  CHECK_THROWS_AS(find("ping", "1.4"), unsupported_version);
  CHECK_THROWS_AS(find("ping", "3.0"), unsupported_version);
  CHECK_THROWS_AS(find("report", "1.0"), no_such_method);         // wrong namespace
  CHECK_THROWS_AS(find("ping", "1.0", "other"), unsupported_version);  // nobody serves it
  CHECK_THROWS_AS(find("nope", "1.0"), no_such_method);
  CHECK_THROWS_AS(find("_private", "1.0"), no_such_method);  // never dispatched
  try {
    find("ping", "1.9");
  } catch (const unsupported_version& e) {
    CHECK(std::string(e.what()) == "Endpoint does not support RPC version 1.9. Attempted method: ping");
  }
}
