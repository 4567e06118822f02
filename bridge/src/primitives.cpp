// Non-template halves of the dual-world event and mutex.

#include <coport/bridge/event.hpp>
#include <coport/bridge/mutex.hpp>

#include <boost/asio/error.hpp>
#include <boost/system/system_error.hpp>

namespace coport::bridge {

namespace {

#if COPORT_BRIDGE_FIBERS
void throw_if(boost::system::error_code ec, const char* what) {
  if (ec) throw boost::system::system_error(ec, what);
}
#endif

// Completes every waiter of `list` with `ec`; `lk` guards the list and is
// released before any completion runs.
void complete_all(detail::waiter_list& list, std::unique_lock<std::mutex>& lk,
                  boost::system::error_code ec) {
  detail::waiter_list taken;
  while (detail::waiter* w = list.pop_front()) taken.push_back(w);
  lk.unlock();
  while (detail::waiter* w = taken.pop_front()) w->complete(ec);
}

}  // namespace

// -------------------------------------------------------------------- event

event::~event() {
  std::unique_lock lk(mutex_);
  complete_all(waiters_, lk, boost::asio::error::operation_aborted);
}

void event::set() {
  std::unique_lock lk(mutex_);
  set_ = true;
  complete_all(waiters_, lk, {});
}

void event::reset() {
  std::lock_guard lk(mutex_);
  set_ = false;
}

bool event::is_set() const {
  std::lock_guard lk(mutex_);
  return set_;
}


#if COPORT_BRIDGE_FIBERS
bool event::wait_impl(std::optional<std::chrono::steady_clock::time_point> deadline) {
  detail::check_can_block("event::wait");
  throw_if(detail::current_stop_token().stop_requested() ? boost::asio::error::operation_aborted
                                                         : boost::system::error_code(),
           "event::wait");
  detail::fiber_waiter<> w;
  {
    std::unique_lock lk(mutex_);
    if (set_) return true;
    waiters_.push_back(&w);
  }
  const auto ec = w.wait(mutex_, waiters_, deadline);
  if (ec == boost::asio::error::timed_out) return false;
  throw_if(ec, "event::wait");
  return true;
}

void event::wait() { (void)wait_impl(std::nullopt); }

bool event::wait_until(std::chrono::steady_clock::time_point deadline) {
  return wait_impl(deadline);
}
#endif

// -------------------------------------------------------------------- mutex

mutex::~mutex() {
  std::unique_lock lk(mutex_);
  complete_all(waiters_, lk, boost::asio::error::operation_aborted);
}

#if COPORT_BRIDGE_FIBERS
void mutex::lock() {
  detail::check_can_block("mutex::lock");
  throw_if(detail::current_stop_token().stop_requested() ? boost::asio::error::operation_aborted
                                                         : boost::system::error_code(),
           "mutex::lock");
  detail::fiber_waiter<> w;
  {
    std::lock_guard lk(mutex_);
    if (!locked_) {
      locked_ = true;
      return;
    }
    waiters_.push_back(&w);
  }
  throw_if(w.wait(mutex_, waiters_, std::nullopt), "mutex::lock");
}
#endif

bool mutex::try_lock() {
  std::lock_guard lk(mutex_);
  if (locked_) return false;
  locked_ = true;
  return true;
}

void mutex::unlock() {
  detail::waiter* next = nullptr;
  {
    std::lock_guard lk(mutex_);
    next = waiters_.pop_front();
    if (!next) locked_ = false;  // otherwise ownership passes to `next`
  }
  if (next) next->complete({});
}


}  // namespace coport::bridge
