#ifndef COPORT_BRIDGE_SRC_LOOP_HPP
#define COPORT_BRIDGE_SRC_LOOP_HPP

// Internal: the loop thread and, with fibers, its scheduling algorithm, the
// fiber pool and coroutine hosts. Nothing here is installed.

#include <coport/bridge/runtime.hpp>

#include <boost/asio/detail/call_stack.hpp>
#include <boost/asio/detail/thread_context.hpp>
#include <boost/asio/detail/thread_info_base.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#if COPORT_BRIDGE_FIBERS
#include <coport/bridge/detail/host.hpp>
#include <coport/bridge/detail/parker.hpp>

#include <boost/fiber/algo/algorithm.hpp>
#include <boost/fiber/context.hpp>
#include <boost/fiber/properties.hpp>
#include <boost/fiber/scheduler.hpp>
#endif

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <thread>

namespace spdlog {
class logger;
}

namespace coport::bridge::detail {

/// Batches of queued work the loop fiber (or a host) runs back to back while
/// no other fiber waits for the CPU, before it lets the dispatcher run;
/// without fibers, before it polls Asio's handlers.
inline constexpr unsigned batches_before_yield = 16;

/// Handlers run per poll, so that handlers which keep reposting themselves
/// to the io_context cannot starve the fibers or the native work.
inline constexpr int io_handlers_per_poll = 64;

class loop;

/// The loop whose thread is the calling thread (set by loop::become_loop).
extern constinit thread_local loop* tl_loop;

/// Marks a loop's io_context, so that loop_of_context finds the loop behind
/// any executor of it.
class runtime_service final : public boost::asio::execution_context::service {
 public:
  using key_type = runtime_service;
  static inline boost::asio::execution_context::id id;
  explicit runtime_service(boost::asio::execution_context& ctx, loop* l = nullptr)
      : service(ctx), owner(l) {}
  void shutdown() override {}
  loop* owner;
};

/// Identifies the loop's entry in Asio's per-thread call stack, which gives
/// native work (run outside io_context::run()) Asio's per-thread memory
/// cache; it matches no io_context, so Asio never mistakes native work for
/// a thread running one.
struct asio_thread_key : boost::asio::detail::thread_context {};

/// Throws std::logic_error if the calling thread cannot become a loop over
/// a user's io_context (with fibers: when called inside a fiber).
void check_thread_can_become_loop();

#if COPORT_BRIDGE_FIBERS

/// What coport knows about a fiber, attached as Boost.Fiber properties.
/// Fibers created with raw Boost.Fiber calls on a loop get one on their first
/// wake-up (loop_algorithm::awakened): they are named after the work that
/// created them ("<creator> [raw fiber]", or "<raw fiber>") and get a stop
/// source of their own, which runtime stop and a stop of the creator's work
/// both request.
struct fiber_info final : boost::fibers::fiber_properties {
  explicit fiber_info(boost::fibers::context* ctx) noexcept : fiber_properties(ctx) {}
  const work_tag* tag = nullptr;
  std::stop_token stop;
  host* hosting = nullptr;  // set while the fiber hosts a coroutine
  bool idle = false;        // parked by coport between two pieces of work

  // ---- raw fibers only ----
  struct forward_stop {
    std::stop_source to;
    void operator()() const noexcept { to.request_stop(); }
  };
  boost::fibers::context* raw = nullptr;  // the fiber, until it ends or is abandoned
  std::stop_source raw_stop;
  std::optional<std::stop_callback<forward_stop>> from_creator;
  fiber_info* raw_prev = nullptr;
  fiber_info* raw_next = nullptr;
};

inline fiber_info* info_of(boost::fibers::context* ctx) noexcept {
  return static_cast<fiber_info*>(ctx->get_properties());
}

/// Pooled fibers that run fiber_jobs. Loop thread only.
class fiber_pool {
 public:
  explicit fiber_pool(loop& l) : loop_(l) {}
  void run(fiber_job* job);
  /// Releases idle fibers; busy ones exit when their job ends.
  void release_idle();
  /// Read on any thread (the loop's stats()).
  std::size_t live() const noexcept { return live_.load(std::memory_order_relaxed); }

 private:
  struct worker {
    parker wake;
    fiber_info* info = nullptr;
    fiber_job* job = nullptr;
    worker* next_idle = nullptr;
    bool exit = false;
  };
  void start_worker(fiber_job* job);
  void worker_main(worker* w);
  void assign(worker* w, fiber_job* job);

  loop& loop_;
  worker* idle_ = nullptr;
  std::size_t idle_count_ = 0;
  std::atomic<std::size_t> live_{0};  // written on the loop thread only
};

class loop_algorithm;
#endif

class loop {
 public:
  /// Starts a loop thread with an io_context of its own.
  explicit loop(runtime_options options);
  /// Makes the calling thread (its main context) a loop over `io`; run()
  /// then runs it there. Throws std::invalid_argument / std::logic_error for
  /// a null io_context or a thread that cannot become a loop.
  loop(std::shared_ptr<boost::asio::io_context> io, runtime_options options);
  ~loop();
  loop(const loop&) = delete;
  loop& operator=(const loop&) = delete;

  // ---- any thread ----
  void submit(task* t);
  void request_stop();
  void join();
  bool stop_requested() const noexcept { return stop_requested_.load(std::memory_order_acquire); }

  /// Runs a loop made by the second constructor on its thread until its
  /// io_context is stopped or stop() is requested, then stops its work and
  /// waits for it (see runtime::run()). Once.
  void run_here();

  // Declared first: destroyed last, after queued tasks that may own
  // coroutine frames using its services. Shared with the user when the
  // loop runs on the user's io_context (external_).
  std::shared_ptr<boost::asio::io_context> io_holder;
  boost::asio::io_context& io;
  const bool external_;
  runtime_options opts;
  std::shared_ptr<diagnostics> registry;
  std::shared_ptr<spdlog::logger> log;
  const work_tag* tag_asio;
  const work_tag* tag_loop;
  const work_tag* tag_fiber;
  std::thread::id thread_id;
  std::atomic<std::size_t> tracked_count{0};
  runtime* owner = nullptr;

  // ---- loop thread only ----
  void submit_local(task* t) {
    local_.push(t);
    wake_loop();
  }
  /// Lets the loop look at its queue and its stop again: with fibers the
  /// loop fiber may be parked; without, the loop looks after every task and
  /// handler anyway.
  void wake_loop() {
#if COPORT_BRIDGE_FIBERS
    if (loop_parked_) {
      loop_parked_ = false;
      loop_parker_.unpark();
    }
#endif
  }
  /// True while native work runs: on the loop fiber, or without fibers in
  /// a queued task (not in an Asio handler the io_context runs).
#if COPORT_BRIDGE_FIBERS
  bool on_loop_fiber() const noexcept { return tl_running == loop_ctx_; }
#else
  bool on_loop_fiber() const noexcept { return in_microtask_; }
#endif
  /// Work the loop still waits for before a stop ends.
  bool work_left() const noexcept {
#if COPORT_BRIDGE_FIBERS
    if (raw_head_ != nullptr) return true;
#endif
    return tracked_head_ != nullptr;
  }
  void track(tracked_work* w) noexcept;
  void untrack(tracked_work* w) noexcept;
  bool stopping() const noexcept { return stopping_; }
  // Release and acquire: the watchdog thread reads the published tag's name,
  // written by whichever thread made the tag (TSan found it relaxed).
  const work_tag* current_tag() const noexcept {
    return current_.load(std::memory_order_acquire);
  }
  void publish(const work_tag* t) noexcept {
    current_.store(t, std::memory_order_release);
    progress_.store(progress_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  /// Notes that the user's io_context was stopped (external loops).
  void note_io_stopped() noexcept;
  void report_violation(violation::kind k, const work_tag* tag, std::string message);
  /// Runs one queued native task, under its tag.
  void run_task(task* t);
  /// Runs up to io_handlers_per_poll handlers that are ready now, under
  /// the tag of Asio handlers (both loops, between pieces of native work).
  void poll_handlers() noexcept;
  /// Waits in the kernel (the loop idle) for one handler, or until
  /// `deadline`, and runs it. A stopped io_context is restarted first, but
  /// a user's io_context stopped outside a stop is only noted (the loop
  /// then ends): false, without a wait.
  bool wait_for_handler(std::optional<std::chrono::steady_clock::time_point> deadline) noexcept;

  bool in_microtask_ = false;
#if COPORT_BRIDGE_FIBERS
  void on_fiber_exit();
  /// A raw fiber was seen for the first time / has ended.
  void raw_started(fiber_info* info) noexcept;
  void raw_ended(fiber_info* info) noexcept;

  fiber_pool pool{*this};
  loop_algorithm* algo_ = nullptr;
  boost::fibers::context* loop_ctx_ = nullptr;
#endif

 private:
  loop(std::shared_ptr<boost::asio::io_context> io, bool external, runtime_options options);
  void thread_main();
  void become_loop();
  void run_body();
  void leave_loop() noexcept;
  void stop_watchdog();
  void begin_stop();
  void report_stop();
  void watchdog_main();
  /// Runs queued native work and Asio handlers until a stop has ended the
  /// loop's work (fiber_loop.cpp: on the loop fiber; native_loop.cpp: on
  /// the thread itself).
  void run_native_work();
  /// Starts a stop if the user stopped the io_context, then runs the tasks
  /// queued so far (not those they queue).
  void run_batch();

  task_queue local_;
  unsigned batches_without_yield_ = 0;
  bool stopping_ = false;
  tracked_work* tracked_head_ = nullptr;
  bool io_stopped_ = false;  // the user stopped an external io_context
  bool ran_ = false;         // run_here() was called
  std::unique_ptr<boost::asio::steady_timer> stop_timer_;

  std::atomic<bool> stop_requested_{false};
#if COPORT_BRIDGE_FIBERS
  friend class loop_algorithm;
  void abandon_raw_fibers() noexcept;
  void drain_fiber_pool();

  parker loop_parker_;
  bool loop_parked_ = false;
  bool draining_fibers_ = false;
  fiber_info* raw_head_ = nullptr;
  std::atomic<std::size_t> raw_live_{0};  // written on the loop thread only
  std::atomic<bool> wake_pending_{false};
  bool woken_ = false;  // a wake-up handler ran (loop thread only)
#endif

  // Read by the watchdog thread.
  std::atomic<std::uint64_t> progress_{0};
  std::atomic<const work_tag*> current_{nullptr};
  // The loop waits in the kernel (or runs the one handler that woke it).
  // While it does, the watchdog sleeps without a timeout, so that an idle
  // process makes no periodic wake-ups: it raises watchdog_asleep_ and
  // waits; the loop, leaving idle, wakes it only when the flag is up. Both
  // sides store their flag and then read the other's, sequentially
  // consistent: at least one of them sees the other's store, so either the
  // watchdog does not sleep or the loop wakes it.
  std::atomic<bool> idle_{false};
  std::atomic<bool> watchdog_asleep_{false};
  void enter_idle() noexcept {
    idle_since_ns_.store(std::chrono::steady_clock::now().time_since_epoch().count(), std::memory_order_relaxed);
    idle_.store(true, std::memory_order_seq_cst);
  }
  void leave_idle() noexcept;

 public:
  // ---- runtime::stats(), read on any thread ----
  const std::chrono::steady_clock::time_point started_at_ = std::chrono::steady_clock::now();
  // Time spent waiting in the kernel, up to the last wake-up; and when the
  // wait going on now began (0: none).
  std::atomic<std::int64_t> idle_ns_{0};
  std::atomic<std::int64_t> idle_since_ns_{0};
  // Stalls the watchdog found on this loop (its work tags count them by name).
  std::atomic<std::uint64_t> stalls_{0};
  // The busy and idle times stats() last gave: a reading taken while the
  // loop leaves a wait may miss or count twice that wait (two atomics read
  // one after the other), so each is never given lower than before, which
  // keeps them counters (never decreasing) for Prometheus.
  mutable std::atomic<std::int64_t> busy_given_{0};
  mutable std::atomic<std::int64_t> idle_given_{0};
  [[nodiscard]] loop_stats stats() const noexcept;

 private:

  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> keep_running_;
  std::thread thread_;
  std::thread watchdog_;
  std::mutex watchdog_mutex_;
  std::condition_variable watchdog_cv_;
  bool watchdog_stop_ = false;
};

#if COPORT_BRIDGE_FIBERS
/// The Boost.Fiber scheduling algorithm of a loop: round robin over ready
/// fibers, with the io_context polled by the scheduler's dispatcher between
/// rounds and waited on (in the kernel) when nothing is ready.
class loop_algorithm final : public boost::fibers::algo::algorithm {
 public:
  explicit loop_algorithm(loop& l) noexcept : loop_(l) { l.algo_ = this; }
  /// True when a context other than the scheduler's dispatcher is ready.
  bool has_ready_workers() const noexcept { return ready_workers_ > 0; }
  void awakened(boost::fibers::context* ctx) noexcept override;
  boost::fibers::context* pick_next() noexcept override;
  bool has_ready_fibers() const noexcept override { return !ready_.empty(); }
  void suspend_until(std::chrono::steady_clock::time_point const& deadline) noexcept override;
  void notify() noexcept override;
  /// The running fiber's work changes name (this_fiber::work_scope): its
  /// time so far goes to the old name, from now on to `t`, which is also
  /// published for the watchdog.
  void rename_running(const work_tag* t) noexcept;

 private:
  void poll_io() noexcept;
  void on_blocking_switch(boost::fibers::context* self) noexcept;
  /// Ends the running fiber's time slice (if a fiber runs) and starts one
  /// for `next_tag` (null: the loop fiber or the dispatcher runs next).
  void switch_slice(const work_tag* next_tag) noexcept;

  loop& loop_;
  boost::fibers::scheduler::ready_queue_type ready_;
  unsigned switches_since_io_ = 0;
  unsigned switches_since_dispatcher_ = 0;
  unsigned ready_workers_ = 0;
  bool in_io_ = false;
  // Fiber time: the tag of the fiber on the CPU (null while the loop fiber
  // or the dispatcher runs) and when its slice began. One clock read per
  // switch that changes the tag charged; none between two fibers of one
  // name, nor between the loop fiber and the dispatcher.
  const work_tag* slice_tag_ = nullptr;
  std::chrono::steady_clock::time_point slice_start_{};
  friend class loop;
};
#endif

loop* loop_of_thread() noexcept;

}  // namespace coport::bridge::detail

#endif
