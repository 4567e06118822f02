#ifndef COPORT_MIGRATION_POLICY_HPP
#define COPORT_MIGRATION_POLICY_HPP

// Which form of a migration point serves each call (legacy, ported, canary,
// shadow), the two kinds of forms, and the errors of the migration layer.

#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include <string>
#include <string_view>
#include <type_traits>

namespace coport::migration {

/// Error conditions of the migration layer.
enum class errc {
  invalid_policy = 1,  ///< a policy that cannot be used: unparsable, or for a form that is missing
  unknown_point,       ///< no migration point (or RPC method) has that name
  duplicate_point,     ///< a second point declared under a name already taken
};

const boost::system::error_category& migration_category() noexcept;
inline boost::system::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), migration_category()};
}

/// Base of the migration layer's exceptions; what() is the message alone.
class error : public boost::system::system_error {
 public:
  error(errc e, const std::string& what) : system_error(make_error_code(e), what), message_(what) {}
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  std::string message_;
};

/// A policy that cannot be used: unparsable, or naming a point that does
/// not exist or lacks the form the policy needs.
class invalid_policy : public error {
 public:
  explicit invalid_policy(const std::string& what, errc e = errc::invalid_policy) : error(e, what) {}
};

/// The two forms of a unit of work while it is being ported.
enum class form_kind {
  fiber,     ///< legacy: plain code that may block fibers
  coroutine  ///< ported: returns an awaitable
};

/// "fiber" or "coroutine".
std::string_view to_string(form_kind k) noexcept;

/// Which form serves the calls of a point registered in both forms.
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

/// Throws invalid_policy unless a point named `name` with the forms
/// `has_legacy` / `has_ported` can be served under `p` (canary and shadow
/// need both forms).
void check_fits(std::string_view name, bool has_legacy, bool has_ported, policy p);

}  // namespace coport::migration

template <>
struct boost::system::is_error_code_enum<coport::migration::errc> : std::true_type {};

#endif
