#ifndef COPORT_BRIDGE_AWAIT_HPP
#define COPORT_BRIDGE_AWAIT_HPP

#include <coport/bridge/blocking.hpp>
#include <coport/bridge/detail/config.hpp>

#if !COPORT_BRIDGE_FIBERS
// Fiber-free build: the calls of this header fail to compile, naming themselves.
#include <coport/bridge/detail/removed.hpp>
#else

// Fiber -> coroutine: a fiber waits for an awaitable; only that fiber blocks.

#include <coport/bridge/detail/parker.hpp>
#include <coport/bridge/hosted.hpp>
#include <coport/bridge/runtime.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <stop_token>
#include <type_traits>

namespace coport::bridge {

namespace detail {

template <class T>
struct await_state {
  parker done;
  std::exception_ptr error;
  std::optional<std::conditional_t<std::is_void_v<T>, char, T>> value;
  boost::asio::cancellation_signal signal;
  bool finished = false;  // written and read on the coroutine's executor only
};

// Runs `aw` against a timer. Whichever finishes first cancels the other
// (terminal cancellation), and the group waits for both, so `aw` never
// outlives this coroutine. The outcome is `aw`'s own, except when the timer
// went off first and `aw` then ended with an exception: that is timed_out.
// (`aw || timer` would not do: it waits for the first *success*, so an `aw`
// failing early would wait for the timer and be reported as timed out.)
template <class T>
boost::asio::awaitable<T> with_timeout(boost::asio::awaitable<T> aw,
                                       std::chrono::steady_clock::duration timeout) {
  namespace asio = boost::asio;
  auto ex = co_await asio::this_coro::executor;
  asio::steady_timer timer(ex, timeout);
  auto group = asio::experimental::make_parallel_group(
      asio::co_spawn(ex, std::move(aw), asio::deferred), timer.async_wait(asio::deferred));
  auto outcome = co_await std::move(group).async_wait(asio::experimental::wait_for_one(),
                                                      asio::use_awaitable);
  const auto& order = std::get<0>(outcome);
  const std::exception_ptr& failure = std::get<1>(outcome);
  const boost::system::error_code& timer_ec = std::get<std::tuple_size_v<decltype(outcome)> - 1>(outcome);
  // The timer completes without error only when its time has come; it ends
  // with operation_aborted when `aw` finished first or the caller cancelled.
  if (failure && order[0] == 1 && !timer_ec) {
    throw error(errc::timed_out, "bridge::await: the coroutine did not finish in time and was cancelled");
  }
  if (failure) std::rethrow_exception(failure);
  if constexpr (!std::is_void_v<T>) co_return std::move(std::get<2>(outcome));
}

inline void throw_if_stop_requested() {
  if (current_stop_token().stop_requested()) {
    throw boost::system::system_error(boost::asio::error::operation_aborted,
                                      "bridge::await: the waiting fiber was asked to stop");
  }
}

template <class T>
T result_of(await_state<T>& st) {
  if (st.error) std::rethrow_exception(st.error);
  if constexpr (!std::is_void_v<T>) return std::move(*st.value);
}

// The calling fiber hosts the coroutine: its steps run right here, and the
// fiber parks only while the coroutine waits for something. No other fiber
// or the loop fiber is involved, so a round trip costs no context switch
// beyond those of the awaited operations.
template <class T>
T await_here(loop* l, boost::asio::awaitable<T> aw,
             std::optional<std::chrono::steady_clock::duration> timeout) {
  throw_if_stop_requested();
  count_implicit_yield_if_hosted();
  const work_tag* caller = current_tag();
  caller->awaits.fetch_add(1, std::memory_order_relaxed);
  auto st = std::make_shared<await_state<T>>();
  hosted_executor hex(host::create(l, caller));
  host* h = hex.get_host();
  h->attach_here();
  auto body = timeout ? with_timeout(std::move(aw), *timeout) : std::move(aw);
  auto on_done = [st, h](std::exception_ptr e, auto&&... v) {
    st->error = e;
    if constexpr (sizeof...(v) > 0) {
      if (!e) st->value.emplace(std::move(v)...);
    }
    st->finished = true;
    h->mark_done();
  };
  boost::asio::co_spawn(std::move(hex), std::move(body),
                        boost::asio::bind_cancellation_slot(st->signal.slot(), std::move(on_done)));
  {
    // A stop of the fiber cancels the coroutine; the signal is emitted on the
    // loop fiber, while this fiber is parked between the coroutine's steps.
    std::stop_callback cancel(current_stop_token(), [st, l] {
      submit(l, make_task([st] {
               if (!st->finished) st->signal.emit(boost::asio::cancellation_type::terminal);
             }, nullptr));
    });
    h->run_here();
  }
  return result_of(*st);
}

template <class Executor, class T>
T await_on(const Executor& ex, boost::asio::awaitable<T> aw,
           std::optional<std::chrono::steady_clock::duration> timeout) {
  require_runtime_fiber("bridge::await");
  throw_if_stop_requested();
  count_implicit_yield_if_hosted();
  current_tag()->awaits.fetch_add(1, std::memory_order_relaxed);
  auto st = std::make_shared<await_state<T>>();
  auto body = timeout ? with_timeout(std::move(aw), *timeout) : std::move(aw);
  auto on_done = [st](std::exception_ptr e, auto&&... v) {
    st->error = e;
    if constexpr (sizeof...(v) > 0) {
      if (!e) st->value.emplace(std::move(v)...);
    } else if constexpr (std::is_void_v<T>) {
      // (The test is on T, which is known here: clang checks a discarded
      // branch that does not depend on the lambda's own parameters.)
      st->value.emplace('\0');
    }
    st->finished = true;
    st->done.unpark();
  };
  boost::asio::co_spawn(ex, std::move(body),
                        boost::asio::bind_cancellation_slot(st->signal.slot(), std::move(on_done)));
  {
    // A stop of the waiting fiber cancels the coroutine. The stop may be
    // requested on any thread; the signal is emitted on the coroutine's
    // executor, where it lives.
    std::stop_callback cancel(current_stop_token(), [st, ex] {
      boost::asio::post(ex, [st] {
        if (!st->finished) st->signal.emit(boost::asio::cancellation_type::terminal);
      });
    });
    st->done.park();
  }
  return result_of(*st);
}

}  // namespace detail

/// Blocks the calling fiber (only it) until `aw` has finished; returns its
/// value or rethrows its exception. The fiber hosts the coroutine while it
/// waits: the coroutine's steps run in this fiber, on its loop, and
/// `co_await asio::this_coro::executor` inside it gives a hosted_executor.
/// If the fiber is asked to stop meanwhile, the coroutine is cancelled (Asio
/// terminal cancellation) and the fiber keeps waiting until it has finished,
/// so the coroutine never outlives the call. Awaiting from a hosted
/// coroutine counts as an implicit yield of that coroutine.
///
/// Throws `error(errc::not_on_runtime)` outside a fiber of a coport runtime
/// and `error(errc::blocking_on_loop)` on the loop fiber, where waiting would
/// deadlock the loop.
template <class T>
COPORT_CROSS_WORLD("await") COPORT_FIBER_BLOCKING_INSTEAD("co_await the awaitable")
T await(boost::asio::awaitable<T> aw) {
  detail::loop* l = detail::require_runtime_fiber("bridge::await");
  return detail::await_here(l, std::move(aw), std::nullopt);
}

/// As await(aw), with a deadline: when `timeout` passes, the coroutine is
/// cancelled (terminal cancellation) and the fiber waits until it has
/// finished; if it then ends with an exception, the call throws
/// `error(errc::timed_out)`; if it still produces a value, that is returned.
/// An exception before the deadline is rethrown as it is, at once.
template <class T, class Rep, class Period>
COPORT_CROSS_WORLD("await") COPORT_FIBER_BLOCKING_INSTEAD("co_await the awaitable, with a timer")
T await(boost::asio::awaitable<T> aw, std::chrono::duration<Rep, Period> timeout) {
  detail::loop* l = detail::require_runtime_fiber("bridge::await");
  return detail::await_here(l, std::move(aw),
                            std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout));
}

/// As await(aw), running the coroutine on `ex` (another loop, a strand, a
/// loop executor for a native run) instead of in the waiting fiber.
template <class Executor, class T>
COPORT_CROSS_WORLD("await") COPORT_FIBER_BLOCKING_INSTEAD("co_await the awaitable (asio::co_spawn on the executor)")
T await(const Executor& ex, boost::asio::awaitable<T> aw) {
  return detail::await_on(ex, std::move(aw), std::nullopt);
}

/// As await(ex, aw), with a deadline: when `timeout` passes, the coroutine
/// is cancelled (terminal cancellation, delivered on `ex`) and the fiber
/// waits until it has finished; if it then ends with an exception, the call
/// throws `error(errc::timed_out)`; if it still produces a value, that is
/// returned. An exception before the deadline is rethrown as it is.
template <class Executor, class T, class Rep, class Period>
COPORT_CROSS_WORLD("await") COPORT_FIBER_BLOCKING_INSTEAD("co_await the awaitable (asio::co_spawn on the executor), with a timer")
T await(const Executor& ex, boost::asio::awaitable<T> aw,
        std::chrono::duration<Rep, Period> timeout) {
  return detail::await_on(ex, std::move(aw),
                          std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout));
}

}  // namespace coport::bridge

#endif  // COPORT_BRIDGE_FIBERS

#endif
