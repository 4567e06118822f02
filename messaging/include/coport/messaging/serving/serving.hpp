#ifndef COPORT_MESSAGING_SERVING_HPP
#define COPORT_MESSAGING_SERVING_HPP

// The bookkeeping both executors share, for executor implementers: a
// request's life (dispatch, metrics, deadline, cancellation, reply) and an
// executor's (listener, in-flight set, graceful stop with a drain time).
// An executor supplies only how a method runs: in a fiber, hosted, native,
// on a thread pool.

#include <coport/messaging/serving/executor.hpp>
#include <coport/messaging/rpc/server.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace coport::messaging::serving {

class core;

/// Why a request was cancelled.
enum class cancel_reason { none, deadline, stop };

/// Strict mode's check of one call, set by an executor that can tell when a
/// coroutine form blocked fibers or stalled its loop: asked when the method
/// returns; a violation replaces its result with strict_mode_violation.
class strict_check {
 public:
  virtual ~strict_check() = default;
  /// What the call did wrong, or empty.
  virtual std::string violation() = 0;
};

/// One request being served. Created by core::accept(); the executor runs
/// the method with `cancellation_slot()` bound to it, calls finish() with the
/// reply from the method's own fiber or coroutine, then core::release().
class request : public std::enable_shared_from_this<request> {
 public:
  request(std::shared_ptr<core> c, std::unique_ptr<incoming_call> in, boost::asio::any_io_executor ex);
  ~request();
  request(const request&) = delete;
  request& operator=(const request&) = delete;

  rpc_request& message() noexcept { return in_->request(); }
  const endpoint& target_endpoint() const noexcept { return *endpoint_; }
  const method& target_method() const noexcept { return *method_; }
  const method_form& form() const noexcept { return *form_; }
  /// The form that also runs for comparison (shadow policy), or null. It
  /// runs after the reply (run_shadow) and the request is in flight until
  /// it is done.
  const method_form* shadow_form() const noexcept { return shadow_; }
  /// Strict mode for this call (see strict_check); before the method runs.
  void set_strict_check(std::unique_ptr<strict_check> c) noexcept { strict_ = std::move(c); }
  /// The executor the method runs on (completions, deadline timer).
  const boost::asio::any_io_executor& get_executor() const noexcept { return ex_; }

  /// Bind the method's operation to this: cancelling the request (deadline,
  /// stop) emits terminal cancellation on it.
  boost::asio::cancellation_slot cancellation_slot() noexcept { return signal_.slot(); }

  /// Registers the request's deadline (when the caller sent a timeout) with
  /// the executor's deadline queue, which cancels the request when it
  /// passes. Call once, before the method starts; thread-safe.
  void arm_deadline();

  /// Asks the method to stop: emits terminal cancellation on the request's
  /// executor. Thread-safe; the first reason is kept.
  void cancel(cancel_reason why);
  [[nodiscard]] cancel_reason cancelled() const noexcept { return reason_.load(); }

  /// What the method gets as its request_context (built when accepted).
  request_context& context() noexcept { return context_; }

  /// Records the metrics and sends `reply` (for a call). From the method's
  /// fiber or coroutine, once. A reply the transport cannot send is logged
  /// with its message id.
  void finish(rpc_reply reply);
  /// finish() with the method's result, or with its exception as
  /// oslo.messaging's failure.
  void finish_result(boost::json::value result);
  void finish_error(std::exception_ptr e);

  /// Runs the request's fiber-form method to its end on the calling thread
  /// or fiber and finishes the request with its result or exception.
  void run_plain() noexcept;
  /// Runs the coroutine-form method and finishes the request. The frame
  /// holds little, since a parked request pays for it.
  static boost::asio::awaitable<void> run_coroutine(std::shared_ptr<request> r);
  /// After the primary form has finished: runs the shadow form with a copy
  /// of the arguments, records its metrics and compares its outcome with
  /// the primary's (shadow_form() must be set).
  static boost::asio::awaitable<void> run_shadow(std::shared_ptr<request> r);

 private:
  friend class core;
  std::shared_ptr<core> core_;
  std::unique_ptr<incoming_call> in_;
  boost::asio::any_io_executor ex_;
  const endpoint* endpoint_ = nullptr;
  const method* method_ = nullptr;
  const method_form* form_ = nullptr;
  const method_form* shadow_ = nullptr;
  method_metrics* metrics_ = nullptr;
  // Shadow policy: the arguments before the primary form consumed them, and
  // the primary form's outcome.
  std::unique_ptr<boost::json::object> shadow_args_;
  std::optional<rpc_reply> primary_outcome_;
  std::atomic<bool> shadow_running_{false};
  std::unique_ptr<strict_check> strict_;
  std::chrono::steady_clock::time_point started_;
  request_context context_;
  boost::asio::cancellation_signal signal_;
  // Entry in core's deadline queue, when armed (guarded by core's deadline mutex).
  std::optional<std::multimap<std::chrono::steady_clock::time_point, std::weak_ptr<request>>::iterator> deadline_;
  std::atomic<cancel_reason> reason_{cancel_reason::none};
  std::atomic<bool> finished_{false};
  // In-flight list, guarded by core's mutex.
  request* prev_ = nullptr;
  request* next_ = nullptr;
};

/// An executor's state: the service, the listener, the requests in flight
/// and the stop sequence. Thread-safe. Held by shared_ptr (requests and
/// timers keep it alive).
class core : public std::enable_shared_from_this<core> {
 public:
  /// `mode_of` names how the executor runs each method form (metrics).
  /// `follows_policies`: the executor runs the form a method's migration
  /// policy chooses (fiber_executor); otherwise it always runs the ported
  /// form of a method that has one (coro_executor).
  core(service s, executor_options options, std::string executor_name,
       std::function<std::string(const endpoint&, const method&, const method_form&)> mode_of,
       bool follows_policies);
  ~core();

  const service& served() const noexcept { return service_; }
  const executor_options& options() const noexcept { return options_; }
  const std::string& executor_name() const noexcept { return name_; }
  spdlog::logger& log() const noexcept { return service_.transport->log(); }

  /// Opens the listener (throws invalid_target) and builds the metrics;
  /// the deadline timer runs on `timer_ex`.
  void open(boost::asio::any_io_executor timer_ex);
  listener& get_listener() noexcept { return *listener_; }

  /// Dispatches `in`: the request to run, registered as in flight; or null
  /// when the dispatcher turned it away (a failure reply was sent, the
  /// rejection counted and logged). `ex` is the request's executor.
  std::shared_ptr<request> accept(std::unique_ptr<incoming_call> in, boost::asio::any_io_executor ex);
  /// The request has finished: it leaves the in-flight set.
  void release(request& r) noexcept;

  /// A dispatch loop starts / has exited (stop completes after every loop
  /// has exited and every request is released).
  void loop_started() noexcept;
  void loop_exited() noexcept;

  /// Begins (first call) or hurries (later calls) the stop: the listener
  /// stops, the drain timer runs on `timer_ex`; `done` is called once the
  /// executor is idle.
  void stop(boost::asio::any_completion_handler<void()> done, boost::asio::any_io_executor timer_ex);
  [[nodiscard]] bool stopping() const noexcept { return stopping_.load(std::memory_order_acquire); }

  [[nodiscard]] std::size_t in_flight() const noexcept { return in_flight_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::size_t peak_in_flight() const noexcept { return peak_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t rejected() const noexcept { return rejected_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::vector<method_report> metrics() const;
  [[nodiscard]] const std::shared_ptr<migration_controls>& controls() const noexcept { return controls_; }
  /// Called by metrics() to add what only the executor knows (implicit
  /// yields, stalls); set before open().
  void set_metrics_hook(std::function<void(std::vector<method_report>&)> hook) { metrics_hook_ = std::move(hook); }

 private:
  // The admin endpoint's calls (namespace coport.admin), answered here.
  void serve_admin(request& r);
  friend class request;
  void cancel_all(const char* why);
  // The deadline queue: one timer for every request, re-armed only when the
  // earliest deadline moves (callers' timeouts are mostly alike, so a new
  // request rarely does), instead of a timer per request.
  void add_deadline(request& r, std::chrono::steady_clock::time_point when);
  void remove_deadline(request& r) noexcept;
  void on_deadline_timer();
  void arm_deadline_timer(std::chrono::steady_clock::time_point when);
  void maybe_done(std::unique_lock<std::mutex>& lk);

  service service_;
  executor_options options_;
  std::string name_;
  std::function<std::string(const endpoint&, const method&, const method_form&)> mode_of_;
  std::optional<listener> listener_;
  std::unique_ptr<metrics_table> metrics_;
  std::shared_ptr<migration_controls> controls_;
  bool follows_policies_;
  std::function<void(std::vector<method_report>&)> metrics_hook_;

  mutable std::mutex mutex_;  // guards the list, loops_, waiters_, drain_timer_
  request* head_ = nullptr;
  std::size_t loops_ = 0;
  std::vector<boost::asio::any_completion_handler<void()>> waiters_;
  std::shared_ptr<boost::asio::steady_timer> drain_timer_;

  std::mutex deadline_mutex_;
  std::multimap<std::chrono::steady_clock::time_point, std::weak_ptr<request>> deadlines_;
  std::optional<boost::asio::steady_timer> deadline_timer_;  // touched on its executor only
  // When the timer is set to fire (max: not set); guarded by deadline_mutex_.
  std::chrono::steady_clock::time_point deadline_armed_ = std::chrono::steady_clock::time_point::max();
  std::atomic<bool> stopping_{false};
  std::atomic<bool> drain_over_{false};
  std::atomic<std::size_t> in_flight_{0};
  std::atomic<std::size_t> peak_{0};
  std::atomic<std::uint64_t> rejected_{0};
};

}  // namespace coport::messaging::serving

#endif
