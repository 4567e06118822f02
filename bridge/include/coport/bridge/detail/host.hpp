#ifndef COPORT_BRIDGE_DETAIL_HOST_HPP
#define COPORT_BRIDGE_DETAIL_HOST_HPP

#include <coport/bridge/detail/loop_api.hpp>
#include <coport/bridge/detail/parker.hpp>

#include <boost/asio/cancellation_signal.hpp>

#include <atomic>

namespace boost::fibers {
class context;
}

namespace coport::bridge::detail {

/// The fiber side of a hosted coroutine: a queue of the coroutine's
/// continuations and the dedicated fiber (taken from the loop's pool) that
/// runs them. Reference counted by hosted executors; the fiber exists while
/// the coroutine runs or continuations are queued.
class host {
 public:
  /// A new host on `l` whose work is counted under `tag`; one reference.
  static host* create(loop* l, const work_tag* tag);

  void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept;

  /// Queues a continuation; callable from any thread.
  void submit(task* t);
  /// True when the caller is this host's fiber.
  bool running_here() const noexcept;
  loop* get_loop() const noexcept { return loop_; }
  const work_tag* tag() const noexcept { return tag_; }

  /// Emitted (on the loop thread) when the runtime stops, if the hosted
  /// coroutine was spawned without a cancellation slot of its own.
  boost::asio::cancellation_signal& stop_signal() noexcept { return stop_signal_; }
  void cancel_on_stop() noexcept { cancel_on_stop_ = true; }
  /// Called when the hosted coroutine has finished.
  void mark_done() noexcept { done_ = true; }
  /// Makes the calling fiber this host's fiber: work submitted from now on
  /// runs in it (inline when submitted from it).
  void attach_here() noexcept;

  // Loop thread only. run_fiber() is the body of the host's own pooled
  // fiber. run_here() makes the calling fiber the host instead (a fiber
  // awaiting a coroutine hosts it, greenio style) until the coroutine is done.
  void run_fiber();
  void run_here();

 private:
  host(loop* l, const work_tag* tag) : loop_(l), tag_(tag) {}
  void submit_local(task* t);
  // Runs the coroutine's continuations until it is done; `count_steps`
  // counts each as a hosted step of the tag (a co_spawn_hosted coroutine,
  // not one a fiber awaits: that is counted as the fiber's await).
  void run_until_done(bool count_steps);

  loop* loop_;
  const work_tag* tag_;
  std::atomic<long> refs_{1};
  task_queue queue_;
  parker wake_;
  boost::fibers::context* fiber_ = nullptr;
  bool fiber_running_ = false;
  bool parked_ = false;
  unsigned batches_without_yield_ = 0;
  bool done_ = false;
  bool cancel_on_stop_ = false;
  boost::asio::cancellation_signal stop_signal_;
};

}  // namespace coport::bridge::detail

#endif
