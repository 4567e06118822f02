#ifndef COPORT_RABBIT_DRIVER_HPP
#define COPORT_RABBIT_DRIVER_HPP

// coport::rabbit: the rabbit:// driver (RabbitMQ through rabbitmq-c; URLs in
// coport/messaging/transport/rabbit.hpp). Linking the library is all a program does
// to use it: transport::create then opens rabbit:// URLs with this driver.
// coport::messaging alone refuses them with invalid_url, naming this
// library, so only programs that speak to a broker need rabbitmq-c.

#include <coport/messaging/transport/transport.hpp>

#include <memory>
#include <string_view>

namespace coport::rabbit {

/// The rabbit:// driver for `url`, as transport::create makes it; throws
/// invalid_url for a malformed URL. Connecting happens on the driver's thread.
[[nodiscard]] std::unique_ptr<messaging::driver> make_driver(std::string_view url,
                                                             const messaging::transport_options& options);

}  // namespace coport::rabbit

#endif
