#ifndef COPORT_MESSAGING_SRC_MEMORY_DRIVER_HPP
#define COPORT_MESSAGING_SRC_MEMORY_DRIVER_HPP

#include <coport/messaging/transport/transport.hpp>

namespace coport::messaging {

/// memory://[name]: an in-process broker shared by every transport opened
/// with the same name in this process.
std::unique_ptr<driver> make_memory_driver(std::string_view url, const transport_options& options);

}  // namespace coport::messaging

#endif
