#ifndef COPORT_BRIDGE_CHANNEL_HPP
#define COPORT_BRIDGE_CHANNEL_HPP

#include <coport/bridge/detail/waiters.hpp>
#include <coport/bridge/error.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/fiber/channel_op_status.hpp>
#include <boost/fiber/exceptions.hpp>

#include <chrono>
#include <cstddef>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>

namespace coport::bridge {

/// A bounded FIFO channel shared by both worlds: fibers push()/pop() by
/// blocking, coroutines `co_await ch.async_push(v, ...)` /
/// `co_await ch.async_pop(...)`; any mix of producers and consumers, on any
/// threads. With capacity 0 a push waits for a consumer (rendezvous).
///
/// close(): pending and later pushes fail with `errc::channel_closed`; pops
/// drain what is buffered, then fail the same way. A cancelled or stopped
/// push drops its value; nothing that was accepted is lost. T must be
/// movable, and default-constructible for async_pop.
///
/// Capacity: a channel of capacity N buffers N values, for any N (0 is a
/// rendezvous, like `boost::fibers::unbuffered_channel`).
/// `boost::fibers::buffered_channel<T>(N)` instead requires N to be a power
/// of two, at least 2, and buffers N - 1 values: the channel that buffers as
/// much is `bridge::channel<T>(ex, N - 1)`.
///
/// Fiber code written against buffered_channel's status results
/// (`channel_op_status`, no exception on close) uses the channel through a
/// `status_channel<T>` (below) instead of the throwing push()/pop().
template <class T>
class status_channel;

template <class T>
class channel {
 public:
  using executor_type = boost::asio::any_io_executor;

  channel(executor_type ex, std::size_t capacity) : ex_(std::move(ex)), capacity_(capacity) {}
  ~channel() { close(); }
  channel(const channel&) = delete;
  channel& operator=(const channel&) = delete;

  /// Blocks the calling fiber until `value` is accepted.
  void push(T value) {
    rethrow(push_until(value, std::nullopt, "channel::push"), "channel::push");
  }

  /// Blocks the calling fiber until a value is available.
  T pop() {
    std::optional<T> out;
    rethrow(pop_until(out, std::nullopt, "channel::pop"), "channel::pop");
    return std::move(*out);
  }

  /// Accepts `value` if that needs no wait; false (value untouched) otherwise.
  [[nodiscard]] bool try_push(T& value) {
    std::unique_lock lk(mutex_);
    if (closed_) return false;
    return try_push_locked(value, lk);
  }

  /// A value if one is available without waiting.
  [[nodiscard]] std::optional<T> try_pop() {
    std::unique_lock lk(mutex_);
    return try_pop_locked(lk);
  }

  /// Pushes without blocking a fiber; completes with `void(error_code)`.
  template <class CompletionToken>
  auto async_push(T value, CompletionToken&& token) {
    return boost::asio::async_initiate<CompletionToken, void(boost::system::error_code)>(
        initiate_push{this}, token, std::move(value));
  }

  /// Pops without blocking a fiber; completes with `void(error_code, T)`.
  template <class CompletionToken>
  auto async_pop(CompletionToken&& token) {
    return boost::asio::async_initiate<CompletionToken, void(boost::system::error_code, T)>(
        initiate_pop{this}, token);
  }

  /// Closes the channel (see the class comment); idempotent.
  void close() {
    detail::waiter_list senders, receivers;
    {
      std::lock_guard lk(mutex_);
      closed_ = true;
      while (detail::waiter* w = senders_.pop_front()) senders.push_back(w);
      while (detail::waiter* w = receivers_.pop_front()) receivers.push_back(w);
    }
    const auto ec = make_error_code(errc::channel_closed);
    while (detail::waiter* w = senders.pop_front()) w->complete(ec);
    while (detail::waiter* w = receivers.pop_front()) w->complete(ec);
  }

  [[nodiscard]] bool closed() const {
    std::lock_guard lk(mutex_);
    return closed_;
  }
  /// Values buffered now.
  [[nodiscard]] std::size_t size() const {
    std::lock_guard lk(mutex_);
    return buffer_.size();
  }
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] executor_type get_executor() const noexcept { return ex_; }

 private:
  friend class status_channel<T>;

  struct send_slot : detail::waiter {
    std::optional<T> value;
  };
  struct recv_slot : detail::waiter {
    std::optional<T> value;
    T take_value() {
      if (!value) return T{};
      T v(std::move(*value));
      value.reset();
      return v;
    }
  };

  struct initiate_push {
    channel* self;
    template <class Handler>
    void operator()(Handler&& h, T value) const {
      using waiter_t = detail::coro_waiter<send_slot, std::decay_t<Handler>, executor_type>;
      auto* w = new waiter_t(std::forward<Handler>(h), self->ex_);
      boost::system::error_code ec;
      {
        std::unique_lock lk(self->mutex_);
        if (self->closed_) {
          ec = make_error_code(errc::channel_closed);
        } else if (!self->try_push_locked(value, lk)) {
          w->value.emplace(std::move(value));
          self->senders_.push_back(w);
          w->cancel_from(self->mutex_, self->senders_);
          return;
        }
      }
      w->complete(ec);
    }
  };

  struct initiate_pop {
    channel* self;
    template <class Handler>
    void operator()(Handler&& h) const {
      using waiter_t = detail::coro_waiter<recv_slot, std::decay_t<Handler>, executor_type, T>;
      auto* w = new waiter_t(std::forward<Handler>(h), self->ex_);
      boost::system::error_code ec;
      {
        std::unique_lock lk(self->mutex_);
        if (auto v = self->try_pop_locked(lk)) {
          w->value.emplace(std::move(*v));
        } else if (self->closed_) {
          ec = make_error_code(errc::channel_closed);
        } else {
          self->receivers_.push_back(w);
          w->cancel_from(self->mutex_, self->receivers_);
          return;
        }
      }
      w->complete(ec);
    }
  };

  // Hands `value` to a waiting receiver or the buffer. Called with the lock
  // held; releases it when a receiver must be completed.
  bool try_push_locked(T& value, std::unique_lock<std::mutex>& lk) {
    if (auto* r = static_cast<recv_slot*>(receivers_.pop_front())) {
      r->value.emplace(std::move(value));
      lk.unlock();
      r->complete({});
      return true;
    }
    if (buffer_.size() < capacity_) {
      buffer_.push_back(std::move(value));
      return true;
    }
    return false;
  }

  // Takes the next value, refilling the buffer from a waiting sender.
  // Releases the lock when a sender must be completed.
  std::optional<T> try_pop_locked(std::unique_lock<std::mutex>& lk) {
    std::optional<T> out;
    if (!buffer_.empty()) {
      out.emplace(std::move(buffer_.front()));
      buffer_.pop_front();
      if (auto* s = static_cast<send_slot*>(senders_.pop_front())) {
        buffer_.push_back(std::move(*s->value));
        lk.unlock();
        s->complete({});
      }
    } else if (auto* s = static_cast<send_slot*>(senders_.pop_front())) {
      out.emplace(std::move(*s->value));
      lk.unlock();
      s->complete({});
    }
    return out;
  }

  // The fiber side of push: waits until `value` is accepted, the channel is
  // closed, the fiber is asked to stop or `deadline` passes, and says which
  // (success, channel_closed, operation_aborted, timed_out). `value` is
  // moved from only once it is accepted or queued.
  boost::system::error_code push_until(T& value,
                                       std::optional<std::chrono::steady_clock::time_point> deadline,
                                       const char* what) {
    detail::check_can_block(what);
    interrupt_if_stopped(what);
    detail::fiber_waiter<send_slot> w;
    {
      std::unique_lock lk(mutex_);
      if (closed_) return make_error_code(errc::channel_closed);
      if (try_push_locked(value, lk)) return {};
      w.value.emplace(std::move(value));
      senders_.push_back(&w);
    }
    return w.wait(mutex_, senders_, deadline);
  }

  // The fiber side of pop: as push_until; on success `out` holds the value.
  boost::system::error_code pop_until(std::optional<T>& out,
                                      std::optional<std::chrono::steady_clock::time_point> deadline,
                                      const char* what) {
    detail::check_can_block(what);
    interrupt_if_stopped(what);
    detail::fiber_waiter<recv_slot> w;
    {
      std::unique_lock lk(mutex_);
      if (auto v = try_pop_locked(lk)) {
        out.emplace(std::move(*v));
        return {};
      }
      if (closed_) return make_error_code(errc::channel_closed);
      receivers_.push_back(&w);
    }
    const auto ec = w.wait(mutex_, receivers_, deadline);
    if (!ec) out.emplace(w.take_value());
    return ec;
  }

  static void rethrow(boost::system::error_code ec, const char* what) {
    if (!ec) return;
    if (ec == make_error_code(errc::channel_closed)) {
      throw error(ec, std::string(what) + ": channel closed");
    }
    throw boost::system::system_error(ec, what);
  }
  static void interrupt_if_stopped(const char* what) {
    if (detail::current_stop_token().stop_requested()) {
      throw boost::system::system_error(boost::asio::error::operation_aborted, what);
    }
  }

  executor_type ex_;
  const std::size_t capacity_;
  mutable std::mutex mutex_;
  bool closed_ = false;
  std::deque<T> buffer_;
  detail::waiter_list senders_;
  detail::waiter_list receivers_;
};

/// Boost.Fiber's channel status, the result of status_channel's operations.
using channel_op_status = boost::fibers::channel_op_status;

/// `boost::fibers::buffered_channel<T>`'s interface over a bridge::channel,
/// for fiber code that tests status results: `push`, `pop(T&)`, `try_push`,
/// `try_pop(T&)`, the `_wait_for` / `_wait_until` forms, `value_pop`,
/// `close`, `is_closed`, with buffered_channel's outcomes: a closed channel
/// is `channel_op_status::closed` (value_pop throws
/// `boost::fibers::fiber_error`, as buffered_channel's does), a full or
/// empty one `full` / `empty`, a passed deadline `timeout`. Coroutines keep
/// using the channel itself (async_push / async_pop).
///
/// A view: it refers to the channel, which must outlive it, and converts
/// implicitly from `channel<T>&`, so a function that took a
/// `buffered_channel<T>&` takes a `status_channel<T>` and is called with the
/// channel. See channel's comment for the capacity to choose.
///
/// A push that waited and then timed out or saw the channel close has given
/// up its value (a moved-from argument), as a cancelled push does.
///
/// What buffered_channel has no status for is still thrown, as by the
/// channel's own push()/pop(): `system_error(operation_aborted)` when the
/// fiber is asked to stop, `error(errc::blocking_on_loop)` on the loop fiber.
template <class T>
class status_channel {
 public:
  using value_type = T;

  /// Views `ch`.
  status_channel(channel<T>& ch) noexcept : ch_(&ch) {}  // NOLINT(google-explicit-constructor)

  /// Blocks the calling fiber until `value` is accepted: success or closed.
  channel_op_status push(const T& value) {
    T v(value);
    return push(std::move(v));
  }
  channel_op_status push(T&& value) {
    return status(ch_->push_until(value, std::nullopt, "status_channel::push"), "status_channel::push");
  }
  /// As push, giving up after `timeout`: success, closed or timeout.
  template <class Rep, class Period>
  channel_op_status push_wait_for(const T& value, std::chrono::duration<Rep, Period> timeout) {
    T v(value);
    return push_wait_until(std::move(v), std::chrono::steady_clock::now() + timeout);
  }
  template <class Rep, class Period>
  channel_op_status push_wait_for(T&& value, std::chrono::duration<Rep, Period> timeout) {
    return push_wait_until(std::move(value), std::chrono::steady_clock::now() + timeout);
  }
  /// As push, giving up at `deadline`: success, closed or timeout.
  template <class Clock, class Duration>
  channel_op_status push_wait_until(const T& value, std::chrono::time_point<Clock, Duration> deadline) {
    T v(value);
    return push_wait_until(std::move(v), deadline);
  }
  template <class Clock, class Duration>
  channel_op_status push_wait_until(T&& value, std::chrono::time_point<Clock, Duration> deadline) {
    return status(ch_->push_until(value, steady(deadline), "status_channel::push_wait_until"),
                  "status_channel::push_wait_until");
  }
  /// Accepts `value` if that needs no wait: success, full or closed.
  channel_op_status try_push(const T& value) {
    T v(value);
    return try_push(std::move(v));
  }
  channel_op_status try_push(T&& value) {
    std::unique_lock lk(ch_->mutex_);
    if (ch_->closed_) return channel_op_status::closed;
    return ch_->try_push_locked(value, lk) ? channel_op_status::success : channel_op_status::full;
  }

  /// Blocks the calling fiber until a value is available: success (the
  /// value is in `out`) or closed (the channel is closed and drained).
  channel_op_status pop(T& out) { return pop_until(out, std::nullopt, "status_channel::pop"); }
  /// As pop, returning the value; throws `boost::fibers::fiber_error`
  /// (`std::errc::operation_not_permitted`) when the channel is closed.
  T value_pop() {
    std::optional<T> v;
    if (status(ch_->pop_until(v, std::nullopt, "status_channel::value_pop"),
               "status_channel::value_pop") == channel_op_status::closed) {
      throw boost::fibers::fiber_error(std::make_error_code(std::errc::operation_not_permitted),
                                       "status_channel::value_pop: channel closed");
    }
    return std::move(*v);
  }
  /// As pop, giving up after `timeout`: success, closed or timeout.
  template <class Rep, class Period>
  channel_op_status pop_wait_for(T& out, std::chrono::duration<Rep, Period> timeout) {
    return pop_until(out, steady(std::chrono::steady_clock::now() + timeout),
                     "status_channel::pop_wait_for");
  }
  /// As pop, giving up at `deadline`: success, closed or timeout.
  template <class Clock, class Duration>
  channel_op_status pop_wait_until(T& out, std::chrono::time_point<Clock, Duration> deadline) {
    return pop_until(out, steady(deadline), "status_channel::pop_wait_until");
  }
  /// Takes a value if one is there: success, empty or closed (closed and
  /// drained).
  channel_op_status try_pop(T& out) {
    std::unique_lock lk(ch_->mutex_);
    if (auto v = ch_->try_pop_locked(lk)) {
      out = std::move(*v);
      return channel_op_status::success;
    }
    // try_pop_locked released the lock only when it took a value.
    return ch_->closed_ ? channel_op_status::closed : channel_op_status::empty;
  }

  /// Closes the channel (see channel::close).
  void close() { ch_->close(); }
  [[nodiscard]] bool is_closed() const { return ch_->closed(); }
  /// The channel viewed, for its asynchronous operations.
  [[nodiscard]] channel<T>& underlying() const noexcept { return *ch_; }

 private:
  channel_op_status pop_until(T& out, std::optional<std::chrono::steady_clock::time_point> deadline,
                              const char* what) {
    std::optional<T> v;
    const auto st = status(ch_->pop_until(v, deadline, what), what);
    if (st == channel_op_status::success) out = std::move(*v);
    return st;
  }

  // The outcomes buffered_channel reports become statuses; a stop request
  // stays an exception, as it is for every fiber wait of the bridge.
  static channel_op_status status(boost::system::error_code ec, const char* what) {
    if (!ec) return channel_op_status::success;
    if (ec == make_error_code(errc::channel_closed)) return channel_op_status::closed;
    if (ec == boost::asio::error::timed_out) return channel_op_status::timeout;
    throw boost::system::system_error(ec, what);
  }

  template <class Clock, class Duration>
  static std::chrono::steady_clock::time_point steady(std::chrono::time_point<Clock, Duration> t) {
    if constexpr (std::is_same_v<Clock, std::chrono::steady_clock>) {
      return std::chrono::time_point_cast<std::chrono::steady_clock::duration>(t);
    } else {
      return std::chrono::steady_clock::now() +
             std::chrono::ceil<std::chrono::steady_clock::duration>(t - Clock::now());
    }
  }

  channel<T>* ch_;
};

}  // namespace coport::bridge

#endif
