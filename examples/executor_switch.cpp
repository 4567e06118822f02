// One service, two executors, chosen by configuration:
//
//   coport-executor-switch fiber     # fiber_executor on a coport loop
//   coport-executor-switch coro      # coro_executor on a plain io_context
//   coport-executor-switch coro --with-legacy
//                                    # refused: a method is not ported yet
//   coport-executor-switch --help    # usage and options
//
// The service object is built once, the same way for both; only the
// executor changes. Built without fibers (COPORT_WITH_FIBERS=OFF), only
// "coro" is available.
#include "cli.hpp"

#include <coport/coro_executor/coro_executor.hpp>
#include <coport/messaging/rpc/client.hpp>
#if COPORT_HAS_FIBERS
#include <coport/fiber_executor/fiber_executor.hpp>
#endif

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <thread>

namespace asio = boost::asio;
namespace msg = coport::messaging;
namespace cli = coport_example::cli;

namespace {

// The service: an inventory endpoint, fully ported except, on request, one
// legacy method.
msg::service make_service(std::shared_ptr<msg::transport> t, bool with_legacy) {
  auto stock = std::make_shared<std::map<std::string, int>>();
  auto e = std::make_shared<msg::endpoint>("inventory", msg::endpoint_target{std::nullopt, "1.0"});
  e->add("put", {"item", "count"}, [stock](std::string item, int count) -> asio::awaitable<int> {
    co_return (*stock)[item] += count;
  });
  e->add("count", {"item"}, [stock](std::string item) -> asio::awaitable<int> {
    // A ported method may wait without blocking anything.
    asio::steady_timer pause(co_await asio::this_coro::executor, std::chrono::microseconds(50));
    co_await pause.async_wait(asio::use_awaitable);
    co_return (*stock)[item];
  });
  if (with_legacy) {
    e->add("audit", {}, [stock] { return static_cast<int>(stock->size()); });
  }
  auto d = std::make_shared<msg::dispatcher>();
  d->add(e);
  return {std::move(t), msg::target{.topic = "inventory", .server = "host-1"}, std::move(d)};
}

void print_metrics(const msg::executor& ex) {
  std::printf("%-10s %-8s %-10s %-8s %6s %6s %10s %10s\n", "endpoint", "method", "kind", "mode", "calls",
              "errors", "p50 us", "p99 us");
  for (const auto& m : ex.metrics()) {
    std::printf("%-10s %-8s %-10s %-8s %6llu %6llu %10.1f %10.1f\n", m.endpoint.c_str(), m.method.c_str(),
                std::string(msg::to_string(m.kind)).c_str(), m.mode.c_str(),
                static_cast<unsigned long long>(m.calls), static_cast<unsigned long long>(m.errors),
                static_cast<double>(m.p50.count()) / 1000.0, static_cast<double>(m.p99.count()) / 1000.0);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string which = "coro";
  bool with_legacy = false;
  CLI::App app(
      "One service, two executors, chosen on the command line: an inventory service\n"
      "on memory://, called 201 times, then its executor's metrics.",
      "coport-executor-switch");
  cli::setup(app);
  app.add_option("EXECUTOR", which,
                 "fiber: fiber_executor on a coport loop; coro (the\n"
                 "default): coro_executor on a plain io_context")
      ->check(cli::one_of({"fiber", "coro"}));
  app.add_flag("--with-legacy", with_legacy,
               "add a method not ported yet, which coro_executor\n"
               "refuses (it then says why and exits 0)");
  const auto status = cli::parse(app, argc, argv, [&] {
#if !COPORT_HAS_FIBERS
    if (which == "fiber") throw cli::usage_error("this build has no fibers (COPORT_WITH_FIBERS=OFF): use coro");
#endif
  });
  if (status) return *status;

  auto transport = msg::transport::create("memory://inventory");
  msg::service service = make_service(transport, with_legacy);

  // Whatever runs the executor: a coport loop for fiber_executor, a plain
  // io_context thread for coro_executor.
  asio::io_context io;
  auto guard = asio::make_work_guard(io);
  std::thread io_thread;
#if COPORT_HAS_FIBERS
  std::unique_ptr<coport::bridge::runtime> loop;  // outlives the executor
#endif
  std::unique_ptr<msg::executor> executor;
  try {
    if (which == "fiber") {
#if COPORT_HAS_FIBERS
      loop = std::make_unique<coport::bridge::runtime>();
      executor = std::make_unique<coport::fiber_executor>(service, *loop);
#endif
    } else {
      io_thread = std::thread([&io] { io.run(); });
      executor = std::make_unique<coport::coro_executor>(service, io.get_executor());
    }
    executor->start();
  } catch (const std::exception& e) {
    std::printf("%s refused the service: %s\n", which.c_str(), e.what());
    guard.reset();
    if (io_thread.joinable()) io_thread.join();
    return with_legacy ? 0 : 1;
  }

  msg::rpc_client client(transport, msg::target{.topic = "inventory"});
  int last = 0;
  for (int i = 0; i < 200; ++i) {
    last = client.async_call<int>("put", msg::args("item", "bolts", "count", 2), asio::use_future).get();
  }
  const int count = client.async_call<int>("count", msg::args("item", "bolts"), asio::use_future).get();
  executor->async_stop(asio::use_future).get();
  std::printf("served by %s: bolts = %d (last put returned %d)\n", std::string(executor->name()).c_str(), count,
              last);
  print_metrics(*executor);
  guard.reset();
  if (io_thread.joinable()) io_thread.join();
  return count == 400 ? 0 : 1;
}
