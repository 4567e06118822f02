// coport-bench's memory figures: the resident bytes one parked request
// holds (a cast whose method waits forever), per executor and kind of
// method, each measured in a fresh child process (coport-bench --parked
// KIND N) so that no earlier allocation is reused.

#include "bench.hpp"
#include "results.hpp"

#include <coport/bridge/bridge.hpp>
#include <coport/coro_executor/coro_executor.hpp>
#include <coport/fiber_executor/fiber_executor.hpp>
#include <coport/messaging/rpc/client.hpp>
#include <coport/messaging/rpc/server.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace coport_bench {

namespace asio = boost::asio;
namespace msg = coport::messaging;

namespace {

/// Resident memory of the process, from /proc/self/statm.
std::size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t pages_total = 0;
  std::size_t pages_resident = 0;
  statm >> pages_total >> pages_resident;
  return pages_resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

/// Runs `--parked KIND N` in a child process; its figure, or NaN.
double run_parked(std::string_view kind, std::size_t n) {
  char self[4096];
  const ssize_t len = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (len <= 0) return std::nan("");
  self[len] = '\0';
  const std::string cmd = "'" + std::string(self) + "' --parked " + std::string(kind) + " " + std::to_string(n);
  std::FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return std::nan("");
  double v = std::nan("");
  if (std::fscanf(p, "%lf", &v) != 1) v = std::nan("");
  if (::pclose(p) != 0) v = std::nan("");
  return v;
}

}  // namespace

int parked_child(const std::string& kind, std::size_t n) {
  bridge::runtime_options ro = bench_options();
  auto rt = std::make_unique<bridge::runtime>(ro);
  asio::io_context io(1);
  auto guard = asio::make_work_guard(io);
  std::thread io_thread([&io] { io.run(); });

  auto t = msg::transport::create("memory://parked");
  auto ep = std::make_shared<msg::endpoint>("park");
  auto gate = std::make_shared<bridge::event>(rt->get_executor());
  // coro_executor refuses fiber methods: the fiber one only for fiber kinds.
  if (!kind.starts_with("coroutine")) ep->add("wait", {}, [gate] { gate->wait(); });
  ep->add("wait_co", {}, []() -> asio::awaitable<void> {
    asio::steady_timer forever(co_await asio::this_coro::executor, std::chrono::hours(24));
    co_await forever.async_wait(asio::use_awaitable);
  });
  auto d = std::make_shared<msg::dispatcher>();
  d->add(ep);
  msg::service svc{t, msg::target{.topic = "park", .server = "s1"}, d};
  const std::string method = kind == "fiber" ? "wait" : "wait_co";

  // The messages first, so that the figure counts the requests alone.
  msg::rpc_client client(t, msg::target{.topic = "park"});
  for (std::size_t i = 0; i < n; ++i) client.async_cast(method, msg::args(), [](std::exception_ptr) {});
  const std::size_t before = resident_bytes();

  std::unique_ptr<msg::executor> ex;
  if (kind.starts_with("coroutine")) {
    coport::coro_executor_options o;
    o.max_in_flight = n;
    o.single_thread = kind == "coroutine";
    ex = std::make_unique<coport::coro_executor>(svc, io.get_executor(), o);
  } else {
    coport::fiber_executor_options o;
    o.max_in_flight = n;
    o.default_mode = kind == "native" ? coport::coroutine_mode::native : coport::coroutine_mode::hosted;
    ex = std::make_unique<coport::fiber_executor>(svc, *rt, o);
  }
  ex->start();
  const auto give_up = clock_type::now() + std::chrono::seconds(120);
  while (ex->in_flight() < n) {
    if (clock_type::now() > give_up) {
      std::fprintf(stderr, "coport-bench: only %zu of %zu requests parked\n", ex->in_flight(), n);
      std::_Exit(1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const std::size_t after = resident_bytes();
  std::printf("%.1f\n", static_cast<double>(after - std::min(after, before)) / static_cast<double>(n));
  std::fflush(stdout);
  std::_Exit(0);  // no orderly teardown of 100 000 parked requests
}

const std::vector<parked_spec>& parked_kinds() {
  static const std::vector<parked_spec> list = {
      {"coroutine", "coroutine method on coro_executor, single_thread", 2048},
      {"coroutine_strand", "coroutine method on coro_executor, a strand per request", std::nullopt},
      {"native", "native coroutine method on fiber_executor", std::nullopt},
      {"hosted", "hosted coroutine method on fiber_executor", std::nullopt},
      {"fiber", "fiber method on fiber_executor (64 KiB stacks)", 16384},
  };
  return list;
}

/// Parks 10 000 requests of each of `chosen` (--quick; else 100 000) in a
/// child process of its own: a memory line each, printed and added.
void run_memory(const std::vector<const parked_spec*>& chosen, bool quick, report& rep) {
  const std::size_t n = quick ? 10000 : 100000;
  std::printf("\n%-28s %10s  %8s  %s\n", "memory (resident, fresh process)", "B/request", "aim", "met");
  for (const parked_spec* k : chosen) {
    std::fprintf(stderr, "parking %zu requests: %s ...\n", n, std::string(k->what).c_str());
    const double v = run_parked(k->kind, n);
    const std::string name = "memory.parked_" + std::string(k->kind);
    const bool met = k->aim && std::isfinite(v) && v <= *k->aim;
    char aim[16] = "-";
    if (k->aim) std::snprintf(aim, sizeof aim, "%.0f", *k->aim);
    std::printf("%-28s %10.1f  %8s  %s\n", name.c_str(), v, aim, k->aim ? (met ? "yes" : "NO") : "-");
    json::object o;
    o["name"] = name;
    o["kind"] = "memory";
    o["value"] = number_or_null(v);
    o["unit"] = "bytes";
    o["parked"] = n;
    o["aim"] = k->aim ? json::value(*k->aim) : json::value(nullptr);
    o["aim_is"] = "at most";
    o["met"] = k->aim ? json::value(met) : json::value(nullptr);
    o["description"] = k->what;
    rep.lines.push_back(std::move(o));
  }
  std::fflush(stdout);
}

}  // namespace coport_bench
