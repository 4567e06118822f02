// A metering service over the in-process memory:// transport: an endpoint
// with a legacy (plain) and a ported (coroutine) method, an rpc_server, a
// client that calls and casts, and a notification listener. README.md's
// messaging section quotes the block between the "readme" markers; a test
// checks that it still does.
#include "cli.hpp"

#include <coport/messaging/rpc/client.hpp>
#include <coport/messaging/notify/notify.hpp>
#include <coport/messaging/rpc/server.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/describe/class.hpp>
#include <boost/json.hpp>

#include <cstdio>
#include <exception>
#include <string>

namespace asio = boost::asio;
namespace json = boost::json;
namespace msg = coport::messaging;
namespace cli = coport_example::cli;

struct sample {
  std::string meter;
  double volume = 0;
};
BOOST_DESCRIBE_STRUCT(sample, (), (meter, volume))

int main(int argc, char** argv) {
  CLI::App app(
      "A metering service over the in-process memory:// transport: an endpoint, an\n"
      "rpc_server, a client that calls and casts, and a notification listener.",
      "coport-messaging-hello");
  cli::setup(app);
  if (const auto status = cli::parse(app, argc, argv)) return *status;

  asio::io_context io;
  double total = 0;
  int notified = 0;
  std::string report;
  try {
    // readme-begin
    auto transport = msg::transport::create("memory://");

    // An endpoint: namespace unset, version 1.2. The kind of each method is
    // deduced from its signature.
    auto meters = std::make_shared<msg::endpoint>("metering", msg::endpoint_target{std::nullopt, "1.2"});
    meters->add("record", {"s"}, [&](sample s) { total += s.volume; return total; });  // legacy form
    meters->add("total", {}, [&]() -> asio::awaitable<double> { co_return total; });   // ported form
    auto dispatcher = std::make_shared<msg::dispatcher>();
    dispatcher->add(meters);

    // A server for topic "metering" as server "host-1", on this io_context.
    msg::rpc_server server(transport, msg::target{.topic = "metering", .server = "host-1"}, dispatcher,
                           io.get_executor());
    server.start();

    // A client; prepare() copies it with overrides.
    msg::rpc_client client(transport, msg::target{.topic = "metering", .version = "1.0"});
    msg::notifier notifier(transport, "metering.host-1");
    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
      // No braced lists or aggregates inside a co_await expression: g++ 12
      // rejects the first and destroys the second twice. Name them first.
      const sample cpu{"cpu", 2.5}, more_cpu{"cpu", 1.5};
      co_await client.async_call("record", msg::args("s", cpu), asio::use_awaitable);
      co_await client.async_cast("record", msg::args("s", more_cpu), asio::use_awaitable);
      auto v12 = client.prepare({.version = "1.2", .timeout = std::chrono::seconds(5)});
      const double sum = co_await v12.async_call<double>("total", msg::args(), asio::use_awaitable);
      co_await notifier.async_info(msg::context(), "meter.total", msg::args("total", sum), asio::use_awaitable);
      try {
        co_await client.async_call("no_such", msg::args(), asio::use_awaitable);
      } catch (const msg::remote_error& e) {
        report = e.exc_type() + ": " + e.value();  // oslo's NoSuchMethod, rebuilt
      }
    }, asio::detached);
    // readme-end

    // Notifications go to "<topic>.<priority>" ("notifications.info" here).
    auto watcher = std::make_shared<msg::notification_endpoint>("watcher");
    watcher->on(msg::priority::info, [&](const msg::notification& n) {
      std::printf("notification %s from %s: %s\n", n.event_type.c_str(), n.publisher_id.c_str(),
                  json::serialize(n.payload).c_str());
      ++notified;
    });
    msg::notification_listener listener(transport, {msg::target{.topic = "notifications"}}, {watcher},
                                        io.get_executor());
    listener.start();

    // Run until the client coroutine is done and the notification arrived,
    // then stop both servers gracefully.
    while (notified == 0 || report.empty()) {
      if (io.run_one() == 0) break;
    }
    server.async_stop([] {});
    listener.async_stop([] {});
    io.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "messaging example failed: %s\n", e.what());
    return 1;
  }
  std::printf("total %.1f; calling an unknown method gave %s\n", total, report.c_str());
  return total == 4.0 && notified == 1 ? 0 : 1;
}
