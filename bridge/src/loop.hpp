#ifndef COPORT_BRIDGE_SRC_LOOP_HPP
#define COPORT_BRIDGE_SRC_LOOP_HPP

// Internal: the loop thread, its scheduling algorithm, the fiber pool and
// coroutine hosts. Nothing here is installed.

#include <coport/bridge/detail/host.hpp>
#include <coport/bridge/detail/parker.hpp>
#include <coport/bridge/runtime.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/fiber/algo/algorithm.hpp>
#include <boost/fiber/context.hpp>
#include <boost/fiber/properties.hpp>
#include <boost/fiber/scheduler.hpp>

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
/// no other fiber waits for the CPU, before it lets the dispatcher run.
inline constexpr unsigned batches_before_yield = 16;

/// What coport knows about a fiber, attached as Boost.Fiber properties.
/// Fibers created with raw Boost.Fiber calls on a loop get one on their first
/// wake-up (loop_algorithm::awakened): they inherit the tag of the fiber that
/// created them and get a stop source of their own, which runtime stop and a
/// stop of the creator's work both request.
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
  std::size_t live() const noexcept { return live_; }

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
  std::size_t live_ = 0;
};

class loop_algorithm;

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
    wake_loop_fiber();
  }
  void wake_loop_fiber() {
    if (loop_parked_) {
      loop_parked_ = false;
      loop_parker_.unpark();
    }
  }
  bool on_loop_fiber() const noexcept { return tl_running == loop_ctx_; }
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
  void on_fiber_exit();
  /// A raw fiber was seen for the first time / has ended.
  void raw_started(fiber_info* info) noexcept;
  void raw_ended(fiber_info* info) noexcept;
  /// Notes that the user's io_context was stopped (external loops).
  void note_io_stopped() noexcept;
  void report_violation(violation::kind k, const work_tag* tag, std::string message);

  fiber_pool pool{*this};
  loop_algorithm* algo_ = nullptr;
  boost::fibers::context* loop_ctx_ = nullptr;
  bool in_microtask_ = false;

 private:
  friend class loop_algorithm;
  void thread_main();
  void become_loop();
  void run_body();
  void leave_loop() noexcept;
  void stop_watchdog();
  void run_loop_fiber();
  void begin_stop();
  void report_stop();
  void abandon_raw_fibers() noexcept;
  void watchdog_main();

  task_queue local_;
  parker loop_parker_;
  bool loop_parked_ = false;
  unsigned batches_without_yield_ = 0;
  bool stopping_ = false;
  bool draining_fibers_ = false;
  tracked_work* tracked_head_ = nullptr;
  fiber_info* raw_head_ = nullptr;
  std::size_t raw_live_ = 0;
  bool io_stopped_ = false;  // the user stopped an external io_context
  bool ran_ = false;         // run_here() was called
  std::unique_ptr<boost::asio::steady_timer> stop_timer_;

  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> wake_pending_{false};
  bool woken_ = false;  // a wake-up handler ran (loop thread only)

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
  void enter_idle() noexcept { idle_.store(true, std::memory_order_seq_cst); }
  void leave_idle() noexcept;

  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> keep_running_;
  std::thread thread_;
  std::thread watchdog_;
  std::mutex watchdog_mutex_;
  std::condition_variable watchdog_cv_;
  bool watchdog_stop_ = false;
};

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

 private:
  void poll_io() noexcept;
  void on_blocking_switch(boost::fibers::context* self) noexcept;

  loop& loop_;
  boost::fibers::scheduler::ready_queue_type ready_;
  unsigned switches_since_io_ = 0;
  unsigned switches_since_dispatcher_ = 0;
  unsigned ready_workers_ = 0;
  bool in_io_ = false;
  friend class loop;
};

loop* loop_of_thread() noexcept;

}  // namespace coport::bridge::detail

#endif
