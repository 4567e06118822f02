// rabbit://: RabbitMQ through rabbitmq-c.
//
// rabbitmq-c blocks and a connection must stay on one thread, so the driver
// owns one connection and one thread. Everything else (clients publishing,
// executors receiving, methods replying) talks to that thread through a
// queue of operations and an eventfd that wakes it; nothing on an executor's
// loop ever waits for the broker. The thread sleeps in poll() on the socket
// and the eventfd, reads frames as they come, and wakes at least four times
// per heartbeat interval so that rabbitmq-c sends and checks heartbeats even
// when no one else calls it.
//
// Names and declarations follow oslo.messaging 14's rabbit driver, so that
// Python services and coport services share exchanges and queues:
//   RPC      topic exchange <control_exchange> (or the target's), queues
//            "<topic>" and "<topic>.<server>" bound with their own names;
//            fanout exchange "<topic>_fanout" (auto-delete), one queue
//            "<topic>_fanout_<uuid>" per server (x-expires)
//   replies  queue "reply_<uuid>" on the default exchange (x-expires);
//            replies are published there with mandatory set
//   notify   queue "<topic>.<priority>" (or the pool's name) bound to the
//            topic exchange; the notifier declares it too, so nothing sent
//            before a listener exists is lost
// Queue arguments and durability follow oslo.messaging 14's options
// (queue_arguments): quorum queues for topic, server and notification
// queues under rabbit_quorum_queue (durable, with the topic exchange),
// x-ha-policy under rabbit_ha_queues, x-expires on reply and fanout queues.
// A call carries its timeout as the message's expiration (message TTL).
//
// Delivery: RPC requests are acknowledged when an executor takes them (at
// most once); notifications when their handler acks (at least once);
// prefetch bounds what a consumer holds. Publishes are confirmed by the
// broker (confirm.select): a send completes when the broker has the message.
// On connection loss the thread reconnects with backoff through the failover
// list, re-declares everything and publishes what waited; messages written
// but not confirmed fail (their fate is unknown) rather than being sent twice.

#include <coport/rabbit/driver.hpp>

#include <coport/messaging/wire/errors.hpp>
#include <coport/messaging/transport/rabbit.hpp>
#include <coport/messaging/transport/transport.hpp>

#include "transport/handoff.hpp"
#include "detail/log.hpp"

#include <amqp.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>

#include <boost/asio/error.hpp>
#include <spdlog/spdlog.h>

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <variant>

namespace asio = boost::asio;

namespace coport::messaging {

namespace {

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

amqp_bytes_t bytes(const std::string& s) {
  return amqp_bytes_t{s.size(), const_cast<char*>(s.data())};
}

std::string to_string(amqp_bytes_t b) { return std::string(static_cast<const char*>(b.bytes), b.len); }

// " (message id X)" for the log line of a body no decoder accepts, when the
// id can be read; empty otherwise.
std::string message_id_note(std::string_view body, const decode_limits& limits) {
  const std::string id = message_id_of(body, limits);
  return id.empty() ? std::string() : " (message id " + id + ")";
}

std::string describe(amqp_rpc_reply_t r) {
  switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return "ok";
    case AMQP_RESPONSE_NONE:
      return "no reply from the broker";
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      return amqp_error_string2(r.library_error);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        auto* m = static_cast<amqp_connection_close_t*>(r.reply.decoded);
        return "the broker closed the connection: " + std::to_string(m->reply_code) + " " + to_string(m->reply_text);
      }
      if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        auto* m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
        return "the broker closed the channel: " + std::to_string(m->reply_code) + " " + to_string(m->reply_text);
      }
      return "unexpected broker method " + std::to_string(r.reply.id);
  }
  return "unknown reply";
}

void check(amqp_connection_state_t c, const std::string& what) {
  const amqp_rpc_reply_t r = amqp_get_rpc_reply(c);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) throw amqp_failure(what + ": " + describe(r));
}

/// The text of a channel closed by the broker for PRECONDITION_FAILED
/// (a declaration it refuses); empty for any other failure.
std::string precondition_failed(amqp_connection_state_t c) {
  const amqp_rpc_reply_t r = amqp_get_rpc_reply(c);
  if (r.reply_type != AMQP_RESPONSE_SERVER_EXCEPTION || r.reply.id != AMQP_CHANNEL_CLOSE_METHOD) return {};
  auto* m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
  if (m->reply_code != AMQP_PRECONDITION_FAILED) return {};
  return std::to_string(m->reply_code) + " " + to_string(m->reply_text);
}

/// Whether the broker's reply refuses a declaration for good: the channel
/// or connection closed with ACCESS_REFUSED, RESOURCE_LOCKED,
/// PRECONDITION_FAILED or NOT_ALLOWED. Any other code is a failure of the
/// moment, which the next connection retries: NOT_FOUND for a queue that a
/// cluster node took with it when it went down between the queue's
/// declaration and its binding (a classic queue of that node), or for a
/// durable classic queue whose node is down; INTERNAL_ERROR for a quorum
/// queue that has no quorum yet.
bool refused_for_good(amqp_connection_state_t c) {
  const amqp_rpc_reply_t r = amqp_get_rpc_reply(c);
  if (r.reply_type != AMQP_RESPONSE_SERVER_EXCEPTION) return false;
  int code = 0;
  if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
    code = static_cast<amqp_channel_close_t*>(r.reply.decoded)->reply_code;
  } else if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
    code = static_cast<amqp_connection_close_t*>(r.reply.decoded)->reply_code;
  } else {
    return true;
  }
  return code == AMQP_ACCESS_REFUSED || code == AMQP_RESOURCE_LOCKED || code == AMQP_PRECONDITION_FAILED ||
         code == AMQP_NOT_ALLOWED;
}

/// `configuration`: the call only reads local settings (a CA file), so its
/// failure is permanent.
void check_status(int status, const std::string& what, bool configuration = false) {
  if (status >= 0) return;
  const bool permanent = configuration || status == AMQP_STATUS_SSL_PEER_VERIFY_FAILED ||
                         status == AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED;
  throw amqp_failure(what + ": " + amqp_error_string2(status), permanent);
}

// ------------------------------------------------------------ declarations

struct binding {
  std::string exchange;  ///< empty: the default exchange (no binding)
  std::string type;      ///< "topic" or "fanout"
  bool durable = false;
  bool auto_delete = false;
  std::string routing_key;
};

/// An x-argument of a queue declare: a number or a string.
struct queue_arg {
  std::string key;
  std::variant<std::int64_t, std::string> value;
};

struct queue_spec {
  std::string name;
  bool durable = false;
  bool auto_delete = false;
  std::vector<queue_arg> arguments;
  std::vector<binding> bindings;
};

// The arguments of a queue, as oslo.messaging 14's _get_queue_arguments
// gives them: x-ha-policy with rabbit_ha_queues; x-queue-type and the
// quorum limits for the queues that may be quorum (topic, server and
// notification queues) under rabbit_quorum_queue; x-expires for the
// transient ones (reply and fanout queues). parse_rabbit_url refuses
// quorum and HA together.
std::vector<queue_arg> queue_arguments(const rabbit_settings& s, bool may_be_quorum, std::chrono::seconds ttl) {
  std::vector<queue_arg> args;
  if (s.ha_queues) args.push_back({"x-ha-policy", std::string("all")});
  if (may_be_quorum && s.quorum_queue) {
    args.push_back({"x-queue-type", std::string("quorum")});
    if (s.quorum_delivery_limit > 0) args.push_back({"x-delivery-limit", s.quorum_delivery_limit});
    if (s.quorum_max_memory_length > 0) args.push_back({"x-max-in-memory-length", s.quorum_max_memory_length});
    if (s.quorum_max_memory_bytes > 0) args.push_back({"x-max-in-memory-bytes", s.quorum_max_memory_bytes});
  }
  if (ttl.count() > 0) {
    args.push_back({"x-expires", std::chrono::duration_cast<std::chrono::milliseconds>(ttl).count()});
  }
  return args;
}

// The broker's words after "current is" / "received" (RabbitMQ:
// "inequivalent arg 'x-queue-type' for queue 'q' in vhost '/': received
// none but current is the value 'quorum' of type 'longstr'").
std::string between(std::string_view text, std::string_view from, std::string_view to) {
  const auto a = text.find(from);
  if (a == std::string_view::npos) return {};
  const auto b = to.empty() ? std::string_view::npos : text.find(to, a + from.size());
  return std::string(text.substr(a + from.size(), b == std::string_view::npos ? text.npos : b - a - from.size()));
}

/// What channels closed by PRECONDITION_FAILED on a declare of `kind`
/// `name` mean: `broker_texts` are the broker's refusals (the declare's,
/// then a probe's that learnt the next argument that differs), and
/// `requested(argument)` says what coport sent for an argument the broker
/// names. The error's argument is x-queue-type when the broker named it
/// (the difference that decides the others), else the first one named.
template <class Requested>
declare_refused refusal(std::string_view kind, const std::string& name, const std::vector<std::string>& broker_texts,
                        Requested requested) {
  struct named {
    std::string argument, has, asked;
  };
  std::vector<named> args;
  for (const auto& text : broker_texts) {
    std::string argument = between(text, "inequivalent arg '", "'");
    if (argument.empty()) continue;
    std::string has = between(text, "but current is ", "");
    if (has.empty()) has = "(not said)";
    std::string asked = requested(argument);
    args.push_back({std::move(argument), std::move(has), std::move(asked)});
  }
  std::string what = std::string(kind) + " '" + name + "' cannot be declared: ";
  named primary;
  if (!args.empty()) {
    primary = args.front();
    for (const auto& n : args) {
      if (n.argument == "x-queue-type") primary = n;
    }
    std::string has;
    std::string asked;
    for (const auto& n : args) {
      has += (has.empty() ? "" : " and ") + n.argument + " = " + n.has;
      asked += (asked.empty() ? "" : " and ") + n.argument + " = " + n.asked;
    }
    what += "it exists on the broker with " + has + ", and coport declared " + asked + " (inequivalent arguments";
    if (primary.argument == "x-queue-type") {
      what += "; rabbit_quorum_queue must be the same for every service on the queue";
    } else if (primary.argument == "durable") {
      what += "; amqp_durable_queues and rabbit_quorum_queue decide durability, and must agree between services";
    } else if (primary.argument == "x-expires") {
      what += "; rabbit_transient_queues_ttl must agree between services";
    } else if (primary.argument == "auto_delete") {
      what += "; amqp_auto_delete must agree between services";
    }
    what += ")";
  } else {
    what += "the broker refused it";
  }
  std::string said;
  for (const auto& text : broker_texts) said += (said.empty() ? "" : "; ") + text;
  what += ". Broker: " + said;
  return declare_refused(std::string(kind), name, std::move(primary.argument), std::move(primary.has),
                         std::move(primary.asked), what);
}

std::string describe(const queue_arg& a) {
  if (const auto* n = std::get_if<std::int64_t>(&a.value)) return std::to_string(*n);
  return "'" + std::get<std::string>(a.value) + "'";
}

struct delivery {
  std::string body;
  std::uint64_t tag = 0;
  std::uint64_t generation = 0;
  std::string queue;       ///< the queue it was consumed from
  std::string expiration;  ///< its expiration property; empty: none
  bool redelivered = false;  ///< the broker delivered it before
};

class core;

/// Consumes a set of queues; its deliveries arrive on the connection thread.
class subscriber {
 public:
  virtual ~subscriber() = default;
  std::vector<queue_spec> queues;
  bool no_ack = false;
  /// RPC requests: a call it does not take is given back as a new
  /// message (core::give_back), never requeued, since a call the broker
  /// delivers again is dropped (it may have run: at most once).
  bool at_most_once = false;
  /// Connection thread. The message of `d.tag`; the subscriber acks it.
  virtual void on_delivery(delivery d) = 0;
  /// Connection thread: its queues cannot be declared (the broker refused
  /// them); it will receive nothing.
  virtual void on_refused(const std::string& why) = 0;

  /// Connection thread: records why its queues were refused, tells
  /// on_refused, and settles wait_declared().
  void refuse(const declare_refused& why) {
    {
      std::lock_guard lk(declared_mutex_);
      refused_ = std::make_shared<declare_refused>(why);
    }
    on_refused(why.what());
    declared();
  }
  /// Why the broker refused its queues; null when it did not.
  std::shared_ptr<const declare_refused> refused() {
    std::lock_guard lk(declared_mutex_);
    return refused_;
  }
  /// Connection thread: the transport shuts down.
  virtual void on_closed() { on_refused("the transport was shut down"); }

  /// Connection thread: its queues exist and are consumed.
  void declared() {
    {
      std::lock_guard lk(declared_mutex_);
      declared_ = true;
    }
    declared_cv_.notify_all();
  }
  /// Waits up to `d` for declared(); false on timeout.
  bool wait_declared(std::chrono::milliseconds d) {
    std::unique_lock lk(declared_mutex_);
    return declared_cv_.wait_for(lk, d, [&] { return declared_; });
  }

 private:
  std::mutex declared_mutex_;
  std::condition_variable declared_cv_;
  bool declared_ = false;
  std::shared_ptr<const declare_refused> refused_;
};

// ------------------------------------------------------------- operations

struct publish_op {
  binding to;  ///< exchange (declared first unless default) and routing key
  std::optional<queue_spec> declare_queue;
  std::string body;
  std::string expiration;  ///< milliseconds, empty: none
  bool mandatory = false;
  std::unique_ptr<send_handler> done;  ///< null for replies
  clock::time_point deadline;
  std::string what;  ///< for logs
};

struct ack_op {
  enum kind { ack, requeue, reject };
  std::uint64_t generation;
  std::uint64_t tag;
  kind how;
};

struct subscribe_op {
  std::shared_ptr<subscriber> s;
};

struct unsubscribe_op {
  std::shared_ptr<subscriber> s;
};

using op = std::variant<publish_op, ack_op, subscribe_op, unsubscribe_op>;

void complete(std::unique_ptr<send_handler>& h, boost::system::error_code ec) {
  if (!h) return;
  auto handler = std::move(h);
  std::move (*handler)(ec);
}

// ------------------------------------------------------------------- core

class core : public std::enable_shared_from_this<core> {
 public:
  core(rabbit_settings s, transport_options o, std::string described)
      : settings_(std::move(s)),
        options_(std::move(o)),
        log_(options_.logger ? options_.logger : default_logger()),
        described_(std::move(described)),
        backoff_(settings_.retry_interval) {
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd_ < 0) throw transport_error(std::string("rabbit: eventfd: ") + std::strerror(errno));
  }

  ~core() {
    if (wake_fd_ >= 0) ::close(wake_fd_);
  }

  void start() {
    std::lock_guard lk(mutex_);
    thread_ = std::thread([self = shared_from_this()] { self->run(); });
    thread_id_ = thread_.get_id();
  }

  /// Any thread: queues `o` for the connection thread. After shutdown,
  /// publishes fail at once and the rest is dropped.
  void post(op o) {
    bool wake = false;
    {
      std::lock_guard lk(mutex_);
      if (!stopping_) {
        // The connection thread itself (acks while it delivers) needs no
        // wake-up: it looks at the queue before it sleeps.
        wake = ops_.empty() && std::this_thread::get_id() != thread_id_;
        ops_.push_back(std::move(o));
      } else if (auto* p = std::get_if<publish_op>(&o)) {
        complete(p->done, asio::error::shut_down);
        return;
      }
    }
    if (wake) signal();
  }

  void shutdown() {
    {
      std::lock_guard lk(mutex_);
      if (stopping_) return;
      stopping_ = true;
    }
    signal();
    if (thread_.joinable()) {
      if (thread_.get_id() == std::this_thread::get_id()) {
        thread_.detach();
      } else {
        thread_.join();
      }
    }
  }

  spdlog::logger& log() { return *log_; }
  const std::shared_ptr<spdlog::logger>& logger() { return log_; }
  const rabbit_settings& settings() const { return settings_; }
  const transport_options& options() const { return options_; }
  const std::string& described() const { return described_; }

  /// Any thread: gives a call that was taken and not handed out back to
  /// its queue as a new message (same body and expiration), then
  /// acknowledges the delivery. A requeue would make the broker mark it
  /// redelivered, and RPC listeners drop such calls. Should the connection
  /// fail in between, the broker delivers the original again, marked, and
  /// at most the new copy runs.
  void give_back(std::string queue, std::string body, std::string expiration, std::uint64_t generation,
                 std::uint64_t tag) {
    publish_op p;
    p.what = "request given back to queue " + queue;
    p.to = binding{"", "direct", false, false, std::move(queue)};
    p.body = std::move(body);
    p.expiration = std::move(expiration);
    p.deadline = clock::now() + settings_.send_timeout;
    post(std::move(p));
    post(ack_op{generation, tag, ack_op::ack});
  }

  binding topic_exchange(const std::string& name, std::string routing_key) const {
    return binding{name, "topic", settings_.queues_durable(), settings_.auto_delete, std::move(routing_key)};
  }

  /// Any thread: the connection's state and what its thread counted.
  transport_stats stats() const {
    constexpr auto relaxed = std::memory_order_relaxed;
    transport_stats s;
    s.driver = "rabbit";
    s.connected = connected_.load(relaxed);
    s.connects = connects_.load(relaxed);
    s.reconnects = reconnects_.load(relaxed);
    s.publishes = publishes_.load(relaxed);
    s.confirms = confirms_.load(relaxed);
    s.nacks = nacks_.load(relaxed);
    s.returns = returns_.load(relaxed);
    s.redeliveries = redeliveries_.load(relaxed);
    s.received = received_.load(relaxed);
    return s;
  }

 private:
  void signal() {
    const std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
  }

  void drain_signal() {
    std::uint64_t value;
    [[maybe_unused]] auto n = ::read(wake_fd_, &value, sizeof value);
  }

  // Connection thread: the counters have no other writer, so a load and a
  // store do (no locked read-modify-write); readers may see the old value
  // a moment longer, as with any relaxed counter.
  static void count(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) noexcept {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  // ---------------------------------------------------- connection thread

  void run() {
    while (true) {
      {
        std::lock_guard lk(mutex_);
        if (stopping_) break;
      }
      if (!conn_) {
        if (!connect()) {
          wait_before_retry();
          continue;
        }
      }
      try {
        run_ops();
        pump();
        if (!has_ops() && !buffered()) wait_for_io();
      } catch (const amqp_failure& e) {
        if (e.refused) {
          // Logged where it happened, by name; the channel it closed is
          // reopened with the connection.
          log_->info("rabbit: reconnecting: the broker closed the channel on refusing a declaration");
          lost({});
        } else {
          lost(e.what());
        }
        if (pause_before_reconnect_) {
          pause_before_reconnect_ = false;
          wait_before_retry();
        }
      }
    }
    flush_before_close();
    close_connection();
    // Whatever is left fails: nothing will send it.
    std::deque<op> left;
    {
      std::lock_guard lk(mutex_);
      left.swap(ops_);
    }
    for (auto& o : left) {
      if (auto* p = std::get_if<publish_op>(&o)) complete(p->done, asio::error::shut_down);
    }
    for (auto& [seq, h] : unconfirmed_) complete(h, asio::error::shut_down);
    unconfirmed_.clear();
    std::vector<std::shared_ptr<subscriber>> subs;
    subs.swap(subscribers_);
    for (auto& s : subs) {
      s->on_closed();
      s->declared();
    }
  }

  // Shutting down: what was handed over before (replies of a graceful
  // stop, casts) is written, and confirmations are awaited briefly, before
  // the connection closes; the broker keeps the order of a connection's
  // frames, so replies written here are delivered.
  void flush_before_close() {
    if (!conn_) return;
    try {
      run_ops();
      const auto until = clock::now() + std::chrono::seconds(2);
      while (!unconfirmed_.empty() && clock::now() < until) {
        pump();
        if (!unconfirmed_.empty() && !buffered()) wait_for_io();
      }
    } catch (const amqp_failure& e) {
      lost(e.what());
    }
  }

  bool has_ops() {
    std::lock_guard lk(mutex_);
    return !ops_.empty();
  }

  bool buffered() { return conn_ && (amqp_frames_enqueued(conn_) || amqp_data_in_buffer(conn_)); }

  void wait_for_io() {
    pollfd fds[2] = {{amqp_get_sockfd(conn_), POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    int timeout_ms = 1000;
    if (settings_.heartbeat.count() > 0) {
      timeout_ms = std::min<int>(timeout_ms, static_cast<int>(settings_.heartbeat.count() * 1000 / 4));
    }
    ::poll(fds, 2, timeout_ms);
    if (fds[1].revents & POLLIN) drain_signal();
  }

  void wait_before_retry() {
    pollfd fd{wake_fd_, POLLIN, 0};
    expire_waiting(clock::now());
    ::poll(&fd, 1, static_cast<int>(backoff_.count()));
    if (fd.revents & POLLIN) drain_signal();
    backoff_ = std::min(backoff_ + settings_.retry_backoff, settings_.interval_max);
  }

  // Publishes waiting for a connection past their deadline fail.
  void expire_waiting(clock::time_point now) {
    for (auto& p : take_waiting([now](const publish_op& p) { return p.deadline <= now; })) {
      log_->error("rabbit {}: {} dropped: no connection to the broker for {} ms", described_, p.what,
                  settings_.send_timeout.count());
      complete(p.done, asio::error::timed_out);
    }
  }

  /// Takes the waiting publishes that `pred` selects out of the queue.
  template <class Pred>
  std::vector<publish_op> take_waiting(Pred pred) {
    std::vector<publish_op> taken;
    std::lock_guard lk(mutex_);
    for (auto it = ops_.begin(); it != ops_.end();) {
      auto* p = std::get_if<publish_op>(&*it);
      if (p && pred(*p)) {
        taken.push_back(std::move(*p));
        it = ops_.erase(it);
      } else {
        ++it;
      }
    }
    return taken;
  }

  bool connect() {
    bool all_permanent = true;
    std::string last;
    // kombu_failover_strategy: round-robin tries the list from the host
    // after the one last used (the first at start); shuffle, in a new
    // random order each round.
    std::vector<std::size_t> order(settings_.hosts.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = (next_host_ + i) % order.size();
    if (settings_.failover_strategy == rabbit_settings::failover::shuffle) {
      std::shuffle(order.begin(), order.end(), random_);
    }
    for (std::size_t i = 0; i < order.size(); ++i) {
      const rabbit_host& h = settings_.hosts[order[i]];
      try {
        open(h);
        if (connects_.load(std::memory_order_relaxed) > 0) count(reconnects_);
        count(connects_);
        connected_.store(true, std::memory_order_relaxed);
        next_host_ = order[i];
        backoff_ = settings_.retry_interval;
        log_->info("rabbit: connected to {}:{} (vhost {}) as {}", h.host, h.port, settings_.vhost, h.user);
        return true;
      } catch (const amqp_failure& e) {
        healthy_ = false;
        close_connection();
        all_permanent = all_permanent && e.permanent;
        last = e.what();
        log_->warn("rabbit: cannot connect to {}:{} as {}: {}; retrying in {} ms", h.host, h.port, h.user,
                   e.what(), backoff_.count());
      }
    }
    next_host_ = (next_host_ + 1) % settings_.hosts.size();
    // Messages waiting for such a connection fail now rather than at their
    // deadline; the thread keeps trying, for a configuration fixed later.
    if (all_permanent) fail_waiting(last);
    return false;
  }

  void fail_waiting(const std::string& why) {
    for (auto& p : take_waiting([](const publish_op&) { return true; })) {
      log_->error("rabbit {}: {} failed: {}", described_, p.what, why);
      complete(p.done, asio::error::access_denied);
    }
  }

  void open(const rabbit_host& h) {
    conn_ = amqp_new_connection();
    if (!conn_) throw amqp_failure("out of memory");
    amqp_socket_t* sock = nullptr;
    if (settings_.ssl) {
      sock = amqp_ssl_socket_new(conn_);
      if (!sock) throw amqp_failure("cannot create a TLS socket");
      amqp_ssl_socket_set_verify_peer(sock, settings_.ssl_verify ? 1 : 0);
      amqp_ssl_socket_set_verify_hostname(sock, settings_.ssl_verify && settings_.ssl_verify_hostname ? 1 : 0);
      if (!settings_.ssl_ca_file.empty()) {
        check_status(amqp_ssl_socket_set_cacert(sock, settings_.ssl_ca_file.c_str()),
                     "reading the CA file " + settings_.ssl_ca_file, true);
      }
      if (!settings_.ssl_cert_file.empty()) {
        check_status(amqp_ssl_socket_set_key(sock, settings_.ssl_cert_file.c_str(), settings_.ssl_key_file.c_str()),
                     "reading the client certificate " + settings_.ssl_cert_file, true);
      }
    } else {
      sock = amqp_tcp_socket_new(conn_);
      if (!sock) throw amqp_failure("cannot create a socket");
    }
    timeval tv{};
    tv.tv_sec = settings_.connect_timeout.count() / 1000;
    tv.tv_usec = (settings_.connect_timeout.count() % 1000) * 1000;
    check_status(amqp_set_handshake_timeout(conn_, &tv), "setting the handshake timeout");
    check_status(amqp_socket_open_noblock(sock, h.host.c_str(), h.port, &tv), settings_.ssl ? "TLS connect" : "connect");
    const int heartbeat = static_cast<int>(settings_.heartbeat.count());
    // consumer_cancel_notify: the broker tells a consumer whose queue was
    // deleted (basic.cancel), and the driver then reconnects and declares
    // its queues again. Without it the consumer would silently be gone.
    amqp_table_entry_t capability{};
    capability.key = amqp_cstring_bytes("consumer_cancel_notify");
    capability.value.kind = AMQP_FIELD_KIND_BOOLEAN;
    capability.value.value.boolean = 1;
    amqp_table_entry_t properties[2]{};
    properties[0].key = amqp_cstring_bytes("capabilities");
    properties[0].value.kind = AMQP_FIELD_KIND_TABLE;
    properties[0].value.value.table = amqp_table_t{1, &capability};
    properties[1].key = amqp_cstring_bytes("product");
    properties[1].value.kind = AMQP_FIELD_KIND_UTF8;
    properties[1].value.value.bytes = amqp_cstring_bytes("coport");
    const amqp_table_t client_properties{2, properties};
    const amqp_rpc_reply_t login =
        amqp_login_with_properties(conn_, settings_.vhost.c_str(), 0, 131072, heartbeat, &client_properties,
                                   AMQP_SASL_METHOD_PLAIN, h.user.c_str(), h.password.c_str());
    if (login.reply_type != AMQP_RESPONSE_NORMAL) {
      // The broker refusing the credentials (403) or the vhost (530) is
      // permanent; a connection lost while logging in is not.
      bool refused = false;
      if (login.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && login.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        const auto code = static_cast<amqp_connection_close_t*>(login.reply.decoded)->reply_code;
        refused = code == AMQP_ACCESS_REFUSED || code == AMQP_NOT_ALLOWED;
      }
      throw amqp_failure("login: " + describe(login), refused);
    }
    timeval rpc{};
    rpc.tv_sec = settings_.rpc_timeout.count() / 1000;
    rpc.tv_usec = (settings_.rpc_timeout.count() % 1000) * 1000;
    check_status(amqp_set_rpc_timeout(conn_, &rpc), "setting the RPC timeout");
    amqp_channel_open(conn_, channel);
    check(conn_, "opening a channel");
    amqp_confirm_select(conn_, channel);
    check(conn_, "confirm.select");
    amqp_basic_qos(conn_, channel, 0, settings_.prefetch, 0);
    check(conn_, "basic.qos");
    ++generation_;
    next_seq_ = 1;
    declared_exchanges_.clear();
    declared_queues_.clear();
    by_tag_.clear();
    cancelled_at_most_once_.clear();
    // Everything consumed before comes back, in order.
    auto subs = subscribers_;
    for (auto& s : subs) declare_and_consume(s);
  }

  void close_connection() {
    if (!conn_) return;
    // A polite close when the connection still works; a dead one is just
    // torn down (amqp_connection_close would wait for its RPC timeout).
    if (healthy_) {
      amqp_channel_close(conn_, channel, AMQP_REPLY_SUCCESS);
      amqp_connection_close(conn_, AMQP_REPLY_SUCCESS);
    }
    amqp_destroy_connection(conn_);
    conn_ = nullptr;
    connected_.store(false, std::memory_order_relaxed);
    healthy_ = true;
  }

  /// `why` empty: already said.
  void lost(const std::string& why) {
    if (!why.empty()) log_->warn("rabbit: connection lost ({}); reconnecting", why);
    healthy_ = false;
    close_connection();
    by_tag_.clear();
    cancelled_at_most_once_.clear();
    // Written but not confirmed: the broker may or may not have them.
    for (auto& [seq, h] : unconfirmed_) complete(h, asio::error::connection_aborted);
    unconfirmed_.clear();
  }

  void run_ops() {
    std::deque<op> batch;
    {
      std::lock_guard lk(mutex_);
      batch.swap(ops_);
    }
    while (!batch.empty()) {
      op o = std::move(batch.front());
      batch.pop_front();
      retry_current_ = false;
      try {
        execute(o);
      } catch (const amqp_failure&) {
        // Put back what was not done, and the failed operation when it
        // failed before anything was written (a publish that was written
        // counts as unconfirmed: its fate is unknown, lost() fails it).
        std::lock_guard lk(mutex_);
        while (!batch.empty()) {
          ops_.push_front(std::move(batch.back()));
          batch.pop_back();
        }
        if (retry_current_) ops_.push_front(std::move(o));
        throw;
      }
    }
  }

  void execute(op& o) {
    if (auto* p = std::get_if<publish_op>(&o)) return publish(*p);
    if (auto* a = std::get_if<ack_op>(&o)) {
      if (a->generation != generation_) return;  // that channel is gone; the broker requeued it
      int st = 0;
      if (a->how == ack_op::ack) {
        st = amqp_basic_ack(conn_, channel, a->tag, 0);
      } else {
        st = amqp_basic_reject(conn_, channel, a->tag, a->how == ack_op::requeue ? 1 : 0);
      }
      healthy_on(st, "ack");
      return;
    }
    if (auto* s = std::get_if<subscribe_op>(&o)) {
      subscribers_.push_back(s->s);
      declare_and_consume(s->s);
      return;
    }
    if (auto* u = std::get_if<unsubscribe_op>(&o)) {
      std::erase(subscribers_, u->s);
      for (auto it = by_tag_.begin(); it != by_tag_.end();) {
        if (it->second.s == u->s) {
          const std::string tag = it->first;
          if (u->s->at_most_once) cancelled_at_most_once_[tag] = it->second.queue;
          it = by_tag_.erase(it);
          amqp_basic_cancel(conn_, channel, bytes(tag));
          check(conn_, "basic.cancel");
        } else {
          ++it;
        }
      }
      return;
    }
  }

  void healthy_on(int status, const char* what) {
    if (status < 0) {
      healthy_ = false;
      throw amqp_failure(std::string(what) + ": " + amqp_error_string2(status));
    }
  }

  void declare_exchange(const binding& b) {
    if (b.exchange.empty() || declared_exchanges_.count(b.exchange)) return;
    amqp_exchange_declare(conn_, channel, bytes(b.exchange), bytes(b.type), 0, b.durable, b.auto_delete, 0,
                          amqp_empty_table);
    if (std::string text = precondition_failed(conn_); !text.empty()) {
      throw amqp_failure(refusal("exchange", b.exchange, {std::move(text)}, [&](const std::string& arg) -> std::string {
        if (arg == "type") return "'" + b.type + "'";
        if (arg == "durable") return b.durable ? "'true'" : "'false'";
        if (arg == "auto_delete") return b.auto_delete ? "'true'" : "'false'";
        return "none";
      }));
    }
    check(conn_, "declaring exchange " + b.exchange);
    declared_exchanges_.insert(b.exchange);
  }

  void declare_queue(const queue_spec& q) {
    if (declared_queues_.count(q.name)) return;
    std::vector<amqp_table_entry_t> entries(q.arguments.size());
    for (std::size_t i = 0; i < q.arguments.size(); ++i) {
      entries[i].key = bytes(q.arguments[i].key);
      if (const auto* n = std::get_if<std::int64_t>(&q.arguments[i].value)) {
        entries[i].value.kind = AMQP_FIELD_KIND_I64;
        entries[i].value.value.i64 = *n;
      } else {
        entries[i].value.kind = AMQP_FIELD_KIND_UTF8;
        entries[i].value.value.bytes = bytes(std::get<std::string>(q.arguments[i].value));
      }
    }
    const amqp_table_t args{static_cast<int>(entries.size()), entries.data()};
    amqp_queue_declare(conn_, channel, bytes(q.name), 0, q.durable, 0, q.auto_delete, args);
    if (std::string text = precondition_failed(conn_); !text.empty()) {
      std::vector<std::string> texts{std::move(text)};
      // RabbitMQ names the first difference only, and compares durability
      // first: a classic, transient declare of a quorum queue is refused
      // for 'durable', which hides the queue type. A second declare with
      // the broker's durability, on a channel of its own, names the next
      // difference (the queue exists: a declare that matches changes
      // nothing).
      if (between(texts.front(), "inequivalent arg '", "'") == "durable") {
        if (std::string next = probe_declare(q, !q.durable, args); !next.empty()) texts.push_back(std::move(next));
      }
      throw amqp_failure(refusal("queue", q.name, texts, [&](const std::string& arg) -> std::string {
        if (arg == "durable") return q.durable ? "'true'" : "'false'";
        if (arg == "auto_delete") return q.auto_delete ? "'true'" : "'false'";
        for (const auto& a : q.arguments) {
          if (a.key == arg) return describe(a);
        }
        return arg == "x-queue-type" ? "none (a classic queue)" : "none";
      }));
    }
    check(conn_, "declaring queue " + q.name);
    for (const auto& b : q.bindings) {
      if (b.exchange.empty()) continue;
      declare_exchange(b);
      amqp_queue_bind(conn_, channel, bytes(q.name), bytes(b.exchange), bytes(b.routing_key), amqp_empty_table);
      check(conn_, "binding queue " + q.name + " to " + b.exchange);
    }
    declared_queues_.insert(q.name);
  }

  // The broker's PRECONDITION_FAILED text for declaring `q` with
  // `durable`, on a channel opened for it and closed after; empty when the
  // declare passes or the channel cannot be opened.
  std::string probe_declare(const queue_spec& q, bool durable, const amqp_table_t& args) {
    constexpr amqp_channel_t probe_channel = channel + 1;
    amqp_channel_open(conn_, probe_channel);
    if (amqp_get_rpc_reply(conn_).reply_type != AMQP_RESPONSE_NORMAL) return {};
    amqp_queue_declare(conn_, probe_channel, bytes(q.name), 0, durable, 0, q.auto_delete, args);
    std::string text = precondition_failed(conn_);
    if (amqp_get_rpc_reply(conn_).reply_type == AMQP_RESPONSE_NORMAL) {
      amqp_channel_close(conn_, probe_channel, AMQP_REPLY_SUCCESS);
    }
    return text;
  }

  void declare_and_consume(const std::shared_ptr<subscriber>& s) {
    try {
      for (const auto& q : s->queues) declare_queue(q);
    } catch (const amqp_failure& e) {
      // The broker refuses these queues (arguments that differ from an
      // existing queue's, permissions): the subscriber learns it, once,
      // and is dropped, never declared again; the channel the refusal
      // closed is reopened. Any other failure (a queue gone with a cluster
      // node that just went down) is retried on the next connection.
      if (e.refused || refused_for_good(conn_)) {
        log_->error("rabbit: {}", e.what());
        std::erase(subscribers_, s);
        s->refuse(e.refused ? *e.refused
                            : declare_refused("queue", s->queues.empty() ? std::string() : s->queues.front().name,
                                              "", "", "", e.what()));
      } else if (amqp_get_rpc_reply(conn_).reply_type == AMQP_RESPONSE_SERVER_EXCEPTION) {
        // The broker cannot do it now: the next connection waits the
        // retry interval first, rather than asking again at once.
        pause_before_reconnect_ = true;
      }
      throw;
    }
    for (const auto& q : s->queues) {
      const std::string tag = "coport-" + make_unique_id();
      amqp_basic_consume(conn_, channel, bytes(q.name), bytes(tag), 0, s->no_ack ? 1 : 0, 0, amqp_empty_table);
      check(conn_, "consuming from " + q.name);
      by_tag_[tag] = consumer{s, q.name};
    }
    s->declared();
  }

  void publish(publish_op& p) {
    if (p.deadline <= clock::now()) {
      log_->error("rabbit {}: {} dropped: it waited {} ms for the broker", described_, p.what,
                  settings_.send_timeout.count());
      complete(p.done, asio::error::timed_out);
      return;
    }
    try {
      if (p.declare_queue) declare_queue(*p.declare_queue);
      declare_exchange(p.to);
    } catch (const amqp_failure& e) {
      if (e.refused || refused_for_good(conn_)) {
        // Refused by the broker (e.g. an exchange of another type or
        // durability): this message fails, the connection is reopened.
        log_->error("rabbit: {} refused: {}", p.what, e.what());
        complete(p.done, e.refused ? make_error_code(errc::declare_refused)
                                   : boost::system::error_code(asio::error::access_denied));
      } else {
        // The connection failed, or the broker cannot do it now (a queue's
        // cluster node just went down): sent after reconnecting, until its
        // deadline.
        retry_current_ = true;
        if (amqp_get_rpc_reply(conn_).reply_type == AMQP_RESPONSE_SERVER_EXCEPTION) pause_before_reconnect_ = true;
      }
      throw;
    }
    amqp_basic_properties_t props{};
    props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_CONTENT_ENCODING_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
    props.content_type = amqp_cstring_bytes("application/json");
    props.content_encoding = amqp_cstring_bytes("utf-8");
    props.delivery_mode = 2;  // persistent, as oslo.messaging sends everything
    if (!p.expiration.empty()) {
      props._flags |= AMQP_BASIC_EXPIRATION_FLAG;
      props.expiration = bytes(p.expiration);
    }
    const std::uint64_t seq = next_seq_++;
    // Counted before the write: whatever the message leads to (a delivery,
    // a reply) never shows before its publish. A write that fails counts
    // too: part of it may have gone out.
    count(publishes_);
    const int st = amqp_basic_publish(conn_, channel, bytes(p.to.exchange), bytes(p.to.routing_key),
                                      p.mandatory ? 1 : 0, 0, &props, bytes(p.body));
    // Replies too (no handler): confirms are counted per message, and a
    // confirm with `multiple` covers those not confirmed yet up to its tag.
    unconfirmed_.emplace(seq, std::move(p.done));
    healthy_on(st, "publish");
  }

  // Reads what the broker sent, without blocking.
  void pump() {
    for (int i = 0; i < 1024; ++i) {
      amqp_maybe_release_buffers(conn_);
      amqp_envelope_t env;
      timeval zero{0, 0};
      const amqp_rpc_reply_t r = amqp_consume_message(conn_, &env, &zero, 0);
      if (r.reply_type == AMQP_RESPONSE_NORMAL) {
        deliver(env);
        amqp_destroy_envelope(&env);
        continue;
      }
      if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT) return;
      if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
        other_frame();
        continue;
      }
      healthy_ = false;
      throw amqp_failure("reading: " + describe(r));
    }
  }

  void deliver(amqp_envelope_t& env) {
    count(received_);
    if (env.redelivered) count(redeliveries_);
    const std::string tag = to_string(env.consumer_tag);
    std::string expiration;
    if (env.message.properties._flags & AMQP_BASIC_EXPIRATION_FLAG) {
      expiration = to_string(env.message.properties.expiration);
    }
    auto it = by_tag_.find(tag);
    if (it == by_tag_.end()) {
      // For a consumer just cancelled (a listener that stopped): back to the
      // queue for the others, as a new message for a call. Only listeners
      // are cancelled, and they ack.
      if (auto c = cancelled_at_most_once_.find(tag); c != cancelled_at_most_once_.end()) {
        std::string body = to_string(env.message.body);
        if (is_call_body(body)) {
          give_back(c->second, std::move(body), std::move(expiration), generation_, env.delivery_tag);
          return;
        }
      }
      healthy_on(amqp_basic_reject(conn_, channel, env.delivery_tag, 1), "requeue");
      return;
    }
    delivery d;
    d.body = to_string(env.message.body);
    d.tag = env.delivery_tag;
    d.generation = generation_;
    d.queue = it->second.queue;
    d.expiration = std::move(expiration);
    d.redelivered = env.redelivered != 0;
    auto s = it->second.s;
    s->on_delivery(std::move(d));
  }

  bool is_call_body(const std::string& body) const {
    try {
      return decode_request(body, options_.limits).is_call();
    } catch (const std::exception&) {
      return false;  // the consumer that takes it next drops it
    }
  }

  void other_frame() {
    amqp_frame_t f;
    healthy_on(amqp_simple_wait_frame(conn_, &f), "reading a frame");
    if (f.frame_type != AMQP_FRAME_METHOD) return;
    switch (f.payload.method.id) {
      case AMQP_BASIC_ACK_METHOD: {
        auto* a = static_cast<amqp_basic_ack_t*>(f.payload.method.decoded);
        confirmed(a->delivery_tag, a->multiple, {});
        return;
      }
      case AMQP_BASIC_NACK_METHOD: {
        auto* n = static_cast<amqp_basic_nack_t*>(f.payload.method.decoded);
        confirmed(n->delivery_tag, n->multiple, asio::error::no_buffer_space);
        return;
      }
      case AMQP_BASIC_RETURN_METHOD: {
        auto* r = static_cast<amqp_basic_return_t*>(f.payload.method.decoded);
        const std::string key = to_string(r->routing_key);
        const std::string text = to_string(r->reply_text);
        amqp_message_t m;
        const amqp_rpc_reply_t rr = amqp_read_message(conn_, f.channel, &m, 0);
        if (rr.reply_type != AMQP_RESPONSE_NORMAL) throw amqp_failure("reading a returned message: " + describe(rr));
        const std::string body = to_string(m.body);
        amqp_destroy_message(&m);
        count(returns_);
        // Undeliverable, as oslo.messaging 14 treats a returned reply: said
        // once and dropped, never published again.
        log_->warn("rabbit: the reply{} to queue {} was returned by the broker ({}): the caller's reply queue is "
                   "gone; the reply is dropped",
                   message_id_note(body, options_.limits), key, text);
        return;
      }
      case AMQP_BASIC_CANCEL_METHOD:
        throw amqp_failure("the broker cancelled a consumer (its queue was deleted)");
      case AMQP_CHANNEL_CLOSE_METHOD: {
        auto* c = static_cast<amqp_channel_close_t*>(f.payload.method.decoded);
        throw amqp_failure("the broker closed the channel: " + std::to_string(c->reply_code) + " " +
                           to_string(c->reply_text));
      }
      case AMQP_CONNECTION_CLOSE_METHOD: {
        auto* c = static_cast<amqp_connection_close_t*>(f.payload.method.decoded);
        healthy_ = false;
        throw amqp_failure("the broker closed the connection: " + std::to_string(c->reply_code) + " " +
                           to_string(c->reply_text));
      }
      default:
        return;
    }
  }

  void confirmed(std::uint64_t tag, bool multiple, boost::system::error_code ec) {
    std::uint64_t n = 0;
    if (multiple) {
      auto end = unconfirmed_.upper_bound(tag);
      for (auto it = unconfirmed_.begin(); it != end; ++it, ++n) complete(it->second, ec);
      unconfirmed_.erase(unconfirmed_.begin(), end);
    } else if (auto it = unconfirmed_.find(tag); it != unconfirmed_.end()) {
      complete(it->second, ec);
      unconfirmed_.erase(it);
      n = 1;
    }
    count(ec ? nacks_ : confirms_, n);
  }

  const rabbit_settings settings_;
  const transport_options options_;
  std::shared_ptr<spdlog::logger> log_;
  const std::string described_;

  std::mutex mutex_;
  std::deque<op> ops_;
  bool stopping_ = false;
  int wake_fd_ = -1;
  std::thread thread_;
  std::thread::id thread_id_;

  // Connection thread only.
  amqp_connection_state_t conn_ = nullptr;
  bool healthy_ = true;
  bool retry_current_ = false;
  bool pause_before_reconnect_ = false;
  std::uint64_t generation_ = 0;
  std::uint64_t next_seq_ = 1;
  std::size_t next_host_ = 0;
  std::minstd_rand random_{std::random_device{}()};
  std::chrono::milliseconds backoff_;
  /// Published on this channel and not confirmed yet, by sequence number;
  /// the handler is null for a reply or a call given back.
  std::map<std::uint64_t, std::unique_ptr<send_handler>> unconfirmed_;
  std::vector<std::shared_ptr<subscriber>> subscribers_;
  struct consumer {
    std::shared_ptr<subscriber> s;
    std::string queue;
  };
  std::unordered_map<std::string, consumer> by_tag_;
  /// The queues of RPC consumers cancelled on this connection, by tag: a
  /// delivery still on its way to one is given back.
  std::unordered_map<std::string, std::string> cancelled_at_most_once_;
  std::set<std::string> declared_exchanges_;
  std::set<std::string> declared_queues_;

  // transport_stats: written by the connection thread only (count()),
  // read by any thread in stats(). Relaxed: each is read on its own and
  // orders nothing.
  std::atomic<bool> connected_{false};
  std::atomic<std::uint64_t> connects_{0};
  std::atomic<std::uint64_t> reconnects_{0};
  std::atomic<std::uint64_t> publishes_{0};
  std::atomic<std::uint64_t> confirms_{0};
  std::atomic<std::uint64_t> nacks_{0};
  std::atomic<std::uint64_t> returns_{0};
  std::atomic<std::uint64_t> redeliveries_{0};
  std::atomic<std::uint64_t> received_{0};
};

// --------------------------------------------------------------- messages

class rabbit_incoming_call final : public incoming_call {
 public:
  rabbit_incoming_call(rpc_request r, std::shared_ptr<core> c) : incoming_call(std::move(r)), core_(std::move(c)) {}

  void reply(rpc_reply r) override {
    if (!request_.is_call()) return;
    r.msg_id = request_.msg_id;
    publish_op p;
    p.to = binding{"", "direct", false, false, request_.reply_q};
    try {
      p.body = encode(r);
    } catch (const std::exception& e) {
      core_->log().error("rabbit: the reply to message {} cannot be encoded: {}", request_.msg_id, e.what());
      return;
    }
    p.mandatory = true;
    p.deadline = clock::now() + core_->settings().send_timeout;
    p.what = "reply to message " + request_.msg_id;
    core_->post(std::move(p));
  }

 private:
  std::shared_ptr<core> core_;
};

class rabbit_incoming_notification final : public incoming_notification {
 public:
  rabbit_incoming_notification(notification n, std::shared_ptr<core> c, std::uint64_t generation,
                               std::uint64_t tag)
      : incoming_notification(std::move(n)), core_(std::move(c)), generation_(generation), tag_(tag) {}
  ~rabbit_incoming_notification() override { requeue(); }
  void ack() override { answer(ack_op::ack); }
  void requeue() override { answer(ack_op::requeue); }

 private:
  void answer(ack_op::kind how) {
    if (answered_) return;
    answered_ = true;
    core_->post(ack_op{generation_, tag_, how});
  }
  std::shared_ptr<core> core_;
  std::uint64_t generation_;
  std::uint64_t tag_;
  bool answered_ = false;
};

// --------------------------------------------------------------- listener

/// A server's or a notification listener's consumer: messages the broker
/// delivered wait here (prefetch bounds them) until an executor receives.
class rabbit_listener final : public listener_impl, public subscriber {
 public:
  rabbit_listener(std::shared_ptr<core> c, bool rpc) : core_(std::move(c)), rpc_(rpc) { at_most_once = rpc; }

  void attach(std::weak_ptr<rabbit_listener> self) { self_ = std::move(self); }

  void async_receive_call(call_receiver h) override {
    if (!rpc_) return listener_impl::async_receive_call(std::move(h));
    std::unique_lock lk(mutex_);
    if (ended_) {
      lk.unlock();
      return std::move(h)(end_code_, std::unique_ptr<incoming_call>());
    }
    if (!ready_.empty()) {
      auto m = std::move(ready_.front());
      ready_.pop_front();
      detail::handoff_gate::scope handing(handoffs_, mutex_);
      lk.unlock();
      return hand_call(std::move(h), std::move(m));
    }
    calls_.push_back(std::move(h));
  }

  void async_receive_notification(notification_receiver h) override {
    if (rpc_) return listener_impl::async_receive_notification(std::move(h));
    std::unique_lock lk(mutex_);
    if (ended_) {
      lk.unlock();
      return std::move(h)(end_code_, std::unique_ptr<incoming_notification>());
    }
    if (!ready_.empty()) {
      auto m = std::move(ready_.front());
      ready_.pop_front();
      detail::handoff_gate::scope handing(handoffs_, mutex_);
      lk.unlock();
      return hand_notification(std::move(h), std::move(m));
    }
    notifications_.push_back(std::move(h));
  }

  void stop() override { end(asio::error::operation_aborted, true); }

  // Connection thread.
  void on_delivery(delivery d) override {
    item m;
    m.generation = d.generation;
    m.tag = d.tag;
    if (rpc_) {
      m.body = d.body;
      m.queue = d.queue;
      m.expiration = d.expiration;
    }
    try {
      if (rpc_) {
        m.message = decode_request(d.body, core_->options().limits);
      } else {
        m.message = decode_notification(d.body, core_->options().limits);
      }
    } catch (const std::exception& e) {
      // Not a message anyone can handle: acknowledged, so that it does not
      // come back forever, and logged once.
      core_->log().error("rabbit: dropped an undecodable message{} from queue {} ({} bytes): {}",
                         message_id_note(d.body, core_->options().limits), d.queue, d.body.size(), e.what());
      core_->post(ack_op{d.generation, d.tag, ack_op::reject});
      return;
    }
    if (d.redelivered && is_call(m)) {
      // The broker delivers a call again when the consumer it went to was
      // gone before its acknowledgement arrived (a connection or a cluster
      // node lost): that consumer may have run it. Calls run at most once,
      // so it is dropped, and its caller times out; a call coport gives
      // back unrun is a new message (core::give_back), not this. A cast
      // is kept: casts are at least once, as the broker confirmed them.
      core_->log().warn("rabbit: dropped a call (message id {}) that the broker delivered again on queue {}: it may "
                        "have run already, and calls run at most once",
                        std::get<rpc_request>(m.message).msg_id, d.queue);
      core_->post(ack_op{d.generation, d.tag, ack_op::ack});
      return;
    }
    std::unique_lock lk(mutex_);
    if (ended_) {
      lk.unlock();
      give_back(std::move(m));
      return;
    }
    if (rpc_ && !calls_.empty()) {
      detail::handoff_gate::scope handing(handoffs_, mutex_);
      call_receiver h(std::move(calls_.front()));
      calls_.pop_front();
      lk.unlock();
      return hand_call(std::move(h), std::move(m));
    }
    if (!rpc_ && !notifications_.empty()) {
      detail::handoff_gate::scope handing(handoffs_, mutex_);
      notification_receiver h(std::move(notifications_.front()));
      notifications_.pop_front();
      lk.unlock();
      return hand_notification(std::move(h), std::move(m));
    }
    ready_.push_back(std::move(m));
  }

  void on_refused(const std::string&) override { end(asio::error::access_denied, false); }

 private:
  struct item {
    std::variant<rpc_request, notification> message;
    std::uint64_t generation = 0;
    std::uint64_t tag = 0;
    // RPC requests: what give_back() needs.
    std::string body;
    std::string queue;
    std::string expiration;
  };

  static bool is_call(const item& m) {
    const auto* r = std::get_if<rpc_request>(&m.message);
    return r && r->is_call();
  }

  // Back to the broker for the other consumers: a call as a new message,
  // a cast or a notification by requeue.
  void give_back(item m) {
    if (is_call(m)) {
      core_->give_back(std::move(m.queue), std::move(m.body), std::move(m.expiration), m.generation, m.tag);
    } else {
      core_->post(ack_op{m.generation, m.tag, ack_op::requeue});
    }
  }

  void hand_call(call_receiver h, item m) {
    // At most once: acknowledged as it is handed to the executor.
    core_->post(ack_op{m.generation, m.tag, ack_op::ack});
    std::unique_ptr<incoming_call> in =
        std::make_unique<rabbit_incoming_call>(std::get<rpc_request>(std::move(m.message)), core_);
    std::move(h)(boost::system::error_code{}, std::move(in));
  }

  void hand_notification(notification_receiver h, item m) {
    std::unique_ptr<incoming_notification> in = std::make_unique<rabbit_incoming_notification>(
        std::get<notification>(std::move(m.message)), core_, m.generation, m.tag);
    std::move(h)(boost::system::error_code{}, std::move(in));
  }

  // Also waits for hand-offs running on other threads (see handoff.hpp).
  void end(boost::system::error_code ec, bool unsubscribe) {
    std::unique_lock lk(mutex_);
    if (ended_) return handoffs_.wait_idle(lk);
    ended_ = true;
    end_code_ = ec;
    std::deque<call_receiver> calls(std::move(calls_));
    std::deque<notification_receiver> notes(std::move(notifications_));
    std::deque<item> ready(std::move(ready_));
    handoffs_.wait_idle(lk);
    lk.unlock();
    if (unsubscribe) {
      if (auto self = self_.lock()) core_->post(unsubscribe_op{self});
    }
    // Taken from the broker but never handed out: back to the queue for
    // the other consumers.
    for (auto& m : ready) give_back(std::move(m));
    for (auto& h : calls) std::move(h)(ec, std::unique_ptr<incoming_call>());
    for (auto& h : notes) std::move(h)(ec, std::unique_ptr<incoming_notification>());
  }

  std::shared_ptr<core> core_;
  const bool rpc_;
  std::weak_ptr<rabbit_listener> self_;
  std::mutex mutex_;
  // Boost 1.81's any_completion_handler must never be move-assigned:
  // deques only move-construct and destroy at their ends.
  std::deque<call_receiver> calls_;
  std::deque<notification_receiver> notifications_;
  std::deque<item> ready_;
  detail::handoff_gate handoffs_;
  bool ended_ = false;
  boost::system::error_code end_code_;
};

/// The reply queue of a transport's calls.
class reply_consumer final : public subscriber {
 public:
  reply_consumer(std::shared_ptr<spdlog::logger> log, decode_limits limits, std::function<void(rpc_reply)> sink)
      : log_(std::move(log)), limits_(limits), sink_(std::move(sink)) {}
  void on_delivery(delivery d) override {
    rpc_reply r;
    try {
      r = decode_reply(d.body, limits_);
    } catch (const std::exception& e) {
      log_->error("rabbit: dropped an undecodable reply{} on {} ({} bytes): {}", message_id_note(d.body, limits_),
                  d.queue, d.body.size(), e.what());
      return;
    }
    // A reply in several parts (an older protocol) ends with "ending";
    // only the final one completes the call.
    if (!r.ending && r.result.is_null() && !r.failure) return;
    sink_(std::move(r));
  }
  void on_refused(const std::string& why) override {
    log_->error("rabbit: the reply queue cannot be consumed: {}; calls will time out", why);
  }
  void on_closed() override {}  // the transport's calls end with it

 private:
  std::shared_ptr<spdlog::logger> log_;
  decode_limits limits_;
  std::function<void(rpc_reply)> sink_;
};

// ----------------------------------------------------------------- driver

class rabbit_driver final : public driver {
 public:
  rabbit_driver(std::string_view url, const transport_options& options)
      : core_(std::make_shared<core>(parse_rabbit_url(url), options, mask_password(url))) {
    core_->start();
  }
  ~rabbit_driver() override { core_->shutdown(); }

  void async_send(const target& to, rpc_request request, send_handler h) override {
    publish_op p;
    if (to.fanout) {
      p.to = binding{to.topic + "_fanout", "fanout", false, true, to.topic};
    } else {
      p.to = core_->topic_exchange(exchange_of(to), to.server.empty() ? to.topic : to.topic + "." + to.server);
    }
    if (request.is_call() && request.timeout && *request.timeout > 0) {
      p.expiration = std::to_string(static_cast<long long>(*request.timeout * 1000));
    }
    p.what = (request.is_call() ? "call " + request.msg_id : "cast") + " of " + request.method + " to " +
             p.to.exchange + "/" + p.to.routing_key;
    try {
      p.body = encode(request);
    } catch (const std::exception& e) {
      core_->log().error("rabbit: {} cannot be encoded: {}", p.what, e.what());
      std::move(h)(asio::error::invalid_argument);
      return;
    }
    auto wait = core_->settings().send_timeout;
    if (request.timeout && *request.timeout > 0) {
      wait = std::min<std::chrono::milliseconds>(wait, std::chrono::milliseconds(static_cast<long long>(*request.timeout * 1000)));
    }
    p.deadline = clock::now() + wait;
    p.done = std::make_unique<send_handler>(std::move(h));
    core_->post(std::move(p));
  }

  void async_notify(const target& to, notification n, send_handler h) override {
    const std::string key = to.topic + "." + std::string(to_string(n.prio));
    publish_op p;
    p.to = core_->topic_exchange(exchange_of(to), key);
    queue_spec q;
    q.name = key;
    q.durable = core_->settings().queues_durable();
    q.auto_delete = core_->settings().auto_delete;
    q.arguments = queue_arguments(core_->settings(), true, std::chrono::seconds(0));
    q.bindings.push_back(p.to);
    p.declare_queue = std::move(q);
    p.what = "notification " + n.event_type + " to " + p.to.exchange + "/" + key;
    try {
      p.body = encode(n);
    } catch (const std::exception& e) {
      core_->log().error("rabbit: {} cannot be encoded: {}", p.what, e.what());
      std::move(h)(asio::error::invalid_argument);
      return;
    }
    p.deadline = clock::now() + core_->settings().send_timeout;
    p.done = std::make_unique<send_handler>(std::move(h));
    core_->post(std::move(p));
  }

  std::shared_ptr<listener_impl> listen(const target& server) override {
    const auto& s = core_->settings();
    auto l = std::make_shared<rabbit_listener>(core_, true);
    l->attach(l);
    const std::string& ex = exchange_of(server);
    for (const std::string& name : {server.topic, server.topic + "." + server.server}) {
      queue_spec q;
      q.name = name;
      q.durable = s.queues_durable();
      q.auto_delete = s.auto_delete;
      q.arguments = queue_arguments(s, true, std::chrono::seconds(0));
      q.bindings.push_back(core_->topic_exchange(ex, name));
      l->queues.push_back(std::move(q));
    }
    queue_spec fan;
    fan.name = server.topic + "_fanout_" + make_unique_id();
    fan.arguments = queue_arguments(s, false, s.transient_queues_ttl);
    fan.bindings.push_back(binding{server.topic + "_fanout", "fanout", false, true, server.topic});
    l->queues.push_back(std::move(fan));
    subscribe(l, "requests of " + ex + "/" + server.topic + "." + server.server);
    return l;
  }

  std::shared_ptr<listener_impl> listen_notifications(const std::vector<target>& targets,
                                                      const std::optional<std::string>& pool) override {
    const auto& s = core_->settings();
    auto l = std::make_shared<rabbit_listener>(core_, false);
    l->attach(l);
    // Without a pool, a queue per "<topic>.<priority>"; with one, a single
    // queue named after the pool, bound with every key (as oslo.messaging).
    std::map<std::string, queue_spec> queues;
    for (const auto& t : targets) {
      for (int p = 0; p <= static_cast<int>(priority::sample); ++p) {
        const std::string key = t.topic + "." + std::string(to_string(static_cast<priority>(p)));
        const std::string name = pool ? *pool : key;
        auto& q = queues[name];
        q.name = name;
        q.durable = s.queues_durable();
        q.auto_delete = s.auto_delete;
        q.arguments = queue_arguments(s, true, std::chrono::seconds(0));
        q.bindings.push_back(core_->topic_exchange(exchange_of(t), key));
      }
    }
    for (auto& [name, q] : queues) l->queues.push_back(std::move(q));
    subscribe(l, "notifications of " + targets.front().topic);
    return l;
  }

  std::string start_replies(std::function<void(rpc_reply)> sink) override {
    auto r = std::make_shared<reply_consumer>(core_->logger(), core_->options().limits, std::move(sink));
    r->no_ack = true;
    queue_spec q;
    q.name = "reply_" + make_unique_id();
    q.arguments = queue_arguments(core_->settings(), false, core_->settings().transient_queues_ttl);
    r->queues.push_back(q);
    core_->post(subscribe_op{r});
    return q.name;
  }

  std::string describe() const override { return core_->described(); }

  transport_stats stats() const override { return core_->stats(); }

  void shutdown() override { core_->shutdown(); }

 private:
  const std::string& exchange_of(const target& t) const {
    return t.exchange.empty() ? core_->options().control_exchange : t.exchange;
  }

  // A listener is consuming when listen() returns, so that what is sent
  // after a server reports itself ready reaches it. With the broker down
  // it stops waiting after the connect timeout; consuming starts once the
  // connection is made. Queues the broker refuses (a queue that exists
  // with other arguments) throw declare_refused: the server or listener
  // does not start.
  void subscribe(const std::shared_ptr<rabbit_listener>& l, const std::string& what) {
    core_->post(subscribe_op{l});
    if (!l->wait_declared(core_->settings().connect_timeout)) {
      core_->log().warn("rabbit {}: not connected yet; consuming the {} starts once connected",
                        core_->described(), what);
    }
    if (auto refused = l->refused()) throw *refused;
  }

  std::shared_ptr<core> core_;
};

}  // namespace

}  // namespace coport::messaging

namespace coport::rabbit {

std::unique_ptr<messaging::driver> make_driver(std::string_view url, const messaging::transport_options& options) {
  return std::make_unique<messaging::rabbit_driver>(url, options);
}

}  // namespace coport::rabbit

// Registration. Nothing in a program calls into this library: it only
// registers rabbit:// with transport::create. A linker takes an object out
// of a static library only to define a symbol something needs, so a
// self-registering object alone would be dropped without a word and
// rabbit:// would be unknown at run time. coport::rabbit's link interface
// therefore says --require-defined=coport_rabbit_driver_anchor
// (rabbit/CMakeLists.txt): every program linking the library needs the
// anchor, which only this object defines, so the linker takes the object
// and the registration with it, or fails the link if it cannot.
namespace {

[[maybe_unused]] const bool registered = [] {
  coport::messaging::register_driver("rabbit", &coport::rabbit::make_driver);
  return true;
}();

}  // namespace

extern "C" [[gnu::used]] void coport_rabbit_driver_anchor() {}
