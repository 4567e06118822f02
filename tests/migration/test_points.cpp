#include <coport/migration/points.hpp>

#include <catch2/catch.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

namespace mig = coport::migration;
using mig::policy;

TEST_CASE("a point's configured policy applies when it is declared, by full name or bare name", "[migration]") {
  mig::registry reg("kv", {.policies = {{"kv.get", policy::legacy()}, {"put", policy::canary(30)}}});
  auto& get = reg.declare("get", true, true);
  auto& put = reg.declare("put", true, true);
  auto& del = reg.declare("del", true, true);
  auto& scan = reg.declare("scan", false, true);
  CHECK(get.full_name() == "kv.get");
  CHECK(get.current() == policy::legacy());
  CHECK(put.current() == policy::canary(30));
  CHECK(del.current() == policy::ported());  // the default for two forms
  CHECK(scan.current() == policy::ported());
  CHECK(reg.unused_policies().empty());
}

TEST_CASE("declaring a point twice, or under a policy its forms cannot serve, is a typed error", "[migration]") {
  mig::registry reg("kv", {.policies = {{"kv.old", policy::shadow()}}});
  reg.declare("get", true, true);
  try {
    reg.declare("get", true, false);
    FAIL("declared twice");
  } catch (const mig::invalid_policy& e) {
    CHECK(e.code() == mig::errc::duplicate_point);
  }
  CHECK_THROWS_WITH(reg.declare("old", true, false), Catch::Contains("needs its ported (coroutine) form"));
  CHECK_THROWS_AS(reg.declare("none", false, false), mig::invalid_policy);
  mig::registry unused("kv", {.policies = {{"kv.missing", policy::legacy()}}});
  CHECK(unused.unused_policies() == std::vector<std::string>{"kv.missing"});
}

TEST_CASE("set_policy changes what later calls choose and returns the previous policy", "[migration]") {
  mig::registry reg("kv");
  auto& get = reg.declare("get", true, true);
  CHECK(get.choose().primary == mig::form_kind::coroutine);
  CHECK(reg.set_policy("get", policy::shadow()) == policy::ported());
  const auto shadow = get.choose();
  CHECK(shadow.primary == mig::form_kind::fiber);
  CHECK(shadow.shadow);
  reg.set_all(policy::legacy());  // rollback
  CHECK(get.choose().primary == mig::form_kind::fiber);
  CHECK_FALSE(get.choose().shadow);
  try {
    reg.set_policy("nope", policy::legacy());
    FAIL("no such point");
  } catch (const mig::invalid_policy& e) {
    CHECK(e.code() == mig::errc::unknown_point);
    CHECK_THAT(e.what(), Catch::Contains("'nope'"));
  }
}

TEST_CASE("a canary sends its share of calls to the ported form, reproducibly for one seed", "[migration]") {
  auto count_ported = [](std::uint64_t seed) {
    mig::registry reg("kv", {.policies = {{"get", policy::canary(25)}}, .seed = seed});
    auto& get = reg.declare("get", true, true);
    int ported = 0;
    for (int i = 0; i < 4000; ++i) ported += get.choose().primary == mig::form_kind::coroutine ? 1 : 0;
    return ported;
  };
  const int a = count_ported(7);
  CHECK(a == count_ported(7));
  CHECK(a > 800);
  CHECK(a < 1200);
}

TEST_CASE("the points report has the RPC report's columns and judges what keeps fibers", "[migration]") {
  mig::registry reg("pipeline", {.policies = {{"parse", policy::shadow()}}, .mismatches_kept = 1});
  auto& parse = reg.declare("parse", true, true);
  auto& flush = reg.declare("flush", true, false);
  auto& route = reg.declare("route", false, true);
  parse.metrics(mig::form_kind::fiber).record(std::chrono::microseconds(40), false, false);
  parse.metrics(mig::form_kind::coroutine).record(std::chrono::microseconds(10), true, false);
  route.metrics(mig::form_kind::coroutine).record(std::chrono::microseconds(5), false, false);
  CHECK(parse.record_shadow(false, {{"line", "a=1"}}, "1", "2") == 1);
  CHECK(parse.record_shadow(false, {{"line", "b=2"}}, "1", "3") == 0);  // counted, not kept
  CHECK(parse.record_shadow(true, {}, "1", "1") == 0);
  reg.set_counters_source([](std::string_view work) {
    return work == "pipeline.route" ? mig::registry::work_counters{2, 1} : mig::registry::work_counters{};
  });
  (void)flush;

  const mig::report r = reg.make_report();
  CHECK(r.goal == "removing Boost.Fiber");
  REQUIRE(r.methods.size() == 3);
  CHECK(r.methods[0].endpoint == "pipeline");
  CHECK(r.methods[0].method == "parse");
  CHECK(r.methods[0].unit == "point");
  CHECK(r.methods[0].kinds == "both");
  CHECK(r.methods[0].policy == "shadow");
  REQUIRE(r.methods[0].forms.size() == 2);
  CHECK(r.methods[0].forms[0].calls == 1);
  CHECK(r.methods[0].forms[1].errors == 1);
  CHECK(r.methods[0].shadow_calls == 3);
  CHECK(r.methods[0].shadow_mismatches == 2);
  CHECK(r.methods[2].forms[0].implicit_yields == 2);
  CHECK(r.methods[2].forms[0].stalls == 1);
  REQUIRE(r.mismatches.size() == 1);
  CHECK(r.mismatches[0].args.at("line") == "a=1");
  CHECK_FALSE(r.ready());
  CHECK(r.verdict() == "not ready for removing Boost.Fiber: 5 reason(s)");
  const std::string text = r.to_text();
  CHECK_THAT(text, Catch::Contains("1 migration point(s) have only a fiber form: pipeline.flush"));
  CHECK_THAT(text, Catch::Contains("pipeline.parse is served under policy shadow, not ported"));
  CHECK_THAT(text, Catch::Contains("pipeline.route: its coroutine form blocked fibers 2 time(s)"));
  CHECK_THAT(text, Catch::Contains("pipeline.route: its coroutine form stalled the loop 1 time(s)"));
  CHECK_THAT(text, Catch::Contains("pipeline.parse: 2 of 3 shadow call(s) answered differently"));

  const mig::report back = mig::report::from_json(boost::json::parse(boost::json::serialize(r.to_json())));
  CHECK(back.goal == r.goal);
  CHECK(back.methods[0].unit == "point");
  CHECK(back.not_ready == r.not_ready);
  CHECK_THROWS_AS(mig::report::from_json(boost::json::value("report")), mig::report_decode_error);
}

TEST_CASE("a report of ported points with clean counters is ready, and add() joins two reports", "[migration]") {
  mig::registry reg("io");
  reg.declare("read", false, true);
  auto& write = reg.declare("write", true, true);
  mig::report r = reg.make_report();
  CHECK(r.ready());
  CHECK(r.verdict() == "ready for removing Boost.Fiber");

  mig::registry other("legacy");
  other.declare("poll", true, false);
  r.add(other.make_report());
  CHECK(r.methods.size() == 3);
  CHECK_FALSE(r.ready());
  reg.set_policy("io.write", policy::legacy());
  CHECK(write.current() == policy::legacy());
}
