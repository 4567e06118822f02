#ifndef COPORT_MIGRATION_POINT_HPP
#define COPORT_MIGRATION_POINT_HPP

// A migration point of any code, callable from both worlds: a fiber calls
// it and blocks only itself, a coroutine co_awaits it. Each call runs the
// form the point's policy chooses (legacy, ported, canary, shadow) and is
// recorded in the point's registry, whose report has the same columns as
// an RPC service's. Header-only on top of coport::bridge (link it).

#include <coport/migration/points.hpp>

#include <coport/bridge/runtime.hpp>
#if COPORT_BRIDGE_FIBERS
#include <coport/bridge/await.hpp>
#include <coport/bridge/blocking.hpp>
#include <coport/bridge/fiber.hpp>
#endif

#include <boost/asio/awaitable.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/core/demangle.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value_from.hpp>

#include <chrono>
#include <exception>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>

namespace coport::migration {

namespace detail {

// One form's outcome, for a shadow comparison.
template <class R>
struct outcome {
  std::optional<R> value;
  std::exception_ptr error;
};

template <class R>
std::string describe_outcome(const outcome<R>& o) {
  if (o.error) {
    try {
      std::rethrow_exception(o.error);
    } catch (const std::exception& e) {
      return "error: " + boost::core::demangle(typeid(e).name()) + ": " + e.what();
    } catch (...) {
      return "error: unknown exception";
    }
  }
  if constexpr (boost::json::has_value_from<R>::value) {
    return boost::json::serialize(boost::json::value_from(*o.value));
  } else {
    return "(a value)";
  }
}

template <class R>
bool same_outcome(const outcome<R>& a, const outcome<R>& b, const std::function<bool(const R&, const R&)>& same) {
  if (a.error || b.error) return a.error && b.error && describe_outcome(a) == describe_outcome(b);
  if (same) return same(*a.value, *b.value);
  if constexpr (std::equality_comparable<R>) {
    return *a.value == *b.value;
  } else {
    return true;
  }
}

#if !COPORT_BRIDGE_FIBERS
/// A point's legacy form in a fiber-free build: always empty; giving one
/// does not compile.
template <class Signature>
struct no_legacy_form {
  no_legacy_form() = default;
  template <class F>
  no_legacy_form(F&&) {  // NOLINT(google-explicit-constructor): names the error
    static_assert(bridge::detail::fiber_side_removed<F>,
                  "coport::migration::point: a legacy form runs fiber code, which this coport does not have "
                  "(built with COPORT_WITH_FIBERS=OFF): the point keeps its ported form only");
  }
  explicit operator bool() const noexcept { return false; }
};
#endif

}  // namespace detail

template <class Signature>
class point;

/// A migration point: a named unit of work with a legacy form (a plain
/// function that may block fibers) and/or a ported form (a coroutine), and
/// a policy in `registry` choosing between them per call. R must not be
/// void (return a status instead) and must be copyable; the arguments are
/// copied for a shadow call.
///
/// Where each form runs: from a fiber (call()), the legacy form runs in the
/// calling fiber, the ported form natively on the runtime's loop under the
/// work name "<point>" while the fiber waits (bridge::await). From a
/// coroutine (async_call()), the ported form runs inline in the caller,
/// the legacy form in a pooled fiber under "<point> [legacy]"
/// (bridge::run_in_fiber). The report's implicit yields and stalls are those
/// work names' counters.
///
/// In a fiber-free build (COPORT_WITH_FIBERS=OFF) a point has its ported
/// form only: async_call() runs it, the policy stays `ported`, and giving a
/// legacy form or calling call() does not compile.
///
/// Shadow: the legacy form answers; then the ported form runs on a copy of
/// the arguments, in the caller's turn (the call takes both forms' time),
/// and the two outcomes are compared with `same` (default: operator==;
/// exceptions compare by class and message). The point, like its registry
/// and runtime, must outlive its calls.
template <class R, class... Args>
class point<R(Args...)> {
  static_assert(!std::is_void_v<R>, "a migration point returns a value (return a status for a void operation)");

 public:
  /// The forms of a point, and how to compare and describe them.
  struct forms {
    /// The legacy form: may block fibers. Empty when it is gone.
#if COPORT_BRIDGE_FIBERS
    std::function<R(Args...)> legacy = {};
#else
    detail::no_legacy_form<R(Args...)> legacy = {};
#endif
    /// The ported form. Empty while not written yet.
    std::function<boost::asio::awaitable<R>(Args...)> ported = {};
    /// Shadow comparison of two results; empty: operator==.
    std::function<bool(const R&, const R&)> same = {};
    /// The arguments of a kept mismatch, for the report; empty: none.
    std::function<boost::json::object(const Args&...)> describe = {};
  };

  /// Declares the point `name` in `reg` (throws as registry::declare) and
  /// has `reg`'s report read its counters from `rt` (the points of one
  /// registry are meant to share one runtime, or one runtime_pool's
  /// counter registry: the last point made sets the source).
  point(registry& reg, std::string_view name, forms f, bridge::runtime& rt)
      : forms_(std::move(f)),
        record_(reg.declare(name, static_cast<bool>(forms_.legacy), static_cast<bool>(forms_.ported))),
        ported_work_(rt.get_executor(record_.full_name())),
        legacy_work_(rt.get_executor(record_.full_name() + " [legacy]")) {
    record_.mode_legacy = "fiber";
    record_.mode_ported = "coroutine";
    reg.set_counters_source([&diag = rt.registry()](std::string_view work) {
      const bridge::work_counters c = diag.counters(work);
      return registry::work_counters{c.implicit_yields, c.stalls};
    });
  }

#if COPORT_BRIDGE_FIBERS
  /// Calls the point from a fiber of a coport runtime; blocks only that
  /// fiber. Rethrows the answering form's exception.
  COPORT_FIBER_BLOCKING_INSTEAD("co_await p.async_call(...)") R call(Args... args) {
    const point_record::route route = record_.choose();
    if (route.primary == form_kind::coroutine) return timed(form_kind::coroutine, [&] { return run_ported(args...); });
    if (!route.shadow) return timed(form_kind::fiber, [&] { return forms_.legacy(args...); });
    detail::outcome<R> legacy = capture(form_kind::fiber, [&] { return forms_.legacy(args...); });
    detail::outcome<R> ported = capture(form_kind::coroutine, [&] { return run_ported(args...); });
    compare(legacy, ported, args...);
    return finish(std::move(legacy));
  }
#else
  template <class... Never>
  R call(Never&&...) {
    static_assert(bridge::detail::fiber_side_removed<Never...>,
                  "coport::migration::point::call() blocks a fiber, which this coport does not have "
                  "(built with COPORT_WITH_FIBERS=OFF): co_await p.async_call(...)");
  }
#endif

  /// Calls the point from a coroutine: `co_await p.async_call(args...)`.
  /// The legacy form runs in a pooled fiber of the point's runtime, the
  /// ported form in the calling coroutine.
  boost::asio::awaitable<R> async_call(Args... args) {
    const point_record::route route = record_.choose();
    if (!route.shadow) {
      // The common case, timed here rather than in a nested coroutine:
      // one coroutine frame fewer per call.
      const form_kind k = route.primary;
      const auto start = clock::now();
      try {
        // Not `cond ? co_await a : co_await b`: g++ 12 destroys a class-type
        // result of such a conditional once too often.
        std::optional<R> r;
        if (k == form_kind::coroutine) {
          r.emplace(co_await forms_.ported(args...));
        } else {
          r.emplace(co_await run_legacy(args...));
        }
        record_.metrics(k).record(clock::now() - start, false, false);
        co_return std::move(*r);
      } catch (...) {
        record_.metrics(k).record(clock::now() - start, true, false);
        throw;
      }
    }
    detail::outcome<R> legacy = co_await capture_co(form_kind::fiber, run_legacy(args...));
    detail::outcome<R> ported = co_await capture_co(form_kind::coroutine, forms_.ported(args...));
    compare(legacy, ported, args...);
    co_return finish(std::move(legacy));
  }

  /// The point's state and records in its registry (policy, counters).
  [[nodiscard]] point_record& record() noexcept { return record_; }

 private:
  using clock = std::chrono::steady_clock;

#if COPORT_BRIDGE_FIBERS
  R run_ported(Args&... args) { return bridge::await(ported_work_, forms_.ported(args...)); }

  boost::asio::awaitable<R> run_legacy(Args&... args) {
    // The legacy form and copies of the arguments travel into the fiber,
    // which may outlive this frame only if the call is abandoned, and then
    // the operation still owns them.
    // Named, not a temporary of the co_await expression: g++ 12 destroys a
    // capturing lambda temporary there twice (a double free once the
    // captured arguments own memory).
    auto legacy = [this, args...]() mutable { return forms_.legacy(args...); };
    co_return co_await bridge::async_run_in_fiber(legacy_work_, std::move(legacy), boost::asio::use_awaitable);
  }
#else
  // Never called: without a legacy form the policy cannot choose it.
  boost::asio::awaitable<R> run_legacy(Args&...) {
    throw std::logic_error("coport::migration::point: no legacy form in a fiber-free build");
  }
#endif

  template <class F>
  R timed(form_kind k, F&& f) {
    const auto start = clock::now();
    try {
      R r = f();
      record_.metrics(k).record(clock::now() - start, false, false);
      return r;
    } catch (...) {
      record_.metrics(k).record(clock::now() - start, true, false);
      throw;
    }
  }

  boost::asio::awaitable<R> timed_co(form_kind k, boost::asio::awaitable<R> aw) {
    const auto start = clock::now();
    std::exception_ptr error;
    try {
      R r = co_await std::move(aw);
      record_.metrics(k).record(clock::now() - start, false, false);
      co_return r;
    } catch (...) {
      error = std::current_exception();
    }
    record_.metrics(k).record(clock::now() - start, true, false);
    std::rethrow_exception(error);
  }

  template <class F>
  detail::outcome<R> capture(form_kind k, F&& f) {
    detail::outcome<R> o;
    try {
      o.value.emplace(timed(k, std::forward<F>(f)));
    } catch (...) {
      o.error = std::current_exception();
    }
    return o;
  }

  boost::asio::awaitable<detail::outcome<R>> capture_co(form_kind k, boost::asio::awaitable<R> aw) {
    detail::outcome<R> o;
    try {
      o.value.emplace(co_await timed_co(k, std::move(aw)));
    } catch (...) {
      o.error = std::current_exception();
    }
    co_return o;
  }

  void compare(const detail::outcome<R>& legacy, const detail::outcome<R>& ported, const Args&... args) {
    const bool equal = detail::same_outcome(legacy, ported, forms_.same);
    boost::json::object described;
    if (!equal && forms_.describe) described = forms_.describe(args...);
    record_.record_shadow(equal, described, detail::describe_outcome(legacy), detail::describe_outcome(ported));
  }

  static R finish(detail::outcome<R> o) {
    if (o.error) std::rethrow_exception(o.error);
    return std::move(*o.value);
  }

  forms forms_;
  point_record& record_;
  bridge::loop_executor ported_work_;
  bridge::loop_executor legacy_work_;
};

}  // namespace coport::migration

#endif
