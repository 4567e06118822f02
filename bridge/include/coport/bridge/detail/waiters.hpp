#ifndef COPORT_BRIDGE_DETAIL_WAITERS_HPP
#define COPORT_BRIDGE_DETAIL_WAITERS_HPP

// Waiter machinery shared by the dual-world primitives (event, mutex,
// channel): one intrusive FIFO of waiters per condition, where a waiter is a
// parked fiber or a coroutine's completion handler. The primitive's own
// std::mutex guards the lists; waiters are completed after it is released.

#include <coport/bridge/detail/loop_api.hpp>
#if COPORT_BRIDGE_FIBERS
#include <coport/bridge/detail/parker.hpp>
#endif

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/execution.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/system/error_code.hpp>

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <stop_token>
#include <utility>

namespace coport::bridge::detail {

class waiter {
 public:
  /// Delivers the outcome; called once, without the primitive's lock held.
  virtual void complete(boost::system::error_code ec) noexcept = 0;

  waiter* prev = nullptr;
  waiter* next = nullptr;
  /// Written under the primitive's lock; also read without it by a
  /// canceller, which must not touch a primitive that already gave the
  /// waiter up (and may since have been destroyed).
  std::atomic<bool> linked{false};

 protected:
  ~waiter() = default;
};

class waiter_list {
 public:
  bool empty() const noexcept { return head_ == nullptr; }
  waiter* front() const noexcept { return head_; }
  void push_back(waiter* w) noexcept {
    w->prev = tail_;
    w->next = nullptr;
    if (tail_) tail_->next = w; else head_ = w;
    tail_ = w;
    w->linked.store(true, std::memory_order_relaxed);
  }
  waiter* pop_front() noexcept {
    waiter* w = head_;
    if (w) remove(w);
    return w;
  }
  void remove(waiter* w) noexcept {
    if (w->prev) w->prev->next = w->next; else head_ = w->next;
    if (w->next) w->next->prev = w->prev; else tail_ = w->prev;
    w->prev = w->next = nullptr;
    w->linked.store(false, std::memory_order_release);
  }

 private:
  waiter* head_ = nullptr;
  waiter* tail_ = nullptr;
};

/// Takes `w` off `list` if it is still queued there; false when the
/// primitive already gave it up (it is being, or has been, completed). The
/// first check is made without the lock: a primitive that gave the waiter up
/// may already be destroyed.
inline bool withdraw(std::mutex& m, waiter_list& list, waiter* w) {
  if (!w->linked.load(std::memory_order_acquire)) return false;
  std::lock_guard lk(m);
  if (!w->linked.load(std::memory_order_relaxed)) return false;
  list.remove(w);
  return true;
}

/// Cancellation handler of a queued coroutine waiter: on any cancellation
/// type, withdraws the waiter and completes it with operation_aborted.
struct withdraw_on_cancel {
  std::mutex* m;
  waiter_list* list;
  waiter* w;
  void operator()(boost::asio::cancellation_type type) const {
    if (type == boost::asio::cancellation_type::none) return;
    if (withdraw(*m, *list, w)) w->complete(boost::asio::error::operation_aborted);
  }
};

#if COPORT_BRIDGE_FIBERS
/// Base of a waiting fiber's record (lives on the fiber's stack).
template <class Base = waiter>
class fiber_waiter : public Base {
 public:
  void complete(boost::system::error_code ec) noexcept override {
    ec_ = ec;
    done_.unpark();
  }
  /// Parks the calling fiber until the waiter (already queued under `m`'s
  /// lock, now released) is completed, the fiber is asked to stop, or
  /// `deadline` passes. Returns the outcome; a timeout is
  /// `boost::asio::error::timed_out`.
  boost::system::error_code wait(std::mutex& m, waiter_list& list,
                                 std::optional<std::chrono::steady_clock::time_point> deadline) {
    {
      std::stop_callback on_stop(current_stop_token(), [&] {
        if (withdraw(m, list, this)) complete(boost::asio::error::operation_aborted);
      });
      if (!deadline) {
        done_.park();
      } else if (!done_.park_until(*deadline)) {
        if (withdraw(m, list, this)) return boost::asio::error::timed_out;
        done_.park();  // completed concurrently: wait for the completion to land
      }
    }
    return ec_;
  }

 private:
  parker done_;
  boost::system::error_code ec_;
};

#endif

/// A waiting coroutine's record: owns its completion handler (signature
/// `void(error_code, Args...)`) and delivers it on the handler's executor.
/// `Base` adds the value slots of the primitive (a channel's item, say).
template <class Base, class Handler, class Executor, class... Args>
class coro_waiter final : public Base {
 public:
  template <class H>
  coro_waiter(H&& h, const Executor& fallback)
      : handler_(std::forward<H>(h)),
        work_(boost::asio::prefer(boost::asio::get_associated_executor(handler_, fallback),
                                  boost::asio::execution::outstanding_work.tracked)) {}

  // One waiter per coroutine wait: its memory comes from the same per-thread
  // cache as queued tasks, not from the global allocator.
  static void* operator new(std::size_t size) { return allocate_task_block(size); }
  static void operator delete(void* p, std::size_t size) noexcept { deallocate_task_block(p, size); }

  /// Withdraws this waiter from `list` (guarded by `m`) when the handler's
  /// cancellation slot is emitted.
  void cancel_from(std::mutex& m, waiter_list& list) {
    auto slot = boost::asio::get_associated_cancellation_slot(handler_);
    if (slot.is_connected()) slot.template emplace<withdraw_on_cancel>(&m, &list, this);
  }

  void complete(boost::system::error_code ec) noexcept override {
    // The waiter is freed on the handler's executor, after its cancellation
    // slot is cleared there: a cancellation racing with this completion then
    // finds the waiter alive (and unlinked) rather than freed.
    try {
      boost::asio::post(work_, owner{this, ec});
    } catch (...) {
      delete this;
    }
  }

 private:
  struct owner {
    coro_waiter* self;
    boost::system::error_code ec;
    owner(coro_waiter* s, boost::system::error_code e) noexcept : self(s), ec(e) {}
    owner(owner&& o) noexcept : self(std::exchange(o.self, nullptr)), ec(o.ec) {}
    owner& operator=(owner&&) = delete;
    ~owner() { delete self; }
    void operator()() {
      coro_waiter* w = std::exchange(self, nullptr);
      boost::asio::get_associated_cancellation_slot(w->handler_).clear();
      Handler h(std::move(w->handler_));
      auto values = w->take_values();
      delete w;
      std::apply([&](auto&&... v) { std::move(h)(ec, std::move(v)...); }, std::move(values));
    }
  };

  std::tuple<Args...> take_values() {
    if constexpr (sizeof...(Args) == 0) {
      return {};
    } else {
      return {Base::take_value()};
    }
  }

  Handler handler_;
  std::decay_t<decltype(boost::asio::prefer(std::declval<boost::asio::associated_executor_t<Handler, Executor>>(),
                                            boost::asio::execution::outstanding_work.tracked))>
      work_;
};

}  // namespace coport::bridge::detail

#endif
