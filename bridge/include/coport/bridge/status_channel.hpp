#ifndef COPORT_BRIDGE_STATUS_CHANNEL_HPP
#define COPORT_BRIDGE_STATUS_CHANNEL_HPP

#include <coport/bridge/blocking.hpp>
#include <coport/bridge/detail/config.hpp>

#if !COPORT_BRIDGE_FIBERS
// Fiber-free build: the calls of this header fail to compile, naming themselves.
#include <coport/bridge/detail/removed.hpp>
#else

// Boost.Fiber's buffered_channel interface over a bridge::channel. A header
// of its own because it names Boost.Fiber types: channel.hpp, whose
// coroutine half (async_push, async_pop) builds without Boost.Fiber, must
// not include them.

#include <coport/bridge/channel.hpp>

#include <boost/asio/error.hpp>
#include <boost/fiber/channel_op_status.hpp>
#include <boost/fiber/exceptions.hpp>
#include <boost/system/system_error.hpp>

#include <chrono>
#include <optional>
#include <system_error>
#include <type_traits>
#include <utility>

namespace coport::bridge {

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
  COPORT_FIBER_BLOCKING
  channel_op_status push(const T& value) {
    T v(value);
    return push(std::move(v));
  }
  COPORT_FIBER_BLOCKING
  channel_op_status push(T&& value) {
    return status(ch_->push_until(value, std::nullopt, "status_channel::push"), "status_channel::push");
  }
  /// As push, giving up after `timeout`: success, closed or timeout.
  template <class Rep, class Period>
  COPORT_FIBER_BLOCKING
  channel_op_status push_wait_for(const T& value, std::chrono::duration<Rep, Period> timeout) {
    T v(value);
    return push_wait_until(std::move(v), std::chrono::steady_clock::now() + timeout);
  }
  template <class Rep, class Period>
  COPORT_FIBER_BLOCKING
  channel_op_status push_wait_for(T&& value, std::chrono::duration<Rep, Period> timeout) {
    return push_wait_until(std::move(value), std::chrono::steady_clock::now() + timeout);
  }
  /// As push, giving up at `deadline`: success, closed or timeout.
  template <class Clock, class Duration>
  COPORT_FIBER_BLOCKING
  channel_op_status push_wait_until(const T& value, std::chrono::time_point<Clock, Duration> deadline) {
    T v(value);
    return push_wait_until(std::move(v), deadline);
  }
  template <class Clock, class Duration>
  COPORT_FIBER_BLOCKING
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
  COPORT_FIBER_BLOCKING
  channel_op_status pop(T& out) { return pop_until(out, std::nullopt, "status_channel::pop"); }
  /// As pop, returning the value; throws `boost::fibers::fiber_error`
  /// (`std::errc::operation_not_permitted`) when the channel is closed.
  COPORT_FIBER_BLOCKING
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
  COPORT_FIBER_BLOCKING
  channel_op_status pop_wait_for(T& out, std::chrono::duration<Rep, Period> timeout) {
    return pop_until(out, steady(std::chrono::steady_clock::now() + timeout),
                     "status_channel::pop_wait_for");
  }
  /// As pop, giving up at `deadline`: success, closed or timeout.
  template <class Clock, class Duration>
  COPORT_FIBER_BLOCKING
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

#endif  // COPORT_BRIDGE_FIBERS

#endif
