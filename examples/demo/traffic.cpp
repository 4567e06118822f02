#include "traffic.hpp"

#include "rest.hpp"

#include <coport/bridge/fiber.hpp>
#include <coport/bridge/use_fiber.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value_from.hpp>
#include <boost/json/value_to.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <future>
#include <map>
#include <random>
#include <utility>

namespace asio = boost::asio;
namespace bridge = coport::bridge;
namespace json = boost::json;
namespace msg = coport::messaging;
using namespace std::chrono_literals;

namespace demo {

std::string_view method_of(op o) noexcept {
  switch (o) {
    case op::record: return "record";
    case op::total: return "total";
    case op::stats: return "stats";
    case op::resources: return "resources";
    case op::usage: return "usage";
  }
  return "?";
}

std::string rest_target(const call& c) {
  const std::string meter = "/v2/meters/" + c.sample.meter;
  switch (c.what) {
    case op::stats: return meter + "/statistics";
    case op::total: return meter + "/total";
    case op::resources: return meter + "/resources";
    case op::usage: return meter + "/resources/" + c.sample.resource;
    case op::record: break;
  }
  return meter;  // no route writes
}

std::string_view rest_point_of(op o) noexcept {
  switch (o) {
    case op::stats: return "rest.statistics";
    case op::total: return "rest.total";
    case op::resources: return "rest.resources";
    case op::usage: return "rest.usage";
    case op::record: break;
  }
  return "?";
}

namespace {

// The meters of the traffic and how their volumes are drawn. Volumes are
// multiples of 1/4, so that sums are exact whatever order the service adds
// them in, and the answers can be compared exactly. "disk.write" and
// "network.out" have idle samples (volume 0): an instance that wrote or sent
// nothing in its period.
struct meter_kind {
  const char* name;
  double (*volume)(std::uint64_t draw);
};
constexpr meter_kind meters[] = {
    {"cpu", [](std::uint64_t r) { return static_cast<double>(1 + r % 64) * 0.25; }},
    {"memory", [](std::uint64_t r) { return static_cast<double>(1 + r % 8) * 256; }},
    {"disk.read", [](std::uint64_t r) { return static_cast<double>(1 + r % 32) * 0.5; }},
    {"disk.write", [](std::uint64_t r) { return r % 16 == 0 ? 0.0 : static_cast<double>(1 + r % 32) * 0.5; }},
    {"network.in", [](std::uint64_t r) { return static_cast<double>(1 + r % 40) * 0.25; }},
    {"network.out", [](std::uint64_t r) { return r % 8 == 0 ? 0.0 : static_cast<double>(1 + r % 40) * 0.25; }},
};
constexpr std::size_t meter_count = std::size(meters);
constexpr std::uint64_t resource_count = 12;
constexpr std::uint64_t seed = 2014;

std::string resource_name(std::uint64_t i) {
  char name[32];
  std::snprintf(name, sizeof name, "instance-%02u", static_cast<unsigned>(i + 1));
  return name;
}

std::string number(double v) {
  char text[64];
  std::snprintf(text, sizeof text, "%.10g", v);
  return text;
}

std::string describe(const call& c) {
  std::string d = std::string(method_of(c.what)) + "(" + c.sample.meter;
  if (c.what == op::record || c.what == op::usage) d += ", " + c.sample.resource;
  if (c.what == op::record) d += ", " + number(c.sample.volume);
  return d + ")";
}

json::object arguments(const call& c) {
  switch (c.what) {
    case op::record:
      return msg::args("meter", c.sample.meter, "resource", c.sample.resource, "volume", c.sample.volume);
    case op::usage:
      return msg::args("meter", c.sample.meter, "resource", c.sample.resource);
    default:
      return msg::args("meter", c.sample.meter);
  }
}

}  // namespace

// ------------------------------------------------------------------ traffic

traffic::traffic(std::size_t calls, std::size_t notifications) {
  std::mt19937_64 rng(seed);  // its output is fixed by the standard
  auto draw = [&] {
    const meter_kind& m = meters[rng() % meter_count];
    metering::usage u;
    u.meter = m.name;
    u.resource = resource_name(rng() % resource_count);
    u.volume = m.volume(rng());
    return u;
  };
  const std::size_t queries = calls * 2 / 5;
  for (std::size_t i = 0; i < calls - queries; ++i) {
    records_.push_back(call{op::record, draw()});
    expect(records_.back().sample);
  }
  for (std::size_t i = 0; i < notifications; ++i) {
    notifications_.push_back(draw());
    expect(notifications_.back());
  }
  // Queries take the query methods in turn, each over every meter in turn.
  constexpr op query_ops[] = {op::total, op::stats, op::resources, op::usage};
  for (std::size_t i = 0; i < queries; ++i) {
    call c;
    c.what = query_ops[i % std::size(query_ops)];
    c.sample.meter = meters[(i / std::size(query_ops)) % meter_count].name;
    if (c.what == op::usage) c.sample.resource = resource_name(rng() % resource_count);
    queries_.push_back(std::move(c));
  }
  // REST queries: the same turns, a fifth as many, drawn after everything
  // else so that the RPC traffic stays what it was.
  for (std::size_t i = 0; i < queries / 5; ++i) {
    call c;
    c.what = query_ops[i % std::size(query_ops)];
    c.sample.meter = meters[(i / std::size(query_ops)) % meter_count].name;
    if (c.what == op::usage) c.sample.resource = resource_name(rng() % resource_count);
    rest_.push_back(std::move(c));
  }
}

void traffic::expect(const metering::usage& u) {
  expected_meter& m = expected_[u.meter];
  ++m.count;
  m.sum += u.volume;
  m.max = std::max(m.max, u.volume);
  if (u.volume == 0) ++m.idle;
  m.by_resource[u.resource] += u.volume;
}

std::map<std::string, std::uint64_t> traffic::calls_by_method() const {
  std::map<std::string, std::uint64_t> n;
  for (op o : all_ops) n[std::string(method_of(o))] = 0;
  for (const auto& c : records_) ++n[std::string(method_of(c.what))];
  for (const auto& c : queries_) ++n[std::string(method_of(c.what))];
  return n;
}

std::map<std::string, std::uint64_t> traffic::rest_by_point() const {
  std::map<std::string, std::uint64_t> n;
  for (const auto& c : rest_) ++n[std::string(rest_point_of(c.what))];
  return n;
}

bool traffic::has_idle_samples(const std::string& meter) const {
  const auto it = expected_.find(meter);
  return it != expected_.end() && it->second.idle > 0;
}

double traffic::volume_sent() const {
  double sum = 0;
  for (const auto& [name, m] : expected_) sum += m.sum;
  return sum;
}

std::string traffic::check(const call& c, const json::value& result) const {
  static const expected_meter nothing;
  const auto it = expected_.find(c.sample.meter);
  const expected_meter& m = it == expected_.end() ? nothing : it->second;
  const std::string what = describe(c);
  try {
    switch (c.what) {
      case op::record: {
        const auto n = json::value_to<std::uint64_t>(result);
        if (n >= 1 && n <= m.count) return {};
        return what + " answered " + std::to_string(n) + " samples, expected 1 to " + std::to_string(m.count);
      }
      case op::total: {
        const auto got = json::value_to<double>(result);
        if (got == m.sum) return {};
        return what + " = " + number(got) + ", expected " + number(m.sum) + " (the volumes sent)";
      }
      case op::stats: {
        metering::meter_stats want;
        want.count = m.count;
        want.sum = m.sum;
        want.max = m.max;
        want.mean = m.count == 0 ? 0 : std::round(m.sum / static_cast<double>(m.count) * 100) / 100;
        const auto got = json::value_to<metering::meter_stats>(result);
        if (got == want) return {};
        return what + " = " + json::serialize(result) + ", expected " + json::serialize(json::value_from(want));
      }
      case op::resources: {
        std::vector<std::string> want;
        for (const auto& [name, volume] : m.by_resource) want.push_back(name);  // sorted: a std::map
        if (json::value_to<std::vector<std::string>>(result) == want) return {};
        return what + " = " + json::serialize(result) + ", expected " + json::serialize(json::value_from(want));
      }
      case op::usage: {
        const auto r = m.by_resource.find(c.sample.resource);
        const double want = r == m.by_resource.end() ? 0 : r->second;
        const auto got = json::value_to<double>(result);
        if (got == want) return {};
        return what + " = " + number(got) + ", expected " + number(want);
      }
    }
  } catch (const std::exception& e) {
    return what + " answered " + json::serialize(result) + ", which is not its result type: " + e.what();
  }
  return what + ": unknown method";
}

// ------------------------------------------------------------------- driver

driver::driver(std::shared_ptr<msg::transport> t, bridge::runtime& rt, const traffic& plan, std::size_t callers)
    : client_(t, msg::target{.topic = "metering"}, msg::client_options{.timeout = std::chrono::seconds(20)}),
      notifier_(t, "compute.host-1"),
      rt_(&rt),
      plan_(&plan),
      callers_(callers) {}

void driver::begin(std::string label, std::size_t calls, std::size_t notifications, std::size_t rest,
                   std::uint16_t rest_port) {
  label_ = std::move(label);
  phase_calls_ = calls;
  phase_notes_ = notifications;
  phase_rest_ = rest;
  rest_port_ = rest_port;
  answered_ = 0;
  rest_answered_ = 0;
  notes_sent_ = 0;
  notes_failed_ = 0;
  calls_target_ = 0;
  notes_target_ = 0;
  rest_target_ = 0;
  last_tenth_ = 0;
  last_line_ = std::chrono::steady_clock::now();
  std::lock_guard lk(mutex_);
  failures_ = 0;
  first_failures_.clear();
}

void driver::send(std::span<const call> calls, std::span<const metering::usage> notifications,
                  const std::function<std::uint64_t()>& stored, std::span<const call> rest) {
  calls_target_ += calls.size();
  notes_target_ += notifications.size();
  rest_target_ += rest.size();
  // Callers take the calls in turn: caller k sends calls k, k + 2n, ...;
  // even callers are coroutines, odd ones fibers.
  std::vector<std::future<void>> running;
  for (std::size_t k = 0; k < 2 * callers_; ++k) {
    if (k % 2 == 0) {
      running.push_back(
          asio::co_spawn(rt_->get_executor("driver.coroutines"), coroutine_caller(calls, k), asio::use_future));
    } else {
      running.push_back(bridge::async_run_in_fiber(
          rt_->get_executor("driver.fibers"), [this, calls, k] { fiber_caller(calls, k); }, asio::use_future));
    }
  }
  running.push_back(asio::co_spawn(rt_->get_executor("driver.coroutines"), coroutine_notifier(notifications),
                                   asio::use_future));
  running.push_back(bridge::async_run_in_fiber(
      rt_->get_executor("driver.fibers"), [this, notifications] { fiber_notifier(notifications); },
      asio::use_future));
  if (!rest.empty()) {
    for (std::size_t k = 0; k < rest_clients; ++k) {
      running.push_back(
          asio::co_spawn(rt_->get_executor("driver.rest"), rest_client(rest, k), asio::use_future));
    }
  }
  wait(stored);
  for (auto& r : running) r.get();  // callers handle their calls' errors; this rethrows anything else
}

// Ported client code: the call suspends this coroutine only.
asio::awaitable<void> driver::coroutine_caller(std::span<const call> calls, std::size_t first) {
  for (std::size_t i = first; i < calls.size(); i += 2 * callers_) {
    const call& c = calls[i];
    std::string method(method_of(c.what));
    json::object args = arguments(c);
    json::value result;
    std::string error;
    try {
      result = co_await client_.async_call(std::move(method), std::move(args), asio::use_awaitable);
    } catch (const std::exception& e) {
      error = e.what();
    }
    if (error.empty()) answer(c, result);
    else fail(describe(c) + " failed: " + error);
    ++answered_;
    moved_.notify_all();
  }
}

// Legacy client code: the same client, the call blocks this fiber only.
void driver::fiber_caller(std::span<const call> calls, std::size_t first) {
  for (std::size_t i = first; i < calls.size(); i += 2 * callers_) {
    const call& c = calls[i];
    try {
      answer(c, client_.async_call(std::string(method_of(c.what)), arguments(c), bridge::use_fiber));
    } catch (const std::exception& e) {
      fail(describe(c) + " failed: " + e.what());
    }
    ++answered_;
    moved_.notify_all();
  }
}

// Notifications: the even ones from a coroutine, the odd ones from a fiber.
asio::awaitable<void> driver::coroutine_notifier(std::span<const metering::usage> notes) {
  const msg::context none;
  for (std::size_t i = 0; i < notes.size(); i += 2) {
    json::value payload = json::value_from(notes[i]);
    std::string error;
    try {
      co_await notifier_.async_info(none, metering::usage_event, std::move(payload), asio::use_awaitable);
    } catch (const std::exception& e) {
      error = e.what();
    }
    if (error.empty()) {
      ++notes_sent_;
    } else {
      fail("usage notification " + std::to_string(i) + " not sent: " + error);
      ++notes_failed_;
    }
  }
}

void driver::fiber_notifier(std::span<const metering::usage> notes) {
  for (std::size_t i = 1; i < notes.size(); i += 2) {
    try {
      notifier_.async_info(msg::context{}, metering::usage_event, json::value_from(notes[i]), bridge::use_fiber);
      ++notes_sent_;
    } catch (const std::exception& e) {
      fail("usage notification " + std::to_string(i) + " not sent: " + e.what());
      ++notes_failed_;
    }
  }
}

// REST queries, from coroutines: client k sends queries k, k + n, ...,
// each route's on a keep-alive connection of its own.
asio::awaitable<void> driver::rest_client(std::span<const call> queries, std::size_t first) {
  const auto ex = co_await asio::this_coro::executor;
  std::map<op, std::unique_ptr<metering::http_connection>> connections;
  for (std::size_t i = first; i < queries.size(); i += rest_clients) {
    const call& c = queries[i];
    const std::string target = rest_target(c);
    auto& conn = connections[c.what];
    metering::http_reply reply;
    std::string error;
    try {
      if (!conn || !conn->is_open()) {
        conn = std::make_unique<metering::http_connection>(ex);
        co_await conn->connect(rest_port_);
      }
      reply = co_await conn->get(target);
      if (reply.closed) conn->close();
    } catch (const std::exception& e) {
      error = e.what();
    }
    if (!error.empty()) {
      conn.reset();
      fail("GET " + target + " failed: " + error);
    } else if (reply.status != 200) {
      fail("GET " + target + " answered HTTP " + std::to_string(reply.status) + ": " + reply.body);
    } else {
      boost::system::error_code ec;
      const json::value result = json::parse(reply.body, ec);
      if (ec) fail("GET " + target + " answered " + reply.body + ", which is not JSON");
      else if (std::string wrong = plan_->check(c, result); !wrong.empty()) fail("GET " + target + ": " + wrong);
    }
    ++rest_answered_;
    moved_.notify_all();
  }
  for (auto& [o, conn] : connections) {
    if (conn) conn->close();
  }
}

bool driver::send_bad_requests() {
  return asio::co_spawn(rt_->get_executor("driver.rest"), bad_requests(), asio::use_future).get();
}

asio::awaitable<bool> driver::bad_requests() {
  const auto ex = co_await asio::this_coro::executor;
  bool ok = true;
  // Not HTTP at all: 400, and the server closes the connection.
  {
    metering::http_connection conn(ex);
    metering::http_reply reply;
    bool closed = false;
    std::string error;
    try {
      co_await conn.connect(rest_port_);
      reply = co_await conn.send_raw("this is not http\r\n\r\n");
      closed = co_await conn.closed_by_server();
    } catch (const std::exception& e) {
      error = e.what();
    }
    if (!error.empty() || reply.status != 400 || !closed) {
      ok = false;
      fail("a malformed request got " +
           (error.empty() ? "HTTP " + std::to_string(reply.status) + (closed ? "" : ", the connection left open")
                          : "no answer: " + error) +
           ", expected 400 and the connection closed");
    }
  }
  // A route the API does not have: 404, and the connection stays open.
  {
    metering::http_connection conn(ex);
    metering::http_reply reply;
    std::string error;
    try {
      co_await conn.connect(rest_port_);
      reply = co_await conn.get("/v2/meters/cpu/forecast");
    } catch (const std::exception& e) {
      error = e.what();
    }
    if (!error.empty() || reply.status != 404 || reply.closed) {
      ok = false;
      fail("GET /v2/meters/cpu/forecast got " +
           (error.empty() ? "HTTP " + std::to_string(reply.status) + (reply.closed ? ", the connection closed" : "")
                          : "no answer: " + error) +
           ", expected 404 and the connection kept");
    }
    conn.close();
  }
  co_return ok;
}

void driver::answer(const call& c, const json::value& result) {
  std::string wrong = plan_->check(c, result);
  if (!wrong.empty()) fail(std::move(wrong));
}

void driver::fail(std::string what) {
  std::lock_guard lk(mutex_);
  ++failures_;
  if (first_failures_.size() < 10) first_failures_.push_back(std::move(what));
}

std::uint64_t driver::failures() const noexcept {
  std::lock_guard lk(mutex_);
  return failures_;
}

std::vector<std::string> driver::first_failures() const {
  std::lock_guard lk(mutex_);
  return first_failures_;
}

// Main thread: waits for the calls to be answered and the notifications
// stored, printing progress every tenth of the phase or every second.
void driver::wait(const std::function<std::uint64_t()>& stored) {
  constexpr auto stuck_after = std::chrono::seconds(60);
  auto last_move = std::chrono::steady_clock::now();
  std::uint64_t last_seen = 0;
  for (;;) {
    const std::uint64_t got = stored();
    print_progress(got);
    const std::uint64_t notes_done = notes_sent_ + notes_failed_;
    if (answered_ >= calls_target_ && notes_done >= notes_target_ && got >= notes_sent_ &&
        rest_answered_ >= rest_target_) {
      return;
    }
    const std::uint64_t seen = answered_ + notes_done + got + rest_answered_;
    const auto now = std::chrono::steady_clock::now();
    if (seen != last_seen) {
      last_seen = seen;
      last_move = now;
    } else if (now - last_move > stuck_after) {
      std::fprintf(stderr,
                   "coport-demo: nothing moved for 60 s (%s: %llu of %llu calls answered, %llu of %llu "
                   "notifications stored); giving up\n",
                   label_.c_str(), static_cast<unsigned long long>(answered_.load()),
                   static_cast<unsigned long long>(calls_target_), static_cast<unsigned long long>(got),
                   static_cast<unsigned long long>(notes_target_));
      std::fflush(stderr);
      std::_Exit(1);  // callers are still running on the driver's loop: no orderly way out
    }
    std::unique_lock lk(mutex_);
    moved_.wait_for(lk, 50ms);
  }
}

void driver::print_progress(std::uint64_t stored) {
  const auto now = std::chrono::steady_clock::now();
  const std::uint64_t total = phase_calls_ + phase_notes_ + phase_rest_;
  const std::uint64_t done = answered_ + stored + rest_answered_;
  const int tenth = total == 0 ? 10 : static_cast<int>(done * 10 / total);
  if (tenth <= last_tenth_ && now - last_line_ < 1s) return;
  last_tenth_ = std::max(tenth, last_tenth_);
  last_line_ = now;
  std::string rest;
  if (phase_rest_ > 0) rest = ", rest " + std::to_string(rest_answered_.load()) + "/" + std::to_string(phase_rest_);
  std::fprintf(stderr, "%s: calls %llu/%zu, notifications %llu/%zu%s\n", label_.c_str(),
               static_cast<unsigned long long>(answered_.load()), phase_calls_,
               static_cast<unsigned long long>(stored), phase_notes_, rest.c_str());
}

}  // namespace demo
