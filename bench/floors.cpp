// coport-bench's floors that share no code with a coport figure: the cost
// of resuming a C++20 coroutine, of an asio::post round trip, of a
// Boost.Context switch and of waking an io_context asleep on another
// thread. Each stands beside the coport figures as a lower bound (the
// floors of yields, crossings, channels and skynet live with the figures
// whose code they share).

#include "bench.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/context/fiber.hpp>

#include <chrono>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <thread>
#include <utility>

namespace coport_bench {

namespace asio = boost::asio;

namespace {

/// The smallest useful C++20 coroutine: a generator of 0, 1, 2, ...
class counter {
 public:
  struct promise_type {
    std::uint64_t value = 0;
    counter get_return_object() {
      return counter(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    std::suspend_always yield_value(std::uint64_t v) noexcept {
      value = v;
      return {};
    }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };

  explicit counter(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}
  counter(const counter&) = delete;
  counter& operator=(const counter&) = delete;
  ~counter() { h_.destroy(); }

  std::uint64_t next() {
    h_.resume();
    return h_.promise().value;
  }

 private:
  std::coroutine_handle<promise_type> h_;
};

// Not inlined: otherwise the compiler may see through the frame and turn the
// resumptions into a plain loop, which would not measure a resumption.
[[gnu::noinline]] counter count_up() {
  for (std::uint64_t i = 0;; ++i) co_yield i;
}

/// A handler that posts itself again until it has run `left` times.
struct repost {
  asio::io_context* io;
  std::uint64_t left;
  void operator()() {
    if (--left > 0) asio::post(*io, *this);
  }
};

}  // namespace

timing floor_coroutine_resume(std::uint64_t n) {
  counter c = count_up();
  std::uint64_t sum = 0;
  for (std::uint64_t i = 0, w = warmup_of(n); i < w; ++i) sum += c.next();
  const reading t0 = read_clocks();
  for (std::uint64_t i = 0; i < n; ++i) sum += c.next();
  const auto elapsed = since(t0);
  keep(sum);
  return {elapsed, n};
}

timing floor_asio_post(std::uint64_t n) {
  asio::io_context io(1);  // one thread, as a coport loop's io_context
  asio::post(io, repost{&io, warmup_of(n)});
  io.run();
  io.restart();
  asio::post(io, repost{&io, n});
  const reading t0 = read_clocks();
  io.run();
  return {since(t0), n};
}

/// A Boost.Context fiber switch: two contexts handing control to each other,
/// n switches in all (each resume() is one switch).
timing floor_context_switch(std::uint64_t n) {
  namespace ctx = boost::context;
  std::uint64_t turns = 0;
  ctx::fiber other([&turns](ctx::fiber&& back) {
    for (;;) {
      ++turns;
      back = std::move(back).resume();
    }
    return std::move(back);
  });
  for (std::uint64_t i = 0, w = warmup_of(n); i < w; ++i) other = std::move(other).resume();
  const reading t0 = read_clocks();
  for (std::uint64_t i = 0; i < n; ++i) other = std::move(other).resume();
  const auto elapsed = since(t0);
  keep(turns);
  // `other` is left suspended; its stack is unwound by its destructor.
  return {elapsed, 2 * n};  // there and back: two switches per resume
}

/// A cross-thread wake-up: two threads, each running an io_context of its
/// own and sleeping in it when idle, post a handler to each other n times
/// back and forth; each post wakes the other thread.
timing floor_cross_thread_wake(std::uint64_t n) {
  asio::io_context a(1);
  asio::io_context b(1);
  auto guard_a = asio::make_work_guard(a);
  auto guard_b = asio::make_work_guard(b);
  std::thread tb([&b] { b.run(); });
  // An even count of hops ends on `a`, which then stops.
  struct ping {
    asio::io_context* here;
    asio::io_context* there;
    std::uint64_t left;
    void operator()() const {
      if (left == 0) {
        here->stop();
        return;
      }
      asio::post(*there, ping{there, here, left - 1});
    }
  };
  asio::post(a, ping{&a, &b, 2 * warmup_of(n)});
  a.run();
  a.restart();
  asio::post(a, ping{&a, &b, 2 * n});
  const clock_type::time_point wall0 = clock_type::now();
  const nanoseconds cpu0 = process_cpu();
  a.run();
  const nanoseconds cpu = process_cpu() - cpu0;
  const nanoseconds wall = std::chrono::duration_cast<nanoseconds>(clock_type::now() - wall0);
  guard_b.reset();
  tb.join();
  // Each thread sleeps while the other works, so the measuring thread's CPU
  // time would count half the work; the process's counts both threads.
  return {{wall, cpu}, 2 * n};
}

}  // namespace coport_bench
