// coport-bridge-tour: a small service half-way through its port, on one loop.
//
// A legacy "inventory" component is fiber code: it blocks on a fiber mutex
// and sleeps the fiber (its I/O stand-in). A ported "pricing" component is
// native coroutine code. Orders flow through one dual-world channel from
// legacy producers (fibers) to a ported consumer (a coroutine), which calls
// back into legacy code through run_in_fiber; a hosted coroutine shows
// unported code running inside a coroutine, and the diagnostics say which
// code still blocks fibers.
//
//   coport-bridge-tour [ORDERS]      # 2000 orders unless told

#include "cli.hpp"

#include <coport/bridge/bridge.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/fiber/all.hpp>

#include <chrono>
#include <cstdio>
#include <map>
#include <string>

namespace asio = boost::asio;
namespace bridge = coport::bridge;
namespace cli = coport_example::cli;
using namespace std::chrono_literals;

namespace {

struct order {
  int id = 0;
  std::string item;
  int quantity = 0;
};

// Legacy: synchronous-looking fiber code.
class inventory {
 public:
  int reserve(const std::string& item, int quantity) {
    std::lock_guard lk(mutex_);                 // fiber mutex: may switch fibers
    boost::this_fiber::sleep_for(200us);        // stands for fiber-aware I/O
    int& stock = stock_[item];
    const int granted = std::min(stock, quantity);
    stock -= granted;
    return granted;
  }

 private:
  boost::fibers::mutex mutex_;
  std::map<std::string, int> stock_{{"bolt", 5000}, {"nut", 5000}, {"gear", 300}};
};

// Ported: a native coroutine that waits with co_await.
asio::awaitable<double> price(const std::string& item, int quantity) {
  asio::steady_timer rate_lookup(co_await asio::this_coro::executor, 100us);
  co_await rate_lookup.async_wait(asio::use_awaitable);
  const double unit = item == "gear" ? 2.5 : 0.1;
  co_return unit * quantity;
}

}  // namespace

int main(int argc, char** argv) {
  int orders = 2000;
  CLI::App app(
      "A small service half-way through its port, on one loop: legacy fibers feed a\n"
      "ported coroutine through one channel; the diagnostics say which code still\n"
      "blocks fibers.",
      "coport-bridge-tour");
  cli::setup(app);
  app.add_option("ORDERS", orders, "how many orders flow through (default 2000)")->check(cli::count(4));
  if (const auto status = cli::parse(app, argc, argv)) return *status;
  const int producers = 4;

  bridge::runtime rt;  // one loop thread: io_context + fiber scheduler
  inventory stock;
  bridge::channel<order> incoming(rt.get_executor(), 64);

  // Legacy producers: fibers pushing into the shared channel (blocking).
  for (int p = 0; p < producers; ++p) {
    bridge::spawn_fiber(rt.get_executor("legacy.producer"), [&, p] {
      const char* items[] = {"bolt", "nut", "gear"};
      for (int i = p; i < orders; i += producers) incoming.push(order{i, items[i % 3], 1 + i % 7});
    });
  }

  // Ported consumer: a native coroutine popping with co_await, pricing
  // natively and reserving stock through the legacy component.
  auto totals = asio::co_spawn(
      rt.get_executor("ported.consumer"),
      [&]() -> asio::awaitable<std::pair<int, double>> {
        int handled = 0;
        double revenue = 0;
        while (handled < orders) {
          order o = co_await incoming.async_pop(asio::use_awaitable);
          const int granted =
              co_await bridge::run_in_fiber([&] { return stock.reserve(o.item, o.quantity); });
          revenue += co_await price(o.item, granted);
          if (++handled % (orders / 4) == 0) {
            std::printf("  %d/%d orders handled\n", handled, orders);
            std::fflush(stdout);
          }
        }
        co_return std::make_pair(handled, revenue);
      },
      asio::use_future);

  // A hosted coroutine: ported in shape, but still calling legacy code
  // directly, which blocks its own fiber (counted as implicit yields). It
  // has a stock of its own, so that each reserve() blocks exactly once.
  inventory back_room;
  auto audit = bridge::co_spawn_hosted(
      rt.get_executor("hosted.audit"),
      [&]() -> asio::awaitable<int> {
        int reserved = 0;
        for (int i = 0; i < 10; ++i) {
          reserved += back_room.reserve("bolt", 1);   // legacy, blocking call
          co_await price("bolt", 1);              // ported, co_await
        }
        co_return reserved;
      },
      asio::use_future);

  // Legacy code waiting for ported code: a fiber awaits a coroutine.
  auto quote = bridge::async_run_in_fiber(
      rt.get_executor("legacy.quote"), [] { return bridge::await(price("gear", 10)); },
      asio::use_future);

  std::printf("coport bridge tour: %d orders from %d legacy fibers to a ported coroutine\n", orders,
              producers);
  const auto [handled, revenue] = totals.get();
  std::printf("handled %d orders, revenue %.2f\n", handled, revenue);
  std::printf("hosted audit reserved %d bolts; legacy quote for 10 gears: %.2f\n", audit.get(),
              quote.get());

  std::printf("\n%-18s %16s %8s %12s\n", "work", "implicit yields", "stalls", "loop blocks");
  for (const auto& c : rt.registry().snapshot()) {
    if (c.name.front() == '<') continue;
    std::printf("%-18s %16llu %8llu %12llu\n", c.name.c_str(),
                static_cast<unsigned long long>(c.implicit_yields),
                static_cast<unsigned long long>(c.stalls),
                static_cast<unsigned long long>(c.loop_blocks));
  }
  const auto hosted = rt.registry().counters("hosted.audit");
  std::printf("\n'hosted.audit' still blocks its fiber %llu times: not fully ported yet.\n",
              static_cast<unsigned long long>(hosted.implicit_yields));
  rt.stop();
  rt.join();
  return handled == orders ? 0 : 1;
}
