#include <coport/messaging/rpc/client.hpp>

namespace coport::messaging {

rpc_client rpc_client::prepare(const call_overrides& o) const {
  rpc_client c = *this;
  if (o.server) c.target_.server = *o.server;
  if (o.version) c.target_.version = *o.version;
  if (o.ns) c.target_.ns = *o.ns;
  if (o.exchange) c.target_.exchange = *o.exchange;
  if (o.fanout) c.target_.fanout = *o.fanout;
  if (o.timeout) c.options_.timeout = *o.timeout;
  if (o.version_cap) c.options_.version_cap = *o.version_cap;
  return c;
}

bool rpc_client::can_send_version(const std::string& v) const {
  if (!options_.version_cap) return true;
  return version::compatible(version::parse(*options_.version_cap), version::parse(v));
}

rpc_request rpc_client::make_request(context ctxt, std::string method, boost::json::object args) const {
  target_.validate_for_send();
  if (method.empty()) throw invalid_target("a call or cast needs a method name");
  if (target_.version && !can_send_version(*target_.version)) {
    throw version_cap_error(*target_.version, *options_.version_cap);
  }
  rpc_request r;
  r.method = std::move(method);
  r.args = std::move(args);
  r.ns = target_.ns;
  r.version = target_.version;
  r.ctxt = std::move(ctxt);
  return r;
}

}  // namespace coport::messaging
