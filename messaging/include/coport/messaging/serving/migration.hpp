#ifndef COPORT_MESSAGING_MIGRATION_HPP
#define COPORT_MESSAGING_MIGRATION_HPP

// Migration controls of an RPC service: which form of a method registered in
// both forms serves each call (legacy, ported, canary, shadow), changed at
// run time with instant rollback; shadow mismatches; the migration report
// and its readiness verdict; strict mode; the reserved admin endpoint that
// serves the report and policy changes to a running service. Each method is
// a point of a migration::registry, which holds policies and shadow records
// for RPC methods and any other migration point alike.

#include <coport/messaging/rpc/endpoint.hpp>
#include <coport/messaging/wire/errors.hpp>
#include <coport/migration/points.hpp>
#include <coport/migration/report.hpp>

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

// The policy, its errors and the shadow records are the migration layer's
// (coport/migration/): an RPC method is one kind of migration point.
using migration::invalid_policy;
using migration::policy;
using migration::shadow_mismatch;

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

 /// The registry holding one point per method ("endpoint.method"); a
  /// service's other migration points may be declared in it too, so that
  /// one report and one set_policy serve both.
  [[nodiscard]] migration::registry& points() noexcept { return registry_; }
  [[nodiscard]] const migration::registry& points() const noexcept { return registry_; }

 private:
  struct state {
    migration::point_record* point = nullptr;
    const method* m = nullptr;
    bool strict = false;
  };
  const state& state_of(const endpoint& e, const method& m) const;

  std::shared_ptr<const dispatcher> dispatcher_;
  migration_options options_;
  migration::registry registry_;
  std::map<const method*, state> states_;  // fixed at construction
};

/// The migration report of an RPC service: every method of every endpoint
/// with its forms, policy, per-form metrics and diagnostics, shadow
/// results, and whether the service can move to coro_executor. The rows,
/// text, JSON and verdict are migration::report's, shared with every other
/// migration point.
struct migration_report : migration::report {
  migration_report() = default;
  explicit migration_report(migration::report r) : migration::report(std::move(r)) {}
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
