#include <coport/migration/point.hpp>

#include <catch2/catch.hpp>

#include "bridge_test_support.hpp"

#include <boost/fiber/operations.hpp>

#include <stdexcept>
#include <string>

using namespace coport::test;
namespace mig = coport::migration;
using mig::policy;

namespace {

// A point whose two forms differ on purpose for odd inputs, so a shadow
// call can find a mismatch; the legacy form blocks its fiber (yield), as
// unported code does.
mig::point<int(int)>::forms doubling_forms() {
  return {
      .legacy = [](int x) {
        boost::this_fiber::yield();
        if (x < 0) throw std::invalid_argument("negative");
        return 2 * x;
      },
      .ported = [](int x) -> asio::awaitable<int> {
        if (x < 0) throw std::invalid_argument("negative");
        co_return x % 2 == 0 ? 2 * x : 2 * x + 1;
      },
      .describe = [](const int& x) { return boost::json::object{{"x", x}}; },
  };
}

}  // namespace

TEST_CASE("a point called from a fiber and from a coroutine runs the form its policy chooses", "[migration]") {
  bridge::runtime rt(test_options("points"));
  // readme-begin
  mig::registry reg("calc", {.policies = {{"double", policy::legacy()}}});
  mig::point<int(int)> p(reg, "double", doubling_forms(), rt);

  CHECK(get(in_fiber(rt, [&] { return p.call(3); })) == 6);  // legacy, in the fiber
  CHECK(get(in_coro(rt, [&]() -> asio::awaitable<int> { co_return co_await p.async_call(3); })) == 6);
  reg.set_policy("calc.double", policy::ported());
  CHECK(get(in_fiber(rt, [&] { return p.call(3); })) == 7);  // ported, awaited by the fiber
  CHECK(get(in_coro(rt, [&]() -> asio::awaitable<int> { co_return co_await p.async_call(3); })) == 7);

  const mig::report r = reg.make_report();  // r.to_text(), r.to_json(), r.verdict()
  // readme-end
  REQUIRE(r.methods.size() == 1);
  CHECK(r.methods[0].forms[0].calls == 2);
  CHECK(r.methods[0].forms[1].calls == 2);
  CHECK(r.ready());
}

TEST_CASE("a shadow point answers with the legacy result and records each difference", "[migration]") {
  bridge::runtime rt(test_options("points"));
  mig::registry reg("calc", {.policies = {{"double", policy::shadow()}}});
  mig::point<int(int)> p(reg, "double", doubling_forms(), rt);

  CHECK(get(in_fiber(rt, [&] { return p.call(2); })) == 4);
  CHECK(get(in_fiber(rt, [&] { return p.call(5); })) == 10);  // the ported form said 11
  CHECK(get(in_coro(rt, [&]() -> asio::awaitable<int> { co_return co_await p.async_call(7); })) == 14);
  CHECK_THROWS_AS(get(in_fiber(rt, [&] { return p.call(-1); })), std::invalid_argument);  // same error: equal

  const auto [calls, mismatches] = p.record().shadow_counts();
  CHECK(calls == 4);
  CHECK(mismatches == 2);
  const mig::report r = reg.make_report();
  REQUIRE(r.mismatches.size() == 2);
  CHECK(r.mismatches[0].args.at("x") == 5);
  CHECK(r.mismatches[0].legacy == "10");
  CHECK(r.mismatches[0].ported == "11");
  CHECK(r.methods[0].forms[0].errors == 1);
  CHECK(r.methods[0].forms[1].errors == 1);
  CHECK_FALSE(r.ready());
}

TEST_CASE("a canary point splits its calls, and a rollback to legacy takes effect at the next call", "[migration]") {
  bridge::runtime rt(test_options("points"));
  mig::registry reg("calc", {.policies = {{"double", policy::canary(50)}}});
  mig::point<int(int)> p(reg, "double", doubling_forms(), rt);
  auto odd_answers = [&] {
    return get(in_fiber(rt, [&] {
      int ported = 0;
      for (int i = 0; i < 200; ++i) ported += p.call(1) == 3 ? 1 : 0;
      return ported;
    }));
  };
  const int ported = odd_answers();
  CHECK(ported > 60);
  CHECK(ported < 140);
  reg.set_policy("double", policy::legacy());
  CHECK(odd_answers() == 0);
}

TEST_CASE("arguments that own memory reach the legacy form from a coroutine, in every policy", "[migration]") {
  bridge::runtime rt(test_options("points"));
  mig::registry reg("text");
  mig::point<std::string(std::string, std::string)> join(
      reg, "join",
      {.legacy = [](std::string a, std::string b) { return a + "+" + b; },
       .ported = [](std::string a, std::string b) -> asio::awaitable<std::string> { co_return a + "+" + b; }},
      rt);
  const std::string a(64, 'a');
  const std::string b(64, 'b');
  for (const policy p : {policy::legacy(), policy::shadow(), policy::canary(50), policy::ported()}) {
    reg.set_policy("join", p);
    for (int i = 0; i < 20; ++i) {
      CHECK(get(in_coro(rt, [&]() -> asio::awaitable<std::string> {
              co_return co_await join.async_call(a, b);
            })) == a + "+" + b);
    }
  }
  const mig::report r = reg.make_report();
  CHECK(r.methods[0].forms[0].calls >= 40);  // legacy, shadow and part of the canary
  CHECK(r.methods[0].shadow_mismatches == 0);
}

TEST_CASE("a point with only its ported form left reports ready, with the loop's counters", "[migration]") {
  bridge::runtime rt(test_options("points"));
  mig::registry reg("calc");
  mig::point<std::string(std::string)> p(reg, "echo",
                                         {.ported = [](std::string s) -> asio::awaitable<std::string> { co_return s; }},
                                         rt);
  CHECK(get(in_fiber(rt, [&] { return p.call("a"); })) == "a");
  // A class-type result through async_call (g++ 12 mishandles a class-type
  // conditional of two co_awaits; ASan sees it if that shape comes back).
  CHECK(get(in_coro(rt, [&]() -> asio::awaitable<std::string> {
          co_return co_await p.async_call(std::string(40, 'b'));
        })) == std::string(40, 'b'));
  CHECK_THROWS_AS(reg.set_policy("echo", policy::legacy()), mig::invalid_policy);
  const mig::report r = reg.make_report();
  CHECK(r.methods[0].kinds == "coroutine");
  CHECK(r.methods[0].forms[0].implicit_yields == 0);
  CHECK(r.ready());
}
