#ifndef COPORT_MESSAGING_MESSAGE_HPP
#define COPORT_MESSAGING_MESSAGE_HPP

// wire/: what crosses a transport, and nothing that moves it. The messages
// (RPC requests and replies, notifications, the request context), their
// targets and API versions, the library's errors and the failure shape a
// remote exception travels in, and the oslo.messaging envelope they are
// encoded to and decoded from. It includes no other folder of messaging
// but detail/; every other folder builds on it.
//
// The messages that cross a transport, and their wire form: oslo.messaging's
// envelope {"oslo.version": "2.0", "oslo.message": "<json>"} around the
// message dictionary, with the request context spread over "_context_<key>"
// entries (as oslo.messaging's AMQP drivers pack it).

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstddef>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace coport::messaging {

/// A request context: oslo.messaging's context dictionary.
using context = boost::json::object;

/// An RPC request. A call carries msg_id and reply_q; a cast does not.
struct rpc_request {
  std::string method;
  boost::json::object args;
  std::optional<std::string> ns;
  std::optional<std::string> version;
  context ctxt;
  std::string msg_id;
  std::string reply_q;
  /// The caller's timeout in seconds ("_timeout"), when it sent one.
  std::optional<double> timeout;
  std::string unique_id;

  bool is_call() const noexcept { return !msg_id.empty(); }
};

/// An exception in oslo.messaging's failure shape.
struct failure_info {
  std::string exc_type;  ///< "class"
  std::string module;
  std::string message;
  std::vector<std::string> traceback;  ///< "tb"
  boost::json::array args;
  boost::json::object kwargs;
};

/// The reply to a call: a result, or a failure.
struct rpc_reply {
  std::string msg_id;
  boost::json::value result;
  std::optional<failure_info> failure;
  bool ending = true;
  std::string unique_id;
};

/// Notification priorities, in oslo.messaging's order.
enum class priority { audit, debug, info, warn, error, critical, sample };

/// "info" for priority::info (topic suffix and listener method name).
std::string_view to_string(priority p) noexcept;
/// Parses a priority name in any case ("INFO", "info"); nullopt otherwise.
std::optional<priority> parse_priority(std::string_view name) noexcept;

struct notification {
  std::string message_id;
  std::string publisher_id;
  std::string event_type;
  priority prio = priority::info;
  boost::json::value payload;
  std::string timestamp;
  context ctxt;
  std::string unique_id;
};

/// Bounds on what a decoder accepts.
struct decode_limits {
  /// Largest body accepted, in bytes.
  std::size_t max_bytes = 16 * 1024 * 1024;
  /// Deepest JSON nesting accepted.
  std::size_t max_depth = 64;
};

/// A fresh random identifier, 32 hex digits (uuid4 without dashes, as
/// oslo.messaging's msg_id and _unique_id).
std::string make_unique_id();
/// "2026-11-26 10:20:30.123456", UTC, oslo.utils' str(utcnow()).
std::string utc_timestamp();

/// Encodes to the wire form (the JSON text of the envelope). An empty
/// unique_id is filled with a fresh one on the wire (in-process transports
/// never need it).
std::string encode(const rpc_request& m);
std::string encode(const rpc_reply& m);
std::string encode(const notification& m);

/// Decodes a wire body: the envelope, or (as oslo.messaging reads it) an
/// object without the envelope's two keys as the message itself. Anything
/// else (not JSON, not an object, a wrong envelope,
/// wrong envelope version, missing or wrongly typed fields, too
/// large or too deep) throws decode_error saying what is wrong; nothing else
/// escapes.
rpc_request decode_request(std::string_view body, const decode_limits& limits = {});
rpc_reply decode_reply(std::string_view body, const decode_limits& limits = {});
notification decode_notification(std::string_view body, const decode_limits& limits = {});

/// The message id of a body the decoders refuse, for the log line that
/// drops it: "_msg_id" (a call) or "message_id" (a notification) when the
/// body, or the message inside its envelope, is a JSON object that has one
/// as a string; empty otherwise (a body over `limits` is not read). Never
/// throws.
std::string message_id_of(std::string_view body, const decode_limits& limits = {}) noexcept;
/// The failure of a caught exception (current_exception() when null):
/// class name and module chosen by endpoint_exception, otherwise the C++
/// class name and module "coport".
failure_info failure_from(std::exception_ptr e);
/// The exception a caller raises for a failure: a remote_error carrying the
/// remote class name, module, message and traceback (as oslo.messaging's
/// RemoteError; a remote NoSuchMethod arrives as exc_type "NoSuchMethod").
std::exception_ptr exception_from(const failure_info& f);

}  // namespace coport::messaging

#endif
