#include "rest.hpp"

#include <coport/bridge/fiber.hpp>
#include <coport/bridge/runtime.hpp>
#include <coport/bridge/spawn.hpp>
#include <coport/bridge/use_fiber.hpp>
#include <coport/migration/point.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value_from.hpp>

#include <atomic>
#include <exception>
#include <functional>
#include <future>
#include <optional>
#include <set>
#include <string_view>
#include <utility>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace bridge = coport::bridge;
namespace json = boost::json;
namespace mig = coport::migration;
using tcp = asio::ip::tcp;

namespace metering {

namespace {

using request = http::request<http::string_body>;
using response = http::response<http::string_body>;

enum class route_id { resources, statistics, total, usage };

/// A request for a known route, with its path parameters.
struct route_match {
  route_id id = route_id::total;
  std::string meter;
  std::string resource;
};

// "/v2/meters/<meter>/<what>" or "/v2/meters/<meter>/resources/<resource>";
// the query string is ignored, empty segments match nothing.
std::optional<route_match> match(std::string_view target) {
  target = target.substr(0, target.find('?'));
  if (target.empty() || target.front() != '/') return std::nullopt;
  std::vector<std::string_view> parts;
  for (std::size_t at = 1;;) {
    const std::size_t slash = target.find('/', at);
    parts.push_back(target.substr(at, slash == std::string_view::npos ? std::string_view::npos : slash - at));
    if (parts.back().empty()) return std::nullopt;
    if (slash == std::string_view::npos) break;
    at = slash + 1;
  }
  if (parts.size() < 4 || parts[0] != "v2" || parts[1] != "meters") return std::nullopt;
  route_match m;
  m.meter = parts[2];
  if (parts.size() == 4) {
    if (parts[3] == "statistics") m.id = route_id::statistics;
    else if (parts[3] == "total") m.id = route_id::total;
    else if (parts[3] == "resources") m.id = route_id::resources;
    else return std::nullopt;
    return m;
  }
  if (parts.size() == 5 && parts[3] == "resources") {
    m.id = route_id::usage;
    m.resource = parts[4];
    return m;
  }
  return std::nullopt;
}

template <class T>
std::string body_of(const T& value) {
  return json::serialize(json::value_from(value));
}

response reply(http::status status, unsigned version, bool keep_alive, std::string body) {
  response res{status, version};
  res.set(http::field::server, "coport-demo");
  res.set(http::field::content_type, "application/json");
  res.keep_alive(keep_alive);
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

response error_reply(http::status status, unsigned version, bool keep_alive, std::string_view what) {
  return reply(status, version, keep_alive, json::serialize(json::object{{"error", what}}));
}

// A parse error: Beast could not read a request from what the client sent.
// end_of_stream (the client closed between requests) is not one.
bool is_parse_error(const boost::system::error_code& ec) {
  return ec.category() == http::make_error_code(http::error::end_of_stream).category() &&
         ec != http::error::end_of_stream;
}

/// One client connection, handed between the fiber and the coroutine code
/// with what it has read so far.
struct connection {
  explicit connection(tcp::socket s) : socket(std::move(s)) {}
  tcp::socket socket;
  beast::flat_buffer buffer;
  /// A request read by the other world's code, to be answered first.
  std::optional<request> pending;
};

/// What to do with a request: answer it through a route, or refuse it.
struct step {
  std::optional<route_match> route;
  response refusal;
};

}  // namespace

struct rest_api::impl : std::enable_shared_from_this<impl> {
  impl(service& s, mig::registry& points, bridge::runtime& r, rest_options o)
      : rt(r),
        options(std::move(o)),
        resources(points, "rest.resources", resources_forms(s), r),
        statistics(points, "rest.statistics", statistics_forms(s), r),
        total(points, "rest.total", total_forms(s), r),
        usage(points, "rest.usage", usage_forms(s), r),
        acceptor(r.get_executor("rest.server")) {}

  // ------------------------------------------------------------ the forms
  // Release 1 wrote every route on the legacy client; the ports follow
  // the table in rest.hpp.
  //
  // The points take views of the path's parameters, which the connection
  // code holds for the whole call (a shadow call copies the view, not the
  // text).

  static mig::point<std::vector<std::string>(std::string_view)>::forms resources_forms(service& s) {
    mig::point<std::vector<std::string>(std::string_view)>::forms f;
    f.legacy = [&legacy = s.legacy_client()](std::string_view meter) { return resources_of(legacy.samples(std::string(meter))); };
    if (s.current_release() == release::ported) {
      f.ported = [&ported = s.ported_client()](std::string_view meter) -> asio::awaitable<std::vector<std::string>> {
        co_return resources_of(co_await ported.samples(std::string(meter)));
      };
    }
    return f;
  }

  static mig::point<meter_stats(std::string_view)>::forms statistics_forms(service& s) {
    mig::point<meter_stats(std::string_view)>::forms f;
    f.legacy = [&legacy = s.legacy_client()](std::string_view meter) { return stats_of(legacy.samples(std::string(meter))); };
    if (s.current_release() != release::legacy) {
      f.ported = [&ported = s.ported_client()](std::string_view meter) -> asio::awaitable<meter_stats> {
        co_return stats_of(co_await ported.samples(std::string(meter)));
      };
    }
    f.describe = [](const std::string_view& meter) { return json::object{{"meter", meter}}; };
    return f;
  }

  static mig::point<double(std::string_view)>::forms total_forms(service& s) {
    mig::point<double(std::string_view)>::forms f;
    if (s.current_release() == release::legacy) {
      f.legacy = [&legacy = s.legacy_client()](std::string_view meter) { return total_of(legacy.samples(std::string(meter))); };
    } else {
      // Ported, and the legacy form deleted.
      f.ported = [&ported = s.ported_client()](std::string_view meter) -> asio::awaitable<double> {
        co_return total_of(co_await ported.samples(std::string(meter)));
      };
    }
    return f;
  }

  static mig::point<double(std::string_view, std::string_view)>::forms usage_forms(service& s) {
    mig::point<double(std::string_view, std::string_view)>::forms f;
    f.legacy = [&legacy = s.legacy_client()](std::string_view meter, std::string_view resource) {
      return usage_of(legacy.samples(std::string(meter)), std::string(resource));
    };
    if (s.current_release() != release::legacy) {
      f.ported = [&ported = s.ported_client()](std::string_view meter,
                                               std::string_view resource) -> asio::awaitable<double> {
        co_return usage_of(co_await ported.samples(std::string(meter)), std::string(resource));
      };
    }
    f.describe = [](const std::string_view& meter, const std::string_view& resource) {
      return json::object{{"meter", meter}, {"resource", resource}};
    };
    return f;
  }

  // ----------------------------------------------------------- routing

  mig::point_record& record_of(route_id id) {
    switch (id) {
      case route_id::resources: return resources.record();
      case route_id::statistics: return statistics.record();
      case route_id::total: return total.record();
      case route_id::usage: return usage.record();
    }
    return total.record();
  }

  // True when the route answers from its legacy form now: its requests
  // belong to the fiber code. Read per request, so a policy change moves
  // the route's next requests.
  bool in_fiber_world(route_id id) {
    const mig::point_record& r = record_of(id);
    if (!r.has_ported()) return true;
    if (!r.has_legacy()) return false;
    const auto k = r.current().what;
    return k == mig::policy::kind::legacy || k == mig::policy::kind::shadow;
  }

  step plan(const request& req) {
    step s;
    if (req.method() != http::verb::get) {
      ++refused;
      s.refusal = error_reply(http::status::method_not_allowed, req.version(), req.keep_alive(), "only GET is served");
      s.refusal.set(http::field::allow, "GET");
      return s;
    }
    s.route = match(req.target());
    if (!s.route) {
      ++refused;
      s.refusal = error_reply(http::status::not_found, req.version(), req.keep_alive(),
                              "no route for " + std::string(req.target()));
    }
    return s;
  }

  response bad_request(const boost::system::error_code& ec) {
    ++refused;
    return error_reply(http::status::bad_request, 11, false, "malformed request: " + ec.message());
  }

  // The legacy code: the answer computed in the calling fiber.
  std::string answer_in_fiber(const route_match& m) {
    switch (m.id) {
      case route_id::resources: return body_of(resources.call(m.meter));
      case route_id::statistics: return body_of(statistics.call(m.meter));
      case route_id::total: return body_of(total.call(m.meter));
      case route_id::usage: return body_of(usage.call(m.meter, m.resource));
    }
    return "null";
  }

  // The ported code. Each result is named before it is serialized: no
  // class-type co_await result is a temporary of a larger expression.
  asio::awaitable<std::string> answer_in_coroutine(route_match m) {
    switch (m.id) {
      case route_id::resources: {
        const std::vector<std::string> v = co_await resources.async_call(m.meter);
        co_return body_of(v);
      }
      case route_id::statistics: {
        const meter_stats v = co_await statistics.async_call(m.meter);
        co_return body_of(v);
      }
      case route_id::total: {
        const double v = co_await total.async_call(m.meter);
        co_return body_of(v);
      }
      case route_id::usage: {
        const double v = co_await usage.async_call(m.meter, m.resource);
        co_return body_of(v);
      }
    }
    co_return "null";
  }

  // ------------------------------------------------------- connections
  // live, stopping, accepting and on_stopped belong to the loop thread:
  // the accept loop, both kinds of connection code and stop's posted
  // task all run there.

  // The legacy server's connection code: a fiber per connection, blocking
  // only itself on each read and write.
  void serve_in_fiber(const std::shared_ptr<connection>& c) {
    bool handed_off = false;
    try {
      serve_requests_in_fiber(c, handed_off);
    } catch (const std::exception&) {
      // Nothing here throws but a fiber-blocking call where it may not
      // block; the connection is closed all the same.
    }
    if (!handed_off) end(c);
  }

  void serve_requests_in_fiber(const std::shared_ptr<connection>& c, bool& handed_off) {
    while (!stopping) {
      boost::system::error_code ec;
      if (!c->pending) {
        request req;
        http::async_read(c->socket, c->buffer, req, bridge::use_fiber[ec]);
        if (ec) {
          if (is_parse_error(ec)) {
            response res = bad_request(ec);
            http::async_write(c->socket, res, bridge::use_fiber[ec]);
          }
          break;
        }
        c->pending = std::move(req);
      }
      step s = plan(*c->pending);
      if (s.route && !in_fiber_world(s.route->id)) {
        to_coroutine(c);
        handed_off = true;
        break;
      }
      const request req = std::move(*c->pending);
      c->pending.reset();
      response res = std::move(s.refusal);
      if (s.route) {
        try {
          res = reply(http::status::ok, req.version(), req.keep_alive(), answer_in_fiber(*s.route));
        } catch (const std::exception& e) {
          res = error_reply(http::status::internal_server_error, req.version(), req.keep_alive(), e.what());
        }
      }
      http::async_write(c->socket, res, bridge::use_fiber[ec]);
      if (ec || !res.keep_alive()) break;
    }
  }

  // The ported server's connection code: a coroutine per connection.
  // `self` keeps this state alive as long as the coroutine (so does the
  // fiber code's lambda).
  asio::awaitable<void> serve_in_coroutine([[maybe_unused]] std::shared_ptr<impl> self,
                                           std::shared_ptr<connection> c) {
    bool handed_off = false;
    while (!stopping) {
      if (!c->pending) {
        request req;
        const auto [ec, n] =
            co_await http::async_read(c->socket, c->buffer, req, asio::as_tuple(asio::use_awaitable));
        if (ec) {
          if (is_parse_error(ec)) {
            response res = bad_request(ec);
            co_await http::async_write(c->socket, res, asio::as_tuple(asio::use_awaitable));
          }
          break;
        }
        c->pending = std::move(req);
      }
      step s = plan(*c->pending);
      if (s.route && in_fiber_world(s.route->id)) {
        to_fiber(c);
        handed_off = true;
        break;
      }
      const request req = std::move(*c->pending);
      c->pending.reset();
      response res = std::move(s.refusal);
      if (s.route) {
        std::string body, failure;
        try {
          body = co_await answer_in_coroutine(*s.route);
        } catch (const std::exception& e) {
          failure = e.what();
        }
        if (failure.empty()) res = reply(http::status::ok, req.version(), req.keep_alive(), std::move(body));
        else res = error_reply(http::status::internal_server_error, req.version(), req.keep_alive(), failure);
      }
      const auto [ec, n] = co_await http::async_write(c->socket, res, asio::as_tuple(asio::use_awaitable));
      if (ec || !res.keep_alive()) break;
    }
    if (!handed_off) end(c);
  }

  void to_fiber(std::shared_ptr<connection> c) {
    bridge::spawn_fiber(rt.get_executor("rest.server [legacy]"),
                        [self = shared_from_this(), c = std::move(c)] { self->serve_in_fiber(c); });
  }

  void to_coroutine(std::shared_ptr<connection> c) {
    bridge::spawn(rt.get_executor("rest.server"), serve_in_coroutine(shared_from_this(), std::move(c)));
  }

  // A connection's last code closes it: the send side first, so that the
  // client reads the end of the stream after the last reply.
  void end(const std::shared_ptr<connection>& c) {
    boost::system::error_code ignored;
    c->socket.shutdown(tcp::socket::shutdown_send, ignored);
    c->socket.close(ignored);
    live.erase(c);
    maybe_stopped();
  }

  // New connections start in the coroutine code (the accept loop is
  // ported), which hands them on by their first request's route.
  asio::awaitable<void> accept_loop([[maybe_unused]] std::shared_ptr<impl> self) {
    while (!stopping) {
      auto [ec, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
      if (stopping || ec == asio::error::operation_aborted) break;
      if (ec) {
        // A connection that failed before it was accepted: the next one
        // may do better. Anything else (out of descriptors) ends the API.
        if (ec == asio::error::connection_aborted) continue;
        break;
      }
      auto c = std::make_shared<connection>(std::move(socket));
      live.insert(c);
      to_coroutine(std::move(c));
    }
    accepting = false;
    maybe_stopped();
  }

  void maybe_stopped() {
    if (stopping && !accepting && live.empty() && on_stopped) std::exchange(on_stopped, nullptr)();
  }

  bridge::runtime& rt;
  rest_options options;
  mig::point<std::vector<std::string>(std::string_view)> resources;
  mig::point<meter_stats(std::string_view)> statistics;
  mig::point<double(std::string_view)> total;
  mig::point<double(std::string_view, std::string_view)> usage;
  tcp::acceptor acceptor;
  std::uint16_t port = 0;
  bool started = false;  // start() and stop(): the owner's thread
  bool stopped = false;
  std::atomic<std::uint64_t> refused{0};

  std::set<std::shared_ptr<connection>> live;
  bool stopping = false;
  bool accepting = false;
  std::function<void()> on_stopped;
};

rest_api::rest_api(service& svc, mig::registry& points, bridge::runtime& rt, rest_options options)
    : impl_(std::make_shared<impl>(svc, points, rt, std::move(options))) {}

rest_api::~rest_api() { stop(); }

void rest_api::start() {
  impl& i = *impl_;
  const tcp::endpoint at(asio::ip::make_address(i.options.address), i.options.port);
  i.acceptor.open(at.protocol());
  i.acceptor.set_option(tcp::acceptor::reuse_address(true));
  i.acceptor.bind(at);
  i.acceptor.listen();
  i.port = i.acceptor.local_endpoint().port();
  i.started = true;
  i.accepting = true;  // before the accept loop's task is handed to the loop
  bridge::spawn(i.rt.get_executor("rest.server"), i.accept_loop(impl_));
}

std::uint16_t rest_api::port() const noexcept { return impl_->port; }

std::uint64_t rest_api::refused() const noexcept { return impl_->refused.load(); }

void rest_api::stop() {
  impl& i = *impl_;
  if (!i.started || i.stopped) return;
  i.stopped = true;
  // A stopping runtime discards posted work, and has stopped (or is
  // stopping) the accept loop and the connections itself.
  if (i.rt.stopping()) return;
  std::promise<void> done;
  i.rt.post([&i, &done] {
    i.stopping = true;
    i.on_stopped = [&done] { done.set_value(); };
    boost::system::error_code ignored;
    i.acceptor.close(ignored);  // the accept loop's wait ends with operation_aborted
    for (const auto& c : i.live) c->socket.close(ignored);  // so do the connections' reads and writes
    i.maybe_stopped();
  });
  done.get_future().wait();
}

// ------------------------------------------------------------------- client

struct http_connection::impl {
  explicit impl(asio::any_io_executor ex) : socket(std::move(ex)) {}
  tcp::socket socket;
  beast::flat_buffer buffer;

  asio::awaitable<http_reply> read_reply() {
    response res;
    co_await http::async_read(socket, buffer, res, asio::use_awaitable);
    http_reply r;
    r.status = res.result_int();
    r.closed = !res.keep_alive();
    r.body = std::move(res.body());
    co_return r;
  }
};

http_connection::http_connection(asio::any_io_executor ex) : impl_(std::make_unique<impl>(std::move(ex))) {}

http_connection::~http_connection() = default;

asio::awaitable<void> http_connection::connect(std::uint16_t port) {
  co_await impl_->socket.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                                       asio::use_awaitable);
}

asio::awaitable<http_reply> http_connection::get(std::string target) {
  request req{http::verb::get, target, 11};
  req.set(http::field::host, "127.0.0.1");
  req.keep_alive(true);
  co_await http::async_write(impl_->socket, req, asio::use_awaitable);
  co_return co_await impl_->read_reply();
}

asio::awaitable<http_reply> http_connection::send_raw(std::string bytes) {
  co_await asio::async_write(impl_->socket, asio::buffer(bytes), asio::use_awaitable);
  co_return co_await impl_->read_reply();
}

asio::awaitable<bool> http_connection::closed_by_server() {
  char byte = 0;
  const auto [ec, n] = co_await impl_->socket.async_read_some(asio::buffer(&byte, 1), asio::as_tuple(asio::use_awaitable));
  co_return ec == asio::error::eof || ec == asio::error::connection_reset;
}

bool http_connection::is_open() const noexcept { return impl_->socket.is_open(); }

void http_connection::close() noexcept {
  boost::system::error_code ignored;
  impl_->socket.shutdown(tcp::socket::shutdown_both, ignored);
  impl_->socket.close(ignored);
}

}  // namespace metering
