// Migration controls without an executor: policies, the canary's choice,
// shadow records, the report and its verdict, its JSON form.
#include <coport/messaging/serving/executor.hpp>
#include <coport/messaging/serving/migration.hpp>

#include <catch2/catch.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/json.hpp>

#include <string>
#include <vector>

namespace asio = boost::asio;
namespace json = boost::json;
namespace msg = coport::messaging;
using msg::policy;

namespace {

/// metering: record (both forms), total (both), export (fiber only), ping
/// (coroutine only); billing: total (both).
std::shared_ptr<msg::dispatcher> service_methods() {
  auto metering = std::make_shared<msg::endpoint>("metering");
  metering->add("record", {"v"}, [](int v) { return v; });
  metering->add("record", {"v"}, [](int v) -> asio::awaitable<int> { co_return v; });
  metering->add("total", {}, [] { return 1; });
  metering->add("total", {}, []() -> asio::awaitable<int> { co_return 1; });
  metering->add("export", {}, [] { return 0; });
  metering->add("ping", {}, []() -> asio::awaitable<int> { co_return 0; });
  auto billing = std::make_shared<msg::endpoint>("billing", msg::endpoint_target{.ns = "billing"});
  billing->add("total", {}, [] { return 2; });
  billing->add("total", {}, []() -> asio::awaitable<int> { co_return 2; });
  auto d = std::make_shared<msg::dispatcher>();
  d->add(metering);
  d->add(billing);
  return d;
}

const msg::endpoint& ep(const msg::dispatcher& d, std::size_t i) { return *d.endpoints()[i]; }
const msg::method& meth(const msg::dispatcher& d, std::size_t i, const char* name) { return *ep(d, i).find(name); }

msg::method_report row(std::string e, std::string m, msg::method_kind k, std::string mode, std::uint64_t calls) {
  msg::method_report r;
  r.endpoint = std::move(e);
  r.method = std::move(m);
  r.kind = k;
  r.mode = std::move(mode);
  r.executor = "fiber_executor";
  r.calls = calls;
  r.p50 = std::chrono::microseconds(40);
  r.p99 = std::chrono::microseconds(900);
  return r;
}

bool has_reason(const msg::migration_report& r, const std::string& part) {
  for (const auto& reason : r.not_ready) {
    if (reason.find(part) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("policies parse from their text form and print back", "[messaging][migration]") {
  CHECK(policy::parse("legacy") == policy::legacy());
  CHECK(policy::parse("ported") == policy::ported());
  CHECK(policy::parse("shadow") == policy::shadow());
  CHECK(policy::parse("canary:25") == policy::canary(25));
  CHECK(policy::parse("canary:25%") == policy::canary(25));
  CHECK(policy::parse("canary:0").percent == 0);
  CHECK(policy::parse("canary:100").percent == 100);
  for (const char* text : {"legacy", "ported", "shadow", "canary:7"}) CHECK(policy::parse(text).to_string() == text);

  for (const char* bad : {"", "Legacy", "canary", "canary:", "canary:101", "canary:-1", "canary:1x", "canary: 5",
                          "native"}) {
    INFO("'" << bad << "'");
    CHECK_THROWS_AS(policy::parse(bad), msg::invalid_policy);
  }
  CHECK_THROWS_WITH(policy::parse("fast"), Catch::Contains("expected legacy, ported, canary:N"));
  try {
    policy::parse("canary:300");
    FAIL("accepted canary:300");
  } catch (const msg::invalid_policy& e) {
    CHECK(e.code() == coport::migration::errc::invalid_policy);
    CHECK_THAT(e.what(), Catch::Contains("0..100"));
  }
}

TEST_CASE("migration controls check policies against the methods' forms", "[messaging][migration]") {
  auto d = service_methods();
  SECTION("defaults: both forms follow default_policy; one form reads as its kind") {
    msg::migration_controls c(d);
    CHECK(c.policy_of(ep(*d, 0), meth(*d, 0, "record")) == policy::ported());
    CHECK(c.policy_of(ep(*d, 0), meth(*d, 0, "export")) == policy::legacy());
    CHECK(c.policy_of(ep(*d, 0), meth(*d, 0, "ping")) == policy::ported());
    msg::migration_options o;
    o.default_policy = policy::legacy();
    msg::migration_controls l(d, o);
    CHECK(l.policy_of(ep(*d, 0), meth(*d, 0, "record")) == policy::legacy());
    CHECK(l.policy_of(ep(*d, 1), meth(*d, 1, "total")) == policy::legacy());
  }
  SECTION("configuration names methods as endpoint.method or method; the full name wins") {
    msg::migration_options o;
    o.policies["total"] = policy::shadow();
    o.policies["metering.total"] = policy::canary(10);
    msg::migration_controls c(d, o);
    CHECK(c.policy_of(ep(*d, 0), meth(*d, 0, "total")) == policy::canary(10));
    CHECK(c.policy_of(ep(*d, 1), meth(*d, 1, "total")) == policy::shadow());
  }
  SECTION("configuration errors are typed and name the method") {
    msg::migration_options unknown;
    unknown.policies["metering.nope"] = policy::legacy();
    CHECK_THROWS_AS(msg::migration_controls(d, unknown), msg::invalid_policy);
    CHECK_THROWS_WITH(msg::migration_controls(d, unknown), Catch::Contains("metering.nope"));
    msg::migration_options no_legacy;
    no_legacy.policies["metering.ping"] = policy::shadow();
    CHECK_THROWS_WITH(msg::migration_controls(d, no_legacy),
                      Catch::Contains("metering.ping") && Catch::Contains("legacy (fiber) form"));
    msg::migration_options no_ported;
    no_ported.policies["metering.export"] = policy::canary(5);
    CHECK_THROWS_WITH(msg::migration_controls(d, no_ported), Catch::Contains("ported (coroutine) form"));
  }
  SECTION("set_policy changes one method, returns the previous policy, refuses what cannot run") {
    msg::migration_controls c(d);
    CHECK(c.set_policy("metering.record", policy::canary(20)) == policy::ported());
    CHECK(c.set_policy("record", policy::legacy()) == policy::canary(20));  // one endpoint has it
    CHECK(c.policy_of(ep(*d, 0), meth(*d, 0, "record")) == policy::legacy());
    CHECK(c.policy_of(ep(*d, 0), meth(*d, 0, "total")) == policy::ported());  // untouched
    CHECK_THROWS_WITH(c.set_policy("total", policy::legacy()), Catch::Contains("several endpoints"));
    CHECK_THROWS_AS(c.set_policy("metering.nope", policy::legacy()), msg::invalid_policy);
    CHECK_THROWS_AS(c.set_policy("metering.export", policy::ported()), msg::invalid_policy);
    CHECK(c.set_policy("metering.export", policy::legacy()) == policy::legacy());
    // Rollback of everything in both forms at once.
    c.set_all(policy::legacy());
    CHECK(c.policy_of(ep(*d, 1), meth(*d, 1, "total")) == policy::legacy());
    CHECK(c.policy_of(ep(*d, 0), meth(*d, 0, "ping")) == policy::ported());  // one form: unchanged
  }
  SECTION("the admin namespace is reserved") {
    CHECK_THROWS_AS(msg::endpoint("x", msg::endpoint_target{.ns = "coport.admin"}), msg::invalid_target);
  }
}

TEST_CASE("routing: each policy picks its forms; a canary's share is drawn per call from the seed",
          "[messaging][migration]") {
  auto d = service_methods();
  const auto& e = ep(*d, 0);
  const auto& m = meth(*d, 0, "record");
  msg::migration_controls c(d);

  c.set_policy("metering.record", policy::legacy());
  auto r = c.choose(e, m);
  CHECK(r.primary == m.legacy());
  CHECK(r.shadow == nullptr);
  c.set_policy("metering.record", policy::ported());
  r = c.choose(e, m);
  CHECK(r.primary == m.ported());
  CHECK(r.shadow == nullptr);
  c.set_policy("metering.record", policy::shadow());
  r = c.choose(e, m);
  CHECK(r.primary == m.legacy());
  CHECK(r.shadow == m.ported());
  // One form: that form, whatever else.
  CHECK(c.choose(e, meth(*d, 0, "export")).primary == meth(*d, 0, "export").legacy());
  CHECK(c.choose(e, meth(*d, 0, "ping")).primary == meth(*d, 0, "ping").ported());

  const unsigned percent = GENERATE(0u, 1u, 25u, 50u, 90u, 100u);
  INFO("canary:" << percent);
  auto draw = [&](msg::migration_controls& ctl, int n) {
    std::vector<bool> ported;
    for (int i = 0; i < n; ++i) ported.push_back(ctl.choose(e, m).primary == m.ported());
    return ported;
  };
  msg::migration_options o;
  o.seed = 42;
  o.policies["metering.record"] = policy::canary(percent);
  msg::migration_controls a(d, o), b(d, o);
  const int n = 20000;
  const auto first = draw(a, n);
  const auto count = std::count(first.begin(), first.end(), true);
  // 20 000 draws: the binomial's standard deviation is at most 71 calls
  // (0.35 %); 1.5 % is over four of them.
  CHECK(std::abs(static_cast<double>(count) / n - percent / 100.0) <= 0.015);
  if (percent == 0) CHECK(count == 0);
  if (percent == 100) CHECK(count == n);
  // The same seed and order choose the same forms; another seed does not.
  CHECK(draw(b, n) == first);
  if (percent > 0 && percent < 100) {
    o.seed = 43;
    msg::migration_controls other(d, o);
    CHECK(draw(other, n) != first);
  }
}

TEST_CASE("shadow results are counted per method; the first mismatches are kept with their arguments",
          "[messaging][migration]") {
  auto d = service_methods();
  msg::migration_options o;
  o.mismatches_kept = 3;
  msg::migration_controls c(d, o);
  const auto& e = ep(*d, 0);
  const auto& m = meth(*d, 0, "total");
  std::vector<std::size_t> ranks;
  for (int i = 0; i < 10; ++i) {
    json::object args;
    args["i"] = i;
    const bool equal = i % 2 == 0;
    ranks.push_back(
        c.record_shadow(e, m, equal, args, equal ? "" : std::to_string(i), equal ? "" : std::to_string(-i)));
  }
  // Equal calls and mismatches past the bound rank 0 (counted, not kept).
  CHECK(ranks == std::vector<std::size_t>{0, 1, 0, 2, 0, 3, 0, 0, 0, 0});
  CHECK(c.shadow_counts(e, m) == std::pair<std::uint64_t, std::uint64_t>{10, 5});
  const auto kept = c.mismatches();
  REQUIRE(kept.size() == 3);
  CHECK(kept[0].endpoint == "metering");
  CHECK(kept[0].method == "total");
  CHECK(kept[0].args.at("i") == 1);
  CHECK(kept[0].legacy == "1");
  CHECK(kept[0].ported == "-1");
  CHECK(kept[2].args.at("i") == 5);
}

TEST_CASE("the report lists every method with its forms and gives the verdict with each reason",
          "[messaging][migration]") {
  auto d = service_methods();
  msg::migration_controls c(d);
  using K = msg::method_kind;
  // Everything ported, native, clean: the only reason left is the fiber-only
  // method, until it is gone.
  std::vector<msg::method_report> clean = {
      row("metering", "record", K::fiber, "fiber", 3),   row("metering", "record", K::coroutine, "native", 7),
      row("metering", "total", K::fiber, "fiber", 0),    row("metering", "total", K::coroutine, "native", 5),
      row("metering", "export", K::fiber, "fiber", 2),   row("metering", "ping", K::coroutine, "native", 1),
      row("billing", "total", K::fiber, "fiber", 0),     row("billing", "total", K::coroutine, "native", 4)};
  auto r = msg::make_report(c, clean, "fiber_executor");
  CHECK(r.executor == "fiber_executor");
  REQUIRE(r.methods.size() == 5);
  CHECK(r.methods[0].endpoint == "metering");
  REQUIRE(r.not_ready.size() == 1);
  CHECK_THAT(r.not_ready[0], Catch::Contains("only a fiber form") && Catch::Contains("metering.export"));
  CHECK_FALSE(r.ready());
  CHECK(r.verdict() == "not ready for coro_executor: 1 reason(s)");

  auto find = [&](const msg::migration_report& rep, const std::string& e, const std::string& m) {
    for (const auto& x : rep.methods)
      if (x.endpoint == e && x.method == m) return x;
    FAIL("no row " << e << "." << m);
    return msg::migration_report::method_row{};
  };
  const auto rec = find(r, "metering", "record");
  CHECK(rec.kinds == "both");
  CHECK(rec.policy == "ported");
  REQUIRE(rec.forms.size() == 2);
  CHECK(rec.forms[0].kind == K::fiber);  // legacy first
  CHECK(rec.forms[0].calls == 3);
  CHECK(rec.forms[1].calls == 7);
  CHECK(rec.forms[1].mode == "native");
  CHECK(rec.forms[1].p99 == std::chrono::microseconds(900));
  CHECK(find(r, "metering", "export").kinds == "fiber");
  CHECK(find(r, "metering", "ping").kinds == "coroutine");

  // Each reason on its own.
  SECTION("a policy other than ported") {
    c.set_policy("metering.record", policy::canary(5));
    r = msg::make_report(c, clean, "fiber_executor");
    CHECK(has_reason(r, "metering.record is served under policy canary:5, not ported"));
    CHECK(find(r, "metering", "record").policy == "canary:5");
  }
  SECTION("implicit yields, and a hosted form without them") {
    auto rows = clean;
    rows[1].mode = "hosted";
    rows[1].implicit_yields = 12;
    rows[3].mode = "hosted";
    r = msg::make_report(c, rows, "fiber_executor");
    CHECK(has_reason(r, "metering.record: its coroutine form blocked fibers 12 time(s)"));
    CHECK_FALSE(has_reason(r, "metering.record runs hosted"));  // said once, by the yields
    CHECK(has_reason(r, "metering.total runs hosted"));
  }
  SECTION("stalls") {
    auto rows = clean;
    rows[5].stalls = 2;
    r = msg::make_report(c, rows, "fiber_executor");
    CHECK(has_reason(r, "metering.ping: its coroutine form stalled the loop 2 time(s)"));
  }
  SECTION("shadow mismatches") {
    json::object args;
    args["meter"] = "cpu";
    c.record_shadow(ep(*d, 1), meth(*d, 1, "total"), true, args, "", "");
    c.record_shadow(ep(*d, 1), meth(*d, 1, "total"), false, args, "2", "3");
    r = msg::make_report(c, clean, "fiber_executor");
    CHECK(has_reason(r, "billing.total: 1 of 2 shadow call(s) answered differently"));
    REQUIRE(r.mismatches.size() == 1);
    const std::string text = r.to_text();
    CHECK_THAT(text, Catch::Contains("billing.total {\"meter\":\"cpu\"}") && Catch::Contains("legacy: 2") &&
                         Catch::Contains("ported: 3") && Catch::Contains("1/2 differ"));
  }
  SECTION("ready once every reason is gone") {
    auto d2 = std::make_shared<msg::dispatcher>();
    auto e2 = std::make_shared<msg::endpoint>("metering");
    e2->add("ping", {}, []() -> asio::awaitable<int> { co_return 0; });
    e2->add("total", {}, [] { return 1; });
    e2->add("total", {}, []() -> asio::awaitable<int> { co_return 1; });
    d2->add(e2);
    msg::migration_controls c2(d2);
    std::vector<msg::method_report> rows = {row("metering", "ping", K::coroutine, "native", 1),
                                            row("metering", "total", K::coroutine, "native", 1)};
    r = msg::make_report(c2, rows, "coro_executor");
    CHECK(r.ready());
    CHECK(r.verdict() == "ready for coro_executor");
    CHECK_THAT(r.to_text(), Catch::Contains("verdict: ready for coro_executor"));
  }
}

TEST_CASE("the report's JSON has a fixed shape and reads back; a malformed one is refused by field",
          "[messaging][migration]") {
  auto d = service_methods();
  msg::migration_controls c(d);
  c.set_policy("metering.total", policy::shadow());
  json::object args;
  args["meter"] = "cpu";
  c.record_shadow(ep(*d, 0), meth(*d, 0, "total"), false, args, "{\"n\":1}", "error: runtime_error: boom");
  using K = msg::method_kind;
  auto rows = std::vector<msg::method_report>{row("metering", "record", K::coroutine, "hosted", 7)};
  rows[0].implicit_yields = 4;
  const auto r = msg::make_report(c, rows, "fiber_executor");
  const json::object o = r.to_json();

  CHECK(o.at("executor") == "fiber_executor");
  CHECK(o.at("ready") == false);
  CHECK(o.at("verdict").as_string() == r.verdict());
  CHECK(o.at("reasons").as_array().size() == r.not_ready.size());
  const auto& methods = o.at("methods").as_array();
  REQUIRE(methods.size() == 5);
  const auto& rec = methods[2].as_object();  // metering: export, ping, record, total (by name)
  CHECK(rec.at("endpoint") == "metering");
  CHECK(rec.at("method") == "record");
  CHECK(rec.at("kinds") == "both");
  CHECK(rec.at("policy") == "ported");
  CHECK(rec.at("shadow").as_object().at("calls") == 0);
  const auto& forms = rec.at("forms").as_array();
  REQUIRE(forms.size() == 2);
  const auto& ported = forms[1].as_object();
  CHECK(ported.at("kind") == "coroutine");
  CHECK(ported.at("mode") == "hosted");
  CHECK(ported.at("calls") == 7);
  CHECK(ported.at("implicit_yields") == 4);
  CHECK(ported.at("p50_us").to_number<double>() == 40.0);
  CHECK(ported.at("p99_us").to_number<double>() == 900.0);
  for (const char* key : {"errors", "cancelled", "stalls"}) CHECK(ported.contains(key));
  const auto& mm = o.at("mismatches").as_array();
  REQUIRE(mm.size() == 1);
  CHECK(mm[0].as_object().at("args").as_object().at("meter") == "cpu");
  CHECK(mm[0].as_object().at("ported") == "error: runtime_error: boom");
  CHECK(mm[0].as_object().at("time").as_string().size() == 20);  // 2026-12-02T19:00:00Z

  // Through text and back: what a client fetching it prints.
  const auto back = msg::migration_report::from_json(json::parse(json::serialize(o)));
  CHECK(back.to_json().at("methods") == o.at("methods"));
  CHECK(back.not_ready == r.not_ready);
  CHECK(back.to_text() == r.to_text());

  json::value broken = o;
  broken.as_object().at("methods").as_array()[2].as_object().at("forms").as_array()[0].as_object().erase("calls");
  CHECK_THROWS_WITH(msg::migration_report::from_json(broken), Catch::Contains("'calls'"));
  json::value wrong_type = o;
  wrong_type.as_object()["reasons"] = 3;
  CHECK_THROWS_AS(msg::migration_report::from_json(wrong_type), msg::decode_error);
  CHECK_THROWS_AS(msg::migration_report::from_json(json::value("report")), msg::decode_error);
}

TEST_CASE("strict mode applies to every method, or to those named", "[messaging][migration]") {
  auto d = service_methods();
  msg::migration_controls off(d);
  CHECK_FALSE(off.strict_for(ep(*d, 0), meth(*d, 0, "record")));
  msg::migration_options all;
  all.strict = true;
  msg::migration_controls on(d, all);
  CHECK(on.strict_for(ep(*d, 0), meth(*d, 0, "record")));
  CHECK(on.strict_for(ep(*d, 1), meth(*d, 1, "total")));
  msg::migration_options some;
  some.strict = true;
  some.strict_methods = {"metering.total"};
  msg::migration_controls named(d, some);
  CHECK(named.strict_for(ep(*d, 0), meth(*d, 0, "total")));
  CHECK_FALSE(named.strict_for(ep(*d, 1), meth(*d, 1, "total")));
  CHECK_FALSE(named.strict_for(ep(*d, 0), meth(*d, 0, "record")));
}
