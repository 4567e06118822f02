#ifndef COPORT_BRIDGE_SRC_LOG_HPP
#define COPORT_BRIDGE_SRC_LOG_HPP

#include <memory>

namespace spdlog {
class logger;
}

namespace coport::bridge::detail {

/// The logger used when none is injected: "coport", writing to stderr.
std::shared_ptr<spdlog::logger> default_logger();

}  // namespace coport::bridge::detail

#endif
