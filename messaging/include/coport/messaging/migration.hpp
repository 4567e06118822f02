#ifndef COPORT_MESSAGING_MIGRATION_HPP
#define COPORT_MESSAGING_MIGRATION_HPP

// Migration controls: which form of a method registered in both forms serves
// each call (legacy, ported, canary, shadow), changed at run time with
// instant rollback; shadow mismatches; the migration report and its
// readiness verdict; strict mode; the reserved admin endpoint that serves
// the report and policy changes to a running service.

#include <coport/messaging/endpoint.hpp>
#include <coport/messaging/errors.hpp>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace coport::messaging {

struct method_report;

/// Which form serves the calls of a method registered in both forms.
struct policy {
  enum class kind {
    legacy,  ///< the fiber form
    ported,  ///< the coroutine form
    canary,  ///< `percent` % of calls (chosen per call) to the ported form, the rest legacy
    shadow   ///< both run; the caller gets the legacy result; differences are recorded
  };
  kind what = kind::ported;
  /// canary: share of calls sent to the ported form, 0..100.
  unsigned percent = 0;

  static policy legacy() noexcept { return {kind::legacy, 0}; }
  static policy ported() noexcept { return {kind::ported, 0}; }
  static policy canary(unsigned percent);  ///< throws invalid_policy above 100
  static policy shadow() noexcept { return {kind::shadow, 0}; }

  /// Parses "legacy", "ported", "canary:N" (or "canary:N%"), "shadow".
  /// Throws invalid_policy naming what is wrong.
  static policy parse(std::string_view text);
  /// The form parse() reads ("canary:10").
  [[nodiscard]] std::string to_string() const;
  bool operator==(const policy&) const = default;
};

/// A policy that cannot be used: unparsable, or naming a method that does
/// not exist or lacks the form the policy needs.
class invalid_policy : public messaging_error {
 public:
  explicit invalid_policy(const std::string& what) : messaging_error(errc::invalid_policy, what) {}
};

/// A coroutine form ran under strict mode and blocked fibers (implicit
/// yield) or stalled its loop; the call fails with this instead of its
/// result.
class strict_mode_violation : public messaging_error {
 public:
  explicit strict_mode_violation(const std::string& what) : messaging_error(errc::strict_violation, what) {}
};

/// A call to the admin endpoint without the configured token.
class admin_denied : public messaging_error {
 public:
  explicit admin_denied(const std::string& what) : messaging_error(errc::admin_denied, what) {}
};

/// One difference a shadow call found between the two forms.
struct shadow_mismatch {
  std::string endpoint;
  std::string method;
  /// The call's arguments, as received.
  boost::json::object args;
  /// Each form's outcome: the JSON result, or "error: <class>: <message>".
  std::string legacy;
  std::string ported;
  std::chrono::system_clock::time_point when;
};

/// Settings of the migration controls (configuration at start).
struct migration_options {
  /// Policies by "endpoint.method" or by "method" (the first that matches).
  std::map<std::string, policy, std::less<>> policies{};
  /// Policy of methods in both forms that `policies` does not name.
  policy default_policy = policy::ported();
  /// Seed of the canary choice: the same seed and call order choose the
  /// same forms.
  std::uint64_t seed = 0x636f706f7274;
  /// Mismatches kept per method (the first ones), with their arguments in
  /// the report and a warning in the log each; all are counted.
  std::size_t mismatches_kept = 10;
  /// Strict mode: a call whose coroutine form blocked fibers or stalled the
  /// loop fails with strict_mode_violation (fiber_executor), for test runs
  /// that prove a method is fully ported. Every method unless `strict_methods`
  /// names some ("endpoint.method" or "method"). The check reads the form's
  /// counters before and after the call, so with concurrent calls of one
  /// form a clean call may also fail for another's block: a violation
  /// means the form is not clean, not always which call was.
  bool strict = false;
  std::vector<std::string> strict_methods{};
};

/// The migration state of a service: policies, canary choice, shadow
/// results. Shared by its executors (the same controls may serve a
/// fiber_executor, then a coro_executor) and by its admin endpoint.
/// Thread-safe.
class migration_controls {
 public:
  /// Checks `options` against `d`'s methods (throws invalid_policy).
  migration_controls(std::shared_ptr<const dispatcher> d, migration_options options = {});
  ~migration_controls();
  migration_controls(const migration_controls&) = delete;
  migration_controls& operator=(const migration_controls&) = delete;

  /// Sets the policy of `name` ("endpoint.method", or "method" when one
  /// endpoint has it) for the calls that start from now on; calls in flight
  /// finish on the form they started with. Returns the previous policy.
  /// Throws invalid_policy for an unknown method, or a policy that needs a
  /// form the method lacks (canary and shadow need both).
  policy set_policy(std::string_view name, policy p);
  /// Every method of both forms back to `p` (rollback: policy::legacy()).
  void set_all(policy p);
  /// The policy serving `m` now. A method with one form is served by that
  /// form whatever the policy says; its policy reads "legacy" or "ported".
  [[nodiscard]] policy policy_of(const endpoint& e, const method& m) const;

  /// Which forms serve one call.
  struct route {
    const method_form* primary = nullptr;  ///< answers the caller
    const method_form* shadow = nullptr;   ///< also runs, compared (shadow policy)
  };
  /// Chooses the forms of one call of `m` (a canary draws its share here).
  route choose(const endpoint& e, const method& m);

  /// Records the outcome of one shadow call (equal or not). Returns, for a
  /// mismatch that is kept, its rank among the method's kept ones (1 to
  /// `mismatches_kept`); 0 when equal or past that bound (counted only).
  std::size_t record_shadow(const endpoint& e, const method& m, bool equal, const boost::json::object& args,
                            std::string legacy, std::string ported);
  /// Shadow calls compared, and how many differed, for `m`.
  [[nodiscard]] std::pair<std::uint64_t, std::uint64_t> shadow_counts(const endpoint& e, const method& m) const;
  /// The mismatches kept (the first `mismatches_kept` per method).
  [[nodiscard]] std::vector<shadow_mismatch> mismatches() const;

  /// Whether strict mode applies to `m`.
  [[nodiscard]] bool strict_for(const endpoint& e, const method& m) const;
  [[nodiscard]] const migration_options& options() const noexcept { return options_; }
  [[nodiscard]] const dispatcher& served() const noexcept { return *dispatcher_; }

 private:
  struct state;
  state& state_of(const endpoint& e, const method& m) const;
  const method& find_method(std::string_view name, const endpoint** e) const;

  std::shared_ptr<const dispatcher> dispatcher_;
  migration_options options_;
  std::map<const method*, std::unique_ptr<state>> states_;  // fixed at construction
  std::atomic<std::uint64_t> draws_{0};
  mutable std::mutex mismatch_mutex_;
  std::vector<shadow_mismatch> kept_;
};

/// The migration report: every method of every endpoint with its forms,
/// policy, per-form metrics and diagnostics, shadow results, and whether the
/// service can move to coro_executor.
struct migration_report {
  struct form_row {
    method_kind kind = method_kind::fiber;
    /// How the executor ran it: "fiber", "hosted", "native", "thread pool",
    /// "unused" or "refused" (method_report::mode).
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
  };
  struct method_row {
    std::string endpoint;
    std::string method;
    /// "fiber", "coroutine" or "both".
    std::string kinds;
    std::string policy;
    std::vector<form_row> forms;  ///< legacy first
    std::uint64_t shadow_calls = 0;
    std::uint64_t shadow_mismatches = 0;
  };
  /// The executor the figures come from ("fiber_executor", "coro_executor").
  std::string executor;
  std::vector<method_row> methods;
  std::vector<shadow_mismatch> mismatches;
  /// Empty: ready for coro_executor. Otherwise one line per reason.
  std::vector<std::string> not_ready;

  [[nodiscard]] bool ready() const noexcept { return not_ready.empty(); }
  /// "ready for coro_executor" or "not ready for coro_executor: N reason(s)".
  [[nodiscard]] std::string verdict() const;
  /// A table for people, then the mismatches and the verdict with reasons.
  [[nodiscard]] std::string to_text() const;
  [[nodiscard]] boost::json::object to_json() const;
  /// Reads what to_json() wrote (a report fetched from a running service);
  /// throws decode_error naming the field that is wrong.
  static migration_report from_json(const boost::json::value& v);
};

/// Builds the report from `controls` (methods, policies, shadow results)
/// and `metrics` (an executor's metrics(), from `executor_name`).
migration_report make_report(const migration_controls& controls, const std::vector<method_report>& metrics,
                             std::string_view executor_name);

/// The reserved namespace of the admin endpoint; user endpoints cannot use it.
inline constexpr std::string_view admin_namespace = "coport.admin";
/// The context key the admin token travels in.
inline constexpr std::string_view admin_token_key = "coport_admin_token";

/// The admin endpoint of a running service: off unless an executor's
/// options carry these. Served by the executor itself (not a user
/// endpoint), in namespace `coport.admin`, version 1.0:
///   `migration_report()`            → the report as JSON
///   `set_policy(method, policy)`    → {"method", "policy", "previous"}
struct admin_options {
  /// When set, a call must carry it in its context under
  /// `coport_admin_token`; others are refused with admin_denied.
  std::optional<std::string> token;
};

}  // namespace coport::messaging

#endif
