// The REST API of the metering service (coport-demo), on Boost.Beast, and
// the HTTP client the demo's traffic uses. Every Beast type stays in
// rest.cpp, so that only that file pays for Beast's templates.
//
// Routes (GET only; JSON bodies, the same values the RPC methods answer):
//
//   /v2/meters/<meter>/statistics            rest.statistics  meter_stats
//   /v2/meters/<meter>/total                 rest.total       sum of the volumes
//   /v2/meters/<meter>/resources             rest.resources   resource names, sorted
//   /v2/meters/<meter>/resources/<resource>  rest.usage       the resource's volume
//
// Each route is a migration point of the registry given to rest_api, with
// the forms its release has:
//
//   route            release 1   release 2 (mixed)        release 3
//   rest.statistics  legacy      both (shadow, by policy)  both
//   rest.total       legacy      ported only               ported only
//   rest.resources   legacy      legacy only               both
//   rest.usage       legacy      both (canary, by policy)  both
//
// A legacy form is fiber code on the legacy storage client, a ported form
// a coroutine on the ported client. The connection code exists in both
// worlds too: the legacy server, a fiber per connection reading and writing
// with bridge::use_fiber, and the ported one, a coroutine per connection.
// A request is served by the world its route answers from: a route whose
// legacy form answers (legacy only, policy legacy or shadow) by the fiber
// code, which calls the point with call(); the others (ported only, ported
// or canary) by the coroutine code, with co_await async_call(). A
// connection moves to the other world's code, with the request it has just
// read, when a request asks for a route of that world, so that each request
// is read, answered and written by the code of its route's world (the
// points' own calls still cross worlds: a shadow call runs the ported form
// from the fiber, a canary the legacy form in a pooled fiber).
//
// Bad input: a request Beast cannot parse gets 400 and the connection is
// closed; an unknown route 404, another method 405; a form that throws 500.
#ifndef COPORT_EXAMPLES_DEMO_REST_HPP
#define COPORT_EXAMPLES_DEMO_REST_HPP

#include "metering.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <memory>
#include <string>

namespace metering {

/// Settings of the REST API.
struct rest_options {
  /// The address to listen on.
  std::string address = "127.0.0.1";
  /// The port; 0: an ephemeral port chosen by the system (see rest_api::port).
  std::uint16_t port = 0;
};

/// The service's REST API: an HTTP/1.1 server on the loop of `rt`, its routes
/// migration points of `points` (named "rest.<route>", see the table above).
///
/// Lifetime: start() listens; stop() closes the acceptor and every open
/// connection (a request being answered finishes its form, its reply is
/// then dropped) and returns once the accept loop and every connection's
/// fiber or coroutine have ended. The destructor stops. A runtime stop
/// ends them as well: their waits end with operation_aborted.
class rest_api {
 public:
  /// Declares the routes' points in `points` (throws as registry::declare,
  /// e.g. for a configured policy a route's forms cannot serve). `svc`,
  /// `points` and `rt` must outlive the API.
  rest_api(service& svc, coport::migration::registry& points, coport::bridge::runtime& rt, rest_options options = {});
  ~rest_api();
  rest_api(const rest_api&) = delete;
  rest_api& operator=(const rest_api&) = delete;

  /// Binds, listens and starts accepting; throws boost::system::system_error
  /// when the address cannot be used. Call once, from outside the loop.
  void start();
  /// The port listened on (after start()).
  [[nodiscard]] std::uint16_t port() const noexcept;
  /// Stops as the class comment says and waits for it; idempotent. Blocks
  /// the caller: call it from outside the loop.
  void stop();
  /// Requests that got 400, 404 or 405 so far (read after stop()).
  [[nodiscard]] std::uint64_t refused() const noexcept;

  struct impl;

 private:
  std::shared_ptr<impl> impl_;
};

/// One HTTP reply, as the client got it.
struct http_reply {
  unsigned status = 0;
  std::string body;
  /// The server closed the connection after it (or did not answer).
  bool closed = false;
};

/// A keep-alive HTTP/1.1 connection to 127.0.0.1, for coroutines.
class http_connection {
 public:
  explicit http_connection(boost::asio::any_io_executor ex);
  ~http_connection();
  http_connection(const http_connection&) = delete;
  http_connection& operator=(const http_connection&) = delete;

  /// Connects to 127.0.0.1:`port`; throws on failure.
  boost::asio::awaitable<void> connect(std::uint16_t port);
  /// Sends `GET target` and reads the reply; throws on an I/O error.
  [[nodiscard]] boost::asio::awaitable<http_reply> get(std::string target);
  /// Writes `bytes` as they are (a request the server must refuse) and
  /// reads the reply.
  [[nodiscard]] boost::asio::awaitable<http_reply> send_raw(std::string bytes);
  /// True when the server has closed the connection: a read finds the end
  /// of the stream.
  [[nodiscard]] boost::asio::awaitable<bool> closed_by_server();
  [[nodiscard]] bool is_open() const noexcept;
  void close() noexcept;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace metering

#endif
