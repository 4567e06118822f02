#ifndef COPORT_MESSAGING_NOTIFY_HPP
#define COPORT_MESSAGING_NOTIFY_HPP

// notify/: notifications over a transport, beside rpc/ and independent of
// it: notifiers, notification endpoints with their filters and handlers in
// fiber and coroutine forms, and the notification listener that runs them
// and acknowledges or requeues each message.
//
// Notifications (oslo.messaging's notify package). A notifier publishes to
// "<topic>.<priority>" for each of its topics; a notification_listener takes
// messages from those queues and runs the handlers of notification
// endpoints, acknowledging a message once its handlers are done and
// requeuing it when one of them asks for it or throws (at least once, unlike
// RPC's at most once).

#include <coport/messaging/detail/forms.hpp>
#include <coport/messaging/wire/message.hpp>
#include <coport/messaging/wire/target.hpp>
#include <coport/messaging/transport/transport.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/json/value.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace coport::messaging {

// ----------------------------------------------------------------- notifier

/// `ctxt` reduced to the keys oslo.messaging's notifier lets onto the
/// notification bus (user, project, domain, roles, request ids, ...):
/// credentials such as auth_token never leave the process.
[[nodiscard]] context sanitize_context(const context& ctxt);

/// Sends notifications (oslo.messaging's Notifier). Copyable and cheap (it
/// shares the transport); thread-safe. A notification goes to the
/// transport's control exchange, to "<topic>.<priority>" for every topic,
/// with a fresh message id, the current UTC timestamp and the context
/// sanitized as sanitize_context() does.
class notifier {
 public:
  /// Throws invalid_target for a topic that cannot be used, and
  /// std::invalid_argument when `topics` is empty.
  notifier(std::shared_ptr<transport> t, std::string publisher_id,
           std::vector<std::string> topics = {"notifications"});

  /// A copy that sends as `publisher_id` (oslo.messaging's prepare()).
  [[nodiscard]] notifier prepare(std::string publisher_id) const;

  /// Publishes to "<topic>.<priority>" for every topic; completes with
  /// `(std::exception_ptr)` once the transport has every copy: null, or a
  /// transport_error naming a topic it could not be sent to (the other
  /// topics are still sent to).
  template <class CompletionToken>
  auto async_notify(context ctxt, priority p, std::string event_type, boost::json::value payload,
                    CompletionToken&& token) const {
    return boost::asio::async_initiate<CompletionToken, void(std::exception_ptr)>(
        [self = *this](auto handler, context c, priority prio, std::string e, boost::json::value pl) {
          self.start_notify(self.make_notification(std::move(c), prio, std::move(e), std::move(pl)),
                            detail::deliver(std::move(handler)));
        },
        token, std::move(ctxt), p, std::move(event_type), std::move(payload));
  }

  /// async_notify at priority::audit.
  template <class CompletionToken>
  auto async_audit(context ctxt, std::string event_type, boost::json::value payload,
                   CompletionToken&& token) const {
    return async_notify(std::move(ctxt), priority::audit, std::move(event_type), std::move(payload),
                        std::forward<CompletionToken>(token));
  }
  /// async_notify at priority::debug.
  template <class CompletionToken>
  auto async_debug(context ctxt, std::string event_type, boost::json::value payload,
                   CompletionToken&& token) const {
    return async_notify(std::move(ctxt), priority::debug, std::move(event_type), std::move(payload),
                        std::forward<CompletionToken>(token));
  }
  /// async_notify at priority::info.
  template <class CompletionToken>
  auto async_info(context ctxt, std::string event_type, boost::json::value payload,
                  CompletionToken&& token) const {
    return async_notify(std::move(ctxt), priority::info, std::move(event_type), std::move(payload),
                        std::forward<CompletionToken>(token));
  }
  /// async_notify at priority::warn.
  template <class CompletionToken>
  auto async_warn(context ctxt, std::string event_type, boost::json::value payload,
                  CompletionToken&& token) const {
    return async_notify(std::move(ctxt), priority::warn, std::move(event_type), std::move(payload),
                        std::forward<CompletionToken>(token));
  }
  /// async_notify at priority::error.
  template <class CompletionToken>
  auto async_error(context ctxt, std::string event_type, boost::json::value payload,
                   CompletionToken&& token) const {
    return async_notify(std::move(ctxt), priority::error, std::move(event_type), std::move(payload),
                        std::forward<CompletionToken>(token));
  }
  /// async_notify at priority::critical.
  template <class CompletionToken>
  auto async_critical(context ctxt, std::string event_type, boost::json::value payload,
                      CompletionToken&& token) const {
    return async_notify(std::move(ctxt), priority::critical, std::move(event_type),
                        std::move(payload), std::forward<CompletionToken>(token));
  }
  /// async_notify at priority::sample (frequent, small notifications).
  template <class CompletionToken>
  auto async_sample(context ctxt, std::string event_type, boost::json::value payload,
                    CompletionToken&& token) const {
    return async_notify(std::move(ctxt), priority::sample, std::move(event_type), std::move(payload),
                        std::forward<CompletionToken>(token));
  }

  const std::string& publisher_id() const noexcept { return publisher_id_; }
  const std::vector<std::string>& topics() const noexcept { return topics_; }
  const std::shared_ptr<transport>& get_transport() const noexcept { return transport_; }

 private:
  notification make_notification(context ctxt, priority p, std::string event_type,
                                 boost::json::value payload) const;
  void start_notify(notification n,
                    boost::asio::any_completion_handler<void(std::exception_ptr)> done) const;

  std::shared_ptr<transport> transport_;
  std::string publisher_id_;
  std::vector<std::string> topics_;
};

// ---------------------------------------------------------------- endpoints

/// What a handler decides about the notifications it was given.
enum class notification_result {
  handled,  ///< done: the message is acknowledged
  requeue   ///< not done: the message goes back to the transport
};

/// oslo.messaging's NotificationFilter: a notification passes when every
/// given expression matches its field. Expressions use the ECMAScript
/// grammar of std::regex and are anchored at the start only, as Python's
/// re.match ("compute\\." matches "compute.instance.create"). context,
/// metadata and payload map a key to an expression on that key's value;
/// metadata has "message_id" and "timestamp". A missing key, a value that
/// is not a string, or a payload that is not an object fails the match.
struct notification_filter {
  // Every member has an initializer so that designated initializers may
  // name only some of them without -Wmissing-field-initializers (GCC 12).
  std::optional<std::string> publisher_id{};
  std::optional<std::string> event_type{};
  std::map<std::string, std::string> context{};
  std::map<std::string, std::string> metadata{};
  std::map<std::string, std::string> payload{};

  /// True if `n` passes. Compiles the expressions at every call (endpoints
  /// compile theirs once); throws std::invalid_argument, naming the field,
  /// for an invalid one.
  [[nodiscard]] bool matches(const notification& n) const;
  /// True if no field is filtered.
  [[nodiscard]] bool empty() const noexcept;
};

/// A notification handler, type-erased: exactly one of `call` / `co_call`
/// is set, by `kind` (fiber: a plain function; coroutine: an awaitable).
template <class Arg>
struct notification_handler_form {
  method_kind kind = method_kind::fiber;
  std::function<notification_result(Arg)> call;
  std::function<boost::asio::awaitable<notification_result>(Arg)> co_call;
};
/// A handler of one notification.
using notification_handler = notification_handler_form<const notification&>;
/// A handler of a batch: the notifications of one priority, in arrival order.
using notification_batch_handler = notification_handler_form<std::vector<notification>&>;

namespace detail {

// The coroutine owns the function through the shared pointer: a lambda's
// captures stay alive while its frame runs, whatever happens to the form.
template <class F, class Arg>
boost::asio::awaitable<notification_result> run_awaitable(std::shared_ptr<F> f, Arg a) {
  if constexpr (std::is_void_v<typename is_awaitable<std::invoke_result_t<F&, Arg>>::value_type>) {
    co_await (*f)(a);
    co_return notification_result::handled;
  } else {
    co_return co_await (*f)(a);
  }
}

/// Wraps `f(Arg)` returning notification_result, void, or an awaitable of
/// either into a handler form. `f` need not be copyable.
template <class Arg, class F>
notification_handler_form<Arg> make_notification_handler(F f) {
  static_assert(std::is_invocable_v<F&, Arg>,
                "a notification handler takes `const notification&` (on) or "
                "`std::vector<notification>&` (on_batch)");
  using result_t = std::invoke_result_t<F&, Arg>;
  auto shared = std::make_shared<F>(std::move(f));
  notification_handler_form<Arg> form;
  if constexpr (is_awaitable<result_t>::value) {
    using value_t = typename is_awaitable<result_t>::value_type;
    static_assert(std::is_void_v<value_t> || std::is_same_v<value_t, notification_result>,
                  "a coroutine notification handler returns awaitable<notification_result> or "
                  "awaitable<void>");
    form.kind = method_kind::coroutine;
    form.co_call = [shared](Arg a) { return run_awaitable<F, Arg>(shared, a); };
  } else {
    static_assert(std::is_void_v<result_t> || std::is_same_v<result_t, notification_result>,
                  "a notification handler returns notification_result, void, or an awaitable of "
                  "either");
    form.kind = method_kind::fiber;
    form.call = [shared](Arg a) {
      if constexpr (std::is_void_v<result_t>) {
        (*shared)(a);
        return notification_result::handled;
      } else {
        return (*shared)(a);
      }
    };
  }
  return form;
}

}  // namespace detail

/// Handlers by priority (an oslo.messaging notification endpoint: an object
/// with info(), error(), ... methods and a filter_rule). Build it before
/// listening; it is then read-only and may be shared by several listeners.
class notification_endpoint {
 public:
  /// `name` identifies the endpoint in logs. Throws std::invalid_argument,
  /// naming the field, when an expression of `filter` is invalid.
  explicit notification_endpoint(std::string name, notification_filter filter = {});
  ~notification_endpoint();
  notification_endpoint(notification_endpoint&&) noexcept;
  notification_endpoint& operator=(notification_endpoint&&) noexcept;

  /// Registers the handler of priority `p`: `f(const notification&)`
  /// returning notification_result, void (handled), or
  /// asio::awaitable<notification_result> / asio::awaitable<void>; a throw
  /// means requeue. Throws std::invalid_argument if `p` has one already.
  template <class F>
  notification_endpoint& on(priority p, F f) {
    set(p, detail::make_notification_handler<const notification&>(std::move(f)));
    return *this;
  }

  /// Registers the batch handler of priority `p`:
  /// `f(std::vector<notification>&)` with the same results, for listeners
  /// with a batch_size above 1. Throws std::invalid_argument if `p` has one
  /// already.
  template <class F>
  notification_endpoint& on_batch(priority p, F f) {
    set_batch(p, detail::make_notification_handler<std::vector<notification>&>(std::move(f)));
    return *this;
  }

  const std::string& name() const noexcept { return name_; }
  const notification_filter& filter() const noexcept { return filter_; }
  /// True if the filter lets `n` through (expressions compiled once).
  [[nodiscard]] bool accepts(const notification& n) const;
  /// The handler of `p`, or null.
  const notification_handler* handler(priority p) const noexcept;
  /// The batch handler of `p`, or null.
  const notification_batch_handler* batch_handler(priority p) const noexcept;
  /// True if `p` has a handler of either form.
  [[nodiscard]] bool handles(priority p) const noexcept;

 private:
  struct compiled_filter;
  static constexpr std::size_t priority_count = static_cast<std::size_t>(priority::sample) + 1;

  void set(priority p, notification_handler h);
  void set_batch(priority p, notification_batch_handler h);

  std::string name_;
  notification_filter filter_;
  std::unique_ptr<const compiled_filter> compiled_;
  std::array<std::optional<notification_handler>, priority_count> handlers_;
  std::array<std::optional<notification_batch_handler>, priority_count> batch_handlers_;
};

// ----------------------------------------------------------------- listener

/// Settings of notification_listener.
struct notification_listener_options {
  /// Listeners of one pool share the messages (each message goes to one of
  /// them); every pool, and the listeners without one, get every message.
  std::optional<std::string> pool{};
  /// More than 1: messages are collected into batches of up to this many
  /// and given to batch handlers. At most max_in_flight.
  std::size_t batch_size = 1;
  /// Delivers a partial batch this long after its first message arrived;
  /// zero waits for a full batch.
  std::chrono::steady_clock::duration batch_timeout{};
  /// False: a requeue result (or a throw) is logged and the message
  /// acknowledged anyway (oslo.messaging's allow_requeue).
  bool allow_requeue = true;
  /// Messages taken from the transport and not yet answered (including a
  /// batch being collected); past it the listener takes no message until
  /// one is answered (backpressure).
  std::size_t max_in_flight = 64;
};

/// Receives notifications and runs the endpoints' handlers on an executor
/// (oslo.messaging's NotificationServer / BatchNotificationServer with a
/// native asyncio-style executor); acks after handling, requeues when a
/// handler asks for it or throws.
///
/// Dispatch, as oslo.messaging's NotificationDispatcher: the endpoints that
/// handle the message's priority and whose filter accepts it are called in
/// order; a requeue result or an exception (logged) stops there and
/// requeues the message, otherwise it is acknowledged. A message whose
/// priority no endpoint handles is acknowledged. In batches, messages are
/// grouped by priority and each endpoint gets the group members its filter
/// accepts; a requeue requeues the whole group. An endpoint with only a
/// batch handler gets single messages as batches of one, and one with only
/// a single handler gets a batch message by message.
///
/// Plain (fiber-form) handlers run inline on the executor, so they suit
/// handlers that do not block; coroutine handlers run on the executor.
///
/// Shutdown: async_stop() stops taking messages (those not taken stay with
/// the transport), hands a partly collected batch to its handlers, and
/// completes once every message taken has been answered. Destroying the
/// listener without stopping it stops taking messages; handlers still
/// running finish on their own.
class notification_listener {
 public:
  /// Throws std::invalid_argument for no endpoints, a null endpoint, a
  /// batch_size or max_in_flight of 0, or a batch_size above max_in_flight.
  notification_listener(std::shared_ptr<transport> t, std::vector<target> targets,
                        std::vector<std::shared_ptr<const notification_endpoint>> endpoints,
                        boost::asio::any_io_executor ex, notification_listener_options options = {});
  ~notification_listener();
  notification_listener(const notification_listener&) = delete;
  notification_listener& operator=(const notification_listener&) = delete;

  /// Starts consuming; returns at once. Throws invalid_target for targets
  /// the transport refuses, std::logic_error when already started.
  void start();

  /// Stops taking messages and completes with `()` once every message
  /// taken has been handled and answered. From then on the transport no
  /// longer uses the listener's executor: its io_context may be destroyed
  /// (after the listener).
  template <class CompletionToken>
  auto async_stop(CompletionToken&& token) {
    return boost::asio::async_initiate<CompletionToken, void()>(
        [this](auto handler) { stop_impl(detail::deliver(std::move(handler))); }, token);
  }

  /// Messages taken and not yet answered now.
  [[nodiscard]] std::size_t in_flight() const noexcept;
  /// Messages acknowledged since start (including requeue results
  /// acknowledged because allow_requeue is false).
  [[nodiscard]] std::size_t handled() const noexcept;
  /// Messages given back to the transport since start.
  [[nodiscard]] std::size_t requeued() const noexcept;

 private:
  struct state;
  void stop_impl(boost::asio::any_completion_handler<void()> done);
  std::shared_ptr<state> state_;
};

}  // namespace coport::messaging

#endif
