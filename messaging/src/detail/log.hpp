#ifndef COPORT_MESSAGING_SRC_LOG_HPP
#define COPORT_MESSAGING_SRC_LOG_HPP

#include <memory>
#include <string>
#include <string_view>

namespace spdlog {
class logger;
}

namespace coport::messaging {

/// The logger used when none is injected: "coport", writing to stderr.
std::shared_ptr<spdlog::logger> default_logger();

/// `url` with the password of every user:password@ part replaced by ****.
std::string mask_password(std::string_view url);

}  // namespace coport::messaging

#endif
