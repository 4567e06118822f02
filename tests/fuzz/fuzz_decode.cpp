// Fuzz target: the wire decoder. The first byte picks the decoder (request,
// reply, notification), the rest is the message body as a broker would
// deliver it. A body is either refused with decode_error, or decoded; a
// decoded message must survive encode() and decode() again unchanged. Any
// other exception, a crash or a sanitizer report is a finding.
#include <coport/messaging/errors.hpp>
#include <coport/messaging/message.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <string_view>

namespace msg = coport::messaging;

namespace {

// Small bounds, so that the fuzzer also reaches the limit checks.
const msg::decode_limits limits{.max_bytes = 64 * 1024, .max_depth = 16};

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_decode: %s\n", what);
  std::abort();
}

void request(std::string_view body) {
  const msg::rpc_request a = msg::decode_request(body, limits);
  const msg::rpc_request b = msg::decode_request(msg::encode(a));
  if (a.method != b.method || a.args != b.args || a.ns != b.ns || a.version != b.version || a.ctxt != b.ctxt ||
      a.msg_id != b.msg_id || a.reply_q != b.reply_q || a.timeout != b.timeout) {
    fail("a request changed through encode and decode");
  }
}

void reply(std::string_view body) {
  const msg::rpc_reply a = msg::decode_reply(body, limits);
  const msg::rpc_reply b = msg::decode_reply(msg::encode(a));
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
  const msg::notification b = msg::decode_notification(msg::encode(a));
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
