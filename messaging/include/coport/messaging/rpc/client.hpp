#ifndef COPORT_MESSAGING_CLIENT_HPP
#define COPORT_MESSAGING_CLIENT_HPP

// The RPC client (oslo.messaging's RPCClient): call, cast, fanout cast,
// prepare()-style copies with overrides, a version cap. Every operation
// takes an Asio completion token, so one client serves ported code
// (asio::use_awaitable), legacy code (bridge::use_fiber blocks the fiber),
// callbacks and asio::use_future alike.

#include <coport/messaging/wire/errors.hpp>
#include <coport/messaging/wire/message.hpp>
#include <coport/messaging/wire/target.hpp>
#include <coport/messaging/transport/transport.hpp>

#include <boost/asio/associator.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/json/value_from.hpp>
#include <boost/json/value_to.hpp>

#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <string>

namespace coport::messaging {

namespace detail {

inline void put_args(boost::json::object&) {}

template <class Name, class Value, class... Rest>
void put_args(boost::json::object& o, Name&& name, Value&& value, Rest&&... rest) {
  o[std::string_view(name)] = boost::json::value_from(std::forward<Value>(value));
  put_args(o, std::forward<Rest>(rest)...);
}

}  // namespace detail

/// Call arguments from alternating names and values:
/// `args("meter", "cpu", "volume", 2.5)`. Values convert with
/// boost::json::value_from. Unlike a braced list, it may be written inside a
/// co_await expression: g++ 12 rejects an initializer list there ("array used
/// as initializer").
template <class... NamesAndValues>
boost::json::object args(NamesAndValues&&... kv) {
  static_assert(sizeof...(NamesAndValues) % 2 == 0, "args() takes name, value pairs");
  boost::json::object o;
  o.reserve(sizeof...(NamesAndValues) / 2);
  detail::put_args(o, std::forward<NamesAndValues>(kv)...);
  return o;
}

namespace detail {

/// A completion handler that calls `fn(inner, args...)` and keeps every
/// association (executor, allocator, cancellation slot) of `inner`.
template <class Inner, class Fn>
struct adapted_handler {
  Inner inner;
  Fn fn;
  template <class... Args>
  void operator()(Args&&... args) {
    fn(std::move(inner), std::forward<Args>(args)...);
  }
};

template <class Inner, class Fn>
adapted_handler<std::decay_t<Inner>, std::decay_t<Fn>> adapt(Inner&& inner, Fn&& fn) {
  return {std::forward<Inner>(inner), std::forward<Fn>(fn)};
}

/// Converts a call's JSON result to T for the handler (conversion errors
/// become the handler's exception).
template <class T>
struct convert_result {
  template <class Handler>
  void operator()(Handler&& h, std::exception_ptr e, rpc_reply reply) const {
    if constexpr (std::is_same_v<T, boost::json::value>) {
      std::move(h)(e, e ? boost::json::value() : std::move(reply.result));
    } else {
      if (e) return std::move(h)(e, T{});
      std::optional<T> v;
      try {
        v.emplace(boost::json::value_to<T>(reply.result));
      } catch (...) {
        return std::move(h)(std::current_exception(), T{});
      }
      std::move(h)(nullptr, std::move(*v));
    }
  }
};

/// Turns a transport's error_code into the client's exception_ptr.
struct cast_result {
  template <class Handler>
  void operator()(Handler&& h, boost::system::error_code ec) const {
    std::move(h)(ec ? std::make_exception_ptr(transport_error("could not send: " + ec.message()))
                    : std::exception_ptr());
  }
};

}  // namespace detail

/// Overrides for prepare(); unset fields keep the client's values.
struct call_overrides {
  std::optional<std::string> server = {};
  std::optional<std::string> version = {};
  std::optional<std::string> ns = {};
  std::optional<std::string> exchange = {};
  std::optional<bool> fanout = {};
  std::optional<std::chrono::steady_clock::duration> timeout = {};
  std::optional<std::string> version_cap = {};
};

/// Settings of a client.
struct client_options {
  /// How long a call waits for its reply (oslo.messaging's
  /// rpc_response_timeout).
  std::chrono::steady_clock::duration timeout = std::chrono::seconds(60);
  /// Calls and casts for a version above this are refused locally with
  /// version_cap_error.
  std::optional<std::string> version_cap = {};
};

/// Sends calls and casts to a target. Copyable and cheap (it shares the
/// transport); thread-safe.
class rpc_client {
 public:
  rpc_client(std::shared_ptr<transport> t, target to, client_options options = {})
      : transport_(std::move(t)), target_(std::move(to)), options_(std::move(options)) {}

  /// A copy with some fields overridden (oslo.messaging's prepare()).
  [[nodiscard]] rpc_client prepare(const call_overrides& o) const;

  /// Calls `method` with keyword arguments `args` and waits for the result
  /// (converted to T with boost::json::value_to). Completes with
  /// `(std::exception_ptr, T)`: remote_error when the method raised,
  /// timeout_error when no reply came in time, invalid_target or
  /// version_cap_error before anything is sent.
  template <class T = boost::json::value, class CompletionToken>
  auto async_call(context ctxt, std::string method, boost::json::object args,
                  CompletionToken&& token) const {
    return boost::asio::async_initiate<CompletionToken, void(std::exception_ptr, T)>(
        [self = *this](auto handler, context c, std::string m, boost::json::object a) {
          std::exception_ptr invalid;
          rpc_request request;
          try {
            request = self.make_request(std::move(c), std::move(m), std::move(a));
            if (self.target_.fanout) throw invalid_target("a call cannot go to a fanout target");
          } catch (...) {
            invalid = std::current_exception();
          }
          auto adapted = detail::adapt(std::move(handler), detail::convert_result<T>{});
          if (invalid) return detail::deliver(std::move(adapted))(invalid, rpc_reply{});
          self.transport_->async_call(self.target_, std::move(request), self.options_.timeout,
                                      std::move(adapted));
        },
        token, std::move(ctxt), std::move(method), std::move(args));
  }

  /// async_call with an empty context.
  template <class T = boost::json::value, class CompletionToken>
  auto async_call(std::string method, boost::json::object args, CompletionToken&& token) const {
    return async_call<T>(context{}, std::move(method), std::move(args),
                         std::forward<CompletionToken>(token));
  }

  /// Sends without waiting for a result (to every server of the topic when
  /// the target is fanout). Completes with `(std::exception_ptr)` once the
  /// transport has the message.
  template <class CompletionToken>
  auto async_cast(context ctxt, std::string method, boost::json::object args,
                  CompletionToken&& token) const {
    return boost::asio::async_initiate<CompletionToken, void(std::exception_ptr)>(
        [self = *this](auto handler, context c, std::string m, boost::json::object a) {
          std::exception_ptr invalid;
          rpc_request request;
          try {
            request = self.make_request(std::move(c), std::move(m), std::move(a));
          } catch (...) {
            invalid = std::current_exception();
          }
          if (invalid) return detail::deliver(std::move(handler))(invalid);
          self.transport_->async_cast(self.target_, std::move(request),
                                      detail::adapt(std::move(handler), detail::cast_result{}));
        },
        token, std::move(ctxt), std::move(method), std::move(args));
  }

  template <class CompletionToken>
  auto async_cast(std::string method, boost::json::object args, CompletionToken&& token) const {
    return async_cast(context{}, std::move(method), std::move(args),
                      std::forward<CompletionToken>(token));
  }

  /// True if a message for `version` would pass the version cap.
  [[nodiscard]] bool can_send_version(const std::string& version) const;

  const target& get_target() const noexcept { return target_; }
  const client_options& options() const noexcept { return options_; }
  const std::shared_ptr<transport>& get_transport() const noexcept { return transport_; }

 private:
  rpc_request make_request(context ctxt, std::string method, boost::json::object args) const;

  std::shared_ptr<transport> transport_;
  target target_;
  client_options options_;
};

}  // namespace coport::messaging

namespace boost::asio {

template <template <typename, typename> class Associator, class Inner, class Fn, class DefaultCandidate>
struct associator<Associator, coport::messaging::detail::adapted_handler<Inner, Fn>, DefaultCandidate> {
  using type = typename Associator<Inner, DefaultCandidate>::type;

  static type get(const coport::messaging::detail::adapted_handler<Inner, Fn>& h) noexcept {
    return Associator<Inner, DefaultCandidate>::get(h.inner);
  }
  static auto get(const coport::messaging::detail::adapted_handler<Inner, Fn>& h,
                  const DefaultCandidate& c) noexcept
      -> decltype(Associator<Inner, DefaultCandidate>::get(h.inner, c)) {
    return Associator<Inner, DefaultCandidate>::get(h.inner, c);
  }
};

}  // namespace boost::asio

#endif
