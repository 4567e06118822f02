// The rabbit:// driver's consumers: the subscribers whose queues it
// declares and consumes (again on every connection), the consumer tags
// the broker delivers to, the deliveries handed to subscribers, their
// acknowledgements (ack, requeue, reject; dropped when their channel is
// gone), and what arrives for a consumer just cancelled: a call goes back
// to its queue as a new message, anything else is requeued. Connection
// thread only, apart from what `subscriber` says.

#ifndef COPORT_RABBIT_SRC_CONSUMERS_HPP
#define COPORT_RABBIT_SRC_CONSUMERS_HPP

#include "channel.hpp"

#include <condition_variable>
#include <mutex>
#include <unordered_map>

namespace coport::messaging::rabbit_impl {

struct delivery {
  std::string body;
  std::uint64_t tag = 0;
  std::uint64_t generation = 0;
  std::string queue;       ///< the queue it was consumed from
  std::string expiration;  ///< its expiration property; empty: none
  bool redelivered = false;  ///< the broker delivered it before
};

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
  void refuse(const declare_refused& why);
  /// Why the broker refused its queues; null when it did not.
  std::shared_ptr<const declare_refused> refused();
  /// Connection thread: the transport shuts down.
  virtual void on_closed() { on_refused("the transport was shut down"); }

  /// Connection thread: its queues exist and are consumed.
  void declared();
  /// Waits up to `d` for declared(); false on timeout.
  bool wait_declared(std::chrono::milliseconds d);

 private:
  std::mutex declared_mutex_;
  std::condition_variable declared_cv_;
  bool declared_ = false;
  std::shared_ptr<const declare_refused> refused_;
};

struct ack_op {
  enum kind { ack, requeue, reject };
  std::uint64_t generation;
  std::uint64_t tag;
  kind how;
};

/// The subscribers and their consumers on the current channel.
class consumers {
 public:
  /// Gives a call taken from `queue` back to it as a new message (same
  /// body and expiration) and acknowledges delivery `tag` of channel
  /// `generation` (core::give_back).
  using give_back_fn = std::function<void(std::string queue, std::string body, std::string expiration,
                                          std::uint64_t generation, std::uint64_t tag)>;

  consumers(context& ctx, connection& conn, channel_ops& ch, give_back_fn give_back)
      : ctx_(ctx), conn_(conn), channel_(ch), give_back_(std::move(give_back)) {}

  /// A new channel: deliveries of the one before cannot be acknowledged
  /// on it; every subscriber consumes again, in order.
  void opened();
  /// The connection is lost: its consumers are gone.
  void lost();

  void subscribe(const std::shared_ptr<subscriber>& s);
  /// Cancels the consumers of `s`; what is still on its way to them is
  /// handled by deliver().
  void unsubscribe(const std::shared_ptr<subscriber>& s);
  /// Acknowledges, requeues or rejects; nothing when its channel is gone
  /// (the broker requeued the message with it).
  void answer(const ack_op& a);
  /// A message from the broker, for the subscriber of its consumer tag.
  void deliver(amqp_envelope_t& env);
  /// The transport shuts down: every subscriber is told and forgotten.
  void close_all();

  /// Deliveries of this channel carry it; acknowledgements of another are
  /// dropped.
  std::uint64_t generation() const { return generation_; }

 private:
  void declare_and_consume(const std::shared_ptr<subscriber>& s);
  bool is_call_body(const std::string& body) const;

  context& ctx_;
  connection& conn_;
  channel_ops& channel_;
  give_back_fn give_back_;
  std::uint64_t generation_ = 0;
  std::vector<std::shared_ptr<subscriber>> subscribers_;
  struct consumer {
    std::shared_ptr<subscriber> s;
    std::string queue;
  };
  std::unordered_map<std::string, consumer> by_tag_;
  /// The queues of RPC consumers cancelled on this connection, by tag: a
  /// delivery still on its way to one is given back.
  std::unordered_map<std::string, std::string> cancelled_at_most_once_;
};

}  // namespace coport::messaging::rabbit_impl

#endif
