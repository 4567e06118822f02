#ifndef COPORT_BRIDGE_MUTEX_HPP
#define COPORT_BRIDGE_MUTEX_HPP

#include <coport/bridge/blocking.hpp>
#include <coport/bridge/detail/waiters.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <boost/system/system_error.hpp>

#include <exception>
#include <mutex>

namespace coport::bridge {

/// A FIFO mutex shared by both worlds: fibers lock() by blocking, coroutines
/// `co_await m.async_lock(...)`. Ownership is not tied to a fiber or thread,
/// so a coroutine may hold it across `co_await` and unlock it on any
/// executor (which a Boost.Fiber mutex forbids). On unlock the lock passes
/// directly to the longest waiter. Satisfies Lockable for fibers
/// (`std::unique_lock<bridge::mutex>`). Without fibers (COPORT_WITH_FIBERS=OFF)
/// lock() is gone: `std::lock_guard` and `unique_lock::lock()` on it do not
/// compile, the scoped_lock() lock does.
class mutex {
 public:
  using executor_type = boost::asio::any_io_executor;

  explicit mutex(executor_type ex) : ex_(std::move(ex)) {}
  ~mutex();
  mutex(const mutex&) = delete;
  mutex& operator=(const mutex&) = delete;

#if COPORT_BRIDGE_FIBERS
  /// Blocks the calling fiber until it owns the mutex.
  COPORT_FIBER_BLOCKING_INSTEAD("auto lk = co_await m.scoped_lock()") void lock();
#else
  template <class Never = void>
  void lock() {
    static_assert(detail::fiber_side_removed<Never>,
                  COPORT_BRIDGE_REMOVED("mutex::lock()", "auto lk = co_await m.scoped_lock();"));
  }
#endif
  [[nodiscard]] bool try_lock();
  /// Releases the mutex (or hands it to the next waiter).
  void unlock();

  /// Acquires without blocking a fiber; completes with `void(error_code)`;
  /// on success the caller owns the mutex.
  template <class CompletionToken>
  auto async_lock(CompletionToken&& token) {
    return boost::asio::async_initiate<CompletionToken, void(boost::system::error_code)>(
        initiate_lock{this}, token);
  }

  /// `auto lk = co_await m.scoped_lock();` : the lock, released by `lk`.
  /// Throws `boost::system::system_error` (operation_aborted) when the wait
  /// is cancelled. One asynchronous operation, no coroutine frame of its own.
  boost::asio::awaitable<std::unique_lock<mutex>> scoped_lock() {
    return boost::asio::async_initiate<const boost::asio::use_awaitable_t<>&,
                                       void(std::exception_ptr, std::unique_lock<mutex>)>(
        initiate_scoped_lock{this}, boost::asio::use_awaitable);
  }

  [[nodiscard]] executor_type get_executor() const noexcept { return ex_; }

 private:
  struct initiate_lock {
    mutex* self;
    template <class Handler>
    void operator()(Handler&& h) const {
      using waiter_t = detail::coro_waiter<detail::waiter, std::decay_t<Handler>, executor_type>;
      auto* w = new waiter_t(std::forward<Handler>(h), self->ex_);
      {
        std::lock_guard lk(self->mutex_);
        if (self->locked_) {
          self->waiters_.push_back(w);
          w->cancel_from(self->mutex_, self->waiters_);
          return;
        }
        self->locked_ = true;
      }
      w->complete({});
    }
  };

  // Completes a scoped_lock(): the lock, or the failure as an exception.
  // Keeps the awaiting coroutine's executor and cancellation slot.
  template <class Handler>
  struct scoped_lock_handler {
    Handler handler;
    mutex* self;
    using executor_type = boost::asio::associated_executor_t<Handler, mutex::executor_type>;
    executor_type get_executor() const noexcept {
      return boost::asio::get_associated_executor(handler, self->ex_);
    }
    using cancellation_slot_type = boost::asio::associated_cancellation_slot_t<Handler>;
    cancellation_slot_type get_cancellation_slot() const noexcept {
      return boost::asio::get_associated_cancellation_slot(handler);
    }
    void operator()(boost::system::error_code ec) {
      if (ec) {
        std::move(handler)(std::make_exception_ptr(boost::system::system_error(ec, "mutex::scoped_lock")),
                           std::unique_lock<mutex>());
      } else {
        std::move(handler)(std::exception_ptr(), std::unique_lock<mutex>(*self, std::adopt_lock));
      }
    }
  };
  struct initiate_scoped_lock {
    mutex* self;
    template <class Handler>
    void operator()(Handler&& h) const {
      initiate_lock{self}(scoped_lock_handler<std::decay_t<Handler>>{std::forward<Handler>(h), self});
    }
  };

  executor_type ex_;
  std::mutex mutex_;
  bool locked_ = false;
  detail::waiter_list waiters_;
};

}  // namespace coport::bridge

#endif
