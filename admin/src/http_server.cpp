// The admin server: Boost.Beast over C++20 coroutines on an io_context and
// thread of its own. Nothing here runs on a service's loop: a report is
// read through the sources' thread-safe calls, so a slow, broken or hostile
// client costs the service nothing but those reads.

#include <coport/admin/http_server.hpp>

#include "exposition.hpp"
#include "page.hpp"

#include <coport/migration/points.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <ctime>
#include <deque>
#include <list>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace coport::admin {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using detail::refusal;

migration_source source_of(migration::registry& points) {
  return {[&points] { return points.make_report(); },
          [&points](std::string_view name, migration::policy p) { return points.set_policy(name, p); }};
}

namespace {

using response = http::response<http::string_body>;

constexpr std::size_t max_changes_field = 128;  // "point" and "by"

std::string now_iso8601() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char text[40];
  const std::size_t n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &tm);
  return std::string(text, n) + "." + std::to_string(1000 + ms).substr(1) + "Z";
}

std::string describe(const tcp::endpoint& e) {
  const std::string host = e.address().to_string();
  return (e.address().is_v6() ? "[" + host + "]" : host) + ":" + std::to_string(e.port());
}

// Compares without an early exit, so that the time an answer takes says
// nothing about how much of a guessed token was right.
bool same_token(std::string_view a, std::string_view b) {
  const std::size_t n = std::max(a.size(), b.size());
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < n; ++i) {
    const auto x = static_cast<unsigned char>(i < a.size() ? a[i] : 0);
    const auto y = static_cast<unsigned char>(i < b.size() ? b[i] : 0);
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

// A text a client sent that may be logged: no control characters (a line
// break would forge log lines), bounded.
bool printable(std::string_view s) {
  if (s.size() > max_changes_field) return false;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

}  // namespace

/// One policy change made through the server.
struct change {
  std::string when, who, remote, point, from, to;
};

struct http_server::impl {
  server_options opts;
  std::shared_ptr<spdlog::logger> log;
  std::vector<migration_source> sources;
  detail::exposed more;
  detail::server_counters counters;

  // Touched on the server's thread only once started, and by the public
  // calls under this mutex (changes are also read by GET /policy/changes).
  std::mutex changes_mutex;
  std::deque<change> changes;

  asio::io_context io{1};
  std::optional<tcp::acceptor> acceptor;
  std::list<beast::tcp_stream*> live;  // the server's thread only
  std::thread thread;
  std::uint16_t port = 0;
  bool started = false;
  bool stopped = false;

  explicit impl(server_options o) : opts(std::move(o)), log(opts.logger ? opts.logger : default_logger()) {}

  // One logger for every server without one of its own, made once even when
  // servers start on several threads at a time (spdlog refuses a second
  // logger of the same name).
  static std::shared_ptr<spdlog::logger> default_logger() {
    static const std::shared_ptr<spdlog::logger> shared = [] {
      auto l = spdlog::get("coport-admin");
      return l ? l : spdlog::stderr_color_mt("coport-admin");
    }();
    return shared;
  }

  void refuse(refusal r) { counters.refused[static_cast<int>(r)].fetch_add(1, std::memory_order_relaxed); }

  migration::report report() const {
    if (sources.empty()) {
      migration::report r;
      r.executor = "no migration points";
      r.judge();
      return r;
    }
    migration::report r = sources.front().report();
    for (std::size_t i = 1; i < sources.size(); ++i) r.add(sources[i].report());
    return r;
  }

  // ---------------------------------------------------------------- answers

  static response text(http::status s, std::string content_type, std::string body, unsigned version) {
    response res{s, version};
    res.set(http::field::server, "coport-admin");
    res.set(http::field::content_type, std::move(content_type));
    res.set(http::field::cache_control, "no-store");
    res.set("X-Content-Type-Options", "nosniff");
    res.body() = std::move(body);
    res.prepare_payload();
    return res;
  }

  static response json_answer(http::status s, const json::value& v, unsigned version) {
    return text(s, "application/json", json::serialize(v), version);
  }

  static response error(http::status s, std::string_view why, unsigned version) {
    return json_answer(s, json::object{{"error", why}}, version);
  }

  response handle(const http::request<http::string_body>& req, const std::string& remote) {
    const unsigned v = req.version();
    std::string_view target = req.target();
    if (const auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
    const bool get = req.method() == http::verb::get;

    auto only = [&](const char* allowed) {
      response res = error(http::status::method_not_allowed, std::string("use ") + allowed, v);
      res.set(http::field::allow, allowed);
      return res;
    };
    if (target == "/metrics") {
      if (!get) return only("GET");
      return text(http::status::ok, "text/plain; version=0.0.4; charset=utf-8",
                  detail::exposition(report(), more, counters), v);
    }
    if (target == "/migration") {
      if (!get) return only("GET");
      response res = text(http::status::ok, "text/html; charset=utf-8", std::string(detail::migration_page), v);
      // The page is self-contained: its own script and style, requests to
      // this server only.
      res.set("Content-Security-Policy",
              "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
              "connect-src 'self'; img-src data:; form-action 'none'; frame-ancestors 'none'");
      return res;
    }
    if (target == "/migration.json") {
      if (!get) return only("GET");
      return json_answer(http::status::ok, report().to_json(), v);
    }
    if (target == "/policy/changes") {
      if (!get) return only("GET");
      return json_answer(http::status::ok, changes_json(), v);
    }
    if (target == "/policy") {
      if (req.method() != http::verb::post) return only("POST");
      return set_policy(req, remote);
    }
    // The target is not echoed: it may be anything, not even UTF-8.
    return error(http::status::not_found,
                 "no such resource: the server answers /metrics, /migration, /migration.json, /policy/changes "
                 "and POST /policy",
                 v);
  }

  json::object changes_json() {
    json::array list;
    {
      std::lock_guard lock(changes_mutex);
      for (const auto& c : changes) {
        list.push_back(json::object{{"when", c.when},     {"who", c.who}, {"remote", c.remote},
                                    {"point", c.point},   {"from", c.from}, {"to", c.to}});
      }
    }
    return json::object{{"token_required", true},
                        {"changes_allowed", opts.token.has_value() && !opts.token->empty()},
                        {"changes", std::move(list)}};
  }

  response set_policy(const http::request<http::string_body>& req, const std::string& remote) {
    const unsigned v = req.version();
    if (!opts.token || opts.token->empty()) {
      return error(http::status::forbidden,
                   "policy changes are off: the server was started without a token (COPORT_ADMIN_TOKEN)", v);
    }
    // The token before anything else: a caller without it learns nothing,
    // not even whether its body would have been accepted.
    const auto auth = req[http::field::authorization];
    constexpr std::string_view bearer = "Bearer ";
    if (auth.size() <= bearer.size() || !auth.starts_with(bearer) ||
        !same_token(auth.substr(bearer.size()), *opts.token)) {
      refuse(refusal::unauthorized);
      log->warn("admin: a policy change from {} refused: {} token", remote, auth.empty() ? "no" : "a wrong");
      response res = error(http::status::unauthorized,
                           auth.empty() ? "a token is required: Authorization: Bearer <token>" : "wrong token", v);
      res.set(http::field::www_authenticate, "Bearer realm=\"coport\"");
      return res;
    }

    boost::system::error_code ec;
    const json::value body = json::parse(req.body(), ec);
    if (ec) return error(http::status::bad_request, "the body is not JSON: " + ec.message(), v);
    const json::object* o = body.if_object();
    if (!o) return error(http::status::bad_request, "the body must be a JSON object", v);
    const json::value* point_v = o->if_contains("point");
    if (!point_v || !point_v->is_string() || point_v->get_string().empty()) {
      return error(http::status::bad_request, "\"point\" must be a non-empty string", v);
    }
    const std::string point(point_v->get_string());
    std::string who = "anonymous";
    if (const json::value* by = o->if_contains("by")) {
      if (!by->is_string()) return error(http::status::bad_request, "\"by\" must be a string", v);
      if (!by->get_string().empty()) who = std::string(by->get_string());
    }
    if (!printable(point) || !printable(who)) {
      return error(http::status::bad_request,
                   "\"point\" and \"by\" must be at most 128 bytes, without control characters", v);
    }
    const json::value* policy_v = o->if_contains("policy");
    const json::value* rollback_v = o->if_contains("rollback");
    if (rollback_v && !rollback_v->is_bool()) {
      return error(http::status::bad_request, "\"rollback\" must be true or false", v);
    }
    const bool rollback = rollback_v && rollback_v->get_bool();
    if (rollback == (policy_v != nullptr)) {
      return error(http::status::bad_request, "give either \"policy\" or \"rollback\": true", v);
    }

    std::string wanted;
    if (rollback) {
      std::lock_guard lock(changes_mutex);
      for (auto it = changes.rbegin(); it != changes.rend(); ++it) {
        if (it->point == point) {
          wanted = it->from;
          break;
        }
      }
      if (wanted.empty()) {
        return error(http::status::bad_request,
                     "nothing to roll back: no change to '" + point + "' was made through this server", v);
      }
    } else {
      if (!policy_v->is_string()) return error(http::status::bad_request, "\"policy\" must be a string", v);
      wanted = std::string(policy_v->get_string());
    }

    migration::policy p;
    try {
      p = migration::policy::parse(wanted);
    } catch (const migration::invalid_policy& e) {
      return error(http::status::bad_request, e.what(), v);
    }
    for (auto& s : sources) {
      if (!s.set_policy) continue;
      migration::policy previous;
      try {
        previous = s.set_policy(point, p);
      } catch (const migration::invalid_policy& e) {
        if (e.code() == migration::errc::unknown_point) continue;
        return error(http::status::bad_request, e.what(), v);
      }
      change c{now_iso8601(), who, remote, point, previous.to_string(), p.to_string()};
      log->info("admin: policy of {} set to {} (was {}) by {} from {}{}", c.point, c.to, c.from, c.who, c.remote,
                rollback ? " (rollback)" : "");
      {
        std::lock_guard lock(changes_mutex);
        changes.push_back(c);
        while (changes.size() > std::max<std::size_t>(opts.changes_kept, 1)) changes.pop_front();
      }
      counters.policy_changes.fetch_add(1, std::memory_order_relaxed);
      return json_answer(http::status::ok, json::object{{"point", c.point}, {"policy", c.to}, {"previous", c.from}},
                         v);
    }
    return error(http::status::not_found, "no migration point named '" + point + "'", v);
  }

  // ------------------------------------------------------------ connections

  // What a failed read means: the answer the client can still take (none
  // for a client too slow to wait for, or gone), and the refusal counted
  // (none for a connection that failed by itself).
  struct read_failure {
    std::optional<http::status> answer;
    std::optional<refusal> counted;
  };
  static read_failure classify(const boost::system::error_code& ec) {
    if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
      return {http::status::request_header_fields_too_large, refusal::header_limit};
    }
    if (ec == http::error::body_limit) return {http::status::payload_too_large, refusal::body_limit};
    if (ec == beast::error::timeout) return {std::nullopt, refusal::timeout};
    if (ec == http::error::partial_message) return {std::nullopt, refusal::malformed};  // closed mid-request
    if (ec.category() == make_error_code(http::error::end_of_stream).category()) {
      return {http::status::bad_request, refusal::malformed};
    }
    return {};
  }

  asio::awaitable<void> serve(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    std::string remote = "?";
    {
      boost::system::error_code ec;
      const auto e = stream.socket().remote_endpoint(ec);
      if (!ec) remote = describe(e);
    }
    live.push_front(&stream);
    const auto self = live.begin();
    counters.connections.fetch_add(1, std::memory_order_relaxed);
    struct leave {
      impl& s;
      std::list<beast::tcp_stream*>::iterator it;
      ~leave() {
        s.live.erase(it);
        s.counters.connections.fetch_sub(1, std::memory_order_relaxed);
      }
    } guard{*this, self};

    // Room for one request's head and body; a larger one fails the read.
    beast::flat_buffer buffer(opts.max_header_bytes + opts.max_body_bytes);
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(static_cast<std::uint32_t>(opts.max_header_bytes));
      parser.body_limit(opts.max_body_bytes);
      stream.expires_after(opts.request_timeout);
      auto [ec, n] = co_await http::async_read(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
      if (ec == http::error::end_of_stream) break;  // closed between requests
      if (ec) {
        if (ec == asio::error::operation_aborted) break;  // stop()
        const read_failure f = classify(ec);
        if (f.counted) refuse(*f.counted);
        log->debug("admin: a request from {} refused: {}", remote, ec.message());
        if (f.answer) {
          response res = error(*f.answer, "refused: " + ec.message(), 11);
          res.keep_alive(false);
          stream.expires_after(opts.request_timeout);
          co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
        }
        break;
      }
      counters.requests.fetch_add(1, std::memory_order_relaxed);
      response res;
      try {
        res = handle(parser.get(), remote);
      } catch (const std::exception& e) {
        log->error("admin: a {} request failed: {}", std::string(parser.get().method_string()), e.what());
        res = error(http::status::internal_server_error, std::string("the server failed: ") + e.what(),
                    parser.get().version());
      }
      res.keep_alive(parser.get().keep_alive());
      stream.expires_after(opts.request_timeout);
      auto [wec, wn] = co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
      if (wec || !res.keep_alive()) break;
    }
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  }

  asio::awaitable<void> accept_loop() {
    asio::steady_timer pause(io);
    for (;;) {
      auto [ec, socket] = co_await acceptor->async_accept(asio::as_tuple(asio::use_awaitable));
      if (!acceptor->is_open()) co_return;
      if (ec) {
        // Out of descriptors, most often: accepting again at once would
        // spin, so wait a little for connections to end.
        log->warn("admin: accept failed: {}", ec.message());
        pause.expires_after(std::chrono::milliseconds(50));
        co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
        continue;
      }
      if (live.size() >= opts.max_connections) {
        refuse(refusal::connections);
        boost::system::error_code ignored;
        socket.close(ignored);
        continue;
      }
      asio::co_spawn(io, serve(std::move(socket)), [this](std::exception_ptr e) {
        if (!e) return;
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& x) {
          log->error("admin: a connection failed: {}", x.what());
        }
      });
    }
  }
};

http_server::http_server(server_options options) : impl_(std::make_unique<impl>(std::move(options))) {}

http_server::~http_server() { stop(); }

void http_server::add(migration_source source) {
  if (impl_->started) throw std::logic_error("admin::http_server::add after start()");
  if (!source.report) throw std::invalid_argument("admin::migration_source without a report");
  impl_->sources.push_back(std::move(source));
}

void http_server::add_work_counters(std::string name, const bridge::diagnostics& counters) {
  if (impl_->started) throw std::logic_error("admin::http_server::add_work_counters after start()");
  impl_->more.work.emplace_back(std::move(name), &counters);
}

void http_server::add_transport(std::string name, std::shared_ptr<const messaging::transport> transport) {
  if (impl_->started) throw std::logic_error("admin::http_server::add_transport after start()");
  if (!transport) throw std::invalid_argument("admin::http_server::add_transport without a transport");
  impl_->more.transports.emplace_back(std::move(name), std::move(transport));
}

void http_server::add_loop(const bridge::runtime& loop) {
  if (impl_->started) throw std::logic_error("admin::http_server::add_loop after start()");
  impl_->more.loops.push_back(&loop);
}

void http_server::start() {
  auto& s = *impl_;
  if (s.started) throw std::logic_error("admin::http_server::start called twice");
  const tcp::endpoint at(asio::ip::make_address(s.opts.host), s.opts.port);
  s.acceptor.emplace(s.io);
  s.acceptor->open(at.protocol());
  s.acceptor->set_option(asio::socket_base::reuse_address(true));
  s.acceptor->bind(at);
  s.acceptor->listen();
  s.port = s.acceptor->local_endpoint().port();
  s.started = true;
  asio::co_spawn(s.io, s.accept_loop(), [&s](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      s.log->error("admin: the server stopped accepting: {}", x.what());
    }
  });
  s.thread = std::thread([&s] { s.io.run(); });
  s.log->info("admin: serving on {}", url());
}

void http_server::stop() {
  auto& s = *impl_;
  if (!s.started || s.stopped) return;
  s.stopped = true;
  // Closing the acceptor and every connection ends each coroutine with an
  // error; the io_context then runs out of work and the thread returns.
  asio::post(s.io, [&s] {
    boost::system::error_code ignored;
    s.acceptor->close(ignored);
    for (beast::tcp_stream* c : s.live) c->socket().close(ignored);
  });
  s.thread.join();
  s.acceptor.reset();
}

std::uint16_t http_server::port() const noexcept { return impl_->port; }

std::string http_server::url() const {
  const auto a = asio::ip::make_address(impl_->opts.host);
  const std::string host = a.is_v6() ? "[" + a.to_string() + "]" : a.to_string();
  return "http://" + host + ":" + std::to_string(impl_->port) + "/";
}

std::string http_server::metrics_text() const {
  return detail::exposition(impl_->report(), impl_->more, impl_->counters);
}

migration::report http_server::report() const { return impl_->report(); }

}  // namespace coport::admin
