#ifndef COPORT_TESTS_BRIDGE_TEST_SUPPORT_HPP
#define COPORT_TESTS_BRIDGE_TEST_SUPPORT_HPP

// Helpers for bridge tests: run a body in a fiber or a coroutine of a
// runtime and wait for it from the test thread (where Catch2 assertions are
// safe), and a thread-safe latch-like counter.

#include <coport/bridge/bridge.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <chrono>
#include <exception>
#include <future>
#include <memory>
#include <stdexcept>
#include <type_traits>

namespace coport::test {

namespace asio = boost::asio;
namespace bridge = coport::bridge;

/// Waits for `f` with a generous ceiling so that a bug shows as a failed
/// test rather than a hung one. Not a synchronisation device: the ceiling
/// is only reached when the code under test is broken.
template <class T>
T get(std::future<T>& f, std::chrono::seconds ceiling = std::chrono::seconds(30)) {
  if (f.wait_for(ceiling) != std::future_status::ready) {
    throw std::runtime_error("timed out waiting for the loop: the code under test hung");
  }
  return f.get();
}
template <class T>
T get(std::future<T>&& f, std::chrono::seconds ceiling = std::chrono::seconds(30)) {
  return get(f, ceiling);
}

/// Runs `fn` in a pooled fiber of `rt` and returns a future of its result.
template <class Fn>
auto in_fiber(bridge::runtime& rt, Fn fn) {
  return bridge::async_run_in_fiber(rt.get_executor(), std::move(fn), asio::use_future);
}

/// Runs `make()` (a function returning an awaitable, such as a lambda
/// coroutine, which co_spawn keeps alive) natively on `rt` and returns a
/// future of its result. Never pass an immediately invoked lambda coroutine
/// to co_spawn-like calls: its captures die before it runs.
template <class F>
auto in_coro(bridge::runtime& rt, F make) {
  return asio::co_spawn(rt.get_executor(), std::move(make), asio::use_future);
}

/// Runtime options for tests: quiet stall detector unless a test wants it.
inline bridge::runtime_options test_options(std::string name = "test") {
  bridge::runtime_options o;
  o.name = std::move(name);
  o.stall_threshold = std::chrono::milliseconds(0);
  return o;
}

/// Runs `fn` natively on the loop (a plain posted task) and returns a future
/// of its result, ready once it has run.
template <class Fn>
auto on_loop(bridge::runtime& rt, Fn fn) {
  using R = decltype(fn());
  auto result = std::make_shared<std::promise<R>>();
  auto f = result->get_future();
  rt.post([result, fn = std::move(fn)]() mutable {
    try {
      if constexpr (std::is_void_v<R>) {
        fn();
        result->set_value();
      } else {
        result->set_value(fn());
      }
    } catch (...) {
      result->set_exception(std::current_exception());
    }
  });
  return f;
}

/// Keeps the CPU (and so the loop, when called there) busy for `d`: the work
/// a test measures (a stall, fiber time), never a synchronisation device.
inline void busy_for(std::chrono::steady_clock::duration d) {
  const auto end = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < end) {
  }
}

/// Returns once the loop has run a task queued now. Fibers and coroutines all
/// run on the loop thread, so whichever one announced that it was about to
/// wait has by then reached its wait: the order is established, not timed.
inline void settle(bridge::runtime& rt) {
  get(on_loop(rt, [] {}));
}

/// Emits terminal cancellation on `sig` from the loop, where the operation
/// bound to it lives. The future is ready once the emit has run: `sig` must
/// outlive it, also when the operation has already finished otherwise (a
/// test racing the emit with a completion waits for it before `sig` goes).
[[nodiscard]] inline std::future<void> emit_on_loop(bridge::runtime& rt, asio::cancellation_signal& sig) {
  return on_loop(rt, [&sig] { sig.emit(asio::cancellation_type::terminal); });
}

}  // namespace coport::test

#endif
