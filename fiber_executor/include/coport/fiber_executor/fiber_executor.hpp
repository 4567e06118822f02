#ifndef COPORT_FIBER_EXECUTOR_FIBER_EXECUTOR_HPP
#define COPORT_FIBER_EXECUTOR_FIBER_EXECUTOR_HPP

// fiber_executor: serves a service's endpoints on coport loops (bridge/),
// the executor a legacy service starts on and ports on. Fiber methods run in
// a pooled fiber per request; coroutine methods are spawned on the loop,
// hosted in a fiber (the default: they may still call unported fiber code)
// or native, chosen per method.

#include <coport/bridge/runtime.hpp>
#include <coport/messaging/serving/executor.hpp>

#include <map>
#include <memory>
#include <string>

namespace coport {

/// How fiber_executor runs a coroutine method.
enum class coroutine_mode {
  hosted,  ///< in a fiber of its own: may call unported fiber-blocking code
  native   ///< on the loop fiber: must only co_await (blocking throws)
};

struct fiber_executor_options : messaging::executor_options {
  /// Coroutine methods' mode by "endpoint.method" or by "method" (the
  /// first that matches); the others get `default_mode`.
  std::map<std::string, coroutine_mode, std::less<>> modes{};
  coroutine_mode default_mode = coroutine_mode::hosted;
};

/// Serves `service` on one coport loop or a pool of loops. Each loop polls
/// the transport from a dispatch fiber and serves up to its share of
/// max_in_flight requests; past it that loop takes no message until one of
/// its requests finishes. The reply is sent from the request's own fiber or
/// coroutine, never from the dispatch fiber. Fibers get the runtime's stack
/// size (`bridge::runtime_options::fiber_stack_size`, 64 KiB by default, of
/// which a parked request touches a few pages).
///
/// A request's deadline (the caller's timeout) cancels it: a coroutine
/// through Asio cancellation, a fiber at its next interruption point
/// (`bridge::this_fiber`). The runtime(s) must outlive the executor.
class fiber_executor final : public messaging::executor {
 public:
  fiber_executor(messaging::service s, bridge::runtime& rt, fiber_executor_options options = {});
  fiber_executor(messaging::service s, bridge::runtime_pool& pool, fiber_executor_options options = {});
  /// Stops taking messages (without waiting) if still running.
  ~fiber_executor() override;

  void start() override;
  [[nodiscard]] std::string_view name() const noexcept override { return "fiber_executor"; }
  [[nodiscard]] std::size_t in_flight() const noexcept override;
  [[nodiscard]] std::size_t peak_in_flight() const noexcept override;
  [[nodiscard]] std::vector<messaging::method_report> metrics() const override;
  [[nodiscard]] std::uint64_t rejected() const noexcept override;
  /// The service's migration controls: each call runs the form its
  /// method's policy chooses (legacy, ported, canary, shadow).
  [[nodiscard]] std::shared_ptr<messaging::migration_controls> controls() const override;

  /// The mode a coroutine method of `endpoint` named `method` runs in.
  [[nodiscard]] coroutine_mode mode_of(std::string_view endpoint, std::string_view method) const;

 private:
  struct impl;
  void stop_impl(boost::asio::any_completion_handler<void()> done) override;
  std::shared_ptr<impl> impl_;
};

}  // namespace coport

#endif
