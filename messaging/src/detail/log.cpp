#include "detail/log.hpp"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <mutex>

namespace coport::messaging {

std::shared_ptr<spdlog::logger> default_logger() {
  static std::mutex m;
  std::lock_guard lk(m);
  if (auto existing = spdlog::get("coport")) return existing;
  auto made = std::make_shared<spdlog::logger>("coport",
                                               std::make_shared<spdlog::sinks::stderr_sink_mt>());
  spdlog::initialize_logger(made);  // registers it, with the global level
  return made;
}

std::string mask_password(std::string_view url) {
  const auto scheme = url.find("://");
  const std::size_t start = scheme == std::string_view::npos ? 0 : scheme + 3;
  // The authority runs to the first '/' after its last '@' (a password may
  // hold '/'), or to the first '/' when there is no user part.
  const std::size_t last_at = url.rfind('@');
  std::size_t end = url.find('/', last_at != std::string_view::npos && last_at >= start ? last_at : start);
  if (end == std::string_view::npos) end = url.size();
  std::string out(url.substr(0, start));
  // Hosts of a failover list are separated by commas: user:pass@host,user:pass@host
  std::size_t pos = start;
  while (pos <= end) {
    std::size_t comma = url.find(',', pos);
    if (comma == std::string_view::npos || comma > end) comma = end;
    std::string_view part = url.substr(pos, comma - pos);
    const std::size_t at = part.rfind('@');
    if (at != std::string_view::npos) {
      const std::string_view user = part.substr(0, at);
      const std::size_t colon = user.find(':');
      if (colon != std::string_view::npos) {
        out.append(user.substr(0, colon)).append(":****").append(part.substr(at));
      } else {
        out.append(part);
      }
    } else {
      out.append(part);
    }
    if (comma == end) break;
    out.push_back(',');
    pos = comma + 1;
  }
  out.append(url.substr(end));
  return out;
}

}  // namespace coport::messaging
