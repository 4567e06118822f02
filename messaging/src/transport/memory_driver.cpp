// memory://: an in-process broker with the routing of oslo.messaging's AMQP
// drivers (topic queue shared by a topic's servers, topic.server queue,
// fanout to every server, one queue per notification priority and pool),
// event driven: a receive waits on the queue, a publish hands the message
// to a waiting receiver or queues it. Thread-safe: one mutex per broker.

#include "transport/memory_driver.hpp"

#include "transport/handoff.hpp"
#include "detail/log.hpp"

#include <coport/messaging/wire/errors.hpp>
#include <coport/messaging/transport/memory.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>
#include <variant>

namespace asio = boost::asio;

namespace coport::messaging {

namespace {

class memory_listener;
class memory_incoming_notification;

// What one transport's driver counted (transport_stats), shared with its
// listeners and the calls they took, which may outlive it. Relaxed: each
// counter is read on its own and orders nothing.
struct traffic {
  std::atomic<std::uint64_t> publishes{0};
  std::atomic<std::uint64_t> received{0};
  std::atomic<std::uint64_t> returns{0};

  static void count(std::atomic<std::uint64_t>& c) noexcept { c.fetch_add(1, std::memory_order_relaxed); }
};

struct queue {
  explicit queue(std::string k) : key(std::move(k)) {}
  std::string key;
  std::deque<std::variant<rpc_request, notification>> messages;
  std::deque<memory_listener*> waiting;  // listeners with a receive pending
};

class broker {
 public:
  explicit broker(std::string name) : name_(std::move(name)) {}

  static std::shared_ptr<broker> named(const std::string& name) {
    static std::mutex m;
    static std::map<std::string, std::weak_ptr<broker>> brokers;
    std::lock_guard lk(m);
    auto& slot = brokers[name];
    auto b = slot.lock();
    if (!b) {
      b = std::make_shared<broker>(name);
      slot = b;
    }
    return b;
  }

  const std::string& name() const noexcept { return name_; }

  std::mutex mutex;

  queue* queue_for(const std::string& key) {
    auto& q = queues_[key];
    if (!q) q = std::make_unique<queue>(key);
    return q.get();
  }
  std::vector<queue*>& fanout(const std::string& key) { return fanout_[key]; }
  std::vector<queue*>& notify_bindings(const std::string& key) { return notify_[key]; }
  std::unordered_map<std::string, std::function<void(rpc_reply)>>& reply_sinks() { return sinks_; }

  // Injected faults (memory_faults), guarded by `mutex`.
  struct fault_state {
    std::size_t fail_sends = 0;
    std::size_t lose_replies = 0;
    memory_faults::counts done;
    // Notifications handed to listeners and not yet answered.
    std::set<memory_incoming_notification*> unanswered;
  };
  fault_state faults;

  /// Lock held: true (and counted) when this publish is to fail.
  bool send_fails() {
    if (faults.fail_sends == 0) return false;
    --faults.fail_sends;
    ++faults.done.sends_failed;
    return true;
  }

  /// Hands `msg` to a listener waiting on `q` or queues it (at the front
  /// when `front`, for a requeue). Releases `lk` before completing anything.
  void publish(queue* q, std::variant<rpc_request, notification> msg, std::unique_lock<std::mutex>& lk,
               bool front = false);

 private:
  std::string name_;
  std::unordered_map<std::string, std::unique_ptr<queue>> queues_;
  std::unordered_map<std::string, std::vector<queue*>> fanout_;
  std::unordered_map<std::string, std::vector<queue*>> notify_;
  std::unordered_map<std::string, std::function<void(rpc_reply)>> sinks_;
};

class memory_incoming_call final : public incoming_call {
 public:
  memory_incoming_call(rpc_request r, std::shared_ptr<broker> b, std::shared_ptr<spdlog::logger> log,
                       std::shared_ptr<traffic> counted)
      : incoming_call(std::move(r)), broker_(std::move(b)), log_(std::move(log)), traffic_(std::move(counted)) {}

  void reply(rpc_reply r) override {
    if (!request_.is_call()) return;
    r.msg_id = request_.msg_id;
    std::function<void(rpc_reply)> sink;
    {
      std::lock_guard lk(broker_->mutex);
      if (broker_->faults.lose_replies > 0) {
        --broker_->faults.lose_replies;
        ++broker_->faults.done.replies_lost;
        log_->warn("memory://{}: reply to message {} lost (injected fault: connection dropped)",
                   broker_->name(), request_.msg_id);
        return;
      }
      auto it = broker_->reply_sinks().find(request_.reply_q);
      if (it != broker_->reply_sinks().end()) sink = it->second;
    }
    traffic::count(traffic_->publishes);
    if (!sink) {
      traffic::count(traffic_->returns);
      log_->warn("memory://{}: reply to message {} dropped: reply queue {} is gone", broker_->name(),
                 request_.msg_id, request_.reply_q);
      return;
    }
    sink(std::move(r));
  }

 private:
  std::shared_ptr<broker> broker_;
  std::shared_ptr<spdlog::logger> log_;
  std::shared_ptr<traffic> traffic_;
};

class memory_incoming_notification final : public incoming_notification {
 public:
  memory_incoming_notification(notification n, std::shared_ptr<broker> b, queue* q)
      : incoming_notification(std::move(n)), broker_(std::move(b)), queue_(q) {
    std::lock_guard lk(broker_->mutex);
    broker_->faults.unanswered.insert(this);
  }
  ~memory_incoming_notification() override { requeue(); }
  void ack() override {
    std::lock_guard lk(broker_->mutex);
    answered(lk);
  }
  void requeue() override {
    std::unique_lock lk(broker_->mutex);
    if (!answered(lk)) return;
    broker_->publish(queue_, std::move(message_), lk, true);
  }

  /// Broker lock held: the listener's connection dropped; the message goes
  /// back to its queue (the caller publishes the copy) and answers to this
  /// one are ignored.
  std::pair<queue*, notification> drop(const std::lock_guard<std::mutex>& lk) {
    answered(lk);
    return {queue_, message_};
  }

 private:
  // Lock held: marks the message answered; false if it already was.
  template <class Lock>
  bool answered(const Lock&) {
    if (answered_) return false;
    answered_ = true;
    broker_->faults.unanswered.erase(this);
    return true;
  }

  std::shared_ptr<broker> broker_;
  queue* queue_;
  bool answered_ = false;  // guarded by the broker's mutex
};

class memory_listener final : public listener_impl {
 public:
  memory_listener(std::shared_ptr<broker> b, std::vector<queue*> queues, bool rpc,
                  std::shared_ptr<spdlog::logger> log, std::shared_ptr<traffic> counted,
                  std::string fanout_key = {}, queue* fanout_queue = nullptr)
      : broker_(std::move(b)),
        queues_(std::move(queues)),
        rpc_(rpc),
        log_(std::move(log)),
        traffic_(std::move(counted)),
        fanout_key_(std::move(fanout_key)),
        fanout_queue_(fanout_queue) {}

  ~memory_listener() override { stop(); }

  void async_receive_call(call_receiver h) override {
    if (!rpc_) return listener_impl::async_receive_call(std::move(h));
    std::unique_lock lk(broker_->mutex);
    if (stopped_) {
      lk.unlock();
      return complete_call(std::move(h), asio::error::operation_aborted, nullptr, nullptr);
    }
    if (call_handlers_.empty()) {
      if (auto [q, msg] = take(); q) {
        detail::handoff_gate::scope handing(handoffs_, broker_->mutex);
        lk.unlock();
        return complete_call(std::move(h), {}, q, &*msg);
      }
    }
    call_handlers_.push_back(std::move(h));
    wait_on_queues();
  }

  void async_receive_notification(notification_receiver h) override {
    if (rpc_) return listener_impl::async_receive_notification(std::move(h));
    std::unique_lock lk(broker_->mutex);
    if (stopped_) {
      lk.unlock();
      return complete_notification(std::move(h), asio::error::operation_aborted, nullptr, nullptr);
    }
    if (notification_handlers_.empty()) {
      if (auto [q, msg] = take(); q) {
        detail::handoff_gate::scope handing(handoffs_, broker_->mutex);
        lk.unlock();
        return complete_notification(std::move(h), {}, q, &*msg);
      }
    }
    notification_handlers_.push_back(std::move(h));
    wait_on_queues();
  }

  // Also waits for hand-offs running on other threads (see handoff.hpp):
  // once stopped, a publisher's thread no longer touches the receiver's
  // executor, nor this listener.
  void stop() override {
    std::unique_lock lk(broker_->mutex);
    std::deque<call_receiver> calls;
    std::deque<notification_receiver> notes;
    if (!stopped_) {
      stopped_ = true;
      if (fanout_queue_) std::erase(broker_->fanout(fanout_key_), fanout_queue_);
      if (waiting_) {
        leave_queues();
        calls.swap(call_handlers_);
        notes.swap(notification_handlers_);
      }
    }
    handoffs_.wait_idle(lk);
    lk.unlock();
    for (auto& h : calls) complete_call(std::move(h), asio::error::operation_aborted, nullptr, nullptr);
    for (auto& h : notes) {
      complete_notification(std::move(h), asio::error::operation_aborted, nullptr, nullptr);
    }
  }

  /// Called by the broker, lock held: `msg` arrived on `q` for this waiting
  /// listener. Releases the lock.
  void deliver(queue* q, std::variant<rpc_request, notification>& msg, std::unique_lock<std::mutex>& lk) {
    auto m = std::move(msg);
    detail::handoff_gate::scope handing(handoffs_, broker_->mutex);
    if (rpc_) {
      call_receiver h(std::move(call_handlers_.front()));
      call_handlers_.pop_front();
      if (call_handlers_.empty()) leave_queues();
      lk.unlock();
      complete_call(std::move(h), {}, q, &m);
    } else {
      notification_receiver h(std::move(notification_handlers_.front()));
      notification_handlers_.pop_front();
      if (notification_handlers_.empty()) leave_queues();
      lk.unlock();
      complete_notification(std::move(h), {}, q, &m);
    }
  }

 private:
  // Lock held. The next queued message of this listener's queues, fairly.
  std::pair<queue*, std::optional<std::variant<rpc_request, notification>>> take() {
    for (std::size_t i = 0; i < queues_.size(); ++i) {
      queue* q = queues_[(next_ + i) % queues_.size()];
      if (!q->messages.empty()) {
        next_ = (next_ + i + 1) % queues_.size();
        auto msg = std::move(q->messages.front());
        q->messages.pop_front();
        return {q, std::move(msg)};
      }
    }
    return {nullptr, std::nullopt};
  }

  void wait_on_queues() {
    if (waiting_) return;
    waiting_ = true;
    for (queue* q : queues_) q->waiting.push_back(this);
  }

  void leave_queues() {
    waiting_ = false;
    for (queue* q : queues_) std::erase(q->waiting, this);
  }

  void complete_call(call_receiver h, boost::system::error_code ec, queue*,
                     std::variant<rpc_request, notification>* msg) {
    std::unique_ptr<incoming_call> in;
    if (msg) {
      traffic::count(traffic_->received);
      in = std::make_unique<memory_incoming_call>(std::get<rpc_request>(std::move(*msg)), broker_, log_, traffic_);
    }
    std::move(h)(ec, std::move(in));
  }

  void complete_notification(notification_receiver h, boost::system::error_code ec, queue* q,
                             std::variant<rpc_request, notification>* msg) {
    std::unique_ptr<incoming_notification> in;
    if (msg) {
      traffic::count(traffic_->received);
      in = std::make_unique<memory_incoming_notification>(std::get<notification>(std::move(*msg)),
                                                          broker_, q);
    }
    std::move(h)(ec, std::move(in));
  }

  std::shared_ptr<broker> broker_;
  std::vector<queue*> queues_;
  const bool rpc_;
  std::shared_ptr<spdlog::logger> log_;
  std::shared_ptr<traffic> traffic_;
  std::string fanout_key_;
  queue* fanout_queue_;
  // Receives waiting, in order. Boost 1.81's any_completion_handler must
  // never be move-assigned (its move assignment wraps itself endlessly):
  // deques only move-construct and destroy their elements at the ends.
  std::deque<call_receiver> call_handlers_;
  std::deque<notification_receiver> notification_handlers_;
  detail::handoff_gate handoffs_;
  bool waiting_ = false;
  bool stopped_ = false;
  std::size_t next_ = 0;
};

void broker::publish(queue* q, std::variant<rpc_request, notification> msg,
                     std::unique_lock<std::mutex>& lk, bool front) {
  if (!q->waiting.empty()) {
    // Round robin among the queue's consumers, as a broker dispatches: the
    // one served goes to the back even if it still waits for more.
    memory_listener* l = q->waiting.front();
    q->waiting.pop_front();
    q->waiting.push_back(l);
    l->deliver(q, msg, lk);
    return;
  }
  if (front) q->messages.push_front(std::move(msg));
  else q->messages.push_back(std::move(msg));
  lk.unlock();
}

class memory_driver final : public driver {
 public:
  memory_driver(std::shared_ptr<broker> b, transport_options options)
      : broker_(std::move(b)),
        options_(std::move(options)),
        log_(options_.logger ? options_.logger : default_logger()) {}

  void async_send(const target& to, rpc_request request, send_handler h) override {
    const std::string& ex = exchange_of(to);
    std::unique_lock lk(broker_->mutex);
    if (broker_->send_fails()) {
      lk.unlock();
      return std::move(h)(asio::error::connection_reset);
    }
    // Before the hand-off, which may complete a receive at once: what the
    // message leads to never shows before its publish.
    traffic::count(traffic_->publishes);
    if (to.fanout) {
      // Every server of the topic gets a copy; none listening: dropped, as
      // a fanout exchange without queues drops it.
      auto bound = broker_->fanout(ex + "/" + to.topic);
      for (std::size_t i = 0; i < bound.size(); ++i) {
        broker_->publish(bound[i], request, lk);
        lk.lock();
      }
    } else {
      const std::string key = ex + "/" + (to.server.empty() ? to.topic : to.topic + "." + to.server);
      broker_->publish(broker_->queue_for(key), std::move(request), lk);
    }
    if (lk.owns_lock()) lk.unlock();
    std::move(h)(boost::system::error_code{});
  }

  void async_notify(const target& to, notification n, send_handler h) override {
    const std::string key =
        exchange_of(to) + "/" + to.topic + "." + std::string(to_string(n.prio));
    std::unique_lock lk(broker_->mutex);
    if (broker_->send_fails()) {
      lk.unlock();
      return std::move(h)(asio::error::connection_reset);
    }
    traffic::count(traffic_->publishes);
    auto& bound = broker_->notify_bindings(key);
    // The listeners without a pool always have their queue, even before any
    // listens, so that nothing sent is lost.
    queue* main = broker_->queue_for(key);
    if (std::find(bound.begin(), bound.end(), main) == bound.end()) bound.push_back(main);
    auto targets = bound;
    for (queue* q : targets) {
      broker_->publish(q, n, lk);
      lk.lock();
    }
    lk.unlock();
    std::move(h)(boost::system::error_code{});
  }

  std::shared_ptr<listener_impl> listen(const target& server) override {
    const std::string& ex = exchange_of(server);
    std::lock_guard lk(broker_->mutex);
    queue* shared = broker_->queue_for(ex + "/" + server.topic);
    queue* own = broker_->queue_for(ex + "/" + server.topic + "." + server.server);
    const std::string fanout_key = ex + "/" + server.topic;
    queue* fan = broker_->queue_for(ex + "/" + server.topic + "_fanout_" + make_unique_id());
    broker_->fanout(fanout_key).push_back(fan);
    return std::make_shared<memory_listener>(broker_, std::vector<queue*>{own, shared, fan}, true,
                                             log_, traffic_, fanout_key, fan);
  }

  std::shared_ptr<listener_impl> listen_notifications(const std::vector<target>& targets,
                                                      const std::optional<std::string>& pool) override {
    std::lock_guard lk(broker_->mutex);
    std::vector<queue*> queues;
    for (const auto& t : targets) {
      for (int p = 0; p <= static_cast<int>(priority::sample); ++p) {
        const std::string key =
            exchange_of(t) + "/" + t.topic + "." + std::string(to_string(static_cast<priority>(p)));
        queue* q = broker_->queue_for(pool ? key + "@" + *pool : key);
        auto& bound = broker_->notify_bindings(key);
        if (std::find(bound.begin(), bound.end(), q) == bound.end()) bound.push_back(q);
        queues.push_back(q);
      }
    }
    return std::make_shared<memory_listener>(broker_, std::move(queues), false, log_, traffic_);
  }

  std::string start_replies(std::function<void(rpc_reply)> sink) override {
    std::string name = "reply_" + make_unique_id();
    // Counted as a reply reaches this transport. One pointer to capture:
    // the sink is copied for each reply.
    auto own = std::make_shared<std::pair<std::shared_ptr<traffic>, std::function<void(rpc_reply)>>>(
        traffic_, std::move(sink));
    std::lock_guard lk(broker_->mutex);
    broker_->reply_sinks()[name] = [own](rpc_reply r) {
      traffic::count(own->first->received);
      own->second(std::move(r));
    };
    reply_queues_.push_back(name);
    return name;
  }

  std::string describe() const override { return "memory://" + broker_->name(); }

  transport_stats stats() const override {
    transport_stats s;
    s.driver = "memory";
    s.connected = true;
    s.publishes = traffic_->publishes.load(std::memory_order_relaxed);
    s.returns = traffic_->returns.load(std::memory_order_relaxed);
    s.received = traffic_->received.load(std::memory_order_relaxed);
    return s;
  }

  void shutdown() override {
    std::lock_guard lk(broker_->mutex);
    for (const auto& name : reply_queues_) broker_->reply_sinks().erase(name);
    reply_queues_.clear();
  }

 private:
  const std::string& exchange_of(const target& t) const {
    return t.exchange.empty() ? options_.control_exchange : t.exchange;
  }

  std::shared_ptr<broker> broker_;
  transport_options options_;
  std::shared_ptr<spdlog::logger> log_;
  std::shared_ptr<traffic> traffic_ = std::make_shared<traffic>();
  std::vector<std::string> reply_queues_;
};

// The broker named by a memory:// URL.
std::shared_ptr<broker> broker_of(std::string_view url) {
  std::string_view rest = url.substr(url.find("://") + 3);
  while (!rest.empty() && rest.front() == '/') rest.remove_prefix(1);
  while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find_first_of("/?#@") != std::string_view::npos) {
    throw invalid_url("memory:// takes at most a broker name, not '" + std::string(url) + "'");
  }
  return broker::named(std::string(rest));
}

}  // namespace

std::unique_ptr<driver> make_memory_driver(std::string_view url, const transport_options& options) {
  return std::make_unique<memory_driver>(broker_of(url), options);
}

// ------------------------------------------------------------ memory_faults

struct memory_faults::impl {
  std::shared_ptr<broker> b;
};

memory_faults::memory_faults(std::string_view url) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos || url.substr(0, scheme_end) != "memory") {
    throw invalid_url("memory_faults needs a memory:// URL, not '" + std::string(url) + "'");
  }
  impl_ = std::make_shared<impl>(impl{broker_of(url)});
}

void memory_faults::fail_sends(std::size_t n) {
  std::lock_guard lk(impl_->b->mutex);
  impl_->b->faults.fail_sends += n;
}

void memory_faults::lose_replies(std::size_t n) {
  std::lock_guard lk(impl_->b->mutex);
  impl_->b->faults.lose_replies += n;
}

std::size_t memory_faults::drop_listener_connections() {
  broker& b = *impl_->b;
  std::vector<std::pair<queue*, notification>> back;
  {
    std::lock_guard lk(b.mutex);
    const auto unanswered = b.faults.unanswered;
    for (memory_incoming_notification* n : unanswered) back.push_back(n->drop(lk));
    b.faults.done.notifications_requeued += back.size();
  }
  for (auto& [q, n] : back) {
    std::unique_lock lk(b.mutex);
    b.publish(q, std::move(n), lk, true);
  }
  return back.size();
}

memory_faults::counts memory_faults::done() const {
  std::lock_guard lk(impl_->b->mutex);
  return impl_->b->faults.done;
}

}  // namespace coport::messaging
