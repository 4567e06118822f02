// Fuzz target: the wire decoder. The first byte picks the decoder (request,
// reply, notification), the rest is the message body as a broker would
// deliver it. A body is either refused with decode_error, or decoded; a
// decoded message must survive encode() and decode() again unchanged,
// unless it holds a number beyond a double (1e400 reads as an infinity, as
// in Python's json), which encode() refuses with encode_error. Any other
// exception, a crash or a sanitizer report is a finding.
#include <coport/messaging/wire/errors.hpp>
#include <coport/messaging/wire/message.hpp>

#include <boost/json/value.hpp>

#include <cmath>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

namespace msg = coport::messaging;

namespace {

// Small bounds, so that the fuzzer also reaches the limit checks.
const msg::decode_limits limits{.max_bytes = 64 * 1024, .max_depth = 16};

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_decode: %s\n", what);
  std::abort();
}

bool finite(const boost::json::value& v) {
  if (v.is_double()) return std::isfinite(v.get_double());
  if (v.is_array()) {
    for (const auto& e : v.get_array()) {
      if (!finite(e)) return false;
    }
  }
  if (v.is_object()) {
    for (const auto& kv : v.get_object()) {
      if (!finite(kv.value())) return false;
    }
  }
  return true;
}

// encode(m), or nothing when encode refuses a message that holds an
// infinity, as it must.
template <class Message>
std::optional<std::string> encoded(const Message& m, bool holds_finite_numbers_only) {
  try {
    return msg::encode(m);
  } catch (const msg::encode_error&) {
    if (holds_finite_numbers_only) fail("encode refused a decoded message");
    return std::nullopt;
  }
}

void request(std::string_view body) {
  const msg::rpc_request a = msg::decode_request(body, limits);
  const auto wire = encoded(a, finite(a.args) && finite(a.ctxt));
  if (!wire) return;
  const msg::rpc_request b = msg::decode_request(*wire);
  if (a.method != b.method || a.args != b.args || a.ns != b.ns || a.version != b.version || a.ctxt != b.ctxt ||
      a.msg_id != b.msg_id || a.reply_q != b.reply_q || a.timeout != b.timeout) {
    fail("a request changed through encode and decode");
  }
}

void reply(std::string_view body) {
  const msg::rpc_reply a = msg::decode_reply(body, limits);
  const bool finite_only =
      finite(a.result) && (!a.failure || (finite(a.failure->args) && finite(a.failure->kwargs)));
  const auto wire = encoded(a, finite_only);
  if (!wire) return;
  const msg::rpc_reply b = msg::decode_reply(*wire);
  if (a.msg_id != b.msg_id || a.result != b.result || a.ending != b.ending ||
      a.failure.has_value() != b.failure.has_value()) {
    fail("a reply changed through encode and decode");
  }
  if (a.failure && (a.failure->exc_type != b.failure->exc_type || a.failure->message != b.failure->message ||
                    a.failure->module != b.failure->module)) {
    fail("a failure changed through encode and decode");
  }
}

void notification(std::string_view body) {
  const msg::notification a = msg::decode_notification(body, limits);
  const auto wire = encoded(a, finite(a.payload) && finite(a.ctxt));
  if (!wire) return;
  const msg::notification b = msg::decode_notification(*wire);
  if (a.message_id != b.message_id || a.publisher_id != b.publisher_id || a.event_type != b.event_type ||
      a.prio != b.prio || a.payload != b.payload || a.timestamp != b.timestamp || a.ctxt != b.ctxt) {
    fail("a notification changed through encode and decode");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    switch (data[0] % 3) {
      case 0: request(body); break;
      case 1: reply(body); break;
      default: notification(body); break;
    }
  } catch (const msg::decode_error&) {
    // refused, as it must be
  }
  return 0;
}
