#ifndef COPORT_MESSAGING_RABBIT_HPP
#define COPORT_MESSAGING_RABBIT_HPP

// rabbit://: RabbitMQ through rabbitmq-c, wire-compatible with the rabbit
// driver of oslo.messaging 14 (exchanges, queues, envelopes and replies as
// Python services use them). transport::create("rabbit://...") opens it when
// coport is built with COPORT_WITH_RABBIT (the default).
//
//   rabbit://user:pass@host:5672/vhost?heartbeat=30
//   rabbit://user:pass@host1:5672,user:pass@host2:5672/   (failover list)
//   rabbit://user:pass@host:5671/?ssl=true&ssl_ca_file=/etc/ssl/ca.pem
//
// Query parameters (oslo.messaging's option names where it has one):
//   heartbeat=S (heartbeat_timeout_threshold)  AMQP heartbeat, seconds; 0 = off; default 60
//   connect_timeout=S                          TCP/TLS connect, seconds; default 5
//   rpc_timeout=S                              a broker's answer to a declare, seconds; default 30
//   amqp_durable_queues=B (durable)            durable exchanges and queues, persistent messages
//   amqp_auto_delete=B                         auto-delete exchanges and topic queues
//   prefetch=N (rabbit_qos_prefetch_count)     unacknowledged messages per consumer; default 64
//   rabbit_transient_queues_ttl=S (transient_queues_ttl)
//                                              x-expires of reply and fanout queues, >= 1; default 1800
//   rabbit_quorum_queue=B                      quorum queues (x-queue-type: quorum) for the topic,
//                                              server and notification queues; makes them and the
//                                              topic exchanges durable, as amqp_durable_queues does
//   rabbit_quorum_delivery_limit=N             x-delivery-limit of those queues; 0 (default): none
//   rabbit_quorum_max_memory_length=N          x-max-in-memory-length; 0 (default): none
//   rabbit_quorum_max_memory_bytes=N           x-max-in-memory-bytes; 0 (default): none
//                                              (oslo.messaging 14 spells these two rabbit_quroum_...:
//                                              both spellings are accepted; the three only count
//                                              with rabbit_quorum_queue)
//   rabbit_ha_queues=B                         x-ha-policy: all on every queue (classic mirrored
//                                              queues); refused together with rabbit_quorum_queue
//   kombu_failover_strategy=round-robin|shuffle
//                                              the order hosts of the list are tried in after a
//                                              connection is lost: the next one, or a random order
//   retry_interval=S, retry_backoff=S, interval_max=S
//                                              reconnect delays: first, increment, ceiling
//   send_timeout=S                             how long a message waits for a connection; default 60
//   ssl=B, ssl_ca_file=F, ssl_cert_file=F, ssl_key_file=F, ssl_verify=B, ssl_verify_hostname=B
// With ssl, the broker's certificate is verified against the CA and the host
// name of the URL (rabbitmq-c matches DNS names, not IP addresses: connect
// by name). B is true/false/1/0/yes/no. An unknown parameter is an error (a typo
// must not silently change behaviour).

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace coport::messaging {

struct rabbit_host {
  std::string user = "guest";
  std::string password = "guest";
  std::string host = "localhost";
  std::uint16_t port = 5672;
};

/// A parsed rabbit:// URL.
struct rabbit_settings {
  std::vector<rabbit_host> hosts;  ///< tried in turn, from the first
  std::string vhost = "/";
  std::chrono::seconds heartbeat{60};
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds rpc_timeout{30000};
  bool durable = false;
  bool auto_delete = false;
  std::uint16_t prefetch = 64;
  std::chrono::seconds transient_queues_ttl{1800};
  bool quorum_queue = false;
  std::int64_t quorum_delivery_limit = 0;      ///< 0: none
  std::int64_t quorum_max_memory_length = 0;   ///< 0: none
  std::int64_t quorum_max_memory_bytes = 0;    ///< 0: none
  bool ha_queues = false;
  enum class failover { round_robin, shuffle } failover_strategy = failover::round_robin;
  std::chrono::milliseconds retry_interval{1000};
  std::chrono::milliseconds retry_backoff{2000};
  std::chrono::milliseconds interval_max{30000};
  std::chrono::milliseconds send_timeout{60000};
  bool ssl = false;
  std::string ssl_ca_file;
  std::string ssl_cert_file;
  std::string ssl_key_file;
  bool ssl_verify = true;
  bool ssl_verify_hostname = true;

  /// Whether the topic, server and notification queues and the topic
  /// exchanges are durable: amqp_durable_queues, or quorum queues (which
  /// are always durable), as oslo.messaging 14 decides.
  bool queues_durable() const noexcept { return durable || quorum_queue; }
};

/// Parses a rabbit:// URL (Boost.URL for each host and the query); throws
/// invalid_url saying what is wrong, with any password masked.
rabbit_settings parse_rabbit_url(std::string_view url);

/// `url` with the password of every user:password@ part replaced by ****:
/// the form coport logs and puts in error messages.
std::string mask_url_password(std::string_view url);

}  // namespace coport::messaging

#endif
