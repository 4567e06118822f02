#ifndef COPORT_ADMIN_SRC_EXPOSITION_HPP
#define COPORT_ADMIN_SRC_EXPOSITION_HPP

// GET /metrics: coport's own counters, read at scrape time, written in
// Prometheus' text format by prometheus-cpp's serializer.

#include <coport/bridge/diagnostics.hpp>
#include <coport/bridge/runtime.hpp>
#include <coport/messaging/transport/transport.hpp>
#include <coport/migration/report.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace coport::admin::detail {

/// Why the server refused a request or a connection, for
/// coport_admin_refused_total{reason}.
enum class refusal { connections, header_limit, body_limit, timeout, malformed, unauthorized, count_ };

/// The server's own counters.
struct server_counters {
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> refused[static_cast<int>(refusal::count_)]{};
  std::atomic<std::int64_t> connections{0};
  std::atomic<std::uint64_t> policy_changes{0};
};

/// What /metrics reads besides the report.
struct exposed {
  std::vector<std::pair<std::string, const bridge::diagnostics*>> work;
  std::vector<const bridge::runtime*> loops;
  std::vector<std::pair<std::string, std::shared_ptr<const messaging::transport>>> transports;
};

/// The body of GET /metrics.
std::string exposition(const migration::report& r, const exposed& more, const server_counters& server);

}  // namespace coport::admin::detail

#endif
