#ifndef COPORT_MESSAGING_SERVER_HPP
#define COPORT_MESSAGING_SERVER_HPP

// Serving RPC requests: the invoke helpers every executor uses, and
// rpc_server, a minimal server on a plain Asio executor. Services that still
// have fiber methods are served by coport::fiber_executor; rpc_server runs a
// fiber method's plain function inline, so it suits methods that do not block.

#include <coport/messaging/rpc/endpoint.hpp>
#include <coport/messaging/transport/transport.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <exception>
#include <functional>
#include <memory>

namespace coport::messaging {

/// The reply carrying `e` in oslo.messaging's failure shape.
rpc_reply failure_reply(std::exception_ptr e);

/// Runs a coroutine method form for `request`; the method's exception
/// becomes a failure reply.
boost::asio::awaitable<rpc_reply> invoke_coroutine(const method_form& form, rpc_request& request);

/// Runs a fiber method form to its end on the calling thread or fiber; the
/// method's exception becomes a failure reply.
rpc_reply invoke_plain(const method_form& form, rpc_request& request);

/// Settings of rpc_server.
struct server_options {
  /// Requests being served at once; past it the server takes no message
  /// from the transport until one finishes (backpressure).
  std::size_t max_in_flight = 64;
};

/// A minimal RPC server on one Asio executor (oslo.messaging's RPCServer
/// with a native asyncio-style executor). Shutdown: stop() stops taking
/// messages, lets in-flight requests finish and send their replies, then
/// completes.
class rpc_server {
 public:
  rpc_server(std::shared_ptr<transport> t, target server, std::shared_ptr<const dispatcher> d,
             boost::asio::any_io_executor ex, server_options options = {});
  ~rpc_server();
  rpc_server(const rpc_server&) = delete;
  rpc_server& operator=(const rpc_server&) = delete;

  /// Starts consuming; returns at once.
  void start();

  /// Stops taking messages and completes with `()` once every request in
  /// flight has replied.
  template <class CompletionToken>
  auto async_stop(CompletionToken&& token) {
    return boost::asio::async_initiate<CompletionToken, void()>(
        [this](auto handler) { stop_impl(detail::deliver(std::move(handler))); }, token);
  }

  /// Requests being served now.
  [[nodiscard]] std::size_t in_flight() const noexcept;
  /// Requests served since start.
  [[nodiscard]] std::size_t served() const noexcept;

 private:
  struct state;
  void stop_impl(boost::asio::any_completion_handler<void()> done);
  std::shared_ptr<state> state_;
};

}  // namespace coport::messaging

#endif
