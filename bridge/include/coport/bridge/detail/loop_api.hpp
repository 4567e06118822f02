#ifndef COPORT_BRIDGE_DETAIL_LOOP_API_HPP
#define COPORT_BRIDGE_DETAIL_LOOP_API_HPP

// The narrow interface between the bridge's templates and the loop, whose
// state machine lives in bridge/src (the loop is not a template).

#include <coport/bridge/detail/config.hpp>
#include <coport/bridge/detail/task.hpp>

#include <boost/asio/execution_context.hpp>
#include <boost/asio/io_context.hpp>

#include <exception>
#include <stop_token>
#include <string>

namespace coport::bridge {
struct work_tag;
class diagnostics;
}  // namespace coport::bridge

#if COPORT_BRIDGE_FIBERS
namespace boost::fibers {
class context;
}
#endif

namespace coport::bridge::detail {

class loop;
class host;

#if COPORT_BRIDGE_FIBERS
/// The running fiber context on a coport loop thread, kept by the loop's
/// scheduler at every switch (null on other threads). Boost.Fiber's own
/// context::active() lives in a shared library and costs two dynamic TLS
/// lookups; this mirror is one ordinary thread-local read.
extern constinit thread_local boost::fibers::context* tl_running;

/// The running fiber context (any thread).
boost::fibers::context* running_context() noexcept;
#endif

/// The loop whose thread is the calling thread, or nullptr.
loop* current_loop() noexcept;
/// Queues `t` on `l`'s loop fiber; callable from any thread.
void submit(loop* l, task* t);
/// True while the caller is native code on `l`'s loop fiber (so work for the
/// loop may run inline).
bool in_loop_fiber(const loop* l) noexcept;
boost::asio::io_context& io_of(loop* l) noexcept;
diagnostics& diagnostics_of(loop* l) noexcept;
/// The coport loop that owns `ctx`, or nullptr for a foreign execution context.
loop* loop_of_context(boost::asio::execution_context& ctx) noexcept;

#if COPORT_BRIDGE_FIBERS
/// Throws `error` if the calling context must not block on a fiber
/// primitive: the loop fiber or scheduler of a coport loop (always), or a
/// hosted coroutine's host fiber in strict mode. `what` names the call.
void check_can_block(const char* what);
/// Throws `error(not_on_runtime)` unless the caller is a fiber (not the loop
/// fiber) of a coport loop; returns that loop.
loop* require_runtime_fiber(const char* what);

/// Counts an implicit yield if the caller is a hosted coroutine's fiber
/// about to block (for blocking the scheduler cannot see as such).
void count_implicit_yield_if_hosted() noexcept;

/// Stop token of the calling fiber's current work (empty if none).
std::stop_token current_stop_token() noexcept;
#endif
/// Tag of the calling fiber's or coroutine's current work (never null).
const work_tag* current_tag() noexcept;

/// Work the loop tracks so that stop() can cancel it and wait for it:
/// fiber jobs and coroutines started through the bridge. Linked and
/// unlinked on the loop thread only.
class tracked_work {
 public:
  virtual ~tracked_work() = default;
  /// Cancels the work at its next interruption point.
  void request_stop() noexcept { stop_.request_stop(); }
  std::stop_token stop_token() const noexcept { return stop_.get_token(); }
  std::stop_source stop_source() const noexcept { return stop_; }

  const work_tag* tag = nullptr;
  tracked_work* prev = nullptr;
  tracked_work* next = nullptr;

 private:
  std::stop_source stop_;
};

#if COPORT_BRIDGE_FIBERS
/// Work that runs in a pooled fiber; the pool owns it and deletes it after
/// run() returns.
class fiber_job : public tracked_work {
 public:
  /// Runs the work and delivers its result; must not throw.
  virtual void run() noexcept = 0;

  // Jobs are created and freed once per call: recycle their memory through
  // the same per-thread cache as queued tasks.
  static void* operator new(std::size_t size) { return allocate_task_block(size); }
  static void operator delete(void* p, std::size_t size) noexcept {
    deallocate_task_block(p, size);
  }
};

#endif

/// Registers / unregisters tracked work; loop thread only.
void track(loop* l, tracked_work* w) noexcept;
void untrack(loop* l, tracked_work* w) noexcept;
/// Logs an error through the loop's logger.
void log_error(loop* l, const std::string& message) noexcept;
/// Logs an exception that ended detached work named by `tag`.
void log_exception(loop* l, const work_tag* tag, std::exception_ptr e);

#if COPORT_BRIDGE_FIBERS
/// Hands `job` to a pooled fiber of `l` (from any thread). If the loop is
/// stopping the job is still run, with its stop already requested.
void submit_job(loop* l, fiber_job* job);
#endif

}  // namespace coport::bridge::detail

#endif
