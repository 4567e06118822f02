// Hand-offs of received messages that are still running on a driver's
// thread, so that a listener's stop() can wait for them.
//
// A driver hands a message to a waiting receive by invoking its handler,
// which posts to the receiver's executor (detail::deliver_on_executor).
// Once the post is made, the receiver may run, stop its listener, finish,
// and destroy its io_context, while the driver's thread is still inside the
// post, holding a copy of the executor (a strand's shared state, for one).
// Destroying that copy afterwards touches the destroyed io_context. So
// stop() waits until no hand-off runs on another thread: once a listener
// has stopped, the driver no longer touches the receiver's executor.
#ifndef COPORT_MESSAGING_SRC_HANDOFF_HPP
#define COPORT_MESSAGING_SRC_HANDOFF_HPP

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <vector>

namespace coport::messaging::detail {

class handoff_gate {
 public:
  /// Marks one hand-off; construct it with the listener's mutex held, then
  /// unlock and invoke the handler. Its destructor ends the hand-off.
  class scope {
   public:
    scope(handoff_gate& g, std::mutex& m) : gate_(g), mutex_(m) {
      ++gate_.active_;
      inside().push_back(&gate_);
    }
    ~scope() {
      inside().pop_back();
      std::lock_guard lk(mutex_);
      if (--gate_.active_ == 0) gate_.idle_.notify_all();
    }
    scope(const scope&) = delete;
    scope& operator=(const scope&) = delete;

   private:
    handoff_gate& gate_;
    std::mutex& mutex_;
  };

  /// With the listener's mutex held through `lk`: returns once no hand-off
  /// runs on another thread. Hand-offs of the calling thread (a handler run
  /// inline that stops its own listener) are not waited for.
  void wait_idle(std::unique_lock<std::mutex>& lk) {
    const auto own = static_cast<std::size_t>(std::count(inside().begin(), inside().end(), this));
    idle_.wait(lk, [&] { return active_ == own; });
  }

 private:
  // The gates whose hand-offs the calling thread is inside, innermost last.
  static std::vector<const handoff_gate*>& inside() {
    thread_local std::vector<const handoff_gate*> gates;
    return gates;
  }

  std::size_t active_ = 0;  // guarded by the listener's mutex
  std::condition_variable idle_;
};

}  // namespace coport::messaging::detail

#endif
