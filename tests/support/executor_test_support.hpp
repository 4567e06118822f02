#ifndef COPORT_TESTS_EXECUTOR_TEST_SUPPORT_HPP
#define COPORT_TESTS_EXECUTOR_TEST_SUPPORT_HPP

// What the tests of both executors share. Nothing from Boost.Fiber or
// coport::bridge: coro_executor's tests are also built without fibers.

#include <coport/messaging/executor.hpp>

#include "messaging_test_support.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <future>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace coport::test {

namespace msg = coport::messaging;
using namespace std::chrono_literals;

/// A count that the test thread can wait for (with a ceiling), bumped from
/// any thread or fiber (the lock is only held for the update).
class counter {
 public:
  void add(int k = 1) {
    {
      std::lock_guard lk(m_);
      n_ += k;
    }
    cv_.notify_all();
  }
  int value() const {
    std::lock_guard lk(m_);
    return n_;
  }
  /// True once the count reached `at_least`; false if the ceiling passed
  /// first (the code under test is broken).
  bool wait_for(int at_least, std::chrono::seconds ceiling = 10s) const {
    std::unique_lock lk(m_);
    return cv_.wait_for(lk, ceiling, [&] { return n_ >= at_least; });
  }

 private:
  mutable std::mutex m_;
  mutable std::condition_variable cv_;
  int n_ = 0;
};

/// Replies to calls made with plain callbacks, which the transport runs as
/// the reply arrives (inside the server's reply): a reply counted here was
/// delivered before the server went on.
class replies {
 public:
  explicit replies(std::size_t n) : values_(n) {}
  auto handler(std::size_t i) {
    return [this, i](std::exception_ptr e, int v) {
      {
        std::lock_guard lk(m_);
        if (e) ++failures_;
        else values_[i] = v;
        ++count_;
      }
      cv_.notify_all();
    };
  }
  std::size_t count() const {
    std::lock_guard lk(m_);
    return count_;
  }
  std::size_t failures() const {
    std::lock_guard lk(m_);
    return failures_;
  }
  std::vector<std::optional<int>> values() const {
    std::lock_guard lk(m_);
    return values_;
  }
  bool wait_for(std::size_t at_least, std::chrono::seconds ceiling = 10s) const {
    std::unique_lock lk(m_);
    return cv_.wait_for(lk, ceiling, [&] { return count_ >= at_least; });
  }

 private:
  mutable std::mutex m_;
  mutable std::condition_variable cv_;
  std::vector<std::optional<int>> values_;
  std::size_t count_ = 0;
  std::size_t failures_ = 0;
};

/// Requests running now and the most ever running at once, as the methods
/// see it.
struct concurrency {
  std::atomic<int> active{0};
  std::atomic<int> max_active{0};
  void enter() {
    const int now = ++active;
    int seen = max_active.load();
    while (now > seen && !max_active.compare_exchange_weak(seen, now)) {
    }
  }
  void leave() { --active; }
};

/// A memory:// transport of its own.
inline std::shared_ptr<msg::transport> memory_transport() { return msg::transport::create(unique_memory_url()); }

inline std::shared_ptr<msg::dispatcher> dispatch_to(std::initializer_list<std::shared_ptr<msg::endpoint>> endpoints) {
  auto d = std::make_shared<msg::dispatcher>();
  for (const auto& e : endpoints) d->add(e);
  return d;
}

inline msg::target server_target(std::string topic, std::string server = "s1") {
  return msg::target{.topic = std::move(topic), .server = std::move(server)};
}

inline const msg::method_report* find_report(const std::vector<msg::method_report>& reports, const std::string& endpoint,
                                      const std::string& method, msg::method_kind kind) {
  auto it = std::find_if(reports.begin(), reports.end(), [&](const msg::method_report& r) {
    return r.endpoint == endpoint && r.method == method && r.kind == kind;
  });
  return it == reports.end() ? nullptr : &*it;
}

/// Number of futures already holding their result.
template <class T>
std::size_t ready_count(const std::vector<std::future<T>>& fs) {
  return static_cast<std::size_t>(std::count_if(fs.begin(), fs.end(), [](const std::future<T>& f) {
    return f.wait_for(0s) == std::future_status::ready;
  }));
}

}  // namespace coport::test

#endif
