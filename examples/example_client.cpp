// coport-example-client: calls, casts, notifications and a load test
// against coport-example-server (or any oslo.messaging server).
//
//   usage, commands and options: usage_text and help_text below (--help
//   prints them).
//
// report and set-policy go to one server of the topic (name it with
// --server when there are several: each has its own policies and figures).
// A server without --admin answers them with UnsupportedVersion, a wrong
// token with admin_denied, an unusable policy with invalid_policy (exit 1).
//
// Exit status: 0 done; 1 the remote method raised (call prints "CLASS:
// message" on stdout); 2 no reply in time; 3 any other error (bad JSON, a
// transport that cannot be opened, a failed or lost bench call); 64 bad
// command line.
#include "example_common.hpp"

#include <coport/messaging/client.hpp>
#include <coport/messaging/migration.hpp>
#include <coport/messaging/notify.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace asio = boost::asio;
namespace json = boost::json;
namespace msg = coport::messaging;
namespace ex = coport_example;
using clock_type = std::chrono::steady_clock;

namespace {

constexpr const char* usage_text =
    "usage: coport-example-client --transport URL --topic TOPIC [--server NAME] [--fanout]\n"
    "                             [--version V] [--exchange NAME] [--timeout SECONDS]\n"
    "                             [--admin-token TOKEN] COMMAND ...\n"
    "commands:\n"
    "  call METHOD JSON_ARGS\n"
    "  cast METHOD JSON_ARGS\n"
    "  notify [--priority P] [--publisher ID] EVENT_TYPE JSON_PAYLOAD\n"
    "  bench [--concurrency N] [--seconds S]\n"
    "  report [--json]\n"
    "  set-policy METHOD POLICY\n";

// --help: every command and option.
constexpr const char* help_text =
    "  commands:\n"
    "    call METHOD JSON_ARGS     call METHOD with the keyword arguments of a JSON\n"
    "                              object ('{\"a\": 2, \"b\": 3}') and print the JSON result\n"
    "    cast METHOD JSON_ARGS     send without waiting for a result (to every\n"
    "                              server of the topic with --fanout)\n"
    "    notify [--priority P] [--publisher ID] EVENT_TYPE JSON_PAYLOAD\n"
    "                              publish a notification on TOPIC (priority info,\n"
    "                              publisher coport-example-client by default)\n"
    "    bench [--concurrency N] [--seconds S]\n"
    "                              N callers (default 8) call echo for S seconds\n"
    "                              (default 5; the first 0.5 s is a warm-up not\n"
    "                              counted) and print one JSON line of results;\n"
    "                              the last line on stderr counts every call:\n"
    "                              answered, failed, lost (no reply in time)\n"
    "    report [--json]           fetch the migration report from the server's\n"
    "                              admin endpoint (coport-example-server --admin)\n"
    "                              and print it as a table, or as JSON\n"
    "    set-policy METHOD POLICY  set METHOD's policy on that server (\"echo\" or\n"
    "                              \"example.echo\"; legacy, ported, canary:N, shadow)\n"
    "                              and print {\"method\", \"policy\", \"previous\"}\n"
    "\n"
    "  options:\n"
    "    --transport URL    rabbit://user:pass@host:5672/, memory://\n"
    "    --topic TOPIC      the RPC topic, or the notification topic\n"
    "    --server NAME      send to that server of the topic only\n"
    "    --fanout           casts go to every server of the topic\n"
    "    --version V        the version the call or cast asks for (\"1.3\")\n"
    "    --exchange NAME    the control exchange; default: the transport's (\"openstack\")\n"
    "    --timeout SECONDS  how long a call waits for its reply; default 60\n"
    "    --admin-token T    report, set-policy: the token the server's admin\n"
    "                       endpoint asks for (coport-example-server --admin-token);\n"
    "                       default: $COPORT_ADMIN_TOKEN (not shown by ps)\n";

struct config {
  std::string transport;
  std::string topic;
  std::string server;
  bool fanout = false;
  std::optional<std::string> version;
  std::string exchange;
  double timeout_s = 60;  // oslo.messaging's rpc_response_timeout
  std::optional<std::string> admin_token;

  std::string command;
  // call, cast
  std::string method;
  std::string json_args;
  // notify
  msg::priority priority = msg::priority::info;
  std::string publisher = "coport-example-client";
  std::string event_type;
  std::string json_payload;
  // bench
  std::size_t concurrency = 8;
  double seconds = 5;
  // report, set-policy
  bool json_report = false;
  std::string policy;
};

// Options come first, in any order, then the command and its own options
// and words.
config parse_command_line(int argc, char** argv) {
  config c;
  int i = 1;
  for (; i < argc && ex::is_option(argv[i]); ++i) {
    const std::string_view a = argv[i];
    if (a == "--transport") c.transport = ex::option_value(argc, argv, i);
    else if (a == "--topic") c.topic = ex::option_value(argc, argv, i);
    else if (a == "--server") c.server = ex::option_value(argc, argv, i);
    else if (a == "--fanout") c.fanout = true;
    else if (a == "--version") c.version = ex::option_value(argc, argv, i);
    else if (a == "--exchange") c.exchange = ex::option_value(argc, argv, i);
    else if (a == "--timeout") c.timeout_s = ex::parse_seconds(a, ex::option_value(argc, argv, i));
    else if (a == "--admin-token") c.admin_token = ex::option_value(argc, argv, i);
    else throw ex::usage_error("unknown option '" + std::string(a) + "'");
  }
  if (c.transport.empty()) throw ex::usage_error("--transport is required");
  if (c.topic.empty()) throw ex::usage_error("--topic is required");
  if (const char* token = std::getenv("COPORT_ADMIN_TOKEN"); !c.admin_token && token && *token) c.admin_token = token;
  ex::check_name("--topic", c.topic);
  if (!c.server.empty()) ex::check_name("--server", c.server);
  if (!c.exchange.empty()) ex::check_name("--exchange", c.exchange);
  if (c.version) {
    try {
      (void)msg::version::parse(*c.version);
    } catch (const std::exception& e) {
      throw ex::usage_error("--version: " + std::string(e.what()));
    }
  }
  if (i == argc) throw ex::usage_error("no command");
  c.command = argv[i++];

  // The command's own options, then its words.
  for (; i < argc && ex::is_option(argv[i]); ++i) {
    const std::string_view a = argv[i];
    if (c.command == "notify" && a == "--priority") {
      const std::string p = ex::option_value(argc, argv, i);
      const auto parsed = msg::parse_priority(p);
      if (!parsed) throw ex::usage_error("--priority: no priority '" + p + "'");
      c.priority = *parsed;
    } else if (c.command == "notify" && a == "--publisher") {
      c.publisher = ex::option_value(argc, argv, i);
    } else if (c.command == "bench" && a == "--concurrency") {
      c.concurrency = ex::parse_count(a, ex::option_value(argc, argv, i));
    } else if (c.command == "bench" && a == "--seconds") {
      c.seconds = ex::parse_seconds(a, ex::option_value(argc, argv, i), 0.5);
    } else if (c.command == "report" && a == "--json") {
      c.json_report = true;
    } else {
      throw ex::usage_error("unknown option '" + std::string(a) + "' for " + c.command);
    }
  }
  const int words = argc - i;
  auto want_words = [&](int n) {
    if (words != n) {
      throw ex::usage_error(c.command + " takes " + std::to_string(n) + " argument(s), got " +
                            std::to_string(words));
    }
  };
  if (c.command == "call" || c.command == "cast") {
    want_words(2);
    c.method = argv[i];
    c.json_args = argv[i + 1];
  } else if (c.command == "notify") {
    want_words(2);
    c.event_type = argv[i];
    c.json_payload = argv[i + 1];
  } else if (c.command == "bench" || c.command == "report") {
    want_words(0);
  } else if (c.command == "set-policy") {
    want_words(2);
    c.method = argv[i];
    c.policy = argv[i + 1];
    try {
      (void)msg::policy::parse(c.policy);  // refused here rather than by the server
    } catch (const msg::invalid_policy& e) {
      throw ex::usage_error("set-policy: " + std::string(e.what()));
    }
  } else {
    throw ex::usage_error("unknown command '" + c.command + "'");
  }
  return c;
}

/// `text` parsed as JSON, or a message saying why not (exit 3).
json::value parse_json(std::string_view what, const std::string& text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec) throw std::invalid_argument(std::string(what) + " is not JSON: " + ec.message());
  return v;
}

json::object parse_arguments(const std::string& text) {
  json::value v = parse_json("JSON_ARGS", text);
  if (!v.is_object()) throw std::invalid_argument("JSON_ARGS must be a JSON object of keyword arguments");
  return std::move(v.as_object());
}

clock_type::duration from_seconds(double s) {
  return std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(s));
}

msg::rpc_client make_client(std::shared_ptr<msg::transport> t, const config& c) {
  msg::target to{.topic = c.topic, .server = c.server, .version = c.version, .fanout = c.fanout};
  msg::client_options options;
  options.timeout = from_seconds(c.timeout_s);
  return msg::rpc_client(std::move(t), std::move(to), std::move(options));
}

// --------------------------------------------------------------- commands

// Runs one call and prints its result with `print`. A remote failure
// prints the remote exception's class, as on the wire (ExampleError,
// NoSuchMethod, UnsupportedVersion, admin_denied, ...), and its message on
// stdout (exit 1); no reply in time is exit 2.
template <class Print>
asio::awaitable<int> call_and_print(msg::rpc_client client, msg::context ctxt, std::string method,
                                    json::object arguments, Print print) {
  try {
    json::value result = co_await client.async_call(std::move(ctxt), std::move(method), std::move(arguments),
                                                    asio::use_awaitable);
    print(result);
    co_return ex::exit_ok;
  } catch (const msg::remote_error& e) {
    ex::print_line(e.exc_type() + ": " + e.value());
    co_return ex::exit_remote_error;
  } catch (const msg::timeout_error& e) {
    std::fprintf(stderr, "coport-example-client: %s\n", e.what());
    co_return ex::exit_timeout;
  }
}

void print_json(const json::value& v) { ex::print_line(json::serialize(v)); }

asio::awaitable<int> call(msg::rpc_client client, const config& c) {
  json::object arguments = parse_arguments(c.json_args);
  co_return co_await call_and_print(std::move(client), msg::context(), c.method, std::move(arguments), print_json);
}

asio::awaitable<int> cast(msg::rpc_client client, const config& c) {
  json::object arguments = parse_arguments(c.json_args);
  co_await client.async_cast(c.method, std::move(arguments), asio::use_awaitable);
  co_return ex::exit_ok;
}

asio::awaitable<int> notify(std::shared_ptr<msg::transport> t, const config& c) {
  json::value payload = parse_json("JSON_PAYLOAD", c.json_payload);
  const std::vector<std::string> topics{c.topic};
  const msg::notifier notifier(std::move(t), c.publisher, topics);
  co_await notifier.async_notify(msg::context(), c.priority, c.event_type, std::move(payload),
                                 asio::use_awaitable);
  co_return ex::exit_ok;
}

// bench: `concurrency` callers on this thread, each calling echo in a loop.
struct bench_state {
  clock_type::time_point start, measure_from, until;
  std::vector<double> latencies_ms;  // of the calls that ended in the measured window
  // Every call, warm-up included: started = completed + failed + lost once the
  // callers have ended, so that a long run can show that none went missing.
  std::uint64_t started = 0;
  std::uint64_t completed = 0;  // answered; also for the progress lines
  std::uint64_t failed = 0;     // ended with an error
  std::uint64_t lost = 0;       // no reply within --timeout
  std::exception_ptr first_error;  // the first failed or lost call ends the run
  std::size_t callers_left = 0;
  std::optional<asio::steady_timer> all_done;  // cancelled by the last caller to end
};

asio::awaitable<void> bench_caller(msg::rpc_client client, bench_state& s) {
  while (!s.first_error && clock_type::now() < s.until) {
    const auto sent = clock_type::now();
    ++s.started;
    try {
      co_await client.async_call("echo", msg::args("value", "x"), asio::use_awaitable);
    } catch (const msg::timeout_error&) {
      ++s.lost;
      if (!s.first_error) s.first_error = std::current_exception();
      break;
    } catch (...) {
      ++s.failed;
      if (!s.first_error) s.first_error = std::current_exception();
      break;
    }
    const auto done = clock_type::now();
    ++s.completed;
    if (done >= s.measure_from && done <= s.until) {
      s.latencies_ms.push_back(std::chrono::duration<double, std::milli>(done - sent).count());
    }
  }
  if (--s.callers_left == 0) s.all_done->cancel();
}

double percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  const auto k = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

asio::awaitable<int> bench(msg::rpc_client client, const config& c) {
  auto on = co_await asio::this_coro::executor;
  bench_state s;
  s.start = clock_type::now();
  s.measure_from = s.start + std::chrono::milliseconds(500);
  s.until = s.start + from_seconds(c.seconds);
  s.callers_left = c.concurrency;
  s.all_done.emplace(on, clock_type::time_point::max());
  for (std::size_t i = 0; i < c.concurrency; ++i) asio::co_spawn(on, bench_caller(client, s), asio::detached);

  // A progress line each second, then wait for the callers' last calls.
  asio::steady_timer tick(on);
  std::uint64_t last = 0;
  for (int second = 1; !s.first_error && s.start + std::chrono::seconds(second) <= s.until; ++second) {
    tick.expires_at(s.start + std::chrono::seconds(second));
    co_await tick.async_wait(asio::use_awaitable);
    std::fprintf(stderr, "bench: %d s, %llu calls/s\n", second,
                 static_cast<unsigned long long>(s.completed - last));
    last = s.completed;
  }
  if (s.callers_left > 0) {
    boost::system::error_code cancelled;
    co_await s.all_done->async_wait(asio::redirect_error(asio::use_awaitable, cancelled));
  }
  std::fprintf(stderr, "bench: total %llu calls, answered %llu, failed %llu, lost %llu\n",
               static_cast<unsigned long long>(s.started), static_cast<unsigned long long>(s.completed),
               static_cast<unsigned long long>(s.failed), static_cast<unsigned long long>(s.lost));

  if (s.first_error) {
    try {
      std::rethrow_exception(s.first_error);
    } catch (const msg::remote_error& e) {
      std::fprintf(stderr, "coport-example-client: bench: echo failed: %s: %s\n", e.exc_type().c_str(),
                   e.value().c_str());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "coport-example-client: bench: echo failed: %s\n", e.what());
    }
    co_return ex::exit_failure;
  }
  const double measured_s = std::chrono::duration<double>(s.until - s.measure_from).count();
  json::object result;
  result["impl"] = "coport";
  result["concurrency"] = c.concurrency;
  result["calls"] = s.latencies_ms.size();
  result["seconds"] = c.seconds;
  result["calls_per_s"] = static_cast<double>(s.latencies_ms.size()) / measured_s;
  result["p50_ms"] = percentile(s.latencies_ms, 0.50);
  result["p99_ms"] = percentile(s.latencies_ms, 0.99);
  ex::print_line(json::serialize(result));
  co_return ex::exit_ok;
}

// report, set-policy: the admin endpoint of the server the client targets.
msg::rpc_client make_admin_client(std::shared_ptr<msg::transport> t, const config& c) {
  msg::target to{.topic = c.topic, .server = c.server, .version = "1.0"};
  to.ns = std::string(msg::admin_namespace);
  msg::client_options options;
  options.timeout = from_seconds(c.timeout_s);
  return msg::rpc_client(std::move(t), std::move(to), std::move(options));
}

msg::context admin_context(const config& c) {
  msg::context ctxt;
  if (c.admin_token) ctxt[msg::admin_token_key] = *c.admin_token;
  return ctxt;
}

asio::awaitable<int> report(msg::rpc_client admin, const config& c) {
  const bool as_json = c.json_report;
  auto print = [as_json](const json::value& v) {
    const msg::migration_report r = msg::migration_report::from_json(v);  // throws decode_error (exit 3)
    if (as_json) {
      ex::print_line(json::serialize(r.to_json()));
    } else {
      std::fputs(r.to_text().c_str(), stdout);
    }
  };
  co_return co_await call_and_print(std::move(admin), admin_context(c), "migration_report", json::object(), print);
}

asio::awaitable<int> set_policy(msg::rpc_client admin, const config& c) {
  json::object arguments = msg::args("method", c.method, "policy", c.policy);
  co_return co_await call_and_print(std::move(admin), admin_context(c), "set_policy", std::move(arguments),
                                    print_json);
}

asio::awaitable<int> run(std::shared_ptr<msg::transport> t, const config& c) {
  if (c.command == "notify") co_return co_await notify(std::move(t), c);
  if (c.command == "report") co_return co_await report(make_admin_client(std::move(t), c), c);
  if (c.command == "set-policy") co_return co_await set_policy(make_admin_client(std::move(t), c), c);
  msg::rpc_client client = make_client(std::move(t), c);
  if (c.command == "call") co_return co_await call(std::move(client), c);
  if (c.command == "cast") co_return co_await cast(std::move(client), c);
  co_return co_await bench(std::move(client), c);
}

}  // namespace

int main(int argc, char** argv) {
  if (ex::wants_help(argc, argv)) {
    std::printf("%s\n%s", usage_text, help_text);
    return ex::exit_ok;
  }
  config cfg;
  try {
    cfg = parse_command_line(argc, argv);
  } catch (const ex::usage_error& e) {
    std::fprintf(stderr, "coport-example-client: %s\n%s", e.what(), usage_text);
    return ex::exit_usage;
  }

  std::shared_ptr<msg::transport> transport;
  try {
    transport = ex::open_transport(cfg.transport, cfg.exchange);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "coport-example-client: cannot open the transport: %s\n", e.what());
    return ex::exit_failure;
  }

  // Everything runs as coroutines on this thread.
  asio::io_context io;
  int status = ex::exit_failure;
  asio::co_spawn(io, run(transport, cfg), [&](std::exception_ptr e, int rc) {
    if (!e) {
      status = rc;
      return;
    }
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      std::fprintf(stderr, "coport-example-client: %s\n", x.what());
    }
  });
  io.run();
  return status;
}
