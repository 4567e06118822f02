// coport-example-server: an RPC server for the example client and tests.
//
//   usage and options: parse_command_line below (--help prints them).
//
// One endpoint, namespace unset, version 1.3:
//
//   echo(value)        -> value
//   add(a, b)          -> a + b (an integer when both are integers)
//   sleep_ms(ms)       -> ms, after waiting ms milliseconds without blocking other calls
//   fail(message)      raises ExampleError (module coport.example) with that message
//   counts()           -> {"method": calls handled so far, ...}
//
// Every method has a legacy (fiber) form and a ported (coroutine) form under
// one name, as a service half-way through its port has, so the same
// endpoint runs on either executor. Built without fibers
// (COPORT_WITH_FIBERS=OFF) it has the coroutine forms and "--executor coro"
// only. coro_executor always runs the ported forms; the policies steer
// fiber_executor.
//
// --http HOST:PORT (when built with coport::admin) also serves the admin
// HTTP server: /metrics for Prometheus, the /migration dashboard,
// /migration.json and POST /policy, whose token is $COPORT_ADMIN_TOKEN; it
// prints "admin http: http://HOST:PORT/" before "ready".
//
// Prints "ready" on stdout once it takes requests. SIGTERM or SIGINT stops
// it gracefully (calls in flight finish and reply; a second signal cancels
// them), then it exits 0. Logs go to stderr. Exit 64: bad command line;
// exit 3: the transport cannot be opened or served.
#include "example_common.hpp"

#include <coport/coro_executor/coro_executor.hpp>
#include <coport/messaging/rpc/endpoint.hpp>
#include <coport/messaging/serving/executor.hpp>
#include <coport/messaging/serving/migration.hpp>
#if COPORT_HAS_FIBERS
#include <coport/bridge/fiber.hpp>
#include <coport/fiber_executor/fiber_executor.hpp>
#endif
#if COPORT_HAS_ADMIN
#include <coport/admin/http_server.hpp>
#endif

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace json = boost::json;
namespace msg = coport::messaging;
namespace ex = coport_example;
namespace cli = coport_example::cli;

namespace {

constexpr const char* program = "coport-example-server";

struct config {
  std::string transport;
  std::string topic;
  std::string server;
#if COPORT_HAS_FIBERS
  std::string executor = "fiber";
#else
  std::string executor = "coro";
#endif
  std::size_t threads = 1;
  std::string exchange;
  msg::migration_options migration;
  bool native = false;
  std::optional<msg::admin_options> admin;  // --admin, --admin-token
  std::optional<cli::listen_address> http;  // --http
};

// --policy METHOD=POLICY (with_method) and --default-policy POLICY, as a
// CLI11 validator: what is wrong with the text, or nothing.
CLI::Validator policy_rules(bool with_method) {
  return CLI::Validator(
      [with_method](std::string& text) -> std::string {
        std::string_view policy = text;
        if (with_method) {
          const std::size_t eq = text.find('=');
          if (eq == std::string::npos || eq == 0) return "expects METHOD=POLICY, got '" + text + "'";
          policy.remove_prefix(eq + 1);
        }
        try {
          (void)msg::policy::parse(policy);
        } catch (const msg::invalid_policy& e) {
          return e.what();
        }
        return {};
      },
      "");
}

std::string host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

// Reads the command line into `c`: std::nullopt when the server is to run,
// else the status to exit with (cli::parse).
std::optional<int> parse_command_line(int argc, char** argv, config& c) {
  CLI::App app(
      "An RPC server for coport-example-client and the tests: one endpoint (echo, add,\n"
      "sleep_ms, fail, counts), each method in a legacy (fiber) and a ported\n"
      "(coroutine) form. Prints \"ready\" once it takes requests; SIGTERM or SIGINT\n"
      "stops it gracefully (exit 0). Exit 3: the transport cannot be opened or served.",
      program);
  cli::setup(app, {.redact = ex::mask_passwords});
  app.add_option("--transport", c.transport, "where to listen: rabbit://user:pass@host:5672/,\nmemory://")
      ->type_name("URL")
      ->required();
  app.add_option("--topic", c.topic, "the RPC topic served")->type_name("TOPIC")->required()->check(ex::name_rules());
  app.add_option("--server", c.server, "this server's name (TOPIC.NAME queue); default:\nthe host name")
      ->type_name("NAME")
      ->check(ex::name_rules(true));
  app.add_option("--executor", c.executor,
                 "fiber (the default): fiber_executor on coport\n"
                 "loops; coro: coro_executor on a plain io_context\n"
                 "(the default of a build without fibers)")
      ->type_name("fiber|coro")
      ->check(cli::one_of({"fiber", "coro"}));
  app.add_option("--threads", c.threads, "loops (fiber) or io_context threads (coro);\ndefault 1")
      ->type_name("N")
      ->check(cli::count());
  app.add_option("--exchange", c.exchange, "the control exchange; default: the transport's\n(\"openstack\")")
      ->type_name("NAME")
      ->check(ex::name_rules(true));
  std::vector<std::string> policies;
  app.add_option("--policy", policies,
                 "which form serves METHOD (\"echo\" or\n"
                 "\"example.echo\"): legacy, ported, canary:N (N% of\n"
                 "calls to the ported form) or shadow (both run, the\n"
                 "legacy result answers, differences are recorded);\n"
                 "repeatable")
      ->type_name("METHOD=POLICY")
      ->allow_extra_args(false)
      ->check(policy_rules(true));
  std::string default_policy;
  CLI::Option* default_policy_option =
      app.add_option("--default-policy", default_policy,
                     "the policy of the methods --policy does not name;\n"
                     "default: ported")
          ->type_name("POLICY")
          ->check(policy_rules(false));
  app.add_flag("--native", c.native,
               "fiber_executor runs the coroutine forms native\n"
               "(on the loop fiber; blocking on a fiber primitive\n"
               "fails) instead of hosted in a fiber each");
  app.add_flag("--strict", c.migration.strict,
               "a call whose coroutine form blocks fibers or\n"
               "stalls the loop fails (strict_mode_violation)");
  bool admin_on = false;
  app.add_flag("--admin", admin_on,
               "serve the admin endpoint (namespace coport.admin:\n"
               "migration_report, set_policy), which\n"
               "coport-example-client's report and set-policy use;\n"
               "callers need $COPORT_ADMIN_TOKEN when it is set");
  std::string token;
  CLI::Option* token_option = app.add_option("--admin-token", token,
                                             "with --admin: callers must send TOKEN in their\n"
                                             "context (coport_admin_token); implies --admin")
                                  ->type_name("TOKEN");

#if COPORT_HAS_ADMIN
  std::string http;
  CLI::Option* http_option = cli::add_http_option(app, http);
#endif

  return cli::parse(app, argc, argv, [&] {
#if COPORT_HAS_ADMIN
    if (http_option->count() > 0) c.http = cli::parse_listen_address(http);
#endif
    std::optional<std::string> admin_token;
    if (token_option->count() > 0) {
      if (token.empty()) throw ex::usage_error("--admin-token must not be empty");
      admin_token = token;
    } else if (const char* env = std::getenv("COPORT_ADMIN_TOKEN"); admin_on && env && *env) {
      admin_token = env;  // --admin with the token in the environment, where ps does not show it
    }
    if (admin_on || admin_token) c.admin = msg::admin_options{.token = admin_token};
#if !COPORT_HAS_FIBERS
    if (c.executor == "fiber") {
      throw ex::usage_error("this build has no fibers (COPORT_WITH_FIBERS=OFF): use --executor coro");
    }
#endif
    if (c.server.empty()) c.server = host_name();
    // The policies passed policy_rules.
    for (const std::string& p : policies) {
      const std::size_t eq = p.find('=');
      c.migration.policies.insert_or_assign(p.substr(0, eq), msg::policy::parse(std::string_view(p).substr(eq + 1)));
    }
    if (default_policy_option->count() > 0) c.migration.default_policy = msg::policy::parse(default_policy);
  });
}

// ------------------------------------------------------------ the methods

// add(a, b): integers stay integers unless the sum overflows; any other
// numbers add as doubles.
json::value add_numbers(const json::value& a, const json::value& b) {
  if (!a.is_number()) throw msg::bad_arguments("add", "a", "expects a number");
  if (!b.is_number()) throw msg::bad_arguments("add", "b", "expects a number");
  std::int64_t sum = 0;
  if (a.is_int64() && b.is_int64() && !__builtin_add_overflow(a.get_int64(), b.get_int64(), &sum)) return sum;
  return a.to_number<double>() + b.to_number<double>();
}

// fail(message): the class name and module a caller sees, on any language.
[[noreturn]] void raise_example_error(const std::string& message) {
  throw msg::endpoint_exception("ExampleError", "coport.example", message);
}

// counts() reads the metrics of the executor that serves it; the executor
// is made after the endpoint, so it is plugged in here once it exists.
struct metrics_source {
  std::atomic<const msg::executor*> executor{nullptr};

  // Calls handled so far by method name, both forms added up (the executor
  // keeps a row per form).
  json::object counts() const {
    json::object out;
    if (const msg::executor* e = executor.load()) {
      for (const msg::method_report& m : e->metrics()) {
        json::value& n = out[m.method];
        n = (n.is_null() ? 0 : n.get_int64()) + static_cast<std::int64_t>(m.calls);
      }
    }
    return out;
  }
};

std::shared_ptr<msg::endpoint> make_endpoint(std::shared_ptr<const metrics_source> metrics) {
  auto e = std::make_shared<msg::endpoint>("example", msg::endpoint_target{std::nullopt, "1.3"});

  // Ported forms: coroutines. They wait with co_await, never blocking the
  // thread, and run on either executor.
  e->add("echo", {"value"}, [](json::value value) -> asio::awaitable<json::value> { co_return value; });
  e->add("add", {"a", "b"}, [](json::value a, json::value b) -> asio::awaitable<json::value> {
    co_return add_numbers(a, b);
  });
  e->add("sleep_ms", {"ms"}, [](std::int64_t ms) -> asio::awaitable<std::int64_t> {
    asio::steady_timer timer(co_await asio::this_coro::executor, std::chrono::milliseconds(ms));
    co_await timer.async_wait(asio::use_awaitable);  // a deadline or a stop cancels the wait
    co_return ms;
  });
  e->add("fail", {"message"}, [](std::string message) -> asio::awaitable<void> {
    raise_example_error(message);
    co_return;
  });
  e->add("counts", {}, [metrics]() -> asio::awaitable<json::object> { co_return metrics->counts(); });

#if COPORT_HAS_FIBERS
  // Legacy forms: plain functions that may block their fiber (never the
  // thread), as the service was written before its port.
  e->add("echo", {"value"}, [](json::value value) { return value; });
  e->add("add", {"a", "b"}, [](json::value a, json::value b) { return add_numbers(a, b); });
  e->add("sleep_ms", {"ms"}, [](std::int64_t ms) {
    coport::bridge::this_fiber::sleep_for(std::chrono::milliseconds(ms));  // other fibers run meanwhile
    return ms;
  });
  e->add("fail", {"message"}, [](std::string message) -> json::value { raise_example_error(message); });
  e->add("counts", {}, [metrics] { return metrics->counts(); });
#endif
  return e;
}

// ----------------------------------------------------------- the executors

// What runs the executor, and the executor itself: a coport loop (or pool
// of loops) for fiber_executor, io_context threads for coro_executor.
// Members are destroyed in reverse order: the executor before what runs it.
struct executor_host {
#if COPORT_HAS_FIBERS
  std::unique_ptr<coport::bridge::runtime> loop;
  std::unique_ptr<coport::bridge::runtime_pool> loops;
#endif
  asio::io_context io;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> io_work;
  std::vector<std::thread> io_threads;
  std::unique_ptr<msg::executor> executor;

  void make(const config& c, const msg::service& s) {
    if (c.executor == "fiber") {
#if COPORT_HAS_FIBERS
      coport::fiber_executor_options options;
      options.admin = c.admin;
      if (c.native) options.default_mode = coport::coroutine_mode::native;
      if (c.threads == 1) {
        loop = std::make_unique<coport::bridge::runtime>();
        executor = std::make_unique<coport::fiber_executor>(s, *loop, options);
      } else {
        loops = std::make_unique<coport::bridge::runtime_pool>(c.threads);
        executor = std::make_unique<coport::fiber_executor>(s, *loops, options);
      }
#endif
    } else {
      coport::coro_executor_options options;
      options.admin = c.admin;
      options.single_thread = c.threads == 1;  // no strand per request needed
      executor = std::make_unique<coport::coro_executor>(s, io.get_executor(), options);
      io_work.emplace(io.get_executor());
      for (std::size_t i = 0; i < c.threads; ++i) io_threads.emplace_back([this] { io.run(); });
    }
  }

  ~executor_host() {
    executor.reset();
    io_work.reset();
    for (auto& t : io_threads) t.join();
  }
};

// Logs how the executor serves each method: the form it runs and, for a
// method in both forms on fiber_executor, the policy choosing between them
// (coro_executor always runs the ported form).
void log_methods(spdlog::logger& log, const msg::endpoint& e, const msg::executor& x,
                 const msg::migration_controls& controls) {
  const bool follows_policies = x.name() == "fiber_executor";
  const std::vector<msg::method_report> rows = x.metrics();
  for (const auto& [name, m] : e.methods()) {
    if (m.has_both_forms() && follows_policies) {
      log.info("{}.{}: both forms registered, policy {}", e.name(), name, controls.policy_of(e, m).to_string());
      continue;
    }
    const msg::method_kind served = msg::default_form(m).kind;
    for (const msg::method_report& r : rows) {
      if (r.method == name && r.kind == served) {
        log.info("{}.{}: runs its {} form ({}){}", e.name(), name, msg::to_string(served), r.mode,
                 m.has_both_forms() ? ", both forms registered" : "");
      }
    }
  }
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
    std::fprintf(stderr, "coport-example-server: cannot open the transport: %s\n", e.what());
    return ex::exit_failure;
  }
  spdlog::logger& log = transport->log();

  auto metrics = std::make_shared<metrics_source>();
  auto dispatcher = std::make_shared<msg::dispatcher>();
  const std::shared_ptr<const msg::endpoint> endpoint = make_endpoint(metrics);
  dispatcher->add(endpoint);
  // The policies of the command line, checked against the methods served.
  std::shared_ptr<msg::migration_controls> controls;
  try {
    controls = std::make_shared<msg::migration_controls>(dispatcher, cfg.migration);
  } catch (const msg::invalid_policy& e) {
    return cli::report_usage_error(program, e.what());  // a --policy for a method not served
  }
  const msg::service service{transport, msg::target{.topic = cfg.topic, .server = cfg.server}, dispatcher,
                             controls};

  // SIGTERM and SIGINT are waited for on the main thread, whatever the
  // executor runs on.
  asio::io_context main_io;
  ex::stop_signals signals(main_io.get_executor());

  executor_host srv;
  try {
    srv.make(cfg, service);
    srv.executor->start();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "coport-example-server: cannot serve topic '%s' on %s: %s\n", cfg.topic.c_str(),
                 transport->describe().c_str(), e.what());
    return ex::exit_failure;
  }
  metrics->executor = srv.executor.get();
  log.info("serving topic '{}' as server '{}' on {} with {} ({} thread{})", cfg.topic, cfg.server,
           transport->describe(), srv.executor->name(), cfg.threads, cfg.threads == 1 ? "" : "s");
  log_methods(log, *endpoint, *srv.executor, *controls);
  if (cfg.admin) {
    log.info("admin endpoint on (namespace {}{})", msg::admin_namespace,
             cfg.admin->token ? ", token required" : ", no token: any caller");
  }
#if COPORT_HAS_ADMIN
  // The admin HTTP server: the executor's report and policies, and the
  // loops that run it (fiber_executor).
  std::optional<coport::admin::http_server> http;
  if (cfg.http) {
    coport::admin::server_options o;
    o.host = cfg.http->host;
    o.port = cfg.http->port;
    o.logger = transport->options().logger;  // null: the admin server's own, on stderr
    if (const char* token = std::getenv("COPORT_ADMIN_TOKEN"); token && *token) o.token = token;
    http.emplace(std::move(o));
    http->add({[&srv] { return coport::migration::report(srv.executor->report()); },
               [&controls](std::string_view name, msg::policy p) { return controls->set_policy(name, p); }});
    http->add_transport(cfg.topic, transport);
#if COPORT_HAS_FIBERS
    if (srv.loop) {
      http->add_loop(*srv.loop);
      http->add_work_counters("coport", srv.loop->registry());
    } else if (srv.loops) {
      for (std::size_t i = 0; i < srv.loops->size(); ++i) http->add_loop((*srv.loops)[i]);
      http->add_work_counters("coport", srv.loops->registry());
    }
#endif
    try {
      http->start();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "coport-example-server: cannot serve HTTP on %s:%u: %s\n", cfg.http->host.c_str(),
                   static_cast<unsigned>(cfg.http->port), e.what());
      srv.executor->async_stop(asio::use_future).get();
      return ex::exit_failure;
    }
    ex::print_line("admin http: " + http->url());
  }
#endif
  ex::print_line("ready");

  // First signal: a graceful stop. A second one while draining cancels the
  // calls still running.
  int signals_seen = 0;
  std::function<void(boost::system::error_code, int)> on_signal = [&](boost::system::error_code ec, int sig) {
    if (ec) return;  // cancelled: the executor has stopped
    const std::size_t busy = srv.executor->in_flight();
    if (++signals_seen == 1) {
      log.info("signal {}: stopping, {} call(s) in flight", sig, busy);
    } else {
      log.warn("signal {} again: cancelling {} call(s) in flight", sig, busy);
    }
    srv.executor->async_stop(asio::bind_executor(main_io, [&] { signals.cancel(); }));
    signals.async_wait(on_signal);
  };
  signals.async_wait(on_signal);
  main_io.run();

  log.info("stopped; calls handled: {}", json::serialize(metrics->counts()));
  metrics->executor = nullptr;
  return ex::exit_ok;
}
