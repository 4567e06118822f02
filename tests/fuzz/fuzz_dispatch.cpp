// Fuzz target: a request body through the decoder, the dispatcher's lookup
// and the typed methods' argument conversion, as a server takes it. A body
// is refused with a messaging_error (decode_error, no_such_method,
// unsupported_version, bad_arguments), or the method runs and its result
// is what its arguments say. Any other exception, a crash or a sanitizer
// report is a finding.
#include <coport/messaging/rpc/endpoint.hpp>
#include <coport/messaging/wire/errors.hpp>
#include <coport/messaging/wire/message.hpp>

#include <boost/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace json = boost::json;
namespace msg = coport::messaging;

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_dispatch: %s\n", what);
  std::abort();
}

// Methods of every parameter type a service commonly declares, in two
// namespaces and versions. Each returns what it received, so that the
// result can be checked against the arguments.
std::shared_ptr<const msg::dispatcher> make_dispatcher() {
  auto plain = std::make_shared<msg::endpoint>("plain", msg::endpoint_target{std::nullopt, "1.4"});
  plain->add("ints", {"a", "b", "c"}, [](std::int64_t a, int b, unsigned c) {
    return json::array{a, b, c};
  });
  plain->add("reals", {"x", "f"}, [](double x, float f) { return json::array{x, static_cast<double>(f)}; });
  plain->add("text", {"s", "flag"}, [](std::string s, bool flag) { return json::array{json::string(s), flag}; });
  plain->add("lists", {"v", "names"}, [](std::vector<std::int64_t> v, std::vector<std::string> names) {
    return json::array{json::value_from(v), json::value_from(names)};
  });
  plain->add("maybe", {"o"}, [](std::optional<std::string> o) { return o ? json::value(*o) : json::value(nullptr); });
  plain->add("table", {"m"}, [](std::map<std::string, double> m) { return json::value_from(m); });
  plain->add("raw", {"o", "v"}, [](json::object o, json::value v) { return json::array{o, v}; });
  plain->add("none", {}, [] { return 7; });
  plain->add("with_context", {"value"}, [](msg::request_context& ctx, json::value value) {
    return json::array{ctx.ctxt, value};
  });
  auto admin = std::make_shared<msg::endpoint>("other", msg::endpoint_target{std::string("ops"), "2.1"});
  admin->add("ping", {"n"}, [](std::uint64_t n) { return n; });
  auto d = std::make_shared<msg::dispatcher>();
  d->add(plain);
  d->add(admin);
  return d;
}

// What a method answered must be its arguments, converted.
void check_result(const msg::rpc_request& r, const json::value& result) {
  const json::object& a = r.args;
  if (r.method == "ints") {
    const json::array& out = result.as_array();
    if (out[0].to_number<std::int64_t>() != a.at("a").to_number<std::int64_t>()) fail("ints: a changed");
    if (out[1].to_number<std::int64_t>() != a.at("b").to_number<std::int64_t>()) fail("ints: b changed");
    if (out[2].to_number<std::uint64_t>() != a.at("c").to_number<std::uint64_t>()) fail("ints: c changed");
  } else if (r.method == "text") {
    if (result.as_array()[0].as_string() != a.at("s").as_string()) fail("text: s changed");
  } else if (r.method == "raw") {
    if (result.as_array()[0] != a.at("o") || result.as_array()[1] != a.at("v")) fail("raw: arguments changed");
  } else if (r.method == "maybe") {
    if (result != a.at("o")) fail("maybe: o changed");
  } else if (r.method == "none") {
    if (result != 7) fail("none: wrong result");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::shared_ptr<const msg::dispatcher> dispatcher = make_dispatcher();
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  try {
    msg::rpc_request request = msg::decode_request(body, {.max_bytes = 64 * 1024, .max_depth = 16});
    const auto [endpoint, method] = dispatcher->find(request);
    if (!endpoint || !method) fail("find returned nothing without throwing");
    const msg::method_form* form = method->legacy() ? method->legacy() : method->ported();
    if (!form || !form->call) fail("a typed method without a callable form");
    msg::request_context ctx = msg::request_context::of(request);
    json::object args = request.args;  // the method may consume its copy
    const json::value result = form->call(ctx, args);
    check_result(request, result);
  } catch (const msg::messaging_error&) {
    // refused with a typed error, as it must be
  }
  return 0;
}
