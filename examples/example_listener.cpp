// coport-example-listener: prints the notifications published on a topic.
//
//   usage and options: parse_command_line below (--help prints them).
//
// Prints "ready" once it listens, then one JSON line per notification:
//   {"priority":"info","event_type":"...","publisher_id":"...","payload":...}
// Exit 0 after N notifications or a signal; 3: the transport cannot be
// opened; 64: bad command line.
#include "example_common.hpp"

#include <coport/messaging/notify/notify.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

namespace asio = boost::asio;
namespace json = boost::json;
namespace msg = coport::messaging;
namespace ex = coport_example;
namespace cli = coport_example::cli;

namespace {

constexpr const char* program = "coport-example-listener";

struct config {
  std::string transport;
  std::string topic;
  std::optional<std::string> pool;
  std::optional<std::size_t> count;
  std::string exchange;
  std::optional<std::size_t> handle_ms;
  std::optional<std::size_t> max_in_flight;
};

// Reads the command line into `c`: std::nullopt when the listener is to
// run, else the status to exit with (cli::parse).
std::optional<int> parse_command_line(int argc, char** argv, config& c) {
  CLI::App app(
      "Prints the notifications published on a topic: \"ready\" once it listens, then\n"
      "one JSON line per notification. Exit 0 after N notifications or a signal;\n"
      "3: the transport cannot be opened.",
      program);
  cli::setup(app, {.redact = ex::mask_passwords});
  app.add_option("--transport", c.transport, "rabbit://user:pass@host:5672/, memory://")->type_name("URL")->required();
  app.add_option("--topic", c.topic, "listens to TOPIC.<priority> for every priority")
      ->type_name("TOPIC")
      ->required()
      ->check(ex::name_rules());
  std::string pool;
  CLI::Option* pool_option = app.add_option("--pool", pool,
                                            "listeners of one pool share the notifications;\n"
                                            "every pool (and each listener without one) gets\n"
                                            "them all")
                                 ->type_name("NAME")
                                 ->check(ex::name_rules());
  std::size_t count = 0;
  CLI::Option* count_option = app.add_option("--count", count,
                                             "exit after N notifications; default: run until\n"
                                             "SIGTERM or SIGINT")
                                  ->type_name("N")
                                  ->check(cli::count());
  app.add_option("--exchange", c.exchange, "the control exchange; default: the transport's\n(\"openstack\")")
      ->type_name("NAME")
      ->check(ex::name_rules(true));
  std::size_t handle_ms = 0;
  CLI::Option* handle_option = app.add_option("--handle-ms", handle_ms,
                                              "a slow consumer: each notification is held MS\n"
                                              "milliseconds after it is printed, and only then\n"
                                              "acknowledged (without blocking the listener's\n"
                                              "thread)")
                                   ->type_name("MS")
                                   ->check(cli::count());
  std::size_t max_in_flight = 0;
  CLI::Option* in_flight_option = app.add_option("--max-in-flight", max_in_flight,
                                                 "notifications taken and not yet acknowledged or\n"
                                                 "requeued at once (the others wait with the\n"
                                                 "transport); default 64")
                                      ->type_name("N")
                                      ->check(cli::count());
  return cli::parse(app, argc, argv, [&] {
    if (pool_option->count() > 0) c.pool = pool;
    if (count_option->count() > 0) c.count = count;
    if (handle_option->count() > 0) c.handle_ms = handle_ms;
    if (in_flight_option->count() > 0) c.max_in_flight = max_in_flight;
  });
}

std::string to_json_line(const msg::notification& n) {
  json::object line;
  line["priority"] = msg::to_string(n.prio);
  line["event_type"] = n.event_type;
  line["publisher_id"] = n.publisher_id;
  line["payload"] = n.payload;
  return json::serialize(line);
}

}  // namespace

int main(int argc, char** argv) {
  config cfg;
  if (const std::optional<int> status = parse_command_line(argc, argv, cfg)) return *status;
  ex::block_stop_signals();  // before any thread starts (see stop_signals)

  std::shared_ptr<msg::transport> transport;
  try {
    transport = ex::open_transport(cfg.transport, cfg.exchange);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "coport-example-listener: cannot open the transport: %s\n", e.what());
    return ex::exit_failure;
  }

  // Handlers, listener and signals share this one thread.
  asio::io_context io;
  ex::stop_signals signals(io.get_executor());
  std::optional<msg::notification_listener> listener;
  std::size_t printed = 0;
  bool stopping = false;
  auto stop = [&] {
    if (stopping) return;
    stopping = true;
    listener->async_stop([&] { signals.cancel(); });
  };

  // One endpoint with the same handler for every priority. A plain handler
  // runs inline on the listener's executor: fine for one that never blocks.
  auto printer = std::make_shared<msg::notification_endpoint>("printer");
  auto print = [&](const msg::notification& n) {
    if (cfg.count && printed == *cfg.count) {
      // Taken after the last one wanted: leave it to other listeners.
      return msg::notification_result::requeue;
    }
    ex::print_line(to_json_line(n));
    if (cfg.count && ++printed == *cfg.count) asio::post(io, stop);
    return msg::notification_result::handled;
  };
  // --handle-ms: a coroutine handler, which waits on a timer while the
  // thread serves the listener and the other handlers; the notification
  // stays unacknowledged until it returns.
  auto print_slowly = [&](const msg::notification& n) -> asio::awaitable<msg::notification_result> {
    const msg::notification_result result = print(n);  // `n` is not used after a suspension
    if (result == msg::notification_result::handled) {
      asio::steady_timer hold(co_await asio::this_coro::executor, std::chrono::milliseconds(*cfg.handle_ms));
      co_await hold.async_wait(asio::use_awaitable);
    }
    co_return result;
  };
  for (auto p : {msg::priority::audit, msg::priority::debug, msg::priority::info, msg::priority::warn,
                 msg::priority::error, msg::priority::critical, msg::priority::sample}) {
    if (cfg.handle_ms) printer->on(p, print_slowly);
    else printer->on(p, print);
  }

  msg::notification_listener_options options;
  options.pool = cfg.pool;
  if (cfg.max_in_flight) options.max_in_flight = *cfg.max_in_flight;
  try {
    listener.emplace(transport, std::vector{msg::target{.topic = cfg.topic}},
                     std::vector<std::shared_ptr<const msg::notification_endpoint>>{printer}, io.get_executor(),
                     options);
    listener->start();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "coport-example-listener: cannot listen on topic '%s' on %s: %s\n", cfg.topic.c_str(),
                 transport->describe().c_str(), e.what());
    return ex::exit_failure;
  }
  transport->log().info("listening to the notifications of topic '{}' on {}{}", cfg.topic,
                        transport->describe(), cfg.pool ? " in pool '" + *cfg.pool + "'" : std::string());
  ex::print_line("ready");

  signals.async_wait([&](boost::system::error_code ec, int sig) {
    if (ec) return;  // cancelled: the listener has stopped
    transport->log().info("signal {}: stopping", sig);
    stop();
  });
  io.run();
  return ex::exit_ok;
}
