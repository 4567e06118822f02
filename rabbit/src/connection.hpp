// The rabbit:// driver's connection to the broker: the AMQP connection of
// rabbitmq-c and its one channel, opened through the failover list of nodes
// (round-robin or shuffle) with a backoff that grows between rounds,
// heartbeats kept by waking at least four times per interval, and a polite
// or a plain close. Also what every part of the driver shares: the failure
// type that makes the connection thread reconnect, the readings of the
// broker's replies, the transport's settings, log and counters, and the
// eventfd that wakes the thread. Used only on the connection thread
// (core.hpp), apart from `wakeup::signal` and `counters::snapshot`.

#ifndef COPORT_RABBIT_SRC_CONNECTION_HPP
#define COPORT_RABBIT_SRC_CONNECTION_HPP

#include <coport/messaging/wire/errors.hpp>
#include <coport/messaging/transport/rabbit.hpp>
#include <coport/messaging/transport/transport.hpp>

#include <amqp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace spdlog {
class logger;
}

namespace coport::messaging::rabbit_impl {

using clock = std::chrono::steady_clock;
constexpr amqp_channel_t channel = 1;

/// A failure of the connection or its channel: the thread reconnects.
/// `permanent`: retrying cannot mend it until someone changes the
/// configuration (a certificate that does not verify, refused credentials).
/// `refused`: the broker refused a declaration (the channel is closed).
struct amqp_failure : std::runtime_error {
  explicit amqp_failure(const std::string& what, bool permanent = false)
      : std::runtime_error(what), permanent(permanent) {}
  explicit amqp_failure(declare_refused r)
      : std::runtime_error(r.what()), permanent(false), refused(std::make_shared<declare_refused>(std::move(r))) {}
  bool permanent;
  std::shared_ptr<const declare_refused> refused;
};

amqp_bytes_t bytes(const std::string& s);
std::string to_string(amqp_bytes_t b);
std::string describe(amqp_rpc_reply_t r);

/// Throws amqp_failure when the last RPC on `c` did not succeed.
void check(amqp_connection_state_t c, const std::string& what);

/// The text of a channel closed by the broker for PRECONDITION_FAILED
/// (a declaration it refuses); empty for any other failure.
std::string precondition_failed(amqp_connection_state_t c);

/// Whether the broker's reply refuses a declaration for good: the channel
/// or connection closed with ACCESS_REFUSED, RESOURCE_LOCKED,
/// PRECONDITION_FAILED or NOT_ALLOWED. Any other code is a failure of the
/// moment, which the next connection retries: NOT_FOUND for a queue that a
/// cluster node took with it when it went down between the queue's
/// declaration and its binding (a classic queue of that node), or for a
/// durable classic queue whose node is down; INTERNAL_ERROR for a quorum
/// queue that has no quorum yet.
bool refused_for_good(amqp_connection_state_t c);

/// transport_stats: written by the connection thread only (count()), read
/// by any thread in snapshot(). Relaxed: each is read on its own and orders
/// nothing.
struct counters {
  std::atomic<bool> connected{false};
  std::atomic<std::uint64_t> connects{0};
  std::atomic<std::uint64_t> reconnects{0};
  std::atomic<std::uint64_t> publishes{0};
  std::atomic<std::uint64_t> confirms{0};
  std::atomic<std::uint64_t> nacks{0};
  std::atomic<std::uint64_t> returns{0};
  std::atomic<std::uint64_t> redeliveries{0};
  std::atomic<std::uint64_t> received{0};

  /// Any thread: the connection's state and what its thread counted.
  transport_stats snapshot() const;
};

// Connection thread: the counters have no other writer, so a load and a
// store do (no locked read-modify-write); readers may see the old value a
// moment longer, as with any relaxed counter.
inline void count(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) noexcept {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

/// What every part of a transport reads: its settings, options, log and
/// masked URL, and the counters its connection thread writes.
struct context {
  context(rabbit_settings s, transport_options o, std::shared_ptr<spdlog::logger> l, std::string d)
      : settings(std::move(s)), options(std::move(o)), log(std::move(l)), described(std::move(d)) {}
  const rabbit_settings settings;
  const transport_options options;
  const std::shared_ptr<spdlog::logger> log;
  const std::string described;
  counters counts;
};

/// The wait between two rounds through the node list: `first`, then
/// `step` longer after each round that failed, at most `max`; back to
/// `first` once connected (rabbit_retry_interval, rabbit_retry_backoff,
/// rabbit_interval_max).
class backoff {
 public:
  backoff(std::chrono::milliseconds first, std::chrono::milliseconds step, std::chrono::milliseconds max)
      : first_(first), step_(step), max_(max), current_(first) {}
  std::chrono::milliseconds current() const { return current_; }
  void waited() { current_ = std::min(current_ + step_, max_); }
  void reset() { current_ = first_; }

 private:
  std::chrono::milliseconds first_, step_, max_, current_;
};

/// The order in which a round tries the nodes (kombu_failover_strategy):
/// round-robin tries the list from the node last connected to (the first
/// at start), and from the next one after a round where none answered;
/// shuffle, in a new random order each round.
class failover {
 public:
  failover(std::size_t nodes, bool shuffle, std::uint_fast32_t seed = std::random_device{}())
      : nodes_(nodes), shuffle_(shuffle), random_(seed) {}
  /// The indexes of the nodes, in the order this round tries them.
  std::vector<std::size_t> round();
  /// Connected to node `i`.
  void connected(std::size_t i) { next_ = i; }
  /// No node of the round answered.
  void failed() { next_ = (next_ + 1) % nodes_; }

 private:
  std::size_t nodes_;
  bool shuffle_;
  std::size_t next_ = 0;
  std::minstd_rand random_;
};

/// An eventfd that wakes the connection thread from its poll().
class wakeup {
 public:
  wakeup();
  ~wakeup();
  wakeup(const wakeup&) = delete;
  wakeup& operator=(const wakeup&) = delete;
  /// Any thread.
  void signal();
  void drain();
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
};

/// The connection and its channel (`channel`, with publisher confirms and
/// the prefetch of the settings).
class connection {
 public:
  explicit connection(context& ctx);
  ~connection() { close(); }
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  struct attempt {
    bool connected = false;
    /// Not connected, and every node failed for good
    /// (amqp_failure::permanent): the last node's failure.
    std::optional<std::string> permanent_failure;
  };
  /// Tries the nodes once each, in failover order. `on_open` runs on each
  /// connection made, before it counts as connected; a failure it throws
  /// counts as the node's.
  attempt connect(const std::function<void()>& on_open);

  /// Waits before the next round through the nodes, or until woken.
  void wait_before_retry(wakeup& w);
  /// Waits for the broker or `w`, a quarter of the heartbeat interval at
  /// most (a second without heartbeats), so that rabbitmq-c sends and
  /// checks heartbeats.
  void wait_for_io(wakeup& w);

  /// Closes the connection: politely while it works, else torn down.
  void close();
  /// The connection failed: its close is not waited for.
  void broken() { healthy_ = false; }
  /// Throws amqp_failure, and marks the connection broken, on a status of
  /// rabbitmq-c that says it failed.
  void healthy_on(int status, const char* what);

  /// The broker refused something for now (a queue of a cluster node just
  /// lost): the next connection waits before it asks again.
  void pause_if_broker_refused();
  /// Whether to wait before reconnecting; asks once.
  bool take_pause();

  amqp_connection_state_t get() const { return conn_; }
  explicit operator bool() const { return conn_ != nullptr; }
  /// Frames to write, or data read and not parsed yet.
  bool buffered() const;

 private:
  void open(const rabbit_host& h);

  context& ctx_;
  amqp_connection_state_t conn_ = nullptr;
  bool healthy_ = true;
  bool pause_before_reconnect_ = false;
  failover nodes_;
  backoff backoff_;
};

}  // namespace coport::messaging::rabbit_impl

#endif
