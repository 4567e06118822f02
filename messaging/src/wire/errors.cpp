#include <coport/messaging/wire/errors.hpp>

namespace coport::messaging {

namespace {

class category_impl final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "coport.messaging"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::invalid_target: return "invalid target";
      case errc::no_such_method: return "no such method";
      case errc::unsupported_version: return "unsupported version";
      case errc::bad_arguments: return "bad arguments";
      case errc::remote_error: return "remote error";
      case errc::timeout: return "timed out waiting for a reply";
      case errc::version_cap: return "version above the client's cap";
      case errc::decode_error: return "malformed message";
      case errc::transport_error: return "transport error";
      case errc::invalid_url: return "invalid transport URL";
      case errc::encode_error: return "message cannot be encoded as JSON";
      case errc::strict_violation: return "strict mode violation";
      case errc::admin_denied: return "admin call refused";
      case errc::declare_refused: return "the broker refused a declaration";
    }
    return "unknown coport.messaging error";
  }
};

}  // namespace

const boost::system::error_category& messaging_category() noexcept {
  static const category_impl category;
  return category;
}

no_such_method::no_such_method(std::string method)
    : messaging_error(errc::no_such_method, "Endpoint does not support RPC method " + method),
      method_(std::move(method)) {}

unsupported_version::unsupported_version(std::string version, std::string method)
    : messaging_error(errc::unsupported_version, "Endpoint does not support RPC version " +
                                                     version + ". Attempted method: " + method),
      version_(std::move(version)),
      method_(std::move(method)) {}

bad_arguments::bad_arguments(std::string method, std::string parameter, const std::string& problem)
    : messaging_error(errc::bad_arguments,
                      "bad arguments for method '" + method + "': parameter '" + parameter + "' " +
                          problem),
      method_(std::move(method)),
      parameter_(std::move(parameter)) {}

remote_error::remote_error(std::string exc_type, std::string module, std::string value,
                           std::vector<std::string> traceback)
    : messaging_error(errc::remote_error, "Remote error: " + exc_type + " " + value),
      exc_type_(std::move(exc_type)),
      module_(std::move(module)),
      value_(std::move(value)),
      traceback_(std::move(traceback)) {}

version_cap_error::version_cap_error(const std::string& version, const std::string& cap)
    : messaging_error(errc::version_cap, "Requested message version, " + version +
                                             " is incompatible.  It needs to be equal in major "
                                             "version and less than or equal in minor version "
                                             "as the specified version cap " + cap + ".") {}

}  // namespace coport::messaging
