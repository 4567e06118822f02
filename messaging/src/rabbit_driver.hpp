#ifndef COPORT_MESSAGING_SRC_RABBIT_DRIVER_HPP
#define COPORT_MESSAGING_SRC_RABBIT_DRIVER_HPP

#include <coport/messaging/transport.hpp>

namespace coport::messaging {

/// rabbit://...: see coport/messaging/rabbit.hpp.
std::unique_ptr<driver> make_rabbit_driver(std::string_view url, const transport_options& options);

}  // namespace coport::messaging

#endif
