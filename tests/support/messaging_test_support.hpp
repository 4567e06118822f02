#ifndef COPORT_TESTS_MESSAGING_TEST_SUPPORT_HPP
#define COPORT_TESTS_MESSAGING_TEST_SUPPORT_HPP

// A plain Asio loop on its own threads for messaging tests, and unique
// memory:// broker names so tests never see each other's messages.

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>
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

}  // namespace coport::test

#endif
