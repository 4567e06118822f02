#ifndef COPORT_MIGRATION_POINTS_HPP
#define COPORT_MIGRATION_POINTS_HPP

// Migration points: a named unit of work with a legacy (fiber) form and/or
// a ported (coroutine) form, its policy, and its records. A `registry`
// holds the points of one service or library: their policies (set at
// start, changed at run time, rolled back at once), the canary draw, the
// shadow results, and the report. This is the one implementation behind
// both the RPC migration controls (coport::messaging) and the points of
// any other code (point.hpp); it needs no Boost.Fiber.

#include <coport/migration/metrics.hpp>
#include <coport/migration/policy.hpp>
#include <coport/migration/report.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace coport::migration {

/// Settings of a registry (configuration at start).
struct registry_options {
  /// Policies by point name (an RPC method: "endpoint.method" or "method").
  std::map<std::string, policy, std::less<>> policies{};
  /// Policy of points in both forms that `policies` does not name.
  policy default_policy = policy::ported();
  /// Seed of the canary choice: the same seed and call order choose the
  /// same forms.
  std::uint64_t seed = 0x636f706f7274;
  /// Mismatches kept per point (the first ones), with their arguments in
  /// the report; all are counted.
  std::size_t mismatches_kept = 10;
};

class registry;

/// One point's state and records. Owned by its registry, at a fixed address
/// for the registry's life; thread-safe.
class point_record {
 public:
  /// Which forms serve one call.
  struct route {
    form_kind primary = form_kind::coroutine;  ///< answers the caller
    bool shadow = false;  ///< the ported form also runs, on a copy of the arguments, and is compared
  };

  [[nodiscard]] const std::string& group() const noexcept { return group_; }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  /// "group.name", or the name alone in a registry without a name.
  [[nodiscard]] const std::string& full_name() const noexcept { return full_; }
  [[nodiscard]] bool has_legacy() const noexcept { return has_legacy_; }
  [[nodiscard]] bool has_ported() const noexcept { return has_ported_; }
  /// The policy serving the point now. A point with one form is served by
  /// that form whatever the policy says; its policy reads "legacy" or "ported".
  [[nodiscard]] policy current() const noexcept;
  /// Chooses the forms of one call (a canary draws its share here).
  [[nodiscard]] route choose() noexcept;

  /// The records of one form (for the executor or point that runs it).
  [[nodiscard]] form_metrics& metrics(form_kind k) noexcept { return k == form_kind::fiber ? legacy_ : ported_; }
  [[nodiscard]] const form_metrics& metrics(form_kind k) const noexcept {
    return k == form_kind::fiber ? legacy_ : ported_;
  }

  /// Records one shadow comparison. Returns, for a mismatch that is kept,
  /// its rank among the point's kept ones (1 to `mismatches_kept`); 0 when
  /// equal or past that bound (counted only).
  std::size_t record_shadow(bool equal, const boost::json::object& args, std::string legacy, std::string ported);
  /// Shadow calls compared, and how many differed.
  [[nodiscard]] std::pair<std::uint64_t, std::uint64_t> shadow_counts() const noexcept;

  /// How a form runs, for the report ("fiber", "coroutine", ...).
  std::string mode_legacy = "fiber";
  std::string mode_ported = "coroutine";

 private:
  friend class registry;
  point_record(registry& r, std::string group, std::string name, bool has_legacy, bool has_ported, policy p);

  registry& registry_;
  std::string group_, name_, full_;
  bool has_legacy_, has_ported_;
  std::atomic<std::uint32_t> current_;
  std::atomic<std::uint64_t> shadow_calls_{0};
  std::atomic<std::uint64_t> shadow_mismatches_{0};
  std::size_t kept_ = 0;  // guarded by registry::mutex_
  form_metrics legacy_;
  form_metrics ported_;
};

/// A set of migration points. Thread-safe; points are never removed.
class registry {
 public:
  /// `name` groups the points in the report (the first column reads
  /// "<name>.<point>"); empty for none.
  explicit registry(std::string name = {}, registry_options options = {});
  ~registry();
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;

  /// Adds a point with the forms it has. Its policy: `options.policies`
  /// under its name (or `alias`), else the default for a point in both
  /// forms, else its one form. Throws invalid_policy when the configured
  /// policy needs a form the point lacks, and errc::duplicate_point when
  /// the name is taken.
  point_record& declare(std::string_view name, bool has_legacy, bool has_ported, std::string_view group = {},
                        std::string_view alias = {});
  /// The point named `name` ("group.name", or its name when only one point
  /// has it), or null.
  [[nodiscard]] point_record* find(std::string_view name) const;
  /// Sets the policy of `name` for the calls that start from now on (calls
  /// in flight finish on the form they started with). Returns the previous
  /// one. Throws invalid_policy (code errc::unknown_point for a name no
  /// point has, errc::invalid_policy for a policy that needs a missing form).
  policy set_policy(std::string_view name, policy p);
  /// Every point of both forms back to `p` (rollback: policy::legacy()).
  void set_all(policy p);
  /// Policies of `options().policies` that named no declared point.
  [[nodiscard]] std::vector<std::string> unused_policies() const;

  /// The mismatches kept (the first `mismatches_kept` per point).
  [[nodiscard]] std::vector<shadow_mismatch> mismatches() const;
  /// Every point, in declaration order.
  [[nodiscard]] std::vector<point_record*> points() const;

  /// Counters a runtime keeps per unit of work, read for the report: a
  /// point's ported form runs under the work name "<full name>", its legacy
  /// form under "<full name> [legacy]".
  struct work_counters {
    std::uint64_t implicit_yields = 0;
    std::uint64_t stalls = 0;
  };
  using counters_source = std::function<work_counters(std::string_view work_name)>;
  /// Where report() reads implicit yields and stalls (point.hpp sets it to a
  /// bridge runtime's diagnostics); none by default.
  void set_counters_source(counters_source source);

  /// The report of every point (`unit` "point"), judged, with goal
  /// "removing Boost.Fiber".
  [[nodiscard]] report make_report() const;

  [[nodiscard]] const registry_options& options() const noexcept { return options_; }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }

 private:
  friend class point_record;
  std::uint64_t draw() noexcept;

  std::string name_;
  registry_options options_;
  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<point_record>> points_;  // guarded by mutex_ (growth only)
  std::map<std::string, bool, std::less<>> policy_used_;
  std::vector<shadow_mismatch> kept_;
  counters_source counters_;
  std::atomic<std::uint64_t> draws_{0};
};

}  // namespace coport::migration

#endif
