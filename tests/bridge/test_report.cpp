#include <coport/bridge/report.hpp>

#include <catch2/catch.hpp>

#include "bridge_test_support.hpp"

#include <boost/asio/post.hpp>
#include <boost/fiber/fiber.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using namespace coport::test;

namespace {

bool has_reason(const bridge::report& r, const std::string& part) {
  return std::any_of(r.not_ready.begin(), r.not_ready.end(),
                     [&](const std::string& s) { return s.find(part) != std::string::npos; });
}

asio::awaitable<int> answer() {
  co_await asio::post(asio::use_awaitable);
  co_return 42;
}

}  // namespace

TEST_CASE("a legacy busy loop run through a named run_in_fiber is blamed on the callee's name, not the caller's",
          "[bridge][report]") {
  // The first stall reported, whoever it blames; the test waits for it.
  std::mutex m;
  std::vector<std::string> stalled;
  std::promise<void> first_stall;
  auto opts = test_options("blame");
  opts.stall_threshold = 20ms;
  opts.on_violation = [&](const bridge::violation& v) {
    if (v.what != bridge::violation::kind::stall) return;
    std::lock_guard lk(m);
    stalled.push_back(v.work);
    if (stalled.size() == 1) first_stall.set_value();
  };
  bridge::runtime rt(opts);
  get(asio::co_spawn(rt.get_executor("kv.session"), []() -> asio::awaitable<void> {
    co_await bridge::run_in_fiber(bridge::work("legacy.parse"), [] { busy_for(60ms); });
  }, asio::use_future));
  get(first_stall.get_future());

  CHECK(rt.registry().counters("legacy.parse").stalls == 1);
  CHECK(rt.registry().counters("kv.session").stalls == 0);
  {
    std::lock_guard lk(m);
    CHECK(stalled.front() == "legacy.parse");
  }
  const auto r = bridge::report::of(rt.registry());
  const auto* callee = r.find("legacy.parse");
  REQUIRE(callee != nullptr);
  CHECK(callee->calls == 1);
  CHECK(callee->runs_in_fiber == 1);
  CHECK(callee->fiber_time >= 60ms);
  CHECK(callee->longest_stall >= 20ms);
  // The caller's own row: absent, as nothing of its own was counted (a
  // coroutine started with plain co_spawn is not seen starting).
  if (const auto* caller = r.find("kv.session")) {
    CHECK(caller->fiber_time == 0ns);
    CHECK(caller->runs_in_fiber == 0);
  }
}

TEST_CASE("fiber work run without a name is counted as the caller's fiber work, not as the caller",
          "[bridge][report]") {
  bridge::runtime rt(test_options("unnamed"));
  auto names = get(asio::co_spawn(rt.get_executor("kv.session"), []() -> asio::awaitable<std::vector<std::string>> {
    std::vector<std::string> seen;
    seen.push_back(co_await bridge::run_in_fiber([] { return std::string(bridge::this_fiber::work_name()); }));
    seen.push_back(co_await bridge::run_in_fiber(
        [](int) { return std::string(bridge::this_fiber::work_name()); }, 1));
    seen.push_back(co_await bridge::run_in_fiber(
        bridge::work("kv.parse"), [](int) { return std::string(bridge::this_fiber::work_name()); }, 1));
    co_return seen;
  }, asio::use_future));
  CHECK(names == std::vector<std::string>{"kv.session [fiber]", "kv.session [fiber]", "kv.parse"});
  CHECK(rt.registry().counters("kv.session [fiber]").runs_in_fiber == 2);
  CHECK(rt.registry().counters("kv.session").runs_in_fiber == 0);

  // async_run_in_fiber: a tagged executor names the work; a name given wins;
  // off the loop with an untagged executor it is "<fiber>".
  CHECK(get(bridge::async_run_in_fiber(rt.get_executor("legacy.fetch"),
                                       [] { return std::string(bridge::this_fiber::work_name()); },
                                       asio::use_future)) == "legacy.fetch");
  CHECK(get(bridge::async_run_in_fiber(rt.get_executor("legacy.fetch"), bridge::work("legacy.named"),
                                       [] { return std::string(bridge::this_fiber::work_name()); },
                                       asio::use_future)) == "legacy.named");
  CHECK(get(in_fiber(rt, [] { return std::string(bridge::this_fiber::work_name()); })) == "<fiber>");
}

TEST_CASE("a raw fiber is counted under its creator's name marked as a raw fiber", "[bridge][report]") {
  bridge::runtime rt(test_options("raw"));
  auto names = get(bridge::async_run_in_fiber(rt.get_executor("kv.owner"), [] {
    std::string inner;
    boost::fibers::fiber raw([&inner] { inner = std::string(bridge::this_fiber::work_name()); });
    raw.join();
    return std::make_pair(inner, std::string(bridge::this_fiber::work_name()));
  }, asio::use_future));
  CHECK(names.first == "kv.owner [raw fiber]");
  CHECK(names.second == "kv.owner");
  const auto c = rt.registry().counters("kv.owner [raw fiber]");
  CHECK(c.raw_fibers == 1);
  CHECK(c.calls == 1);
  CHECK(rt.registry().counters("kv.owner").raw_fibers == 0);

  // Created by native work without a name: "<raw fiber>".
  auto f = std::make_shared<std::promise<std::string>>();
  auto result = f->get_future();
  rt.post([f] {
    boost::fibers::fiber([f] { f->set_value(std::string(bridge::this_fiber::work_name())); }).detach();
  });
  CHECK(get(result) == "<raw fiber>");
  const auto r = bridge::report::of(rt.registry());
  CHECK(has_reason(r, "'kv.owner [raw fiber]': 1 raw fiber(s)"));
  CHECK(has_reason(r, "'<raw fiber>': 1 raw fiber(s)"));
}

TEST_CASE("a work scope names the fiber's work for its lifetime and restores the name after",
          "[bridge][report]") {
  bridge::runtime rt(test_options("scope"));
  auto names = get(bridge::async_run_in_fiber(rt.get_executor("kv.job"), [] {
    std::vector<std::string> seen{std::string(bridge::this_fiber::work_name())};
    {
      bridge::this_fiber::work_scope flusher("kv.flusher");
      seen.emplace_back(bridge::this_fiber::work_name());
      busy_for(5ms);
      {
        bridge::this_fiber::work_scope inner("kv.flusher.sync");
        seen.emplace_back(bridge::this_fiber::work_name());
      }
      seen.emplace_back(bridge::this_fiber::work_name());
    }
    seen.emplace_back(bridge::this_fiber::work_name());
    // From a raw fiber too.
    boost::fibers::fiber raw([&seen] {
      {
        bridge::this_fiber::work_scope s("kv.raw.named");
        seen.emplace_back(bridge::this_fiber::work_name());
      }
      seen.emplace_back(bridge::this_fiber::work_name());
    });
    raw.join();
    return seen;
  }, asio::use_future));
  CHECK(names == std::vector<std::string>{"kv.job", "kv.flusher", "kv.flusher.sync", "kv.flusher", "kv.job",
                                          "kv.raw.named", "kv.job [raw fiber]"});
  settle(rt);
  const auto flusher = rt.registry().counters("kv.flusher");
  CHECK(flusher.calls == 1);
  CHECK(flusher.fiber_time >= 5ms);
  CHECK(rt.registry().counters("kv.job").fiber_time < flusher.fiber_time);

  // On the loop fiber (native work) a scope does nothing.
  auto native = get(on_loop(rt, [] {
    bridge::this_fiber::work_scope s("kv.ignored");
    return std::string(bridge::this_fiber::work_name());
  }));
  CHECK(native != "kv.ignored");
  CHECK(rt.registry().counters("kv.ignored").calls == 0);
}

TEST_CASE("each cross-world call is counted once per use on the work responsible", "[bridge][report]") {
  bridge::runtime rt(test_options("crossings"));
  // bridge::await in both forms, from a fiber job named "x.waiter".
  CHECK(get(bridge::async_run_in_fiber(rt.get_executor("x.waiter"), [&rt] {
    return bridge::await(answer()) + bridge::await(rt.get_executor("x.awaited"), answer());
  }, asio::use_future)) == 84);
  // use_fiber, from a fiber job named "x.blocker".
  get(bridge::async_run_in_fiber(rt.get_executor("x.blocker"), [&rt] {
    asio::post(rt.io_context(), bridge::use_fiber);
  }, asio::use_future));
  // run_in_fiber from a coroutine, into "x.callee".
  get(asio::co_spawn(rt.get_executor("x.caller"), []() -> asio::awaitable<void> {
    co_await bridge::run_in_fiber(bridge::work("x.callee"), [] {});
  }, asio::use_future));
  // A hosted coroutine's steps.
  CHECK(get(bridge::co_spawn_hosted(rt.get_executor("x.hosted"), answer(), asio::use_future)) == 42);

  const auto waiter = rt.registry().counters("x.waiter");
  CHECK(waiter.awaits == 2);
  CHECK(waiter.runs_in_fiber == 1);  // its own job
  CHECK(waiter.use_fiber_waits == 0);
  CHECK(waiter.hosted_steps == 0);  // the coroutine it awaited ran in it, counted as the await
  const auto blocker = rt.registry().counters("x.blocker");
  CHECK(blocker.use_fiber_waits == 1);
  CHECK(blocker.awaits == 0);
  CHECK(rt.registry().counters("x.callee").runs_in_fiber == 1);
  CHECK(rt.registry().counters("x.callee").calls == 1);
  const auto caller = rt.registry().counters("x.caller");
  CHECK(caller.runs_in_fiber == 0);
  CHECK(caller.awaits == 0);
  const auto hosted = rt.registry().counters("x.hosted");
  CHECK(hosted.hosted_steps >= 1);
  CHECK(hosted.calls == 1);
  CHECK(hosted.awaits == 0);
  CHECK(rt.registry().counters("x.awaited").hosted_steps == 0);
}

TEST_CASE("fiber time grows for a fiber that computes and stays zero for coroutines", "[bridge][report]") {
  bridge::runtime rt(test_options("time"));
  // A fiber's time is charged when it leaves the CPU; use_future's promise
  // is set in the fiber itself, so settle() (a task the loop fiber runs
  // after the fiber has switched away) orders the reading after it.
  get(bridge::async_run_in_fiber(rt.get_executor("compute"), [] { busy_for(10ms); }, asio::use_future));
  settle(rt);
  const auto once = rt.registry().counters("compute").fiber_time;
  CHECK(once >= 10ms);
  get(bridge::async_run_in_fiber(rt.get_executor("compute"), [] { busy_for(10ms); }, asio::use_future));
  settle(rt);
  CHECK(rt.registry().counters("compute").fiber_time >= once + 10ms);
  get(asio::co_spawn(rt.get_executor("coroutine"), []() -> asio::awaitable<void> {
    busy_for(5ms);
    co_await asio::post(asio::use_awaitable);
  }, asio::use_future));
  CHECK(rt.registry().counters("coroutine").fiber_time == 0ns);
}

TEST_CASE("the verdict is ready when only coroutine work ran", "[bridge][report]") {
  bridge::runtime rt(test_options("ready"));
  get(asio::co_spawn(rt.get_executor("orders.fetch"), []() -> asio::awaitable<int> {
    asio::steady_timer t(co_await asio::this_coro::executor, 1ms);
    co_await t.async_wait(asio::use_awaitable);
    co_return co_await answer();
  }, asio::use_future));
  std::promise<void> done;
  bridge::spawn(rt.get_executor("orders.spawned"), [&done]() -> asio::awaitable<void> {
    co_await asio::post(asio::use_awaitable);
    done.set_value();
  });
  get(done.get_future());
  const auto r = bridge::report::of(rt.registry());
  CHECK(r.ready());
  CHECK(r.verdict() == "ready for removing Boost.Fiber");
  REQUIRE(r.find("orders.spawned") != nullptr);
  CHECK(r.find("orders.spawned")->calls == 1);
  CHECK(r.to_text().find("verdict: ready for removing Boost.Fiber") != std::string::npos);
}

TEST_CASE("the verdict lists one reason per kind of fiber use and work, and none for the loop's own tags",
          "[bridge][report]") {
  bridge::runtime rt(test_options("reasons"));
  get(asio::co_spawn(rt.get_executor("kv.session"), []() -> asio::awaitable<void> {
    co_await bridge::run_in_fiber(bridge::work("legacy.parse"), [] {
      busy_for(1ms);
      (void)bridge::await(answer());
    });
  }, asio::use_future));
  get(bridge::async_run_in_fiber(rt.get_executor("kv.io"), [&rt] {
    asio::post(rt.io_context(), bridge::use_fiber);
  }, asio::use_future));
  get(bridge::co_spawn_hosted(rt.get_executor("kv.hosted"), []() -> asio::awaitable<void> {
    co_await asio::post(asio::use_awaitable);
    (void)bridge::await(answer());  // blocks its host fiber: an implicit yield
  }, asio::use_future));
  settle(rt);
  const auto r = bridge::report::of(rt.registry());
  INFO(r.to_text());
  CHECK_FALSE(r.ready());
  CHECK(r.verdict() == "not ready for removing Boost.Fiber: " + std::to_string(r.not_ready.size()) + " reason(s)");
  CHECK(has_reason(r, "'legacy.parse' ran in fibers for"));
  CHECK(has_reason(r, "'legacy.parse': 1 run_in_fiber call(s)"));
  CHECK(has_reason(r, "'legacy.parse': 1 bridge::await call(s)"));
  CHECK(has_reason(r, "'kv.io': 1 use_fiber wait(s)"));
  CHECK(has_reason(r, "'kv.hosted': 1 bridge::await call(s)"));
  CHECK(has_reason(r, "'kv.hosted' blocked fibers 1 time(s) (implicit yields"));
  CHECK(has_reason(r, "hosted step(s) (a coroutine still runs hosted in a fiber)"));
  CHECK_FALSE(has_reason(r, "'kv.session'"));
  CHECK_FALSE(has_reason(r, "<loop>"));
  CHECK_FALSE(has_reason(r, "<asio handler>"));
}

TEST_CASE("the report's JSON has the expected keys and reads back as the same report", "[bridge][report]") {
  bridge::runtime rt(test_options("json"));
  get(asio::co_spawn(rt.get_executor("kv.session"), []() -> asio::awaitable<void> {
    co_await bridge::run_in_fiber(bridge::work("legacy.parse"), [] { busy_for(1ms); });
  }, asio::use_future));
  const auto r = bridge::report::of(rt.registry());
  const auto text = boost::json::serialize(r.to_json());
  const auto parsed = boost::json::parse(text);
  const auto& o = parsed.as_object();
  for (const char* key : {"goal", "ready", "verdict", "reasons", "work"}) {
    INFO(key);
    CHECK(o.contains(key));
  }
  CHECK(o.at("ready").as_bool() == false);
  const auto& first = o.at("work").as_array().at(0).as_object();
  for (const char* key : {"work", "calls", "fiber_time_ns", "implicit_yields", "stalls", "longest_stall_us",
                          "loop_blocks", "raw_fibers", "await", "run_in_fiber", "use_fiber", "hosted_steps"}) {
    INFO(key);
    CHECK(first.contains(key));
  }
  const auto back = bridge::report::from_json(parsed);
  CHECK(back.to_text() == r.to_text());
  CHECK(back.verdict() == r.verdict());
  CHECK_THROWS_AS(bridge::report::from_json(boost::json::parse(R"({"goal":"x"})")), bridge::report_decode_error);
}
