// The rabbit:// driver's connection thread (core.hpp): the queue of
// operations, the loop that runs them and reads the broker, reconnecting,
// and the shutdown.

#include "core.hpp"

#include "detail/log.hpp"

#include <boost/asio/error.hpp>
#include <spdlog/spdlog.h>

namespace asio = boost::asio;

namespace coport::messaging::rabbit_impl {

core::core(rabbit_settings s, transport_options o, std::string described)
    : ctx_(std::move(s), o, o.logger ? o.logger : default_logger(), std::move(described)),
      conn_(ctx_),
      channel_(ctx_, conn_),
      consumers_(ctx_, conn_, channel_,
                 [this](std::string queue, std::string body, std::string expiration, std::uint64_t generation,
                        std::uint64_t tag) {
                   give_back(std::move(queue), std::move(body), std::move(expiration), generation, tag);
                 }) {}

void core::start() {
  std::lock_guard lk(mutex_);
  thread_ = std::thread([self = shared_from_this()] { self->run(); });
  thread_id_ = thread_.get_id();
}

void core::post(op o) {
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
  if (wake) wake_.signal();
}

void core::shutdown() {
  {
    std::lock_guard lk(mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  wake_.signal();
  if (thread_.joinable()) {
    if (thread_.get_id() == std::this_thread::get_id()) {
      thread_.detach();
    } else {
      thread_.join();
    }
  }
}

void core::give_back(std::string queue, std::string body, std::string expiration, std::uint64_t generation,
                     std::uint64_t tag) {
  publish_op p;
  p.what = "request given back to queue " + queue;
  p.to = binding{"", "direct", false, false, std::move(queue)};
  p.body = std::move(body);
  p.expiration = std::move(expiration);
  p.deadline = clock::now() + ctx_.settings.send_timeout;
  post(std::move(p));
  post(ack_op{generation, tag, ack_op::ack});
}

// ------------------------------------------------------ connection thread

void core::run() {
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
      if (!has_ops() && !conn_.buffered()) conn_.wait_for_io(wake_);
    } catch (const amqp_failure& e) {
      if (e.refused) {
        // Logged where it happened, by name; the channel it closed is
        // reopened with the connection.
        ctx_.log->info("rabbit: reconnecting: the broker closed the channel on refusing a declaration");
        lost({});
      } else {
        lost(e.what());
      }
      if (conn_.take_pause()) wait_before_retry();
    }
  }
  flush_before_close();
  conn_.close();
  // Whatever is left fails: nothing will send it.
  std::deque<op> left;
  {
    std::lock_guard lk(mutex_);
    left.swap(ops_);
  }
  for (auto& o : left) {
    if (auto* p = std::get_if<publish_op>(&o)) complete(p->done, asio::error::shut_down);
  }
  channel_.fail_unconfirmed(asio::error::shut_down);
  consumers_.close_all();
}

// Shutting down: what was handed over before (replies of a graceful stop,
// casts) is written, and confirmations are awaited briefly, before the
// connection closes; the broker keeps the order of a connection's frames,
// so replies written here are delivered.
void core::flush_before_close() {
  if (!conn_) return;
  try {
    run_ops();
    const auto until = clock::now() + std::chrono::seconds(2);
    while (channel_.awaiting_confirms() && clock::now() < until) {
      pump();
      if (channel_.awaiting_confirms() && !conn_.buffered()) conn_.wait_for_io(wake_);
    }
  } catch (const amqp_failure& e) {
    lost(e.what());
  }
}

bool core::has_ops() {
  std::lock_guard lk(mutex_);
  return !ops_.empty();
}

void core::wait_before_retry() {
  expire_waiting(clock::now());
  conn_.wait_before_retry(wake_);
}

// Publishes waiting for a connection past their deadline fail.
void core::expire_waiting(clock::time_point now) {
  for (auto& p : take_waiting([now](const publish_op& p) { return p.deadline <= now; })) {
    ctx_.log->error("rabbit {}: {} dropped: no connection to the broker for {} ms", ctx_.described, p.what,
                    ctx_.settings.send_timeout.count());
    complete(p.done, asio::error::timed_out);
  }
}

/// Takes the waiting publishes that `pred` selects out of the queue.
template <class Pred>
std::vector<publish_op> core::take_waiting(Pred pred) {
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

bool core::connect() {
  const connection::attempt a = conn_.connect([this] {
    channel_.opened();
    consumers_.opened();
  });
  if (a.permanent_failure) {
    // Messages waiting for such a connection fail now rather than at their
    // deadline.
    for (auto& p : take_waiting([](const publish_op&) { return true; })) {
      ctx_.log->error("rabbit {}: {} failed: {}", ctx_.described, p.what, *a.permanent_failure);
      complete(p.done, asio::error::access_denied);
    }
  }
  return a.connected;
}

/// `why` empty: already said.
void core::lost(const std::string& why) {
  if (!why.empty()) ctx_.log->warn("rabbit: connection lost ({}); reconnecting", why);
  conn_.broken();
  conn_.close();
  consumers_.lost();
  // Written but not confirmed: the broker may or may not have them.
  channel_.fail_unconfirmed(asio::error::connection_aborted);
}

void core::run_ops() {
  std::deque<op> batch;
  {
    std::lock_guard lk(mutex_);
    batch.swap(ops_);
  }
  while (!batch.empty()) {
    op o = std::move(batch.front());
    batch.pop_front();
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
      if (std::holds_alternative<publish_op>(o) && channel_.retry_failed_publish()) ops_.push_front(std::move(o));
      throw;
    }
  }
}

void core::execute(op& o) {
  if (auto* p = std::get_if<publish_op>(&o)) return channel_.publish(*p);
  if (auto* a = std::get_if<ack_op>(&o)) return consumers_.answer(*a);
  if (auto* s = std::get_if<subscribe_op>(&o)) return consumers_.subscribe(s->s);
  if (auto* u = std::get_if<unsubscribe_op>(&o)) return consumers_.unsubscribe(u->s);
}

// Reads what the broker sent, without blocking.
void core::pump() {
  for (int i = 0; i < 1024; ++i) {
    amqp_connection_state_t c = conn_.get();
    amqp_maybe_release_buffers(c);
    amqp_envelope_t env;
    timeval zero{0, 0};
    const amqp_rpc_reply_t r = amqp_consume_message(c, &env, &zero, 0);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) {
      consumers_.deliver(env);
      amqp_destroy_envelope(&env);
      continue;
    }
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT) return;
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
      other_frame();
      continue;
    }
    conn_.broken();
    throw amqp_failure("reading: " + describe(r));
  }
}

// A frame other than a delivery: confirms and returns go to the channel;
// a cancelled consumer or a closed channel or connection reconnects.
void core::other_frame() {
  amqp_frame_t f;
  conn_.healthy_on(amqp_simple_wait_frame(conn_.get(), &f), "reading a frame");
  if (f.frame_type != AMQP_FRAME_METHOD) return;
  switch (f.payload.method.id) {
    case AMQP_BASIC_ACK_METHOD: {
      auto* a = static_cast<amqp_basic_ack_t*>(f.payload.method.decoded);
      channel_.confirmed(a->delivery_tag, a->multiple, {});
      return;
    }
    case AMQP_BASIC_NACK_METHOD: {
      auto* n = static_cast<amqp_basic_nack_t*>(f.payload.method.decoded);
      channel_.confirmed(n->delivery_tag, n->multiple, asio::error::no_buffer_space);
      return;
    }
    case AMQP_BASIC_RETURN_METHOD:
      channel_.returned(*static_cast<amqp_basic_return_t*>(f.payload.method.decoded), f.channel);
      return;
    case AMQP_BASIC_CANCEL_METHOD:
      throw amqp_failure("the broker cancelled a consumer (its queue was deleted)");
    case AMQP_CHANNEL_CLOSE_METHOD: {
      auto* c = static_cast<amqp_channel_close_t*>(f.payload.method.decoded);
      throw amqp_failure("the broker closed the channel: " + std::to_string(c->reply_code) + " " +
                         to_string(c->reply_text));
    }
    case AMQP_CONNECTION_CLOSE_METHOD: {
      auto* c = static_cast<amqp_connection_close_t*>(f.payload.method.decoded);
      conn_.broken();
      throw amqp_failure("the broker closed the connection: " + std::to_string(c->reply_code) + " " +
                         to_string(c->reply_text));
    }
    default:
      return;
  }
}

}  // namespace coport::messaging::rabbit_impl
