#ifndef COPORT_BRIDGE_FIBER_HPP
#define COPORT_BRIDGE_FIBER_HPP

#include <coport/bridge/blocking.hpp>
#include <coport/bridge/detail/config.hpp>

#if !COPORT_BRIDGE_FIBERS
// Fiber-free build: the calls of this header fail to compile, naming themselves.
#include <coport/bridge/detail/removed.hpp>
#else

// Coroutine -> fiber: run legacy, fiber-blocking code in a pooled fiber and
// get its result back on the caller's executor. Plus the calling fiber's
// own controls (stop token, interruption point, interruptible sleep).

#include <coport/bridge/runtime.hpp>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <exception>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

namespace coport::bridge {

namespace this_fiber {

/// Stop token of the calling fiber's work: requested when the coroutine
/// that waits for this fiber is cancelled, or when the runtime stops.
[[nodiscard]] std::stop_token stop_token() noexcept;
[[nodiscard]] bool stop_requested() noexcept;
/// Throws `system_error(asio::error::operation_aborted)` if a stop was
/// requested: the explicit interruption point for loops that never block.
void interruption_point();
/// Sleeps the calling fiber (never the loop); ends early, throwing
/// operation_aborted, if a stop is requested.
COPORT_FIBER_BLOCKING_INSTEAD("co_await an asio::steady_timer") void sleep_until(std::chrono::steady_clock::time_point deadline);
template <class Rep, class Period>
COPORT_FIBER_BLOCKING_INSTEAD("co_await an asio::steady_timer") void sleep_for(std::chrono::duration<Rep, Period> d) {
  sleep_until(std::chrono::steady_clock::now() +
              std::chrono::duration_cast<std::chrono::steady_clock::duration>(d));
}
/// Name under which the calling fiber's (or coroutine's) work is counted.
[[nodiscard]] std::string_view work_name() noexcept;

/// Names the calling fiber's work for the scope's lifetime: its fiber time,
/// stalls, cross-world calls and the fiber work it starts are counted under
/// `name` (one call of it), and under the previous name again once the
/// scope ends. For a fiber of a runtime: pooled, raw, or one waiting in
/// `bridge::await`. Elsewhere (the loop fiber, a hosted coroutine, whose
/// steps may interleave with other work, a thread that runs no coport loop)
/// it does nothing. Scopes nest; end them in the fiber that made them.
class [[nodiscard]] work_scope {
 public:
  explicit work_scope(std::string_view name);
  ~work_scope();
  work_scope(const work_scope&) = delete;
  work_scope& operator=(const work_scope&) = delete;

 private:
  void* fiber_ = nullptr;  // the fiber's detail::fiber_info; null: the scope does nothing
  const work_tag* previous_ = nullptr;
};

}  // namespace this_fiber

/// The name of fiber work started by `run_in_fiber`, `async_run_in_fiber`:
/// `co_await run_in_fiber(bridge::work("legacy.parse"), fn)`. The fiber's
/// time, stalls and calls are then counted under that name, not under the
/// caller's (a type of its own, so that a name is never taken for the first
/// argument of a callable).
struct work {
  explicit work(std::string_view n) : name(n) {}
  std::string name;
};

namespace detail {

template <class R>
struct fiber_signature {
  using type = void(std::exception_ptr, R);
};
template <>
struct fiber_signature<void> {
  using type = void(std::exception_ptr);
};

// Asks the job's fiber to stop when the waiting coroutine is cancelled. It
// holds the stop_source (shared state), not the job, so it stays valid
// whatever the job's state when the cancellation arrives.
struct stop_on_cancel {
  std::stop_source source;
  void operator()(boost::asio::cancellation_type type) const noexcept {
    if (type != boost::asio::cancellation_type::none) source.request_stop();
  }
};

template <class Handler, class Fn, class R>
class run_job final : public fiber_job {
 public:
  run_job(Handler&& h, Fn&& fn, loop_executor fallback, const work_tag* t)
      : handler_(std::move(h)), fn_(std::move(fn)), fallback_(fallback) {
    tag = t;
  }

  void run() noexcept override {
    std::exception_ptr error;
    std::optional<std::conditional_t<std::is_void_v<R>, char, R>> result;
    try {
      if constexpr (std::is_void_v<R>) {
        fn_();
      } else {
        result.emplace(fn_());
      }
    } catch (...) {
      error = std::current_exception();
    }
    auto ex = boost::asio::get_associated_executor(handler_, fallback_);
    boost::asio::dispatch(ex, [h = std::move(handler_), error,
                               r = std::move(result)]() mutable {
      boost::asio::get_associated_cancellation_slot(h).clear();
      if constexpr (std::is_void_v<R>) {
        std::move(h)(error);
      } else {
        std::move(h)(error, r ? std::move(*r) : R{});
      }
    });
  }

 private:
  Handler handler_;
  Fn fn_;
  loop_executor fallback_;
};

// `fn(args...)` over copies it owns, for run_in_fiber(fn, args...). A class
// with a constructor of its own, built in a plain function: g++ 12's
// coroutine lowering destroys a capturing lambda temporary written in a
// co_await expression twice, and this is how owning state reaches the fiber
// without such a temporary.
template <class Fn, class... Args>
class bound_call {
 public:
  template <class F, class... A>
  explicit bound_call(F&& fn, A&&... args)
      : fn_(std::forward<F>(fn)), args_(std::forward<A>(args)...) {}

  // Called once, in the fiber: the arguments are handed over as rvalues.
  decltype(auto) operator()() { return std::apply(std::move(fn_), std::move(args_)); }

 private:
  Fn fn_;
  std::tuple<Args...> args_;
};

// Who fiber work is counted under: the name given, else the executor's tag,
// else "<caller> [fiber]" (the fiber's stalls are not the caller's own).
template <class Executor>
const work_tag* callee_tag(loop* l, const Executor& ex, const work* named) {
  if (named) return diagnostics_of(l).tag(named->name);
  if (const work_tag* t = tag_of_executor(ex)) return t;
  return diagnostics_of(l).fiber_callee_tag(current_tag());
}

struct initiate_run_in_fiber {
  template <class Handler, class Fn, class Executor>
  void operator()(Handler&& handler, Fn&& fn, const Executor& ex, const work_tag* tag) const {
    using R = std::invoke_result_t<std::decay_t<Fn>&>;
    loop* l = require_loop(ex, "run_in_fiber");
    if (!tag) tag = callee_tag(l, ex, nullptr);
    tag->runs_in_fiber.fetch_add(1, std::memory_order_relaxed);
    // The slot refers to the waiter's cancellation state, not to the handler
    // object, so it stays usable after the handler moves into the job.
    auto slot = boost::asio::get_associated_cancellation_slot(handler);
    auto* job = new run_job<std::decay_t<Handler>, std::decay_t<Fn>, R>(
        std::forward<Handler>(handler), std::forward<Fn>(fn), loop_executor(l, tag), tag);
    if (slot.is_connected()) slot.template emplace<stop_on_cancel>(job->stop_source());
    submit_job(l, job);
  }
};

// async_run_in_fiber counted under `tag` (null: see callee_tag).
template <class Executor, class Fn, class CompletionToken>
auto async_run_in_fiber_as(const Executor& ex, const work_tag* tag, Fn&& fn, CompletionToken&& token) {
  using R = std::invoke_result_t<std::decay_t<Fn>&>;
  return boost::asio::async_initiate<CompletionToken, typename fiber_signature<R>::type>(
      initiate_run_in_fiber{}, token, std::forward<Fn>(fn), ex, tag);
}

}  // namespace detail

/// Runs `fn()` in a pooled fiber of the loop behind `ex` and completes with
/// `(std::exception_ptr, R)` (or `(std::exception_ptr)` for void), delivered
/// on the completion handler's executor. `fn` may block on fiber primitives
/// and legacy fiber-aware I/O. Cancelling the operation (the handler's
/// cancellation slot) requests a stop of `fn`'s fiber; it takes effect at its
/// next interruption point (see this_fiber). The work is counted under the
/// executor's tag, or, for an executor without one, under "<caller> [fiber]"
/// (the caller's work name; "<fiber>" for a caller without one). R must be
/// default-constructible.
template <class Executor, class Fn, class CompletionToken>
COPORT_CROSS_WORLD("run_in_fiber") auto async_run_in_fiber(const Executor& ex, Fn&& fn, CompletionToken&& token) {
  return detail::async_run_in_fiber_as(ex, nullptr, std::forward<Fn>(fn),
                                       std::forward<CompletionToken>(token));
}

/// As async_run_in_fiber(ex, fn, token), counting the work under `name`.
template <class Executor, class Fn, class CompletionToken>
COPORT_CROSS_WORLD("run_in_fiber") auto async_run_in_fiber(const Executor& ex, const work& name, Fn&& fn, CompletionToken&& token) {
  const work_tag* tag = detail::callee_tag(detail::require_loop(ex, "run_in_fiber"), ex, &name);
  return detail::async_run_in_fiber_as(ex, tag, std::forward<Fn>(fn),
                                       std::forward<CompletionToken>(token));
}

namespace detail {

template <class Fn>
boost::asio::awaitable<std::invoke_result_t<std::decay_t<Fn>&>> run_in_fiber_named(
    std::optional<work> name, Fn fn) {
  auto ex = co_await boost::asio::this_coro::executor;
  // Named here, not by the executor: the awaiting coroutine's executor
  // carries the caller's own tag.
  loop* l = require_loop(ex, "run_in_fiber");
  const work_tag* tag = name ? diagnostics_of(l).tag(name->name)
                             : diagnostics_of(l).fiber_callee_tag(
                                   tag_of_executor(ex) ? tag_of_executor(ex) : current_tag());
  co_return co_await async_run_in_fiber_as(ex, tag, std::move(fn), boost::asio::use_awaitable);
}

}  // namespace detail

/// `co_await run_in_fiber(fn)`: async_run_in_fiber on the awaiting
/// coroutine's own loop, resuming the coroutine on its own executor. The
/// fiber's work is counted under "<caller> [fiber]", where <caller> is the
/// awaiting coroutine's work name ("<fiber>" if it has none): name it with
/// run_in_fiber(work(name), fn) to see it under a name of its own.
template <class Fn>
  requires(!std::is_same_v<std::decay_t<Fn>, work>)
COPORT_CROSS_WORLD("run_in_fiber") boost::asio::awaitable<std::invoke_result_t<std::decay_t<Fn>&>> run_in_fiber(Fn fn) {
  return detail::run_in_fiber_named(std::nullopt, std::move(fn));
}

/// `co_await run_in_fiber(work("legacy.parse"), fn)`: as run_in_fiber(fn),
/// counting the fiber's work (its time, stalls, calls) under `name`.
template <class Fn>
COPORT_CROSS_WORLD("run_in_fiber") boost::asio::awaitable<std::invoke_result_t<std::decay_t<Fn>&>> run_in_fiber(work name, Fn fn) {
  return detail::run_in_fiber_named(std::optional<work>(std::move(name)), std::move(fn));
}

/// `co_await run_in_fiber(fn, args...)`: as run_in_fiber(fn), calling
/// `fn(std::move(copies)...)` on copies of `args` that the operation owns.
/// This is the form to write inline in a co_await expression when the
/// fiber needs owning state: g++ 12 destroys a capturing lambda temporary
/// in a co_await expression twice (a double free), whatever the callee does
/// with it, while a capture-less lambda and arguments are safe:
/// `co_await run_in_fiber([](std::string s, std::shared_ptr<db> d) {...}, name, conn)`.
template <class Fn, class... Args>
  requires(sizeof...(Args) > 0) && (!std::is_same_v<std::decay_t<Fn>, work>) &&
          std::is_invocable_v<std::decay_t<Fn>, std::decay_t<Args>...>
COPORT_CROSS_WORLD("run_in_fiber") [[nodiscard]] auto run_in_fiber(Fn&& fn, Args&&... args) {
  // No coroutine here and no co_await: the bound call is a temporary of
  // this plain function, destroyed as the language says.
  return run_in_fiber(detail::bound_call<std::decay_t<Fn>, std::decay_t<Args>...>(
      std::forward<Fn>(fn), std::forward<Args>(args)...));
}

/// `co_await run_in_fiber(work(name), fn, args...)`: the form above, counted
/// under `name`.
template <class Fn, class... Args>
  requires(sizeof...(Args) > 0) && std::is_invocable_v<std::decay_t<Fn>, std::decay_t<Args>...>
COPORT_CROSS_WORLD("run_in_fiber") [[nodiscard]] auto run_in_fiber(work name, Fn&& fn, Args&&... args) {
  return run_in_fiber(std::move(name), detail::bound_call<std::decay_t<Fn>, std::decay_t<Args>...>(
                                           std::forward<Fn>(fn), std::forward<Args>(args)...));
}

/// Starts `fn()` in a fiber of `ex`'s loop and returns at once; an exception
/// escaping `fn` is logged. Callable from any thread. Counted as
/// async_run_in_fiber(ex, fn, token) is.
template <class Executor, class Fn>
void spawn_fiber(const Executor& ex, Fn&& fn) {
  detail::loop* l = detail::require_loop(ex, "spawn_fiber");
  const work_tag* tag = detail::tag_of_executor(ex);
  async_run_in_fiber(ex, std::forward<Fn>(fn), [l, tag](std::exception_ptr e, auto&&...) {
    if (e) detail::log_exception(l, tag, e);
  });
}

}  // namespace coport::bridge

#endif  // COPORT_BRIDGE_FIBERS

#endif
