#ifndef COPORT_BRIDGE_DETAIL_PARKER_HPP
#define COPORT_BRIDGE_DETAIL_PARKER_HPP

#include <boost/fiber/detail/spinlock.hpp>
#include <boost/fiber/waker.hpp>

#include <chrono>

namespace coport::bridge::detail {

/// Blocks one fiber until another party calls unpark(), from any thread.
/// An unpark() that comes first is remembered, so park() then returns at once.
/// Built on Boost.Fiber's waker: a stale wake-up (from a timed-out wait) is
/// ignored by the waker's epoch, never delivered to a later park().
class parker {
 public:
  parker() = default;
  parker(const parker&) = delete;
  parker& operator=(const parker&) = delete;

  /// Blocks the calling fiber until unpark() has been called.
  void park() noexcept;
  /// As park(), but gives up at `deadline`; returns false on timeout.
  bool park_until(std::chrono::steady_clock::time_point deadline) noexcept;
  /// Releases the parked fiber, or the next park() if none is parked.
  void unpark() noexcept;

 private:
  boost::fibers::detail::spinlock lock_;
  boost::fibers::waker waker_;
  bool armed_ = false;
  bool notified_ = false;
};

}  // namespace coport::bridge::detail

#endif
