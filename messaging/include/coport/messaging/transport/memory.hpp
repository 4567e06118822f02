#ifndef COPORT_MESSAGING_MEMORY_HPP
#define COPORT_MESSAGING_MEMORY_HPP

// memory://NAME: an in-process broker shared by every transport opened with
// the same name in this process (transport::create("memory://name")).
//
// memory_faults injects, into such a broker, the faults a lost broker
// connection shows to a service, so that tests can check what it still
// guarantees then: every call answered or timed out, RPC at most once,
// notifications at least once.

#include <cstddef>
#include <memory>
#include <string_view>

namespace coport::messaging {

/// Faults of the memory:// broker named by a URL. Each applies to the next
/// operations of its kind, from any transport opened on that broker; the
/// object may be created before or after those transports. Thread-safe.
class memory_faults {
 public:
  /// The broker behind `url` ("memory://name"). Throws invalid_url for a
  /// URL memory:// does not take.
  explicit memory_faults(std::string_view url);

  /// The next `n` publishes (calls, casts, notifications) fail as on a
  /// connection that dropped before they were out: the sender gets a
  /// transport_error and nothing is delivered.
  void fail_sends(std::size_t n);

  /// The next `n` replies are lost, as when a server's connection drops
  /// after its method ran and before the reply was out: the caller gets
  /// no reply and times out; the method has run once.
  void lose_replies(std::size_t n);

  /// Drops every notification listener's connection now: notifications
  /// taken and not yet acknowledged go back to the front of their queues
  /// and are delivered again (to the same listener or another one of the
  /// pool), as a broker requeues a closed channel's unacknowledged
  /// messages. The handlers' answers to the old copies are then ignored.
  /// Returns how many went back.
  std::size_t drop_listener_connections();

  /// What the faults did so far.
  struct counts {
    std::size_t sends_failed = 0;
    std::size_t replies_lost = 0;
    std::size_t notifications_requeued = 0;
  };
  [[nodiscard]] counts done() const;

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

}  // namespace coport::messaging

#endif
