// The rabbit:// driver's consumers (consumers.hpp): subscribing and
// cancelling, deliveries, their acknowledgements, and what arrives for a
// consumer just cancelled.

#include "consumers.hpp"

#include <spdlog/spdlog.h>

namespace coport::messaging::rabbit_impl {

// -------------------------------------------------------------- subscriber

void subscriber::refuse(const declare_refused& why) {
  {
    std::lock_guard lk(declared_mutex_);
    refused_ = std::make_shared<declare_refused>(why);
  }
  on_refused(why.what());
  declared();
}

std::shared_ptr<const declare_refused> subscriber::refused() {
  std::lock_guard lk(declared_mutex_);
  return refused_;
}

void subscriber::declared() {
  {
    std::lock_guard lk(declared_mutex_);
    declared_ = true;
  }
  declared_cv_.notify_all();
}

bool subscriber::wait_declared(std::chrono::milliseconds d) {
  std::unique_lock lk(declared_mutex_);
  return declared_cv_.wait_for(lk, d, [&] { return declared_; });
}

// --------------------------------------------------------------- consumers

void consumers::opened() {
  ++generation_;
  by_tag_.clear();
  cancelled_at_most_once_.clear();
  // Everything consumed before comes back, in order.
  auto subs = subscribers_;
  for (auto& s : subs) declare_and_consume(s);
}

void consumers::lost() {
  by_tag_.clear();
  cancelled_at_most_once_.clear();
}

void consumers::subscribe(const std::shared_ptr<subscriber>& s) {
  subscribers_.push_back(s);
  declare_and_consume(s);
}

void consumers::unsubscribe(const std::shared_ptr<subscriber>& s) {
  std::erase(subscribers_, s);
  for (auto it = by_tag_.begin(); it != by_tag_.end();) {
    if (it->second.s == s) {
      const std::string tag = it->first;
      if (s->at_most_once) cancelled_at_most_once_[tag] = it->second.queue;
      it = by_tag_.erase(it);
      amqp_basic_cancel(conn_.get(), channel, bytes(tag));
      check(conn_.get(), "basic.cancel");
    } else {
      ++it;
    }
  }
}

void consumers::answer(const ack_op& a) {
  if (a.generation != generation_) return;  // that channel is gone; the broker requeued it
  int st = 0;
  if (a.how == ack_op::ack) {
    st = amqp_basic_ack(conn_.get(), channel, a.tag, 0);
  } else {
    st = amqp_basic_reject(conn_.get(), channel, a.tag, a.how == ack_op::requeue ? 1 : 0);
  }
  conn_.healthy_on(st, "ack");
}

void consumers::declare_and_consume(const std::shared_ptr<subscriber>& s) {
  try {
    for (const auto& q : s->queues) channel_.declare_queue(q);
  } catch (const amqp_failure& e) {
    // The broker refuses these queues (arguments that differ from an
    // existing queue's, permissions): the subscriber learns it, once, and
    // is dropped, never declared again; the channel the refusal closed is
    // reopened. Any other failure (a queue gone with a cluster node that
    // just went down) is retried on the next connection.
    if (e.refused || refused_for_good(conn_.get())) {
      ctx_.log->error("rabbit: {}", e.what());
      std::erase(subscribers_, s);
      s->refuse(e.refused ? *e.refused
                          : declare_refused("queue", s->queues.empty() ? std::string() : s->queues.front().name, "",
                                            "", "", e.what()));
    } else {
      // The broker cannot do it now: the next connection waits the retry
      // interval first, rather than asking again at once.
      conn_.pause_if_broker_refused();
    }
    throw;
  }
  for (const auto& q : s->queues) {
    const std::string tag = "coport-" + make_unique_id();
    amqp_basic_consume(conn_.get(), channel, bytes(q.name), bytes(tag), 0, s->no_ack ? 1 : 0, 0, amqp_empty_table);
    check(conn_.get(), "consuming from " + q.name);
    by_tag_[tag] = consumer{s, q.name};
  }
  s->declared();
}

void consumers::deliver(amqp_envelope_t& env) {
  count(ctx_.counts.received);
  if (env.redelivered) count(ctx_.counts.redeliveries);
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
        give_back_(c->second, std::move(body), std::move(expiration), generation_, env.delivery_tag);
        return;
      }
    }
    conn_.healthy_on(amqp_basic_reject(conn_.get(), channel, env.delivery_tag, 1), "requeue");
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

bool consumers::is_call_body(const std::string& body) const {
  try {
    return decode_request(body, ctx_.options.limits).is_call();
  } catch (const std::exception&) {
    return false;  // the consumer that takes it next drops it
  }
}

void consumers::close_all() {
  std::vector<std::shared_ptr<subscriber>> subs;
  subs.swap(subscribers_);
  for (auto& s : subs) {
    s->on_closed();
    s->declared();
  }
}

}  // namespace coport::messaging::rabbit_impl
