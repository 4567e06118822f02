#ifndef COPORT_BRIDGE_CHANNEL_HPP
#define COPORT_BRIDGE_CHANNEL_HPP

#include <coport/bridge/blocking.hpp>
#include <coport/bridge/detail/waiters.hpp>
#include <coport/bridge/error.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>

#include <chrono>
#include <cstddef>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
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
/// `status_channel<T>` (<coport/bridge/status_channel.hpp>, fiber side
/// only) instead of the throwing push()/pop(). Without fibers
/// (COPORT_WITH_FIBERS=OFF) the channel has its coroutine side and its
/// non-blocking calls only.
#if COPORT_BRIDGE_FIBERS
template <class T>
class status_channel;
#endif

template <class T>
class channel {
 public:
  using executor_type = boost::asio::any_io_executor;

  channel(executor_type ex, std::size_t capacity) : ex_(std::move(ex)), capacity_(capacity) {}
  ~channel() { close(); }
  channel(const channel&) = delete;
  channel& operator=(const channel&) = delete;

#if COPORT_BRIDGE_FIBERS
  /// Blocks the calling fiber until `value` is accepted.
  COPORT_FIBER_BLOCKING_INSTEAD("co_await ch.async_push(v, token)") void push(T value) {
    rethrow(push_until(value, std::nullopt, "channel::push"), "channel::push");
  }

  /// Blocks the calling fiber until a value is available.
  COPORT_FIBER_BLOCKING_INSTEAD("co_await ch.async_pop(token)") T pop() {
    std::optional<T> out;
    rethrow(pop_until(out, std::nullopt, "channel::pop"), "channel::pop");
    return std::move(*out);
  }
#else
  template <class... Never>
  void push(Never&&...) {
    static_assert(detail::fiber_side_removed<Never...>,
                  COPORT_BRIDGE_REMOVED("channel::push()", "co_await ch.async_push(v, token)"));
  }
  template <class Never = void>
  T pop() {
    static_assert(detail::fiber_side_removed<Never>,
                  COPORT_BRIDGE_REMOVED("channel::pop()", "co_await ch.async_pop(token)"));
    return T{};
  }
#endif

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
#if COPORT_BRIDGE_FIBERS
  friend class status_channel<T>;
#endif

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

#if COPORT_BRIDGE_FIBERS
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
#endif

  executor_type ex_;
  const std::size_t capacity_;
  mutable std::mutex mutex_;
  bool closed_ = false;
  std::deque<T> buffer_;
  detail::waiter_list senders_;
  detail::waiter_list receivers_;
};

}  // namespace coport::bridge

#endif
