// coport-example-client: calls, casts, notifications and a load test
// against coport-example-server (or any oslo.messaging server).
//
//   usage, commands and options: parse_command_line below (--help prints
//   them).
//
// report and set-policy go to one server of the topic (name it with
// --server when there are several: each has its own policies and figures).
// A server without --admin answers them with UnsupportedVersion, a wrong
// token with admin_denied, an unusable policy with invalid_policy (exit 1).
//
// Exit status: 0 done; 1 the remote method raised (call prints "CLASS:
// message" on stdout); 2 no reply in time; 3 any other error (bad JSON, a
// transport that cannot be opened, a failed, lost or wrong bench call); 64 bad
// command line.
#include "example_common.hpp"

#include <coport/messaging/rpc/client.hpp>
#include <coport/messaging/serving/migration.hpp>
#include <coport/messaging/notify/notify.hpp>

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
#include <stdexcept>
#include <string>
#include <vector>

namespace asio = boost::asio;
namespace json = boost::json;
namespace msg = coport::messaging;
namespace ex = coport_example;
namespace cli = coport_example::cli;
using clock_type = std::chrono::steady_clock;

namespace {

constexpr const char* program = "coport-example-client";

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

// Reads the command line into `c`: std::nullopt when the client is to run,
// else the status to exit with (cli::parse). The program's options come
// first, then the command, its own options and its words.
std::optional<int> parse_command_line(int argc, char** argv, config& c) {
  CLI::App app(
      "Calls, casts, notifications and a load test against coport-example-server (or\n"
      "any oslo.messaging server). report and set-policy go to one server of the\n"
      "topic (name it with --server when there are several). Exit status: 0 done;\n"
      "1 the remote method raised (call prints \"CLASS: message\" on stdout); 2 no\n"
      "reply in time; 3 any other error (bad JSON, a transport that cannot be\n"
      "opened, a failed, lost or wrong bench call); 64 bad command line.",
      program);
  // --version is the version a call asks for; alone, it prints the program's.
  cli::setup(app, {.version_flag = false, .redact = ex::mask_passwords});
  app.add_option("--transport", c.transport, "rabbit://user:pass@host:5672/, memory://")->type_name("URL")->required();
  app.add_option("--topic", c.topic, "the RPC topic, or the notification topic")
      ->type_name("TOPIC")
      ->required()
      ->check(ex::name_rules());
  app.add_option("--server", c.server, "send to that server of the topic only")
      ->type_name("NAME")
      ->check(ex::name_rules(true));
  app.add_flag("--fanout", c.fanout, "casts go to every server of the topic");
  app.add_option_function<std::string>(
         "--version",
         [&app, &c](const std::string& v) {
           if (v.empty()) throw CLI::CallForVersion(cli::version_text(app), 0);
           try {
             (void)msg::version::parse(v);
           } catch (const std::exception& e) {
             throw ex::usage_error("--version: " + std::string(e.what()));
           }
           c.version = v;
         },
         "the version the call or cast asks for (\"1.3\");\n"
         "without V: print the program's name and version\n"
         "and exit")
      ->type_name("V")
      ->expected(0, 1);
  app.add_option("--exchange", c.exchange, "the control exchange; default: the transport's\n(\"openstack\")")
      ->type_name("NAME")
      ->check(ex::name_rules(true));
  app.add_option("--timeout", c.timeout_s, "how long a call waits for its reply; default 60")
      ->type_name("SECONDS")
      ->check(cli::seconds());
  std::string token;
  CLI::Option* token_option = app.add_option("--admin-token", token,
                                             "report, set-policy: the token the server's admin\n"
                                             "endpoint asks for (coport-example-server\n"
                                             "--admin-token); default: $COPORT_ADMIN_TOKEN (not\n"
                                             "shown by ps)")
                                  ->type_name("TOKEN");
  app.require_subcommand(-1);  // at most one command; parse's check says when it is missing

  CLI::App* call = app.add_subcommand("call",
                                      "call METHOD with the keyword arguments of a JSON\n"
                                      "object ('{\"a\": 2, \"b\": 3}') and print the JSON\n"
                                      "result");
  CLI::App* cast = app.add_subcommand("cast",
                                      "send without waiting for a result (to every\n"
                                      "server of the topic with --fanout)");
  for (CLI::App* command : {call, cast}) {
    command->add_option("METHOD", c.method, "the method's name")->required();
    command->add_option("JSON_ARGS", c.json_args, "its keyword arguments, a JSON object")->required();
  }
  CLI::App* notify = app.add_subcommand("notify",
                                        "publish a notification on TOPIC (priority info,\n"
                                        "publisher coport-example-client by default)");
  notify
      ->add_option_function<std::string>(
          "--priority",
          [&c](const std::string& p) { c.priority = *msg::parse_priority(p); },  // passed the check below
          "audit, debug, info, warn, error, critical or sample")
      ->type_name("P")
      ->check(CLI::Validator(
          [](std::string& p) { return msg::parse_priority(p) ? std::string() : "no priority '" + p + "'"; }, ""));
  notify->add_option("--publisher", c.publisher, "the publisher id")->type_name("ID");
  notify->add_option("EVENT_TYPE", c.event_type, "the notification's event type")->required();
  notify->add_option("JSON_PAYLOAD", c.json_payload, "its payload, any JSON value")->required();
  CLI::App* bench = app.add_subcommand("bench",
                                       "N callers (default 8) call echo for S seconds\n"
                                       "(default 5; the first 0.5 s is a warm-up not\n"
                                       "counted) and print one JSON line of results;\n"
                                       "each reply must echo the value sent. A line on\n"
                                       "stderr at the end counts every call: answered,\n"
                                       "failed (a wrong echo included), lost (no reply\n"
                                       "in time)");
  bench->add_option("--concurrency", c.concurrency, "callers")->type_name("N")->check(cli::count());
  bench->add_option("--seconds", c.seconds, "how long")->type_name("S")->check(cli::seconds(0.5));
  CLI::App* report = app.add_subcommand("report",
                                        "fetch the migration report from the server's\n"
                                        "admin endpoint (coport-example-server --admin)\n"
                                        "and print it as a table, or as JSON");
  report->add_flag("--json", c.json_report, "print the report as JSON");
  CLI::App* set_policy = app.add_subcommand("set-policy",
                                            "set METHOD's policy on that server (\"echo\" or\n"
                                            "\"example.echo\"; legacy, ported, canary:N, shadow)\n"
                                            "and print {\"method\", \"policy\", \"previous\"}");
  set_policy->add_option("METHOD", c.method, "the method's name")->required();
  set_policy->add_option("POLICY", c.policy, "its new policy")->required();

  return cli::parse(app, argc, argv, [&] {
    const std::vector<CLI::App*> commands = app.get_subcommands();
    if (commands.empty()) throw ex::usage_error("no command: call, cast, notify, bench, report or set-policy");
    c.command = commands.front()->get_name();
    if (token_option->count() > 0) {
      c.admin_token = token;
    } else if (const char* env = std::getenv("COPORT_ADMIN_TOKEN"); env && *env) {
      c.admin_token = env;
    }
    if (c.command == "set-policy") {
      try {
        (void)msg::policy::parse(c.policy);  // refused here rather than by the server
      } catch (const msg::invalid_policy& e) {
        throw ex::usage_error("set-policy: " + std::string(e.what()));
      }
    }
  });
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
  std::uint64_t completed = 0;   // answered with the value sent; also for the progress lines
  std::uint64_t failed = 0;      // ended with an error, or with a reply that is not the value sent
  std::uint64_t mismatched = 0;  // of the failed: the reply was not the value sent
  std::uint64_t lost = 0;        // no reply within --timeout
  std::exception_ptr first_error;  // the first failed or lost call ends the run
  std::size_t callers_left = 0;
  std::optional<asio::steady_timer> all_done;  // cancelled by the last caller to end
};

// Each call sends a value of its own ("<caller>.<call>"), which the reply
// must echo: a reply that is not the value sent (another call's, say) is a
// failed call.
asio::awaitable<void> bench_caller(msg::rpc_client client, std::size_t caller, bench_state& s) {
  for (std::uint64_t n = 1; !s.first_error && clock_type::now() < s.until; ++n) {
    const std::string value = std::to_string(caller) + "." + std::to_string(n);
    const auto sent = clock_type::now();
    ++s.started;
    try {
      const json::value reply = co_await client.async_call("echo", msg::args("value", value), asio::use_awaitable);
      if (!reply.is_string() || reply.get_string() != value) {
        ++s.mismatched;
        throw std::runtime_error("echo returned " + json::serialize(reply) + " for \"" + value + "\"");
      }
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
  for (std::size_t i = 0; i < c.concurrency; ++i) asio::co_spawn(on, bench_caller(client, i + 1, s), asio::detached);

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
  if (s.mismatched > 0) {
    std::fprintf(stderr, "bench: %llu call(s) got a reply that is not the value sent (counted as failed)\n",
                 static_cast<unsigned long long>(s.mismatched));
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
  config cfg;
  if (const std::optional<int> status = parse_command_line(argc, argv, cfg)) return *status;

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
