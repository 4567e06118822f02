#ifndef COPORT_CORO_EXECUTOR_CORO_EXECUTOR_HPP
#define COPORT_CORO_EXECUTOR_CORO_EXECUTOR_HPP

// coro_executor: serves a fully ported service on plain Asio, with no
// Boost.Fiber or Boost.Context anywhere in its include or link closure.

#include <coport/messaging/serving/executor.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace coport {

/// start() found methods with only a fiber (plain) form; what() lists them
/// all as "endpoint.method".
class fiber_methods_remain : public std::runtime_error {
 public:
  explicit fiber_methods_remain(std::vector<std::string> methods);
  const std::vector<std::string>& methods() const noexcept { return methods_; }

 private:
  std::vector<std::string> methods_;
};

struct coro_executor_options : messaging::executor_options {
  /// 0 (the default): start() refuses a service that still has fiber-form
  /// methods without a coroutine form, naming them (fiber_methods_remain).
  /// Above 0: they run on a thread pool of this many threads instead. Only
  /// for plain blocking functions: a method that waits on a fiber primitive
  /// or fiber-aware I/O has no scheduler there and deadlocks or crashes; at
  /// most this many run at once, so slow ones queue the others; and a
  /// deadline cannot interrupt them.
  std::size_t fiber_method_threads = 0;

  /// Where requests are taken from the transport: on the executor
  /// (`automatic` for transports with asynchronous support), or polled from
  /// a thread of the executor's own that hands them to the executor
  /// (`automatic` for transports whose client library blocks).
  enum class polling { automatic, thread, executor };
  polling poll = polling::automatic;
  /// How long one poll of a blocking transport waits before it looks at a
  /// stop request again.
  std::chrono::milliseconds poll_interval{100};
  /// True when exactly one thread runs the executor's io_context: requests
  /// then run directly on it. Otherwise (the default) each request gets a
  /// strand of its own, so that its deadline and cancellation are never
  /// handled on two threads at once.
  bool single_thread = false;
};

/// Serves `service`'s coroutine methods on `ex` (an io_context's executor,
/// run by one or more threads; each request runs in a strand of its own
/// unless coro_executor_options::single_thread says one thread runs it).
/// Bounded like fiber_executor: at most max_in_flight requests, past it no
/// message is taken. A request's deadline cancels its coroutine through
/// Asio cancellation. The reply is sent from the request's coroutine.
class coro_executor final : public messaging::executor {
 public:
  coro_executor(messaging::service s, boost::asio::any_io_executor ex, coro_executor_options options = {});
  /// Stops taking messages if still running, and joins the polling thread.
  ~coro_executor() override;

  /// Throws fiber_methods_remain (see coro_executor_options), and
  /// invalid_target for a server target the transport refuses.
  void start() override;
  [[nodiscard]] std::string_view name() const noexcept override { return "coro_executor"; }
  [[nodiscard]] std::size_t in_flight() const noexcept override;
  [[nodiscard]] std::size_t peak_in_flight() const noexcept override;
  [[nodiscard]] std::vector<messaging::method_report> metrics() const override;
  [[nodiscard]] std::uint64_t rejected() const noexcept override;
  /// Policies are kept (and reported) but not followed: coro_executor runs
  /// the ported form of every method that has one.
  [[nodiscard]] std::shared_ptr<messaging::migration_controls> controls() const override;

  /// True once started with a polling thread.
  [[nodiscard]] bool polls_from_thread() const noexcept;

 private:
  struct impl;
  void stop_impl(boost::asio::any_completion_handler<void()> done) override;
  std::shared_ptr<impl> impl_;
};

}  // namespace coport

#endif
