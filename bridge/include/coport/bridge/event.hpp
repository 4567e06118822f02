#ifndef COPORT_BRIDGE_EVENT_HPP
#define COPORT_BRIDGE_EVENT_HPP

#include <coport/bridge/blocking.hpp>
#include <coport/bridge/detail/waiters.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>

#include <chrono>
#include <mutex>

namespace coport::bridge {

/// A manual-reset event shared by both worlds: fibers wait by blocking
/// (`wait()`), coroutines with `co_await ev.async_wait(...)`. set() wakes
/// every waiter of either kind. All members are thread-safe.
///
/// A fiber waiting on it is interrupted (operation_aborted) by a stop of its
/// work; a coroutine's wait is cancelled through its cancellation slot.
/// Destroying the event completes pending coroutine waits with
/// operation_aborted.
class event {
 public:
  using executor_type = boost::asio::any_io_executor;

  /// `ex` runs completions of handlers that have no executor of their own.
  explicit event(executor_type ex, bool initially_set = false)
      : ex_(std::move(ex)), set_(initially_set) {}
  ~event();
  event(const event&) = delete;
  event& operator=(const event&) = delete;

  /// Sets the event and wakes every waiter.
  void set();
  /// Clears the event; later waits block until the next set().
  void reset();
  [[nodiscard]] bool is_set() const;

#if COPORT_BRIDGE_FIBERS
  /// Blocks the calling fiber until the event is set.
  COPORT_FIBER_BLOCKING_INSTEAD("co_await ev.async_wait(token)") void wait();
  /// Blocks until set or until `deadline`; false on timeout.
  COPORT_FIBER_BLOCKING_INSTEAD("co_await ev.async_wait(token), with a timer")
  [[nodiscard]] bool wait_until(std::chrono::steady_clock::time_point deadline);
  template <class Rep, class Period>
  COPORT_FIBER_BLOCKING_INSTEAD("co_await ev.async_wait(token), with a timer")
  [[nodiscard]] bool wait_for(std::chrono::duration<Rep, Period> d) {
    return wait_until(std::chrono::steady_clock::now() +
                      std::chrono::duration_cast<std::chrono::steady_clock::duration>(d));
  }
#else
  template <class... Never>
  void wait(Never&&...) {
    static_assert(detail::fiber_side_removed<Never...>,
                  COPORT_BRIDGE_REMOVED("event::wait()", "co_await ev.async_wait(token)"));
  }
  template <class... Never>
  bool wait_until(Never&&...) {
    static_assert(detail::fiber_side_removed<Never...>,
                  COPORT_BRIDGE_REMOVED("event::wait_until()", "co_await ev.async_wait(token), with a timer"));
    return false;
  }
  template <class... Never>
  bool wait_for(Never&&...) {
    static_assert(detail::fiber_side_removed<Never...>,
                  COPORT_BRIDGE_REMOVED("event::wait_for()", "co_await ev.async_wait(token), with a timer"));
    return false;
  }
#endif

  /// Waits without blocking a fiber; completes with `void(error_code)`.
  template <class CompletionToken>
  auto async_wait(CompletionToken&& token) {
    return boost::asio::async_initiate<CompletionToken, void(boost::system::error_code)>(
        initiate_wait{this}, token);
  }

  [[nodiscard]] executor_type get_executor() const noexcept { return ex_; }

 private:
  struct initiate_wait {
    event* self;
    template <class Handler>
    void operator()(Handler&& h) const {
      using waiter_t = detail::coro_waiter<detail::waiter, std::decay_t<Handler>, executor_type>;
      auto* w = new waiter_t(std::forward<Handler>(h), self->ex_);
      {
        std::lock_guard lk(self->mutex_);
        if (!self->set_) {
          self->waiters_.push_back(w);
          w->cancel_from(self->mutex_, self->waiters_);
          return;
        }
      }
      w->complete({});
    }
  };
#if COPORT_BRIDGE_FIBERS
  bool wait_impl(std::optional<std::chrono::steady_clock::time_point> deadline);
#endif

  executor_type ex_;
  mutable std::mutex mutex_;
  bool set_;
  detail::waiter_list waiters_;
};

}  // namespace coport::bridge

#endif
