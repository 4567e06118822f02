#include <coport/messaging/errors.hpp>
#include <coport/messaging/rabbit.hpp>

#include <catch2/catch.hpp>

#include <string>

using namespace coport::messaging;
using namespace std::chrono_literals;

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
  const auto refused = [](const std::string& url, const std::string& says) {
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
  };
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
