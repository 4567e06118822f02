// coport-example-server: an RPC server for the example client and tests.
//
//   usage and options: usage_text and help_text below (--help prints them).
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
// Prints "ready" on stdout once it takes requests. SIGTERM or SIGINT stops
// it gracefully (calls in flight finish and reply; a second signal cancels
// them), then it exits 0. Logs go to stderr. Exit 64: bad command line;
// exit 3: the transport cannot be opened or served.
#include "example_common.hpp"

#include <coport/coro_executor/coro_executor.hpp>
#include <coport/messaging/endpoint.hpp>
#include <coport/messaging/executor.hpp>
#include <coport/messaging/migration.hpp>
#if COPORT_HAS_FIBERS
#include <coport/bridge/fiber.hpp>
#include <coport/fiber_executor/fiber_executor.hpp>
#endif

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
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

namespace {

constexpr const char* usage_text =
    "usage: coport-example-server --transport URL --topic TOPIC [--server NAME]\n"
    "                             [--executor fiber|coro] [--threads N] [--exchange NAME]\n"
    "                             [--policy METHOD=POLICY]... [--default-policy POLICY]\n"
    "                             [--native] [--strict] [--admin] [--admin-token TOKEN]\n";

// --help: the usage line, then every option and command.
constexpr const char* help_text =
    "    --transport URL    where to listen: rabbit://user:pass@host:5672/, memory://\n"
    "    --topic TOPIC      the RPC topic served\n"
    "    --server NAME      this server's name (TOPIC.NAME queue); default: the host name\n"
    "    --executor KIND    fiber (the default): fiber_executor on coport loops;\n"
    "                       coro: coro_executor on a plain io_context (the default\n"
    "                       of a build without fibers)\n"
    "    --threads N        loops (fiber) or io_context threads (coro); default 1\n"
    "    --exchange NAME    the control exchange; default: the transport's (\"openstack\")\n"
    "    --policy METHOD=POLICY\n"
    "                       which form serves METHOD (\"echo\" or \"example.echo\"):\n"
    "                       legacy, ported, canary:N (N% of calls to the ported\n"
    "                       form) or shadow (both run, the legacy result answers,\n"
    "                       differences are recorded); repeatable\n"
    "    --default-policy POLICY\n"
    "                       the policy of the methods --policy does not name;\n"
    "                       default: ported\n"
    "    --native           fiber_executor runs the coroutine forms native (on the\n"
    "                       loop fiber; blocking on a fiber primitive fails)\n"
    "                       instead of hosted in a fiber each\n"
    "    --strict           a call whose coroutine form blocks fibers or stalls\n"
    "                       the loop fails (strict_mode_violation)\n"
    "    --admin            serve the admin endpoint (namespace coport.admin:\n"
    "                       migration_report, set_policy), which\n"
    "                       coport-example-client's report and set-policy use;\n"
    "                       callers need $COPORT_ADMIN_TOKEN when it is set\n"
    "    --admin-token TOKEN\n"
    "                       with --admin: callers must send TOKEN in their\n"
    "                       context (coport_admin_token); implies --admin\n"
    "\n";

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
};

msg::policy parse_policy(std::string_view option, const std::string& text) {
  try {
    return msg::policy::parse(text);
  } catch (const msg::invalid_policy& e) {
    throw ex::usage_error(std::string(option) + ": " + e.what());
  }
}

// --policy METHOD=POLICY
void add_policy(msg::migration_options& m, const std::string& text) {
  const std::size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw ex::usage_error("--policy expects METHOD=POLICY, got '" + text + "'");
  }
  m.policies.insert_or_assign(text.substr(0, eq), parse_policy("--policy", text.substr(eq + 1)));
}

std::string host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

config parse_command_line(int argc, char** argv) {
  config c;
  bool admin_on = false;
  std::optional<std::string> admin_token;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--transport") c.transport = ex::option_value(argc, argv, i);
    else if (a == "--topic") c.topic = ex::option_value(argc, argv, i);
    else if (a == "--server") c.server = ex::option_value(argc, argv, i);
    else if (a == "--executor") c.executor = ex::option_value(argc, argv, i);
    else if (a == "--threads") c.threads = ex::parse_count(a, ex::option_value(argc, argv, i));
    else if (a == "--exchange") c.exchange = ex::option_value(argc, argv, i);
    else if (a == "--policy") add_policy(c.migration, ex::option_value(argc, argv, i));
    else if (a == "--default-policy") c.migration.default_policy = parse_policy(a, ex::option_value(argc, argv, i));
    else if (a == "--native") c.native = true;
    else if (a == "--strict") c.migration.strict = true;
    else if (a == "--admin") admin_on = true;
    else if (a == "--admin-token") admin_token = ex::option_value(argc, argv, i);
    else throw ex::usage_error("unexpected argument '" + std::string(a) + "'");
  }
  if (const char* token = std::getenv("COPORT_ADMIN_TOKEN"); admin_on && !admin_token && token && *token) {
    admin_token = token;  // --admin with the token in the environment, where ps does not show it
  }
  if (admin_token && admin_token->empty()) throw ex::usage_error("--admin-token must not be empty");
  if (admin_on || admin_token) c.admin = msg::admin_options{.token = admin_token};
  if (c.transport.empty()) throw ex::usage_error("--transport is required");
  if (c.topic.empty()) throw ex::usage_error("--topic is required");
  if (c.executor != "fiber" && c.executor != "coro") {
    throw ex::usage_error("--executor is fiber or coro, not '" + c.executor + "'");
  }
  if (c.server.empty()) c.server = host_name();
  ex::check_name("--topic", c.topic);
  ex::check_name("--server", c.server);
  if (!c.exchange.empty()) ex::check_name("--exchange", c.exchange);
  return c;
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
  if (ex::wants_help(argc, argv)) {
    std::printf("%s\n%s", usage_text, help_text);
    return ex::exit_ok;
  }
  config cfg;
  try {
    cfg = parse_command_line(argc, argv);
#if !COPORT_HAS_FIBERS
    if (cfg.executor == "fiber") {
      throw ex::usage_error("this build has no fibers (COPORT_WITH_FIBERS=OFF): use --executor coro");
    }
#endif
  } catch (const ex::usage_error& e) {
    std::fprintf(stderr, "coport-example-server: %s\n%s", e.what(), usage_text);
    return ex::exit_usage;
  }

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
    std::fprintf(stderr, "coport-example-server: %s\n%s", e.what(), usage_text);
    return ex::exit_usage;
  }
  const msg::service service{transport, msg::target{.topic = cfg.topic, .server = cfg.server}, dispatcher,
                             controls};

  // SIGTERM and SIGINT are waited for on the main thread, whatever the
  // executor runs on.
  asio::io_context main_io;
  asio::signal_set signals(main_io, SIGTERM, SIGINT);

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
  signals.clear();
  ex::ignore_stop_signals();

  log.info("stopped; calls handled: {}", json::serialize(metrics->counts()));
  metrics->executor = nullptr;
  return ex::exit_ok;
}
