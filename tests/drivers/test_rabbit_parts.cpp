// The parts of the rabbit:// driver that need no broker: the confirm
// tracker that settles publishes by the broker's delivery tags, the
// backoff between reconnect rounds, the order in which a round tries the
// nodes, and the arguments queues are declared with.
#include "channel.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/error.hpp>

#include <algorithm>
#include <numeric>
#include <optional>
#include <vector>

using namespace coport::messaging;
using namespace coport::messaging::rabbit_impl;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace {

/// Publishes `n` messages on `t`, each recording how it was settled in
/// `results` (index 0: the first publish, tag 1).
void publish(confirm_tracker& t, std::vector<std::optional<boost::system::error_code>>& results, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t index = results.size();
    results.emplace_back();
    t.published(std::make_unique<send_handler>([&results, index](boost::system::error_code ec) {
      REQUIRE_FALSE(results[index]);  // settled once
      results[index] = ec;
    }));
  }
}

}  // namespace

TEST_CASE("confirm_tracker settles one tag, or every unsettled one up to a tag with multiple", "[rabbit]") {
  confirm_tracker t;
  std::vector<std::optional<boost::system::error_code>> r;
  publish(t, r, 5);
  CHECK_FALSE(t.empty());

  CHECK(t.settled(2, false, {}) == 1);
  REQUIRE(r[1]);
  CHECK_FALSE(*r[1]);
  CHECK_FALSE(r[0]);
  CHECK_FALSE(r[2]);

  // A nack with multiple takes 1 and 3 (2 is settled already), not 4.
  const boost::system::error_code nack = asio::error::no_buffer_space;
  CHECK(t.settled(3, true, nack) == 2);
  CHECK(r[0] == nack);
  CHECK(r[2] == nack);
  CHECK_FALSE(r[3]);

  // Settled tags, and tags never published, settle nothing.
  CHECK(t.settled(3, false, {}) == 0);
  CHECK(t.settled(3, true, {}) == 0);
  CHECK(t.settled(9, false, {}) == 0);
  CHECK_FALSE(r[3]);
  CHECK_FALSE(r[4]);

  t.fail_all(asio::error::connection_aborted);
  CHECK(r[3] == boost::system::error_code(asio::error::connection_aborted));
  CHECK(r[4] == boost::system::error_code(asio::error::connection_aborted));
  CHECK(t.empty());
}

TEST_CASE("confirm_tracker counts publishes without a handler, and numbers a new channel from 1", "[rabbit]") {
  confirm_tracker t;
  t.published(nullptr);  // a reply
  std::vector<std::optional<boost::system::error_code>> r;
  publish(t, r, 1);
  CHECK(t.settled(2, true, {}) == 2);
  REQUIRE(r[0]);
  CHECK(t.empty());

  // Without a restart the next publish is tag 3; after one, tag 1.
  publish(t, r, 1);
  CHECK(t.settled(1, false, {}) == 0);
  CHECK(t.settled(3, false, {}) == 1);
  REQUIRE(r[1]);
  t.restart();
  publish(t, r, 1);
  CHECK(t.settled(1, false, {}) == 1);
  REQUIRE(r[2]);
}

TEST_CASE("backoff grows by its step after each round, up to its maximum, and resets on connecting", "[rabbit]") {
  backoff b(1000ms, 2000ms, 4000ms);
  CHECK(b.current() == 1000ms);
  b.waited();
  CHECK(b.current() == 3000ms);
  b.waited();
  CHECK(b.current() == 4000ms);
  b.waited();
  CHECK(b.current() == 4000ms);
  b.reset();
  CHECK(b.current() == 1000ms);
}

TEST_CASE("round-robin failover starts from the node last connected to, and moves on after a failed round",
          "[rabbit]") {
  failover f(3, false);
  using order = std::vector<std::size_t>;
  CHECK(f.round() == order{0, 1, 2});
  CHECK(f.round() == order{0, 1, 2});  // asking again changes nothing
  f.failed();
  CHECK(f.round() == order{1, 2, 0});
  f.connected(2);
  CHECK(f.round() == order{2, 0, 1});
  f.failed();
  CHECK(f.round() == order{0, 1, 2});

  failover one(1, false);
  one.failed();
  CHECK(one.round() == order{0});
}

TEST_CASE("shuffle failover tries every node once per round, in orders that change", "[rabbit]") {
  failover f(5, true, 42);
  std::vector<std::size_t> all(5);
  std::iota(all.begin(), all.end(), std::size_t{0});
  std::vector<std::vector<std::size_t>> rounds;
  for (int i = 0; i < 20; ++i) {
    auto r = f.round();
    auto sorted = r;
    std::sort(sorted.begin(), sorted.end());
    CHECK(sorted == all);
    rounds.push_back(std::move(r));
  }
  CHECK(std::any_of(rounds.begin(), rounds.end(), [&](const auto& r) { return r != rounds.front(); }));
}

TEST_CASE("queue_arguments gives oslo.messaging's x-arguments for each kind of queue", "[rabbit]") {
  const auto keys = [](const std::vector<queue_arg>& args) {
    std::vector<std::string> k;
    for (const auto& a : args) k.push_back(a.key);
    return k;
  };
  rabbit_settings s;
  CHECK(queue_arguments(s, true, 0s).empty());

  // A transient queue expires; a queue that may be quorum is classic here.
  const auto reply = queue_arguments(s, false, 1800s);
  REQUIRE(keys(reply) == std::vector<std::string>{"x-expires"});
  CHECK(std::get<std::int64_t>(reply[0].value) == 1800000);

  s.quorum_queue = true;
  s.quorum_delivery_limit = 5;
  const auto quorum = queue_arguments(s, true, 0s);
  REQUIRE(keys(quorum) == std::vector<std::string>{"x-queue-type", "x-delivery-limit"});
  CHECK(std::get<std::string>(quorum[0].value) == "quorum");
  CHECK(std::get<std::int64_t>(quorum[1].value) == 5);
  // Reply and fanout queues are never quorum.
  CHECK(keys(queue_arguments(s, false, 60s)) == std::vector<std::string>{"x-expires"});

  rabbit_settings ha;
  ha.ha_queues = true;
  const auto mirrored = queue_arguments(ha, true, 0s);
  REQUIRE(keys(mirrored) == std::vector<std::string>{"x-ha-policy"});
  CHECK(std::get<std::string>(mirrored[0].value) == "all");
}
