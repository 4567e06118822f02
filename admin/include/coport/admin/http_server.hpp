#ifndef COPORT_ADMIN_HTTP_SERVER_HPP
#define COPORT_ADMIN_HTTP_SERVER_HPP

// An HTTP admin server for a service being ported: its migration on
// Prometheus' /metrics, a live dashboard, the report's JSON and policy
// changes, for any coport service (RPC executors, plain bridge services
// with migration points), on a thread of its own.

#include <coport/bridge/diagnostics.hpp>
#include <coport/bridge/runtime.hpp>
#include <coport/messaging/transport/transport.hpp>
#include <coport/migration/policy.hpp>
#include <coport/migration/report.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace spdlog {
class logger;
}

namespace coport::migration {
class registry;
}

namespace coport::admin {

/// One set of migration points the server shows and changes: an RPC
/// executor's methods, a `migration::registry`'s points.
struct migration_source {
  /// The current report. Called on the server's thread, while the service
  /// runs: it must be safe from any thread (`executor::report()` and
  /// `registry::make_report()` are).
  std::function<migration::report()> report;
  /// Sets the policy of a point and returns the previous one; throws
  /// `migration::invalid_policy` (`errc::unknown_point` for a name this
  /// source does not hold). Null: the source's policies are read-only.
  std::function<migration::policy(std::string_view, migration::policy)> set_policy;
};

/// The `migration_source` of a registry, which must outlive the server.
[[nodiscard]] migration_source source_of(migration::registry& points);

/// Settings of the server. The limits keep a hostile or broken client from
/// holding more than a bounded share of the server, and the server never
/// runs on a service loop, so its clients cannot delay a call.
struct server_options {
  /// Address to bind: loopback unless told otherwise.
  std::string host = "127.0.0.1";
  /// 0: a port the system chooses (`http_server::port()`).
  std::uint16_t port = 0;
  /// Bearer token that `POST /policy` requires (`Authorization: Bearer
  /// <token>`). Never logged. Empty: policy changes are refused (403).
  std::optional<std::string> token;
  /// Connections served at once; more are closed as soon as accepted.
  std::size_t max_connections = 64;
  /// A request line and headers larger than this: 431, then closed.
  std::size_t max_header_bytes = 8 * 1024;
  /// A body larger than this: 413, then closed.
  std::size_t max_body_bytes = 16 * 1024;
  /// A request must arrive whole within this, from its first byte or from
  /// the end of the previous answer on the connection (slow clients are
  /// closed).
  std::chrono::milliseconds request_timeout{10'000};
  /// Policy changes kept for `GET /policy/changes` and the page.
  std::size_t changes_kept = 100;
  /// Where the server logs (start, every policy change, refused requests at
  /// debug level); null: a logger named "coport-admin" on stderr.
  std::shared_ptr<spdlog::logger> logger;
};

/// The admin server. Routes:
///
///   GET  /metrics          Prometheus text exposition format 0.0.4
///   GET  /migration        the dashboard: a self-contained HTML page that
///                          polls the two below
///   GET  /migration.json   the report of every source, joined and judged
///                          (`migration::report::to_json()`)
///   GET  /policy/changes   the policy changes made through the server
///   POST /policy           {"point": P, "policy": "ported", "by": "who"} or
///                          {"point": P, "rollback": true, "by": "who"}
///
/// Sources are added before `start()`. The server runs on its own thread
/// and io_context; `stop()` (and the destructor) closes the listening
/// socket and every connection and joins that thread: answers being written
/// are cut.
class http_server {
 public:
  explicit http_server(server_options options = {});
  ~http_server();
  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  /// Adds a set of points (before start()).
  void add(migration_source source);
  /// Adds a bridge runtime's work tags to /metrics (`coport_work_*` with
  /// label runtime=`name`); `counters` must outlive the server.
  void add_work_counters(std::string name, const bridge::diagnostics& counters);
  /// Adds a loop's figures to /metrics (`coport_loop_*` with label
  /// loop=its name: busy and idle time, stalls, work and fibers alive);
  /// `loop` must outlive the server.
  void add_loop(const bridge::runtime& loop);
  /// Adds a transport's connection and traffic to /metrics
  /// (`coport_transport_*` with label transport=`name`).
  void add_transport(std::string name, std::shared_ptr<const messaging::transport> transport);

  /// Binds and starts serving; throws boost::system::system_error when the
  /// address cannot be bound.
  void start();
  /// Stops serving; idempotent.
  void stop();
  /// The bound port (after start()).
  [[nodiscard]] std::uint16_t port() const noexcept;
  /// "http://host:port/".
  [[nodiscard]] std::string url() const;

  /// The body of GET /metrics, as the server would answer now.
  [[nodiscard]] std::string metrics_text() const;
  /// The joined report of every source.
  [[nodiscard]] migration::report report() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace coport::admin

#endif
