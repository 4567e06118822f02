#include <coport/messaging/rpc/endpoint.hpp>
#include <coport/messaging/wire/target.hpp>

#include <algorithm>
#include <stdexcept>

namespace coport::messaging {

request_context request_context::of(const rpc_request& request) {
  request_context c;
  c.ctxt = request.ctxt;
  c.msg_id = request.msg_id;
  c.method = request.method;
  if (request.timeout && *request.timeout > 0) {
    // A caller may send any number; past a century it means "no hurry", and
    // converting it as it is would overflow the clock's 64-bit count.
    constexpr double longest = 100.0 * 365 * 24 * 3600;
    c.deadline = std::chrono::steady_clock::now() +
                 std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                     std::chrono::duration<double>(std::min(*request.timeout, longest)));
  }
  return c;
}

namespace detail {

std::string_view describe(const boost::json::value& v) noexcept {
  switch (v.kind()) {
    case boost::json::kind::null: return "null";
    case boost::json::kind::bool_: return "a boolean";
    case boost::json::kind::int64:
    case boost::json::kind::uint64: return "an integer";
    case boost::json::kind::double_: return "a number";
    case boost::json::kind::string: return "a string";
    case boost::json::kind::array: return "an array";
    case boost::json::kind::object: return "an object";
  }
  return "a value";
}

void check_argument_names(const std::string& method, const std::vector<std::string>& names,
                          const boost::json::object& args) {
  for (const auto& kv : args) {
    bool known = false;
    for (const auto& n : names) {
      if (kv.key() == n) {
        known = true;
        break;
      }
    }
    if (!known) throw bad_arguments(method, std::string(kv.key()), "is not a parameter of this method");
  }
  for (const auto& n : names) {
    if (!args.contains(n)) throw bad_arguments(method, n, "is missing");
  }
}

}  // namespace detail

endpoint::endpoint(std::string name, endpoint_target where)
    : name_(std::move(name)), where_(std::move(where)), served_(version::parse(where_.version)) {
  if (where_.ns) validate_name("endpoint namespace", *where_.ns);
  if (where_.ns == "coport.admin") {
    throw invalid_target("endpoint '" + name_ + "': namespace coport.admin is reserved for the admin endpoint");
  }
}

const method* endpoint::find(std::string_view name) const {
  auto it = methods_.find(name);
  return it == methods_.end() ? nullptr : &it->second;
}

void endpoint::add_form(std::string name, std::vector<std::string> params, method_form form) {
  if (name.empty()) throw std::invalid_argument("endpoint '" + name_ + "': a method needs a name");
  auto [it, inserted] = methods_.try_emplace(name, name);
  method& m = it->second;
  std::optional<method_form>& slot = form.kind == method_kind::fiber ? m.legacy_ : m.ported_;
  if (slot) {
    throw std::invalid_argument("endpoint '" + name_ + "': method '" + name + "' already has a " +
                                std::string(to_string(form.kind)) + " form");
  }
  if (!inserted && !params.empty() && !m.params_.empty() && params != m.params_) {
    throw std::invalid_argument("endpoint '" + name_ + "': the two forms of method '" + name +
                                "' name their parameters differently");
  }
  if (m.params_.empty()) m.params_ = std::move(params);
  slot = std::move(form);
}

const method_form& default_form(const method& m) noexcept {
  return m.ported() ? *m.ported() : *m.legacy();
}

std::pair<const endpoint*, const method*> dispatcher::find(const rpc_request& request) const {
  const version requested = version::parse(request.version.value_or("1.0"));
  bool found_compatible = false;
  for (const auto& e : endpoints_) {
    if (e->target().ns != request.ns) continue;
    if (!version::compatible(e->served_version(), requested)) continue;
    found_compatible = true;
    if (!request.method.empty() && request.method.front() == '_') continue;
    if (const method* m = e->find(request.method)) return {e.get(), m};
  }
  if (found_compatible) throw no_such_method(request.method);
  throw unsupported_version(request.version.value_or("1.0"), request.method);
}

}  // namespace coport::messaging
