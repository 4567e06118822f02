#ifndef COPORT_BRIDGE_ERROR_HPP
#define COPORT_BRIDGE_ERROR_HPP

#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include <string>
#include <type_traits>

namespace coport::bridge {

/// Error conditions raised by the bridge itself. Cancellation is reported
/// with Asio's own `asio::error::operation_aborted`, so that one test
/// (`ec == asio::error::operation_aborted`) covers both worlds.
enum class errc {
  /// A fiber-blocking call was made on the loop fiber (from a native
  /// coroutine or an Asio handler). Blocking there would stop the loop.
  blocking_on_loop = 1,
  /// A call that needs a fiber of a coport runtime was made elsewhere.
  not_on_runtime,
  /// A fiber-side wait for a coroutine ran past its timeout; the coroutine
  /// was cancelled.
  timed_out,
  /// The runtime is stopping or stopped and does not take this work.
  runtime_stopped,
  /// Strict mode: a hosted coroutine blocked its host fiber instead of
  /// using `co_await` (code that is not ported yet).
  implicit_yield,
  /// A channel was closed.
  channel_closed,
  /// The executor passed in does not belong to a coport runtime.
  foreign_executor,
};

/// The category of `errc`; its name is "coport.bridge".
const boost::system::error_category& bridge_category() noexcept;

/// Makes an error_code for `e` in `bridge_category()`.
inline boost::system::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), bridge_category()};
}

/// The exception type of every bridge failure: a system_error whose code is
/// one of `errc` or an Asio/system code, and whose message says what was
/// called and why it failed.
class error : public boost::system::system_error {
 public:
  error(errc e, const std::string& what) : system_error(make_error_code(e), what) {}
  error(boost::system::error_code ec, const std::string& what) : system_error(ec, what) {}
};

}  // namespace coport::bridge

namespace boost::system {
template <>
struct is_error_code_enum<coport::bridge::errc> : std::true_type {};
}  // namespace boost::system

#endif
