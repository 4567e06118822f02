#ifndef COPORT_MESSAGING_ERRORS_HPP
#define COPORT_MESSAGING_ERRORS_HPP

// The errors of coport::messaging: the errc codes and their category, an
// exception class for each (remote_error: a failure a remote method sent
// back), and endpoint_exception, which names the class a caller sees.

#include <boost/json/value.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include <string>
#include <type_traits>
#include <vector>

namespace coport::messaging {

/// Error conditions of the messaging layer. Each has an exception class
/// below; the codes serve `error_code` users and tests.
enum class errc {
  invalid_target = 1,   ///< a target or version string that cannot be used
  no_such_method,       ///< no endpoint in the namespace has the method
  unsupported_version,  ///< endpoints have the method, none at a compatible version
  bad_arguments,        ///< missing, unexpected or wrongly typed parameter
  remote_error,         ///< the remote method raised; see remote_error
  timeout,              ///< no reply within the call's timeout
  version_cap,          ///< the call's version is above the client's cap
  decode_error,         ///< a message that is not a valid oslo.messaging message
  transport_error,      ///< the transport failed or is closed
  invalid_url,          ///< a transport URL that cannot be used
  encode_error,         ///< a message that cannot be written as JSON (NaN, infinity)
  strict_violation,     ///< strict mode: a coroutine form blocked fibers or stalled its loop
  admin_denied,         ///< an admin call without the configured token
  declare_refused,      ///< the broker refused a queue or exchange as declared (see declare_refused)
};

const boost::system::error_category& messaging_category() noexcept;

inline boost::system::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), messaging_category()};
}

/// Base of every messaging exception. what() is the message alone (these
/// messages travel to remote callers and logs).
class messaging_error : public boost::system::system_error {
 public:
  messaging_error(errc e, const std::string& what)
      : system_error(make_error_code(e), what), message_(what) {}
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  std::string message_;
};

class invalid_target : public messaging_error {
 public:
  explicit invalid_target(const std::string& what) : messaging_error(errc::invalid_target, what) {}
};

/// oslo.messaging's NoSuchMethod.
class no_such_method : public messaging_error {
 public:
  explicit no_such_method(std::string method);
  const std::string& method() const noexcept { return method_; }

 private:
  std::string method_;
};

/// oslo.messaging's UnsupportedVersion.
class unsupported_version : public messaging_error {
 public:
  unsupported_version(std::string version, std::string method);
  const std::string& version() const noexcept { return version_; }
  const std::string& method() const noexcept { return method_; }

 private:
  std::string version_;
  std::string method_;
};

/// A call whose arguments do not fit the method; the message names the
/// parameter.
class bad_arguments : public messaging_error {
 public:
  bad_arguments(std::string method, std::string parameter, const std::string& problem);
  const std::string& method() const noexcept { return method_; }
  const std::string& parameter() const noexcept { return parameter_; }

 private:
  std::string method_;
  std::string parameter_;
};

/// The remote endpoint raised: its exception's class name, module, message
/// and traceback lines, as oslo.messaging's RemoteError carries them.
class remote_error : public messaging_error {
 public:
  remote_error(std::string exc_type, std::string module, std::string value,
               std::vector<std::string> traceback = {});
  /// Class name of the remote exception ("ValueError", "runtime_error").
  const std::string& exc_type() const noexcept { return exc_type_; }
  const std::string& module() const noexcept { return module_; }
  /// The remote exception's message.
  const std::string& value() const noexcept { return value_; }
  const std::vector<std::string>& traceback() const noexcept { return traceback_; }

 private:
  std::string exc_type_;
  std::string module_;
  std::string value_;
  std::vector<std::string> traceback_;
};

/// oslo.messaging's MessagingTimeout.
class timeout_error : public messaging_error {
 public:
  explicit timeout_error(const std::string& what) : messaging_error(errc::timeout, what) {}
};

/// oslo.messaging's RPCVersionCapError.
class version_cap_error : public messaging_error {
 public:
  version_cap_error(const std::string& version, const std::string& cap);
};

/// A malformed message; `what()` says which part is wrong.
class decode_error : public messaging_error {
 public:
  explicit decode_error(const std::string& what) : messaging_error(errc::decode_error, what) {}
};

/// A message that JSON cannot carry (a NaN or an infinity in it).
class encode_error : public messaging_error {
 public:
  explicit encode_error(const std::string& what) : messaging_error(errc::encode_error, what) {}
};

class transport_error : public messaging_error {
 public:
  explicit transport_error(const std::string& what) : messaging_error(errc::transport_error, what) {}

 protected:
  transport_error(errc e, const std::string& what) : messaging_error(e, what) {}
};

/// The broker refused to declare a queue or an exchange the way this
/// transport asked: it exists with other arguments (RabbitMQ's
/// PRECONDITION_FAILED "inequivalent arg"), or the broker does not allow
/// the combination. Thrown by a server's or listener's start; what() names
/// the entity, the argument, what the broker has and what was asked for.
class declare_refused : public transport_error {
 public:
  declare_refused(std::string kind, std::string name, std::string argument, std::string broker_has,
                  std::string requested, const std::string& what)
      : transport_error(errc::declare_refused, what),
        kind_(std::move(kind)),
        name_(std::move(name)),
        argument_(std::move(argument)),
        broker_has_(std::move(broker_has)),
        requested_(std::move(requested)) {}
  /// "queue" or "exchange".
  const std::string& kind() const noexcept { return kind_; }
  const std::string& name() const noexcept { return name_; }
  /// The refused argument ("x-queue-type", "durable", ...); empty when the
  /// broker did not name one.
  const std::string& argument() const noexcept { return argument_; }
  /// The argument's value on the broker's existing entity, as the broker
  /// words it ("the value 'quorum' of type 'longstr'"), or "none".
  const std::string& broker_has() const noexcept { return broker_has_; }
  /// What this transport declared for it ("none" when absent).
  const std::string& requested() const noexcept { return requested_; }

 private:
  std::string kind_;
  std::string name_;
  std::string argument_;
  std::string broker_has_;
  std::string requested_;
};

class invalid_url : public messaging_error {
 public:
  explicit invalid_url(const std::string& what) : messaging_error(errc::invalid_url, what) {}
};

/// Thrown by endpoint code to choose the class name and module the caller
/// sees (e.g. `endpoint_exception("ValueError", "builtins", "bad size")`,
/// which a Python caller rebuilds as a ValueError). Other exceptions are
/// reported with their C++ class name (without namespace) and, as module,
/// their namespace ("std"), or "coport" for a class in none.
class endpoint_exception : public std::runtime_error {
 public:
  endpoint_exception(std::string exc_type, std::string module, const std::string& message)
      : std::runtime_error(message), exc_type_(std::move(exc_type)), module_(std::move(module)) {}
  const std::string& exc_type() const noexcept { return exc_type_; }
  const std::string& module() const noexcept { return module_; }

 private:
  std::string exc_type_;
  std::string module_;
};

}  // namespace coport::messaging

namespace boost::system {
template <>
struct is_error_code_enum<coport::messaging::errc> : std::true_type {};
}  // namespace boost::system

#endif
