#include <coport/messaging/wire/target.hpp>

#include <catch2/catch.hpp>

#include <coport/messaging/wire/errors.hpp>

#include <string>
#include <vector>

namespace {

namespace msg = coport::messaging;
using msg::invalid_target;
using msg::target;
using msg::version;

// Matches an exception whose what() contains every one of the given pieces.
class what_contains : public Catch::MatcherBase<std::exception> {
 public:
  explicit what_contains(std::vector<std::string> pieces) : pieces_(std::move(pieces)) {}
  bool match(const std::exception& e) const override {
    const std::string what = e.what();
    for (const auto& p : pieces_)
      if (what.find(p) == std::string::npos) return false;
    return true;
  }
  std::string describe() const override {
    std::string s = "what() contains";
    for (const auto& p : pieces_) s += " \"" + p + "\"";
    return s;
  }

 private:
  std::vector<std::string> pieces_;
};

target send_target() {
  target t;
  t.topic = "compute";
  return t;
}

}  // namespace

TEST_CASE("version::parse reads major.minor and major.minor.revision", "[messaging][target]") {
  CHECK(version::parse("1.0") == version{1, 0, 0});
  CHECK(version::parse("1.3") == version{1, 3, 0});
  CHECK(version::parse("2.10.4") == version{2, 10, 4});
  CHECK(version::parse("0.0") == version{0, 0, 0});
  // Nine digits is the widest part accepted; it still fits an int.
  CHECK(version::parse("999999999.1") == version{999999999, 1, 0});
}

TEST_CASE("version::parse rejects malformed versions with invalid_target quoting the input",
          "[messaging][target]") {
  const std::string bad = GENERATE(as<std::string>{}, "", "1", "x.y", "1.x", "1.-2", "1.2.3.4", " 1.2",
                                   "1.2 ", "1..2", "99999999999.1", "1.2.", ".1", "+1.2", "1,2");
  INFO("input: \"" << bad << "\"");
  CHECK_THROWS_MATCHES(version::parse(bad), invalid_target, what_contains({"'" + bad + "'"}));
  try {
    (void)version::parse(bad);
  } catch (const invalid_target& e) {
    CHECK(e.code() == msg::errc::invalid_target);
  }
}

TEST_CASE("version::to_string writes the revision only when it is not zero", "[messaging][target]") {
  CHECK(version::parse("1.3").to_string() == "1.3");
  CHECK(version::parse("2.10.4").to_string() == "2.10.4");
  CHECK(version::parse("1.0.0").to_string() == "1.0");
  CHECK(version::parse(version{3, 7, 1}.to_string()) == version{3, 7, 1});
}

TEST_CASE("version::compatible follows oslo.messaging's version_is_compatible", "[messaging][target]") {
  struct row {
    const char* served;
    const char* requested;
    bool compatible;
  };
  // The rows marked "oslo" were checked against oslo.messaging 14.0.3
  // (Debian python3-oslo.messaging) while writing this test:
  //   python3 -c 'from oslo_messaging import _utils;
  //               print(_utils.version_is_compatible(served, requested))'
  // printed the value in the third column for each of them.
  const row rows[] = {
      {"1.3", "1.2", true},         // oslo
      {"1.2", "1.3", false},        // oslo
      {"1.3", "1.3", true},         // oslo
      {"2.0", "1.0", false},        // oslo: majors differ, older major
      {"1.0", "2.0", false},        // oslo: majors differ, newer major
      {"2.0", "1.9", false},        // oslo
      {"1.3", "1.3.1", false},      // oslo: revision above the served one
      {"1.3.2", "1.3.1", true},     // oslo
      {"1.3.1", "1.3.2", false},    // oslo
      {"1.4", "1.3.9", true},       // oslo: a lower minor takes any revision
      {"1.3", "1.0.5", true},       // oslo
      {"1.10", "1.9", true},        // oslo: numeric, not lexical, comparison
      {"1.9", "1.10", false},       // oslo
      {"1.0", "1.0.0", true},       // oslo
      {"1.0.0", "1.0", true},       // oslo
      {"2.10.4", "2.10.4", true},   // oslo
      {"2.10.4", "2.10.5", false},  // oslo
      {"1.1", "1.0", true},         // oslo
      {"1.0", "1.1", false},        // oslo
      {"2.0", "2.0", true},         // oslo
      {"0.5", "0.1", true},
      {"3.0", "3.0.1", false},
  };
  for (const auto& r : rows) {
    INFO("served " << r.served << ", requested " << r.requested);
    CHECK(version::compatible(version::parse(r.served), version::parse(r.requested)) == r.compatible);
  }
}

TEST_CASE("a target with a plain topic, exchange, server, namespace and version can be sent to",
          "[messaging][target]") {
  target t = send_target();
  CHECK_NOTHROW(t.validate_for_send());

  t.exchange = "nova";
  t.server = "host-1.example.org";
  t.ns = "baseapi";
  t.version = "1.3";
  CHECK_NOTHROW(t.validate_for_send());

  target fan = send_target();
  fan.topic = "compute_fanout-1.x";
  fan.fanout = true;
  CHECK_NOTHROW(fan.validate_for_send());

  target revision = send_target();
  revision.version = "2.10.4";
  CHECK_NOTHROW(revision.validate_for_send());
}

TEST_CASE("validate_for_send rejects an empty topic and names the topic", "[messaging][target]") {
  target t = send_target();
  t.topic.clear();
  CHECK_THROWS_MATCHES(t.validate_for_send(), invalid_target, what_contains({"topic"}));
}

TEST_CASE("validate_for_send rejects a topic with a space or a slash and quotes it", "[messaging][target]") {
  const std::string topic = GENERATE(as<std::string>{}, "com pute", "compute/v1", " compute", "compute\n");
  target t = send_target();
  t.topic = topic;
  CHECK_THROWS_MATCHES(t.validate_for_send(), invalid_target, what_contains({"topic", "'" + topic + "'"}));
}

TEST_CASE("validate_for_send rejects a bad exchange, server or namespace and names the field",
          "[messaging][target]") {
  SECTION("exchange") {
    target t = send_target();
    t.exchange = "no/slash";
    CHECK_THROWS_MATCHES(t.validate_for_send(), invalid_target, what_contains({"exchange", "no/slash"}));
  }
  SECTION("server") {
    target t = send_target();
    t.server = "host 1";
    CHECK_THROWS_MATCHES(t.validate_for_send(), invalid_target, what_contains({"server", "host 1"}));
  }
  SECTION("namespace") {
    target t = send_target();
    t.ns = "base api";
    CHECK_THROWS_MATCHES(t.validate_for_send(), invalid_target, what_contains({"namespace", "base api"}));
  }
  SECTION("a topic longer than 255 characters") {
    target t = send_target();
    t.topic = std::string(256, 'a');
    CHECK_THROWS_MATCHES(t.validate_for_send(), invalid_target, what_contains({"topic", "255"}));
  }
}

TEST_CASE("validate_for_send rejects a bad version and quotes it", "[messaging][target]") {
  const std::string v = GENERATE(as<std::string>{}, "x.y", "1", "1.2.3.4", "");
  target t = send_target();
  t.version = v;
  CHECK_THROWS_MATCHES(t.validate_for_send(), invalid_target, what_contains({"version", "'" + v + "'"}));
}

TEST_CASE("validate_for_send rejects a fanout target that names a server", "[messaging][target]") {
  target t = send_target();
  t.fanout = true;
  t.server = "host1";
  CHECK_THROWS_MATCHES(t.validate_for_send(), invalid_target, what_contains({"fanout", "server", "host1"}));
}

TEST_CASE("validate_for_listen requires a server name", "[messaging][target]") {
  target t = send_target();
  CHECK_THROWS_MATCHES(t.validate_for_listen(), invalid_target, what_contains({"server"}));

  t.server = "host1";
  CHECK_NOTHROW(t.validate_for_listen());

  t.ns = "baseapi";
  t.version = "1.3";
  t.exchange = "nova";
  CHECK_NOTHROW(t.validate_for_listen());
}

TEST_CASE("validate_for_listen checks the topic, server and version like validate_for_send",
          "[messaging][target]") {
  target t = send_target();
  t.server = "host1";

  SECTION("empty topic") {
    t.topic.clear();
    CHECK_THROWS_MATCHES(t.validate_for_listen(), invalid_target, what_contains({"topic"}));
  }
  SECTION("topic with a space") {
    t.topic = "com pute";
    CHECK_THROWS_MATCHES(t.validate_for_listen(), invalid_target, what_contains({"topic", "com pute"}));
  }
  SECTION("server with a slash") {
    t.server = "host/1";
    CHECK_THROWS_MATCHES(t.validate_for_listen(), invalid_target, what_contains({"server", "host/1"}));
  }
  SECTION("bad version") {
    t.version = "1.x";
    CHECK_THROWS_MATCHES(t.validate_for_listen(), invalid_target, what_contains({"version", "'1.x'"}));
  }
}

TEST_CASE("validate_name accepts letters, digits and . _ - : and rejects anything else",
          "[messaging][target]") {
  CHECK_NOTHROW(msg::validate_name("topic", "a-Z_0.9:x"));
  CHECK_THROWS_MATCHES(msg::validate_name("pool", "a*b"), invalid_target, what_contains({"pool", "a*b"}));
  CHECK_THROWS_MATCHES(msg::validate_name("pool", "caf\xc3\xa9"), invalid_target, what_contains({"pool"}));
}
