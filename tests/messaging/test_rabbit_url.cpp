#include <coport/messaging/wire/errors.hpp>
#include <coport/messaging/transport/rabbit.hpp>

#include <catch2/catch.hpp>

#include <string>

using namespace coport::messaging;
using namespace std::chrono_literals;

namespace {

// `url` is refused with invalid_url saying `says`, and its password
// (hunter2) is not in the message.
void refused(const std::string& url, const std::string& says) {
  INFO(url);
  try {
    parse_rabbit_url(url);
    FAIL("accepted");
  } catch (const invalid_url& e) {
    const std::string what = e.what();
    INFO(what);
    CHECK(what.find(says) != std::string::npos);
    CHECK(what.find("hunter2") == std::string::npos);
  }
}

}  // namespace

TEST_CASE("a rabbit URL gives hosts, credentials, vhost and defaults", "[messaging][rabbit]") {
  const auto s = parse_rabbit_url("rabbit://nova:s%40cret@mq.example:5673/prod");
  REQUIRE(s.hosts.size() == 1);
  CHECK(s.hosts[0].user == "nova");
  CHECK(s.hosts[0].password == "s@cret");
  CHECK(s.hosts[0].host == "mq.example");
  CHECK(s.hosts[0].port == 5673);
  CHECK(s.vhost == "prod");
  CHECK(s.heartbeat == 60s);
  CHECK(s.prefetch == 64);
  CHECK_FALSE(s.durable);
  CHECK_FALSE(s.ssl);

  const auto d = parse_rabbit_url("rabbit://");
  REQUIRE(d.hosts.size() == 1);
  CHECK(d.hosts[0].user == "guest");
  CHECK(d.hosts[0].host == "localhost");
  CHECK(d.hosts[0].port == 5672);
  CHECK(d.vhost == "/");

  CHECK(parse_rabbit_url("rabbit://u:p@h/%2F").vhost == "/");
  CHECK(parse_rabbit_url("rabbit://u:p@h/").vhost == "/");
}

TEST_CASE("a rabbit URL lists failover hosts separated by commas", "[messaging][rabbit]") {
  const auto s = parse_rabbit_url("rabbit://a:pa@h1:5672,b:pb@h2:5674,h3/v?heartbeat=10");
  REQUIRE(s.hosts.size() == 3);
  CHECK(s.hosts[0].user == "a");
  CHECK(s.hosts[0].host == "h1");
  CHECK(s.hosts[1].password == "pb");
  CHECK(s.hosts[1].port == 5674);
  CHECK(s.hosts[2].host == "h3");
  CHECK(s.hosts[2].user == "guest");
  CHECK(s.vhost == "v");
  CHECK(s.heartbeat == 10s);
}

TEST_CASE("rabbit URL options set the driver's behaviour", "[messaging][rabbit]") {
  const auto s = parse_rabbit_url(
      "rabbit://u:p@h:5671/?ssl=true&ssl_ca_file=/etc/ca.pem&amqp_durable_queues=true&prefetch=5"
      "&transient_queues_ttl=60&connect_timeout=0.5&retry_interval=0.25&ssl_verify_hostname=false");
  CHECK(s.ssl);
  CHECK(s.ssl_ca_file == "/etc/ca.pem");
  CHECK(s.durable);
  CHECK(s.prefetch == 5);
  CHECK(s.transient_queues_ttl == 60s);
  CHECK(s.connect_timeout == 500ms);
  CHECK(s.retry_interval == 250ms);
  CHECK(s.ssl_verify);
  CHECK_FALSE(s.ssl_verify_hostname);
}

TEST_CASE("a bad rabbit URL is refused with a clear error that never shows the password",
          "[messaging][rabbit]") {
  refused("rabbit://u:hunter2@h:99999/", "port '99999'");
  refused("rabbit://u:hunter2@h:abc/", "");
  refused("rabbit://u:hunter2@h/?hearbeat=5", "unknown parameter 'hearbeat'");
  refused("rabbit://u:hunter2@h/?durable=maybe", "not a boolean");
  refused("rabbit://u:hunter2@h/?heartbeat=-1", "not a number");
  refused("rabbit://u:hunter2@h1,,h2/", "empty host");
  refused("rabbit://u:hunter2@h/?ssl_ca_file=/x", "without ssl=true");
  refused("amqp://u:hunter2@h/", "scheme");
  CHECK(mask_url_password("rabbit://u:hunter2@h1,v:pw@h2/x") == "rabbit://u:****@h1,v:****@h2/x");
}

TEST_CASE("oslo.messaging's queue options: quorum, its limits, HA queues, TTL, failover strategy",
          "[messaging][rabbit]") {
  const auto d = parse_rabbit_url("rabbit://u:p@h/");
  CHECK_FALSE(d.quorum_queue);
  CHECK_FALSE(d.ha_queues);
  CHECK(d.quorum_delivery_limit == 0);
  CHECK(d.quorum_max_memory_length == 0);
  CHECK(d.quorum_max_memory_bytes == 0);
  CHECK(d.transient_queues_ttl == 1800s);
  CHECK(d.failover_strategy == rabbit_settings::failover::round_robin);
  CHECK_FALSE(d.queues_durable());

  const auto q = parse_rabbit_url(
      "rabbit://u:p@h/?rabbit_quorum_queue=true&rabbit_quorum_delivery_limit=5"
      "&rabbit_quorum_max_memory_length=1000&rabbit_quorum_max_memory_bytes=1048576"
      "&rabbit_transient_queues_ttl=120&kombu_failover_strategy=shuffle");
  CHECK(q.quorum_queue);
  CHECK(q.quorum_delivery_limit == 5);
  CHECK(q.quorum_max_memory_length == 1000);
  CHECK(q.quorum_max_memory_bytes == 1048576);
  CHECK(q.transient_queues_ttl == 120s);
  CHECK(q.failover_strategy == rabbit_settings::failover::shuffle);
  // Quorum queues are durable whatever amqp_durable_queues says, as in
  // oslo.messaging 14; the option itself keeps its value.
  CHECK_FALSE(q.durable);
  CHECK(q.queues_durable());
  CHECK(parse_rabbit_url("rabbit://u:p@h/?amqp_durable_queues=true").queues_durable());

  // oslo.messaging 14's own spelling of the memory options.
  const auto typo = parse_rabbit_url(
      "rabbit://u:p@h/?rabbit_quorum_queue=1&rabbit_quroum_max_memory_length=7&rabbit_quroum_max_memory_bytes=9");
  CHECK(typo.quorum_max_memory_length == 7);
  CHECK(typo.quorum_max_memory_bytes == 9);

  const auto ha = parse_rabbit_url("rabbit://u:p@h/?rabbit_ha_queues=true&kombu_failover_strategy=round-robin");
  CHECK(ha.ha_queues);
  CHECK_FALSE(ha.quorum_queue);
  CHECK(ha.failover_strategy == rabbit_settings::failover::round_robin);
}

TEST_CASE("queue option combinations oslo.messaging or RabbitMQ refuse are refused by name",
          "[messaging][rabbit]") {
  refused("rabbit://u:hunter2@h/?rabbit_quorum_queue=true&rabbit_ha_queues=true",
          "rabbit_quorum_queue and rabbit_ha_queues both enabled, queue type is quorum or HA (mirrored) not both");
  refused("rabbit://u:hunter2@h/?rabbit_quorum_queue=true&amqp_auto_delete=true",
          "quorum queues cannot be auto-delete");
  refused("rabbit://u:hunter2@h/?kombu_failover_strategy=random",
          "kombu_failover_strategy=random is not round-robin or shuffle");
  refused("rabbit://u:hunter2@h/?rabbit_quorum_delivery_limit=-1", "rabbit_quorum_delivery_limit=-1 is not a whole number");
  refused("rabbit://u:hunter2@h/?rabbit_quorum_max_memory_bytes=1.5", "not a whole number");
  refused("rabbit://u:hunter2@h/?rabbit_transient_queues_ttl=0", "at least 1 second");
  refused("rabbit://u:hunter2@h/?rabbit_quorum_queue=perhaps", "not a boolean");
  // Either alone is fine, and so is HA with auto-delete (classic queues).
  CHECK_NOTHROW(parse_rabbit_url("rabbit://u:p@h/?rabbit_ha_queues=true&amqp_auto_delete=true"));
  CHECK_NOTHROW(parse_rabbit_url("rabbit://u:p@h/?rabbit_quorum_queue=true&rabbit_ha_queues=false"));
}
