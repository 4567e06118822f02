// rabbit://: RabbitMQ through rabbitmq-c. This file is the driver itself:
// the transport's side of sends, notifications, listeners and reply
// queues, which it turns into operations for the connection thread, and
// the registration of rabbit:// with transport::create. The thread and
// what it owns are in parts of their own, each depending only on those
// after it: core.hpp (the thread and its queue of operations),
// consumers.hpp (consumers, deliveries, acknowledgements), channel.hpp
// (declarations, publishes, confirms, returns) and connection.hpp
// (connecting through the failover list, backoff, heartbeats, closing).
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
// On connection loss what was written and not confirmed fails (core.hpp).

#include <coport/rabbit/driver.hpp>

#include <coport/messaging/wire/errors.hpp>
#include <coport/messaging/transport/rabbit.hpp>
#include <coport/messaging/transport/transport.hpp>

#include "core.hpp"
#include "transport/handoff.hpp"
#include "detail/log.hpp"

#include <boost/asio/error.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>

namespace asio = boost::asio;

namespace coport::messaging::rabbit_impl {

namespace {

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

}  // namespace coport::messaging::rabbit_impl

namespace coport::rabbit {

std::unique_ptr<messaging::driver> make_driver(std::string_view url, const messaging::transport_options& options) {
  return std::make_unique<messaging::rabbit_impl::rabbit_driver>(url, options);
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
