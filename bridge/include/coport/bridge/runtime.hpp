#ifndef COPORT_BRIDGE_RUNTIME_HPP
#define COPORT_BRIDGE_RUNTIME_HPP

#include <coport/bridge/diagnostics.hpp>
#include <coport/bridge/error.hpp>
#include <coport/bridge/loop_executor.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace spdlog {
class logger;
}

namespace coport::bridge {

/// A moment's view of one loop, for monitoring; read on any thread.
struct loop_stats {
  /// The loop's name (runtime_options::name).
  std::string name;
  /// Time since the loop started during which its thread ran work (fibers,
  /// coroutines, handlers), and during which it waited in the kernel.
  std::chrono::nanoseconds busy{};
  std::chrono::nanoseconds idle{};
  /// Stalls the watchdog found on this loop (each also counted on the work
  /// tag responsible).
  std::uint64_t stalls = 0;
  /// Fibers and coroutines started through the runtime and still running
  /// (tracked_work()).
  std::size_t tracked_work = 0;
  /// Fibers alive on the loop: pooled ones (running a job or parked for
  /// reuse) and raw ones (created with Boost.Fiber calls). 0 without fibers.
  std::size_t fibers = 0;
};

/// Settings of one loop (or of each loop of a pool).
struct runtime_options {
  /// Name of the loop thread, used in logs ("coport-0", "coport-1", ... in a pool).
  std::string name = "coport";
  /// A piece of work that keeps the loop from Asio this long is reported as a
  /// stall (logged and counted on its work tag). Zero turns the detector off.
  std::chrono::milliseconds stall_threshold{25};
  /// Strict mode, for test runs that prove code is fully ported: bridge
  /// blocking calls from hosted coroutines throw `errc::implicit_yield`, and
  /// every violation the scheduler detects (implicit yield, loop block, stall)
  /// is passed to `on_violation` (by default: logged, then std::abort()).
  bool strict = false;
  /// Stack size of the fibers the runtime creates (pooled workers, hosts).
  std::size_t fiber_stack_size = 64 * 1024;
  /// Idle pooled fibers kept for reuse; more are released when they finish.
  std::size_t max_idle_fibers = 256;
  /// How long stop() waits for cancelled work before it logs what is left.
  std::chrono::milliseconds stop_report_after{5000};
  /// Where the runtime logs; null: a logger named "coport" writing to stderr.
  std::shared_ptr<spdlog::logger> logger;
  /// Counter registry; null: a new one. Share one to add counters across loops.
  std::shared_ptr<diagnostics> registry;
  /// Called (on the loop or watchdog thread) for each violation. Null: log it,
  /// and in strict mode abort the process after logging.
  std::function<void(const violation&)> on_violation;
};

/// One loop thread: an `asio::io_context` and a Boost.Fiber scheduler driven
/// by it. Fibers (legacy code), native coroutines and Asio handlers all make
/// progress on it; when there is nothing to do the thread sleeps in the
/// kernel (epoll), never spinning. In a fiber-free build
/// (COPORT_WITH_FIBERS=OFF) the loop has no fiber scheduler: native
/// coroutines and Asio handlers take turns on the thread, and everything
/// below about fibers does not apply (`fiber_stack_size` and
/// `max_idle_fibers` are unused).
///
/// Construction starts the thread. Shutdown: stop() asks every fiber and
/// coroutine started through the runtime to stop (their next blocking point
/// reports `asio::error::operation_aborted`) and lets the loop run until they
/// have finished; join() waits for the thread. Work posted after stop() is
/// discarded. Work started on the io_context directly (plain `co_spawn`,
/// I/O objects) is not tracked: pending handlers are destroyed, not run,
/// when the runtime is destroyed.
///
/// A runtime can also run on the caller's thread, over the caller's
/// io_context (`runtime(io, options)`, then `run()`): the form of a program
/// written for Boost.Fiber's Asio scheduler, which makes an io_context,
/// installs a scheduler on its main thread, creates fibers and runs the
/// io_context there until a fiber or handler calls `io->stop()`.
///
/// Raw fibers (created with plain `boost::fibers::fiber` on a loop thread)
/// are asked to stop too, when the runtime stops: each has a stop source of
/// its own, which runtime stop and a stop of the creator's work request. A
/// bridge wait in a raw fiber then ends the way a cancelled Asio operation
/// does, so Boost-style error handling deals with it: `use_fiber[ec]` reports
/// `asio::error::operation_aborted`, the throwing forms (`use_fiber`,
/// `bridge::mutex`/`event`/`channel` waits, `this_fiber::sleep_*`) throw
/// `boost::system::system_error` carrying it. Stop waits for raw fibers as
/// for tracked work. A raw fiber still running `stop_report_after` after the
/// stop (blocked on a stock Boost.Fiber primitive nobody signals, or
/// retrying after operation_aborted) is named in the stop report and
/// abandoned: never resumed again, its stack never freed, so that the
/// thread can end; waking it afterwards (notifying the stock primitive it
/// waits on) is undefined behaviour.
class runtime {
 public:
  /// Starts a loop thread with an io_context of its own.
  explicit runtime(runtime_options options = {});
  /// Makes the calling thread a coport loop over `io`: from now on, fibers
  /// created on this thread (raw Boost.Fiber ones included) are scheduled by
  /// the loop; they start running when run() is called. Must be made on a
  /// thread's main context (not in a fiber), on a thread that runs no other
  /// loop, with an io_context that no other runtime uses; otherwise throws
  /// std::logic_error (std::invalid_argument for a null `io`). The runtime
  /// must be destroyed on the same thread; after that the thread is a plain
  /// Boost.Fiber thread again (round robin), and `io` may be destroyed or
  /// restarted, but not run with handlers of this loop still queued in it:
  /// destroy it rather than run it if work was posted to the loop after it
  /// stopped.
  runtime(std::shared_ptr<boost::asio::io_context> io, runtime_options options = {});
  /// Stops and joins. A runtime on the caller's thread that was never run
  /// is stopped and run until its work has ended.
  ~runtime();

  /// For a runtime made on the calling thread over an io_context: runs the
  /// loop here until the io_context is stopped (`io->stop()` from any
  /// fiber, handler or thread) or stop() is called. Then it stops the loop's
  /// work (tracked work and raw fibers, see the class comment) and keeps
  /// running, with the io_context restarted if it was stopped, until that
  /// work has ended, and returns with the io_context stopped (restart() it to
  /// reuse it). Callable once, on the thread that made the runtime; otherwise
  /// throws std::logic_error. Everything else (executors, work tags,
  /// run_in_fiber, spawn, the stall watchdog, which watches run() only)
  /// works as on a loop thread.
  void run();
  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;

  /// Executor for native work on this loop (untagged).
  [[nodiscard]] loop_executor get_executor() const noexcept;
  /// Executor whose work is counted under `work_name`.
  [[nodiscard]] loop_executor get_executor(std::string_view work_name) const;
  /// The loop's io_context (for I/O objects that want one).
  [[nodiscard]] boost::asio::io_context& io_context() noexcept;

  /// Runs `f` natively on the loop fiber; callable from any thread.
  template <class F>
  void post(F&& f) const {
    boost::asio::post(get_executor(), std::forward<F>(f));
  }

  /// Requests shutdown; returns at once; thread-safe and idempotent.
  void stop();
  /// Waits for the loop thread to finish (after stop()); nothing for a
  /// runtime on the caller's thread, whose run() returns when it has ended.
  void join();
  /// True once stop() has been called.
  [[nodiscard]] bool stopping() const noexcept;

  [[nodiscard]] diagnostics& registry() noexcept;
  [[nodiscard]] const runtime_options& options() const noexcept;
  [[nodiscard]] std::thread::id thread_id() const noexcept;
  /// Number of fibers and coroutines started through the runtime that are
  /// still running (read on any thread; exact once the loop is idle).
  [[nodiscard]] std::size_t tracked_work() const noexcept;
  /// The loop's busy and idle time, stalls, work and fibers alive.
  [[nodiscard]] loop_stats stats() const noexcept;

  /// The runtime behind a loop executor.
  static runtime& of(const loop_executor& ex) noexcept;

 private:
  std::unique_ptr<detail::loop> loop_;
};

/// N loops, one thread each, for multi-core use. Work is handed to a loop by
/// index or round robin; each loop has its own fibers (fibers do not migrate).
class runtime_pool {
 public:
  /// Starts `threads` loops named `<name>-0` ... sharing one counter registry.
  runtime_pool(std::size_t threads, runtime_options options = {});
  ~runtime_pool();

  [[nodiscard]] std::size_t size() const noexcept { return loops_.size(); }
  [[nodiscard]] runtime& operator[](std::size_t i) noexcept { return *loops_[i]; }
  /// The next loop in round robin order; thread-safe.
  [[nodiscard]] runtime& next() noexcept;
  /// Executor of the next loop in round robin order.
  [[nodiscard]] loop_executor get_executor() noexcept { return next().get_executor(); }
  [[nodiscard]] diagnostics& registry() noexcept { return *registry_; }

  /// Stops every loop (see runtime::stop()).
  void stop();
  /// Joins every loop.
  void join();

 private:
  std::shared_ptr<diagnostics> registry_;
  std::vector<std::unique_ptr<runtime>> loops_;
  std::atomic<std::size_t> next_{0};
};

namespace detail {

/// The coport loop behind any executor (loop, hosted, strand, any_io_executor
/// wrapping one of these), or nullptr.
template <class Executor>
loop* loop_of_executor(const Executor& ex) noexcept {
  if constexpr (std::is_same_v<Executor, loop_executor>) {
    return ex.get_loop();
  } else {
    return loop_of_context(boost::asio::query(ex, boost::asio::execution::context));
  }
}

/// The work tag an executor carries, or nullptr.
template <class Executor>
const work_tag* tag_of_executor(const Executor& ex) noexcept {
  if constexpr (std::is_same_v<Executor, loop_executor>) {
    return ex.tag();
  } else if constexpr (std::is_same_v<Executor, boost::asio::any_io_executor>) {
    if (auto* le = ex.template target<loop_executor>()) return le->tag();
    return nullptr;
  } else {
    return nullptr;
  }
}

/// Like loop_of_executor but throws `error(foreign_executor)` for an executor
/// that does not belong to a coport runtime.
template <class Executor>
loop* require_loop(const Executor& ex, const char* what) {
  loop* l = loop_of_executor(ex);
  if (!l) {
    throw error(errc::foreign_executor,
                std::string(what) + ": the executor does not belong to a coport runtime");
  }
  return l;
}

}  // namespace detail

}  // namespace coport::bridge

#endif
