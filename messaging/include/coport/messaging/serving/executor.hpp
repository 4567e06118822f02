#ifndef COPORT_MESSAGING_EXECUTOR_HPP
#define COPORT_MESSAGING_EXECUTOR_HPP

// serving/: running an RPC service, at the top of messaging. The executor
// contract both executors implement (executor.hpp), the bookkeeping they
// share (serving.hpp: a request's life, an executor's stop, metrics, the
// admin endpoint) and the migration controls of RPC methods on top of
// coport::migration (migration.hpp). It builds on rpc/; the executors
// themselves are coport::fiber_executor and coport::coro_executor.
//
// What the two executors (coport::fiber_executor, coport::coro_executor)
// share: the service they serve, their common settings, per-method metrics,
// and the executor interface a service is started and stopped through, so
// that choosing the executor is configuration, not code.

#include <coport/messaging/rpc/endpoint.hpp>
#include <coport/messaging/serving/migration.hpp>
#include <coport/migration/metrics.hpp>
#include <coport/messaging/wire/target.hpp>
#include <coport/messaging/transport/transport.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace coport::messaging {

/// What an executor serves: the requests of server `where` (topic and
/// server name) on `transport`, dispatched to `dispatcher`'s endpoints.
struct service {
  std::shared_ptr<messaging::transport> transport;
  target where;
  std::shared_ptr<const messaging::dispatcher> dispatcher;
  /// Policies, shadow results and strict mode of the dispatcher's methods.
  /// Null: built at start from default migration_options (every method in
  /// both forms served by its ported form). Share one between the executors
  /// a service moves through.
  std::shared_ptr<migration_controls> controls = {};
};

/// Settings both executors share.
struct executor_options {
  /// Requests being served at once; past it the executor takes no message
  /// from the transport until one finishes (backpressure: unread messages
  /// stay with the transport).
  std::size_t max_in_flight = 1024;
  /// How long a graceful stop lets requests in flight finish before it
  /// cancels them.
  std::chrono::steady_clock::duration drain_time = std::chrono::seconds(30);
  /// The admin endpoint (namespace `coport.admin`: migration report, policy
  /// changes); off when empty.
  std::optional<admin_options> admin;
};

/// Latency records and per-form counters are the migration layer's.
using latency_histogram = migration::latency_histogram;
/// Counters of one form of one method, as an executor serves it.
using method_metrics = migration::form_metrics;

/// A copy of one method's metrics.
struct method_report {
  std::string endpoint;
  std::string method;
  method_kind kind = method_kind::fiber;
  /// How the executor runs it: "fiber", "hosted", "native", "thread pool";
  /// on coro_executor a fiber form is "unused" when the method's ported
  /// form serves every call, "refused" when start() refuses it (no thread
  /// pool configured).
  std::string mode;
  /// The executor that ran it ("fiber_executor", "coro_executor").
  std::string executor;
  std::uint64_t calls = 0;
  std::uint64_t errors = 0;
  std::uint64_t cancelled = 0;
  std::int64_t in_flight = 0;
  std::chrono::nanoseconds p50{};
  std::chrono::nanoseconds p99{};
  migration::latency_buckets latency{};
  /// fiber_executor: times the form blocked fibers from a hosted coroutine,
  /// and kept its loop past the stall threshold (zero elsewhere).
  std::uint64_t implicit_yields = 0;
  std::uint64_t stalls = 0;
};

/// The metrics of every method form a dispatcher serves; the set is fixed
/// at construction, so lookups need no lock.
class metrics_table {
 public:
  /// `mode_of` names how the executor runs each form.
  metrics_table(const dispatcher& d, std::string executor_name,
                const std::function<std::string(const endpoint&, const method&, const method_form&)>& mode_of);
  /// The metrics of `form`, or null for a form not in the dispatcher.
  method_metrics* find(const method_form* form) const noexcept;
  [[nodiscard]] std::vector<method_report> report() const;

 private:
  struct row {
    const method_form* form;
    std::string endpoint;
    std::string method;
    method_kind kind;
    std::string mode;
    std::unique_ptr<method_metrics> metrics;
  };
  std::string executor_;
  std::vector<row> rows_;  // sorted by form address
};

/// Requests dispatching turned away before any method ran (no such method,
/// unsupported version, malformed).
struct dispatch_metrics {
  std::atomic<std::uint64_t> rejected{0};
};

/// Fiber-form methods that have no coroutine form, as "endpoint.method"
/// (what coro_executor cannot run without its thread pool).
std::vector<std::string> fiber_only_methods(const dispatcher& d);

/// A running service's executor. Both executors implement it; a program
/// holds a `std::unique_ptr<executor>` made by either, chosen by
/// configuration.
class executor {
 public:
  virtual ~executor() = default;

  /// Starts taking requests; returns at once. Throws if the service cannot
  /// be served (coro_executor: fiber methods remain).
  virtual void start() = 0;

  /// Graceful stop: stops taking messages (the transport keeps those not
  /// taken), lets the requests in flight finish and reply for up to
  /// drain_time, then cancels what is left (logged) and completes with `()`
  /// once every request has replied. A second call cancels what is left at
  /// once. Thread-safe.
  template <class CompletionToken>
  auto async_stop(CompletionToken&& token) {
    return boost::asio::async_initiate<CompletionToken, void()>(
        [this](auto handler) { stop_impl(detail::deliver(std::move(handler))); }, token);
  }

  /// "fiber_executor" or "coro_executor".
  [[nodiscard]] virtual std::string_view name() const noexcept = 0;
  /// Requests being served now.
  [[nodiscard]] virtual std::size_t in_flight() const noexcept = 0;
  /// The most requests ever in flight at once.
  [[nodiscard]] virtual std::size_t peak_in_flight() const noexcept = 0;
  /// Per-method metrics (empty before start()).
  [[nodiscard]] virtual std::vector<method_report> metrics() const = 0;
  /// Requests turned away by the dispatcher.
  [[nodiscard]] virtual std::uint64_t rejected() const noexcept = 0;
  /// The migration controls in use (the service's, or the ones built at
  /// start; null before start()).
  [[nodiscard]] virtual std::shared_ptr<migration_controls> controls() const = 0;
  /// The migration report of what this executor served (see migration.hpp).
  [[nodiscard]] migration_report report() const;

 protected:
  virtual void stop_impl(boost::asio::any_completion_handler<void()> done) = 0;
};

}  // namespace coport::messaging

#endif
