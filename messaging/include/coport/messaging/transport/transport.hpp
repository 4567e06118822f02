#ifndef COPORT_MESSAGING_TRANSPORT_HPP
#define COPORT_MESSAGING_TRANSPORT_HPP

// transport/: moving wire/'s messages between processes. The transport a
// URL opens, the driver interface behind it (listeners, incoming calls and
// notifications, replies, deadlines, statistics), the memory:// broker with
// its fault injection, and the rabbit:// URL and settings (the RabbitMQ
// driver itself is coport::rabbit, rabbit/). It knows messages, not
// methods: rpc/ and notify/ are built on it.
//
// Transports carry messages between clients and servers. A transport is
// chosen by URL ("memory://", "rabbit://user:pass@host:5672/"), and is
// implemented by a driver. Every asynchronous function takes an Asio
// completion token; handlers complete on their associated executor.

#include <coport/messaging/wire/message.hpp>
#include <coport/messaging/wire/target.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_allocator.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/associator.hpp>
#include <boost/asio/system_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/system/error_code.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <thread>
#include <vector>

namespace spdlog {
class logger;
}

namespace coport::messaging {

namespace detail {

/// The handler deliver_on_executor posts. It runs the wrapped handler only
/// once the thread that posted it has returned from the post. Otherwise the
/// handler could finish on its io_context's thread, which returns from
/// run() and destroys the io_context, while the posting thread (a driver's)
/// is still inside the post, waking that io_context (TSan saw it as the
/// example client exited after its call). Once a result has been delivered,
/// the transport no longer touches the receiver's executor. The wait is a
/// few instructions of the poster's, unless it is descheduled right there.
template <class Handler>
class after_post {
 public:
  after_post(Handler h, std::shared_ptr<const std::atomic<bool>> posted)
      : handler_(std::move(h)), posted_(std::move(posted)) {}

  template <class... Args>
  void operator()(Args&&... args) {
    while (!posted_->load(std::memory_order_acquire)) std::this_thread::yield();
    std::move(handler_)(std::forward<Args>(args)...);
  }

  const Handler& handler() const noexcept { return handler_; }

 private:
  Handler handler_;
  std::shared_ptr<const std::atomic<bool>> posted_;
};

/// Wraps a completion handler so that invoking the wrapper, from any thread,
/// delivers the result on the handler's own executor and never inside the
/// invoker's stack (no re-entrancy into a driver). Drivers receive such
/// wrappers, type-erased, and simply call them. Handlers without an executor
/// (futures, plain callbacks) run at once on the invoking thread.
template <class Handler>
class deliver_on_executor {
 public:
  explicit deliver_on_executor(Handler h) : handler_(std::move(h)) {}

  template <class... Args>
  void operator()(Args&&... args) {
    using executor = boost::asio::associated_executor_t<Handler>;
    if constexpr (std::is_same_v<executor, boost::asio::system_executor>) {
      std::move(handler_)(std::forward<Args>(args)...);
    } else {
      auto posted = std::make_shared<std::atomic<bool>>(false);
      {
        // The executor's copy goes before the handler may run.
        auto ex = boost::asio::get_associated_executor(handler_);
        boost::asio::post(ex, boost::asio::append(after_post<Handler>(std::move(handler_), posted),
                                                  std::forward<Args>(args)...));
      }
      posted->store(true, std::memory_order_release);
    }
  }

  using allocator_type = boost::asio::associated_allocator_t<Handler>;
  allocator_type get_allocator() const noexcept { return boost::asio::get_associated_allocator(handler_); }

 private:
  Handler handler_;
};

template <class Handler>
deliver_on_executor<std::decay_t<Handler>> deliver(Handler&& h) {
  return deliver_on_executor<std::decay_t<Handler>>(std::forward<Handler>(h));
}

}  // namespace detail

}  // namespace coport::messaging

// after_post keeps the wrapped handler's executor, allocator and the rest.
template <template <class, class> class Associator, class Handler, class DefaultCandidate>
struct boost::asio::associator<Associator, coport::messaging::detail::after_post<Handler>,
                               DefaultCandidate> : Associator<Handler, DefaultCandidate> {
  static typename Associator<Handler, DefaultCandidate>::type get(
      const coport::messaging::detail::after_post<Handler>& h) noexcept {
    return Associator<Handler, DefaultCandidate>::get(h.handler());
  }
  static auto get(const coport::messaging::detail::after_post<Handler>& h,
                  const DefaultCandidate& c) noexcept
      -> decltype(Associator<Handler, DefaultCandidate>::get(h.handler(), c)) {
    return Associator<Handler, DefaultCandidate>::get(h.handler(), c);
  }
};

namespace coport::messaging {

/// A received RPC request. The request is already acknowledged to the
/// transport (at most once, as oslo.messaging does for RPC).
class incoming_call {
 public:
  virtual ~incoming_call() = default;
  /// The request (its arguments may be consumed by the method).
  rpc_request& request() noexcept { return request_; }
  /// Sends the reply of a call; ignored for a cast. Non-blocking and
  /// thread-safe; a reply that cannot be sent is reported by the transport
  /// (logged with its message id), never thrown.
  virtual void reply(rpc_reply r) = 0;

 protected:
  explicit incoming_call(rpc_request r) : request_(std::move(r)) {}
  rpc_request request_;
};

/// A received notification; it stays unacknowledged until ack() or
/// requeue() (destroying it unanswered requeues it).
class incoming_notification {
 public:
  virtual ~incoming_notification() = default;
  notification& message() noexcept { return message_; }
  /// The message was handled: the transport forgets it.
  virtual void ack() = 0;
  /// The message was not handled: the transport delivers it again (to this
  /// or another listener of the pool).
  virtual void requeue() = 0;

 protected:
  explicit incoming_notification(notification n) : message_(std::move(n)) {}
  notification message_;
};

/// Handlers drivers receive: invoke them directly, from any thread, with no
/// lock held; they deliver on their owner's executor.
using call_receiver = boost::asio::any_completion_handler<void(boost::system::error_code,
                                                               std::unique_ptr<incoming_call>)>;
using notification_receiver = boost::asio::any_completion_handler<void(
    boost::system::error_code, std::unique_ptr<incoming_notification>)>;
using send_handler = boost::asio::any_completion_handler<void(boost::system::error_code)>;

/// Driver side of a listener.
class listener_impl {
 public:
  virtual ~listener_impl() = default;
  /// Completes with the next message, or operation_aborted after stop().
  /// Several receives may wait at once; messages go to them in order.
  virtual void async_receive_call(call_receiver h);
  virtual void async_receive_notification(notification_receiver h);
  /// Stops taking messages: the pending receive ends with operation_aborted
  /// and messages not yet received stay with the transport for others.
  /// Returns once no other thread is still handing a message to a receive
  /// of this listener: from then on the driver no longer touches the
  /// receivers' executors (their io_context may be destroyed).
  virtual void stop() = 0;

  /// True when the driver's client library blocks the calling thread: an
  /// executor without fibers then polls it with poll_call() from a thread of
  /// its own rather than on its event loop.
  virtual bool blocking() const noexcept { return false; }
  /// Blocks the calling thread up to `timeout` for the next request; null on
  /// timeout or once stopped. The default waits for async_receive_call; a
  /// message that arrives after a timeout is kept for the next poll.
  virtual std::unique_ptr<incoming_call> poll_call(std::chrono::milliseconds timeout);

 private:
  struct poll_state;
  std::shared_ptr<poll_state> poll_;
};

/// A listener: what a server consumes from. The transport keeps messages
/// that no one receives, so a server takes a message only when it has
/// room for it (the executors' backpressure).
class listener {
 public:
  explicit listener(std::shared_ptr<listener_impl> impl) : impl_(std::move(impl)) {}

  /// RPC listeners: completes with `(error_code, std::unique_ptr<incoming_call>)`.
  template <class CompletionToken>
  auto async_receive_call(CompletionToken&& token) {
    return boost::asio::async_initiate<CompletionToken,
                                       void(boost::system::error_code, std::unique_ptr<incoming_call>)>(
        [impl = impl_](auto handler) { impl->async_receive_call(detail::deliver(std::move(handler))); },
        token);
  }
  /// Notification listeners: `(error_code, std::unique_ptr<incoming_notification>)`.
  template <class CompletionToken>
  auto async_receive_notification(CompletionToken&& token) {
    return boost::asio::async_initiate<CompletionToken,
                                       void(boost::system::error_code,
                                            std::unique_ptr<incoming_notification>)>(
        [impl = impl_](auto handler) {
          impl->async_receive_notification(detail::deliver(std::move(handler)));
        },
        token);
  }
  void stop() { impl_->stop(); }
  /// See listener_impl::blocking() and poll_call().
  bool blocking() const noexcept { return impl_->blocking(); }
  std::unique_ptr<incoming_call> poll_call(std::chrono::milliseconds timeout) { return impl_->poll_call(timeout); }

 private:
  std::shared_ptr<listener_impl> impl_;
};

/// A moment's view of a transport's connection and traffic, for monitoring
/// (read on any thread; counters since the transport was created). Each
/// field is read on its own, not as one snapshot: a confirm counted between
/// two reads may show before its publish does.
///
/// memory:// has no connection and no broker flags: `connected` is always
/// true, and connects, reconnects, confirms, nacks and redeliveries stay 0.
struct transport_stats {
  std::string driver;            ///< the URL's scheme: "memory", "rabbit"
  bool connected = false;        ///< a connection to the broker is up, as the driver last saw it
  std::uint64_t connects = 0;    ///< connections made (the first included)
  std::uint64_t reconnects = 0;  ///< connections made again after one was lost
  /// Messages published: calls, casts, replies, notifications, and
  /// (rabbit://) calls a listener took and gave back to their queue as new
  /// messages. A publish that fails before it goes out is not counted.
  std::uint64_t publishes = 0;
  std::uint64_t confirms = 0;  ///< publisher confirms received: messages the broker took (acks)
  std::uint64_t nacks = 0;     ///< publisher confirms that were negative, one per message
  /// Replies the broker could not route (their reply queue is gone): on
  /// rabbit:// each basic.return, on memory:// each reply it dropped.
  std::uint64_t returns = 0;
  std::uint64_t redeliveries = 0;  ///< messages received with the broker's redelivered flag
  /// Messages received: requests, replies and notifications, each delivery
  /// counted (a message delivered again counts again), whatever became of
  /// it (an undecodable one, a call dropped as redelivered).
  std::uint64_t received = 0;
};

/// What a transport driver implements (memory://, rabbit://).
class driver {
 public:
  virtual ~driver() = default;
  /// Publishes a request to `to` (already validated), completing once the
  /// transport has it.
  virtual void async_send(const target& to, rpc_request request, send_handler h) = 0;
  virtual void async_notify(const target& to, notification n, send_handler h) = 0;
  /// Starts consuming the requests of a server: its topic queue, its
  /// topic.server queue and the topic's fanout.
  virtual std::shared_ptr<listener_impl> listen(const target& server) = 0;
  /// Starts consuming notifications: for each target, the queue
  /// "<topic>.<priority>" of every priority; listeners of one pool share
  /// messages, each pool (and the listeners without one) gets every message.
  virtual std::shared_ptr<listener_impl> listen_notifications(const std::vector<target>& targets,
                                                              const std::optional<std::string>& pool) = 0;
  /// The queue replies to this transport's calls go to, consumed from now
  /// on; replies are passed to `sink` (on any thread).
  virtual std::string start_replies(std::function<void(rpc_reply)> sink) = 0;
  /// The URL, with any password masked.
  virtual std::string describe() const = 0;
  /// The driver's connection and traffic now; any thread, never blocks on
  /// the broker. The default, for a driver that counts nothing: the scheme
  /// of describe(), connected, every counter 0.
  virtual transport_stats stats() const;
  /// Stops every thread and connection of the driver.
  virtual void shutdown() = 0;
};

/// Settings of a transport.
struct transport_options {
  /// oslo.messaging's control_exchange: the exchange of targets that name none.
  std::string control_exchange = "openstack";
  /// Where the transport logs; null: the "coport" logger (stderr).
  std::shared_ptr<spdlog::logger> logger;
  decode_limits limits;
};

/// A driver factory for a URL scheme ("rabbit"), registered by the driver's
/// library. memory:// is built in.
using driver_factory =
    std::function<std::unique_ptr<driver>(std::string_view url, const transport_options&)>;
void register_driver(std::string scheme, driver_factory factory);

/// A connection to a messaging system, shared by clients, servers and
/// listeners of a process (thread-safe). Calls wait for their reply on one
/// reply queue per transport.
class transport : public std::enable_shared_from_this<transport> {
 public:
  /// Opens a transport for `url`; throws invalid_url for an unknown scheme
  /// or a malformed URL (with any password masked in the message).
  static std::shared_ptr<transport> create(std::string_view url, transport_options options = {});
  ~transport();
  transport(const transport&) = delete;
  transport& operator=(const transport&) = delete;

  const transport_options& options() const noexcept { return options_; }
  spdlog::logger& log() const noexcept { return *log_; }
  /// The URL with any password masked.
  std::string describe() const { return driver_->describe(); }
  /// The exchange of `t`: its own, or the control exchange.
  const std::string& exchange_of(const target& t) const noexcept {
    return t.exchange.empty() ? options_.control_exchange : t.exchange;
  }

  /// Sends a request without waiting for a reply (cast, fanout cast).
  /// Completes with `(error_code)` once the transport took it.
  template <class CompletionToken>
  auto async_cast(target to, rpc_request request, CompletionToken&& token) {
    return boost::asio::async_initiate<CompletionToken, void(boost::system::error_code)>(
        [self = shared_from_this()](auto handler, target t, rpc_request r) {
          self->driver_->async_send(t, std::move(r), detail::deliver(std::move(handler)));
        },
        token, std::move(to), std::move(request));
  }

  /// Sends a call and waits for its reply up to `timeout`; completes with
  /// `(std::exception_ptr, rpc_reply)`: timeout_error when it expires,
  /// transport_error when sending fails, operation_aborted (a system_error)
  /// when the caller cancels it. Sets the request's msg_id and reply_q.
  template <class CompletionToken>
  auto async_call(target to, rpc_request request, std::chrono::steady_clock::duration timeout,
                  CompletionToken&& token) {
    return boost::asio::async_initiate<CompletionToken, void(std::exception_ptr, rpc_reply)>(
        [self = shared_from_this()](auto handler, target t, rpc_request r,
                                    std::chrono::steady_clock::duration d) {
          if (r.msg_id.empty()) r.msg_id = make_unique_id();
          // Cancelling the caller's operation abandons the call.
          auto slot = boost::asio::get_associated_cancellation_slot(handler);
          if (slot.is_connected()) {
            slot.template emplace<call_canceller>(self->weak_from_this(), r.msg_id);
          }
          self->start_call(std::move(t), std::move(r), d, detail::deliver(std::move(handler)));
        },
        token, std::move(to), std::move(request), timeout);
  }

  /// Publishes a notification; completes with `(error_code)`.
  template <class CompletionToken>
  auto async_notify(target to, notification n, CompletionToken&& token) {
    return boost::asio::async_initiate<CompletionToken, void(boost::system::error_code)>(
        [self = shared_from_this()](auto handler, target t, notification m) {
          self->driver_->async_notify(t, std::move(m), detail::deliver(std::move(handler)));
        },
        token, std::move(to), std::move(n));
  }

  /// A listener for the requests of server `t` (topic and server set).
  listener listen(const target& t);
  /// A listener for notifications on `targets`, optionally in a pool.
  listener listen_notifications(const std::vector<target>& targets,
                                std::optional<std::string> pool = std::nullopt);

  /// Calls waiting for a reply now.
  std::size_t pending_calls() const;
  /// The connection's state and the traffic since the transport was
  /// created (see transport_stats); any thread.
  [[nodiscard]] transport_stats stats() const { return driver_->stats(); }

 private:
  struct pending_call;
  transport(std::unique_ptr<driver> d, transport_options options);

  struct call_canceller {
    std::weak_ptr<transport> owner;
    std::string msg_id;
    void operator()(boost::asio::cancellation_type type) const {
      if (type == boost::asio::cancellation_type::none) return;
      if (auto t = owner.lock()) t->abandon_call(msg_id);
    }
  };

  void start_call(target to, rpc_request request, std::chrono::steady_clock::duration timeout,
                  boost::asio::any_completion_handler<void(std::exception_ptr, rpc_reply)> handler);
  void abandon_call(const std::string& msg_id);
  void arm_deadline_timer();
  void on_deadline();
  void on_reply(rpc_reply reply);
  /// Takes the call `msg_id` out of the pending set, if still there.
  std::optional<pending_call> take_call(const std::string& msg_id);

  transport_options options_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<driver> driver_;
  struct state;
  std::unique_ptr<state> state_;
};

}  // namespace coport::messaging

#endif
