// The rabbit:// driver's connection thread. rabbitmq-c blocks and a
// connection must stay on one thread, so a transport owns one connection
// and one thread. Everything else (clients publishing, executors
// receiving, methods replying) talks to that thread through a queue of
// operations and an eventfd that wakes it; nothing on an executor's loop
// ever waits for the broker. The thread sleeps in poll() on the socket and
// the eventfd, reads frames as they come and hands each to its part
// (deliveries to consumers.hpp, confirms and returns to channel.hpp), and
// on connection loss reconnects (connection.hpp), declares everything
// again and publishes what waited; messages written but not confirmed fail
// (their fate is unknown) rather than being sent twice.

#ifndef COPORT_RABBIT_SRC_CORE_HPP
#define COPORT_RABBIT_SRC_CORE_HPP

#include "consumers.hpp"

#include <deque>
#include <thread>

namespace coport::messaging::rabbit_impl {

struct subscribe_op {
  std::shared_ptr<subscriber> s;
};

struct unsubscribe_op {
  std::shared_ptr<subscriber> s;
};

using op = std::variant<publish_op, ack_op, subscribe_op, unsubscribe_op>;

class core : public std::enable_shared_from_this<core> {
 public:
  core(rabbit_settings s, transport_options o, std::string described);

  void start();

  /// Any thread: queues `o` for the connection thread. After shutdown,
  /// publishes fail at once and the rest is dropped.
  void post(op o);

  void shutdown();

  spdlog::logger& log() { return *ctx_.log; }
  const std::shared_ptr<spdlog::logger>& logger() { return ctx_.log; }
  const rabbit_settings& settings() const { return ctx_.settings; }
  const transport_options& options() const { return ctx_.options; }
  const std::string& described() const { return ctx_.described; }

  /// Any thread: gives a call that was taken and not handed out back to
  /// its queue as a new message (same body and expiration), then
  /// acknowledges the delivery. A requeue would make the broker mark it
  /// redelivered, and RPC listeners drop such calls. Should the connection
  /// fail in between, the broker delivers the original again, marked, and
  /// at most the new copy runs.
  void give_back(std::string queue, std::string body, std::string expiration, std::uint64_t generation,
                 std::uint64_t tag);

  binding topic_exchange(const std::string& name, std::string routing_key) const {
    return binding{name, "topic", ctx_.settings.queues_durable(), ctx_.settings.auto_delete, std::move(routing_key)};
  }

  /// Any thread: the connection's state and what its thread counted.
  transport_stats stats() const { return ctx_.counts.snapshot(); }

 private:
  // Connection thread.
  void run();
  void flush_before_close();
  bool has_ops();
  void expire_waiting(clock::time_point now);
  template <class Pred>
  std::vector<publish_op> take_waiting(Pred pred);
  bool connect();
  void wait_before_retry();
  void lost(const std::string& why);
  void run_ops();
  void execute(op& o);
  void pump();
  void other_frame();

  context ctx_;
  wakeup wake_;

  std::mutex mutex_;
  std::deque<op> ops_;
  bool stopping_ = false;
  std::thread thread_;
  std::thread::id thread_id_;

  // Connection thread only.
  connection conn_;
  channel_ops channel_;
  consumers consumers_;
};

}  // namespace coport::messaging::rabbit_impl

#endif
