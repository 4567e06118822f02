// rabbit:// URL parsing: the authority may list several user:pass@host:port
// parts separated by commas (a failover list, which no URL grammar allows),
// so it is split first and each part is parsed by Boost.URL on its own.

#include <coport/messaging/wire/errors.hpp>
#include <coport/messaging/transport/rabbit.hpp>

#include "detail/log.hpp"

#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include <charconv>
#include <cmath>

namespace coport::messaging {

std::string mask_url_password(std::string_view url) { return mask_password(url); }

namespace {

[[noreturn]] void bad(std::string_view url, const std::string& why) {
  throw invalid_url("invalid rabbit URL '" + mask_password(url) + "': " + why);
}

bool parse_bool(std::string_view url, std::string_view key, std::string_view v) {
  if (v == "true" || v == "1" || v == "yes" || v == "True" || v == "on") return true;
  if (v == "false" || v == "0" || v == "no" || v == "False" || v == "off") return false;
  bad(url, std::string(key) + "=" + std::string(v) + " is not a boolean (true/false/1/0/yes/no)");
}

double parse_number(std::string_view url, std::string_view key, std::string_view v, double max) {
  double d = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), d);
  if (ec != std::errc() || end != v.data() + v.size() || !std::isfinite(d) || d < 0 || d > max) {
    bad(url, std::string(key) + "=" + std::string(v) + " is not a number between 0 and " +
                 std::to_string(static_cast<long long>(max)));
  }
  return d;
}

// A whole number of messages or bytes, 0 and up.
std::int64_t parse_count(std::string_view url, std::string_view key, std::string_view v) {
  std::int64_t n = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc() || end != v.data() + v.size() || n < 0) {
    bad(url, std::string(key) + "=" + std::string(v) + " is not a whole number, 0 or more");
  }
  return n;
}

std::chrono::milliseconds seconds_param(std::string_view url, std::string_view key, std::string_view v) {
  return std::chrono::milliseconds(static_cast<long long>(parse_number(url, key, v, 86400.0 * 365) * 1000));
}

}  // namespace

rabbit_settings parse_rabbit_url(std::string_view url) {
  const auto sep = url.find("://");
  if (sep == std::string_view::npos || url.substr(0, sep) != "rabbit") {
    bad(url, "the scheme must be rabbit://");
  }
  const std::string_view rest = url.substr(sep + 3);
  // The authority ends at the first '/', '?' or '#' after its last '@'
  // (passwords must percent-encode those characters).
  const std::size_t last_at = rest.rfind('@', rest.find_first_of("?#"));
  const std::size_t auth_end = rest.find_first_of("/?#", last_at == std::string_view::npos ? 0 : last_at);
  const std::string_view authority = rest.substr(0, auth_end);
  const std::string_view tail = auth_end == std::string_view::npos ? std::string_view() : rest.substr(auth_end);

  rabbit_settings s;
  std::size_t pos = 0;
  while (pos <= authority.size()) {
    std::size_t comma = authority.find(',', pos);
    if (comma == std::string_view::npos) comma = authority.size();
    const std::string_view part = authority.substr(pos, comma - pos);
    if (part.empty()) {
      if (authority.empty() && s.hosts.empty()) {
        s.hosts.emplace_back();  // rabbit:/// = guest@localhost
        break;
      }
      bad(url, "an empty host in the host list");
    }
    const std::string one = "rabbit://" + std::string(part) + "/";
    auto parsed = boost::urls::parse_uri(one);
    if (!parsed) bad(url, "host part '" + mask_password(part) + "': " + parsed.error().message());
    const boost::urls::url_view u = *parsed;
    rabbit_host h;
    if (u.has_userinfo()) {
      h.user = std::string(u.user());
      h.password = u.has_password() ? std::string(u.password()) : std::string();
    }
    h.host = std::string(u.host());
    if (h.host.empty()) h.host = "localhost";
    if (h.host.size() > 2 && h.host.front() == '[' && h.host.back() == ']') h.host = h.host.substr(1, h.host.size() - 2);
    if (u.has_port()) {
      const auto p = u.port();
      unsigned value = 0;
      auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), value);
      if (p.empty() || ec != std::errc() || end != p.data() + p.size() || value == 0 || value > 65535) {
        bad(url, "port '" + std::string(p) + "' is not a number from 1 to 65535");
      }
      h.port = static_cast<std::uint16_t>(value);
    }
    s.hosts.push_back(std::move(h));
    if (comma == authority.size()) break;
    pos = comma + 1;
  }

  // Path (the vhost) and query: parsed as one URL with a placeholder host.
  const std::string rest_url = "rabbit://x" + std::string(tail);
  auto parsed = boost::urls::parse_uri(rest_url);
  if (!parsed) bad(url, parsed.error().message());
  const boost::urls::url_view u = *parsed;
  std::string path = std::string(u.path());
  if (!path.empty() && path.front() == '/') path.erase(0, 1);
  if (!path.empty()) s.vhost = path;

  for (auto p : u.params()) {
    const std::string_view k = p.key;
    const std::string_view v = p.value;
    if (!p.has_value && k != "ssl") bad(url, "parameter '" + std::string(k) + "' has no value");
    if (k == "heartbeat" || k == "heartbeat_timeout_threshold") {
      s.heartbeat = std::chrono::seconds(static_cast<long long>(parse_number(url, k, v, 65535)));
    } else if (k == "connect_timeout") {
      s.connect_timeout = seconds_param(url, k, v);
    } else if (k == "rpc_timeout") {
      s.rpc_timeout = seconds_param(url, k, v);
    } else if (k == "amqp_durable_queues" || k == "durable") {
      s.durable = parse_bool(url, k, v);
    } else if (k == "amqp_auto_delete") {
      s.auto_delete = parse_bool(url, k, v);
    } else if (k == "prefetch" || k == "rabbit_qos_prefetch_count") {
      s.prefetch = static_cast<std::uint16_t>(parse_number(url, k, v, 65535));
    } else if (k == "transient_queues_ttl" || k == "rabbit_transient_queues_ttl") {
      const double ttl = parse_number(url, k, v, 1e9);
      if (ttl < 1) bad(url, std::string(k) + "=" + std::string(v) + ": the queues' TTL is at least 1 second");
      s.transient_queues_ttl = std::chrono::seconds(static_cast<long long>(ttl));
    } else if (k == "rabbit_quorum_queue") {
      s.quorum_queue = parse_bool(url, k, v);
    } else if (k == "rabbit_quorum_delivery_limit") {
      s.quorum_delivery_limit = parse_count(url, k, v);
    } else if (k == "rabbit_quorum_max_memory_length" || k == "rabbit_quroum_max_memory_length") {
      s.quorum_max_memory_length = parse_count(url, k, v);
    } else if (k == "rabbit_quorum_max_memory_bytes" || k == "rabbit_quroum_max_memory_bytes") {
      s.quorum_max_memory_bytes = parse_count(url, k, v);
    } else if (k == "rabbit_ha_queues") {
      s.ha_queues = parse_bool(url, k, v);
    } else if (k == "kombu_failover_strategy") {
      if (v == "round-robin") {
        s.failover_strategy = rabbit_settings::failover::round_robin;
      } else if (v == "shuffle") {
        s.failover_strategy = rabbit_settings::failover::shuffle;
      } else {
        bad(url, "kombu_failover_strategy=" + std::string(v) + " is not round-robin or shuffle");
      }
    } else if (k == "retry_interval" || k == "rabbit_retry_interval") {
      s.retry_interval = seconds_param(url, k, v);
    } else if (k == "retry_backoff" || k == "rabbit_retry_backoff") {
      s.retry_backoff = seconds_param(url, k, v);
    } else if (k == "interval_max" || k == "rabbit_interval_max") {
      s.interval_max = seconds_param(url, k, v);
    } else if (k == "send_timeout") {
      s.send_timeout = seconds_param(url, k, v);
    } else if (k == "ssl") {
      s.ssl = p.has_value ? parse_bool(url, k, v) : true;
    } else if (k == "ssl_ca_file") {
      s.ssl_ca_file = std::string(v);
    } else if (k == "ssl_cert_file") {
      s.ssl_cert_file = std::string(v);
    } else if (k == "ssl_key_file") {
      s.ssl_key_file = std::string(v);
    } else if (k == "ssl_verify") {
      s.ssl_verify = parse_bool(url, k, v);
    } else if (k == "ssl_verify_hostname") {
      s.ssl_verify_hostname = parse_bool(url, k, v);
    } else {
      bad(url, "unknown parameter '" + std::string(k) + "'");
    }
  }
  if (s.quorum_queue && s.ha_queues) {
    // oslo.messaging 14 refuses the same configuration, in these words.
    bad(url, "rabbit_quorum_queue and rabbit_ha_queues both enabled, queue type is quorum or HA (mirrored) not both");
  }
  if (s.quorum_queue && s.auto_delete) {
    // RabbitMQ refuses such a declare ("invalid property 'auto-delete'"):
    // said here, before anything is sent.
    bad(url, "rabbit_quorum_queue and amqp_auto_delete both enabled: quorum queues cannot be auto-delete");
  }
  if (s.ssl_cert_file.empty() != s.ssl_key_file.empty()) {
    bad(url, "ssl_cert_file and ssl_key_file go together");
  }
  if (!s.ssl && (!s.ssl_ca_file.empty() || !s.ssl_cert_file.empty())) {
    bad(url, "ssl_ca_file/ssl_cert_file given without ssl=true");
  }
  return s;
}

}  // namespace coport::messaging
