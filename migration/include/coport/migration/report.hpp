#ifndef COPORT_MIGRATION_REPORT_HPP
#define COPORT_MIGRATION_REPORT_HPP

// The migration report: every migration point (RPC methods included) with
// its forms, policy, per-form records and diagnostics, shadow results, and
// the readiness verdict with its reasons. Text for people, JSON for tools.

#include <coport/migration/metrics.hpp>
#include <coport/migration/policy.hpp>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace coport::migration {

/// One difference a shadow call found between the two forms.
struct shadow_mismatch {
  /// The group of the point: an RPC endpoint, or a registry's name.
  std::string endpoint;
  /// The point: an RPC method, or a migration point's name.
  std::string method;
  /// The call's arguments, as received (empty when the point has no way to
  /// describe them).
  boost::json::object args;
  /// Each form's outcome: the JSON result, or "error: <class>: <message>".
  std::string legacy;
  std::string ported;
  std::chrono::system_clock::time_point when;
};

/// The report of a set of migration points; the same columns for RPC
/// methods and for any other point.
struct report {
  struct form_row {
    form_kind kind = form_kind::fiber;
    /// How it ran: "fiber", "hosted", "native", "thread pool", "coroutine",
    /// "unused" or "refused".
    std::string mode;
    std::uint64_t calls = 0;
    std::uint64_t errors = 0;
    std::uint64_t cancelled = 0;
    std::chrono::nanoseconds p50{};
    std::chrono::nanoseconds p99{};
    /// Times the form blocked fibers from a hosted coroutine (unported code).
    std::uint64_t implicit_yields = 0;
    /// Times it kept its loop from Asio past the stall threshold.
    std::uint64_t stalls = 0;
    /// Calls running now.
    std::int64_t in_flight = 0;
    /// The latency histogram, for Prometheus (not in to_json(): the JSON
    /// keeps p50 and p99).
    latency_buckets latency{};
  };
  struct method_row {
    std::string endpoint;
    std::string method;
    /// "method" (an RPC method) or "point" (a migration point of any code).
    std::string unit = "method";
    /// "fiber", "coroutine" or "both".
    std::string kinds;
    std::string policy;
    std::vector<form_row> forms;  ///< legacy first
    std::uint64_t shadow_calls = 0;
    std::uint64_t shadow_mismatches = 0;

    /// "endpoint.method", or the method alone for a point without an
    /// endpoint: the name the report shows and policies are set by.
    [[nodiscard]] std::string full_name() const { return endpoint.empty() ? method : endpoint + "." + method; }
  };
  /// Where the figures come from ("fiber_executor", "coro_executor",
  /// "migration points", or several joined with " + ").
  std::string executor;
  /// What the verdict is about: "coro_executor" (an RPC service's move),
  /// or "removing Boost.Fiber".
  std::string goal = "coro_executor";
  std::vector<method_row> methods;
  std::vector<shadow_mismatch> mismatches;
  /// Empty: ready. Otherwise one line per reason.
  std::vector<std::string> not_ready;

  [[nodiscard]] bool ready() const noexcept { return not_ready.empty(); }
  /// "ready for <goal>" or "not ready for <goal>: N reason(s)".
  [[nodiscard]] std::string verdict() const;
  /// Computes `not_ready` from the rows: points with only a fiber form,
  /// points not served by their ported form, ported forms that blocked
  /// fibers, ran hosted or stalled their loop, shadow mismatches.
  void judge();
  /// Appends `other`'s rows and mismatches (one report of an RPC service
  /// and of the migration points of the same process), then judges again.
  void add(const report& other);
  /// A table for people, then the mismatches and the verdict with reasons.
  [[nodiscard]] std::string to_text() const;
  [[nodiscard]] boost::json::object to_json() const;
  /// Reads what to_json() wrote (a report fetched from a running service);
  /// throws report_decode_error naming the field that is wrong.
  static report from_json(const boost::json::value& v);
};

/// A report in JSON that does not have the expected fields.
class report_decode_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace coport::migration

#endif
