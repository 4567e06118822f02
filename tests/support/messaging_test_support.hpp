#ifndef COPORT_TESTS_MESSAGING_TEST_SUPPORT_HPP
#define COPORT_TESTS_MESSAGING_TEST_SUPPORT_HPP

// A plain Asio loop on its own threads for messaging tests, unique
// memory:// broker names so tests never see each other's messages, and an
// executor that lingers after hand-offs from other threads.

#include <boost/asio/execution.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <future>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace coport::test {

/// An io_context run by `threads` threads until destroyed.
class asio_loop {
 public:
  explicit asio_loop(int threads = 1) : io_(threads), guard_(io_.get_executor()) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { io_.run(); });
  }
  ~asio_loop() {
    guard_.reset();
    io_.stop();
    for (auto& t : threads_) t.join();
  }
  boost::asio::io_context& io() noexcept { return io_; }
  boost::asio::io_context::executor_type get_executor() noexcept { return io_.get_executor(); }

 private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
  std::vector<std::thread> threads_;
};

/// "memory://<prefix>-<n>", a broker no other test uses.
inline std::string unique_memory_url(const std::string& prefix = "test") {
  static std::atomic<int> n{0};
  return "memory://" + prefix + "-" + std::to_string(n.fetch_add(1));
}

/// Waits with a ceiling so that a bug fails the test instead of hanging it.
template <class T>
T wait(std::future<T> f, std::chrono::seconds ceiling = std::chrono::seconds(30)) {
  if (f.wait_for(ceiling) != std::future_status::ready) {
    throw std::runtime_error("timed out waiting: the code under test hung");
  }
  return f.get();
}


/// Watches hand-offs to a slow_handoff_executor: whether what the test
/// waits for (a listener's stop, a call's result) completed on the loop
/// while a thread other than the loop's was still inside its post.
struct slow_handoff_watch {
  std::thread::id loop_thread;
  std::mutex mutex;
  std::condition_variable cv;
  bool completed = false;
  std::size_t handoffs_outside = 0;
  std::size_t done_during_handoff = 0;

  /// Called on the loop when what the test waits for has completed.
  void done() {
    std::lock_guard lk(mutex);
    completed = true;
    cv.notify_all();
  }
  void after_post() {
    if (std::this_thread::get_id() == loop_thread) return;
    std::unique_lock lk(mutex);
    ++handoffs_outside;
    // When the transport waits for its hand-offs this times out; when it
    // does not, the loop completes meanwhile. Time is the subject: a correct
    // transport holds the loop until this returns, so only a timeout ends it.
    if (cv.wait_for(lk, std::chrono::milliseconds(300), [&] { return completed; })) {
      ++done_during_handoff;
    }
  }
};

/// An io_context executor that, when a thread other than the loop's hands
/// it work, stays inside execute() a while after posting, as a driver's
/// thread may still be inside its post after a hand-off, and tells `w`.
class slow_handoff_executor {
 public:
  slow_handoff_executor(boost::asio::io_context::executor_type inner, slow_handoff_watch* w)
      : inner_(inner), w_(w) {}
  boost::asio::execution_context& query(boost::asio::execution::context_t) const noexcept {
    return inner_.context();
  }
  static constexpr boost::asio::execution::blocking_t::never_t query(
      boost::asio::execution::blocking_t) noexcept {
    return boost::asio::execution::blocking.never;
  }
  slow_handoff_executor require(boost::asio::execution::blocking_t::never_t) const { return *this; }
  template <class F>
  void execute(F&& f) const {
    boost::asio::require(inner_, boost::asio::execution::blocking.never).execute(std::forward<F>(f));
    w_->after_post();
  }
  friend bool operator==(const slow_handoff_executor& a, const slow_handoff_executor& b) noexcept {
    return a.inner_ == b.inner_ && a.w_ == b.w_;
  }
  friend bool operator!=(const slow_handoff_executor& a, const slow_handoff_executor& b) noexcept {
    return !(a == b);
  }

 private:
  boost::asio::io_context::executor_type inner_;
  slow_handoff_watch* w_;
};

}  // namespace coport::test

#endif
