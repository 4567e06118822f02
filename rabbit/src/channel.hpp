// The rabbit:// driver's channel operations: declaring exchanges and
// queues with the arguments oslo.messaging 14 gives them (and explaining a
// declaration the broker refuses), binding, publishing, and the publisher
// confirms and returns that settle what was published. A send completes
// when the broker confirms its message (confirm_tracker); a reply the
// broker returns is logged and dropped. Connection thread only.

#ifndef COPORT_RABBIT_SRC_CHANNEL_HPP
#define COPORT_RABBIT_SRC_CHANNEL_HPP

#include "connection.hpp"

#include <map>
#include <set>
#include <string_view>
#include <variant>

namespace coport::messaging::rabbit_impl {

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

/// The arguments of a queue, as oslo.messaging 14's _get_queue_arguments
/// gives them: x-ha-policy with rabbit_ha_queues; x-queue-type and the
/// quorum limits for the queues that may be quorum (topic, server and
/// notification queues) under rabbit_quorum_queue; x-expires for the
/// transient ones (reply and fanout queues), when `ttl` is not zero.
/// parse_rabbit_url refuses quorum and HA together.
std::vector<queue_arg> queue_arguments(const rabbit_settings& s, bool may_be_quorum, std::chrono::seconds ttl);

/// " (message id X)" for the log line of a body no decoder accepts, when
/// the id can be read; empty otherwise.
std::string message_id_note(std::string_view body, const decode_limits& limits);

/// Runs and clears `h`, when there is one.
void complete(std::unique_ptr<send_handler>& h, boost::system::error_code ec);

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

/// What was published on a channel and not confirmed yet. The broker
/// numbers a channel's publishes from 1 and confirms (ack) or refuses
/// (nack) them by that number, one at a time or, with `multiple`, every
/// one not settled yet up to it.
class confirm_tracker {
 public:
  /// A publish was written; `done` (null for a reply or a call given back)
  /// completes when the broker settles it. Its number is the next one.
  void published(std::unique_ptr<send_handler> done);
  /// The broker settled `tag` (and, with `multiple`, every unsettled one
  /// before it): each completes with `ec`. Returns how many it settled.
  std::uint64_t settled(std::uint64_t tag, bool multiple, boost::system::error_code ec);
  /// Every unsettled publish completes with `ec`.
  void fail_all(boost::system::error_code ec);
  /// A new channel: numbering starts again at 1.
  void restart() { next_ = 1; }
  bool empty() const { return unconfirmed_.empty(); }

 private:
  std::uint64_t next_ = 1;
  /// By number; the handler is null for a reply or a call given back.
  std::map<std::uint64_t, std::unique_ptr<send_handler>> unconfirmed_;
};

/// The channel's declarations, publishes and confirms.
class channel_ops {
 public:
  channel_ops(context& ctx, connection& conn) : ctx_(ctx), conn_(conn) {}

  /// A new connection: nothing is declared on it, nothing published.
  void opened();

  void declare_exchange(const binding& b);
  /// Declares `q` and its bindings (and their exchanges).
  void declare_queue(const queue_spec& q);

  /// Declares what `p` needs, publishes it and tracks its confirmation; a
  /// publish past its deadline fails with timed_out instead. Throws
  /// amqp_failure when the connection or channel fails; then
  /// retry_failed_publish() says whether nothing was written and `p`
  /// should be published again on the next connection.
  void publish(publish_op& p);
  bool retry_failed_publish() const { return retry_; }

  /// basic.ack or basic.nack (`ec` set) from the broker.
  void confirmed(std::uint64_t tag, bool multiple, boost::system::error_code ec);
  /// basic.return on `ch`: the message that follows is read, logged and
  /// dropped.
  void returned(const amqp_basic_return_t& r, amqp_channel_t ch);

  /// Published and not confirmed yet.
  bool awaiting_confirms() const { return !confirms_.empty(); }
  /// Every publish not confirmed yet fails with `ec`.
  void fail_unconfirmed(boost::system::error_code ec) { confirms_.fail_all(ec); }

 private:
  std::string probe_declare(const queue_spec& q, bool durable, const amqp_table_t& args);

  context& ctx_;
  connection& conn_;
  confirm_tracker confirms_;
  bool retry_ = false;
  std::set<std::string> declared_exchanges_;
  std::set<std::string> declared_queues_;
};

}  // namespace coport::messaging::rabbit_impl

#endif
