#ifndef COPORT_BRIDGE_HOSTED_HPP
#define COPORT_BRIDGE_HOSTED_HPP

#include <coport/bridge/blocking.hpp>
#include <coport/bridge/detail/config.hpp>

#if !COPORT_BRIDGE_FIBERS
// Fiber-free build: the calls of this header fail to compile, naming themselves.
#include <coport/bridge/detail/removed.hpp>
#else

#include <coport/bridge/detail/host.hpp>
#include <coport/bridge/detail/invoke_owned.hpp>
#include <coport/bridge/runtime.hpp>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>

#include <exception>
#include <utility>

namespace coport::bridge {

/// Executor of one hosted coroutine: every continuation of the coroutine runs
/// inside the coroutine's own fiber (its *host*), so the coroutine may call
/// unported fiber-blocking code directly; that blocks the host fiber only and
/// is counted as an implicit yield. Obtained from co_spawn_hosted (through
/// `co_await asio::this_coro::executor`); converts to `asio::any_io_executor`.
class hosted_executor {
 public:
  /// Adopts one reference of `h`.
  explicit hosted_executor(detail::host* h) noexcept : host_(h) {}
  hosted_executor(const hosted_executor& o) noexcept : host_(o.host_), never_(o.never_) {
    if (host_) host_->add_ref();
  }
  hosted_executor(hosted_executor&& o) noexcept
      : host_(std::exchange(o.host_, nullptr)), never_(o.never_) {}
  hosted_executor& operator=(hosted_executor o) noexcept {
    std::swap(host_, o.host_);
    never_ = o.never_;
    return *this;
  }
  ~hosted_executor() {
    if (host_) host_->release();
  }

  boost::asio::io_context& query(boost::asio::execution::context_t) const noexcept {
    return detail::io_of(host_->get_loop());
  }
  static constexpr boost::asio::execution::mapping_t query(
      boost::asio::execution::mapping_t) noexcept {
    return boost::asio::execution::mapping.thread;
  }
  constexpr boost::asio::execution::blocking_t query(
      boost::asio::execution::blocking_t) const noexcept {
    return never_ ? boost::asio::execution::blocking_t(boost::asio::execution::blocking.never)
                  : boost::asio::execution::blocking_t(boost::asio::execution::blocking.possibly);
  }
  static constexpr boost::asio::execution::outstanding_work_t query(
      boost::asio::execution::outstanding_work_t) noexcept {
    return boost::asio::execution::outstanding_work.untracked;
  }
  static constexpr boost::asio::execution::relationship_t query(
      boost::asio::execution::relationship_t) noexcept {
    return boost::asio::execution::relationship.fork;
  }
  hosted_executor require(boost::asio::execution::blocking_t::never_t) const noexcept {
    hosted_executor e = *this;
    e.never_ = true;
    return e;
  }
  hosted_executor require(boost::asio::execution::blocking_t::possibly_t) const noexcept {
    hosted_executor e = *this;
    e.never_ = false;
    return e;
  }
  hosted_executor require(boost::asio::execution::relationship_t::fork_t) const noexcept {
    return *this;
  }
  hosted_executor require(boost::asio::execution::relationship_t::continuation_t) const noexcept {
    return *this;
  }

  /// Runs `f` in the host fiber.
  template <class F>
  void execute(F&& f) const {
    if (!never_ && host_->running_here()) {
      std::forward<F>(f)();
      return;
    }
    host_->submit(detail::make_task(std::forward<F>(f), host_->tag()));
  }

  /// True when the caller is this executor's host fiber.
  bool running_in_this_thread() const noexcept { return host_->running_here(); }
  const work_tag* tag() const noexcept { return host_->tag(); }
  detail::host* get_host() const noexcept { return host_; }

  friend bool operator==(const hosted_executor& a, const hosted_executor& b) noexcept {
    return a.host_ == b.host_;
  }
  friend bool operator!=(const hosted_executor& a, const hosted_executor& b) noexcept {
    return a.host_ != b.host_;
  }

 private:
  detail::host* host_;
  bool never_ = false;
};

static_assert(boost::asio::execution::is_executor<hosted_executor>::value);

namespace detail {

struct host_done_guard {
  hosted_executor ex;
  ~host_done_guard() { ex.get_host()->mark_done(); }
};

template <class T>
boost::asio::awaitable<T> hosted_body(boost::asio::awaitable<T> aw, hosted_executor ex) {
  host_done_guard guard{std::move(ex)};
  co_return co_await std::move(aw);
}

inline boost::asio::awaitable<void> hosted_body(boost::asio::awaitable<void> aw,
                                                hosted_executor ex) {
  host_done_guard guard{std::move(ex)};
  co_await std::move(aw);
}

// Binds `slot` to `handler`, replacing the (unconnected) slot of a handler
// that is already a cancellation_slot_binder.
template <class Handler>
auto rebind_cancellation_slot(boost::asio::cancellation_slot slot, Handler&& handler) {
  return boost::asio::bind_cancellation_slot(slot, std::forward<Handler>(handler));
}
template <class T, class S>
auto rebind_cancellation_slot(boost::asio::cancellation_slot slot,
                              boost::asio::cancellation_slot_binder<T, S>&& handler) {
  return boost::asio::bind_cancellation_slot(slot, std::move(handler.get()));
}

struct initiate_hosted {
  template <class Handler, class T>
  void operator()(Handler&& handler, boost::asio::awaitable<T> aw, hosted_executor ex) const {
    auto body = hosted_body(std::move(aw), ex);
    detail::host* h = ex.get_host();
    if (boost::asio::get_associated_cancellation_slot(handler).is_connected()) {
      // The caller cancels through its own slot (a parent coroutine, say).
      boost::asio::co_spawn(std::move(ex), std::move(body), std::forward<Handler>(handler));
    } else {
      // Otherwise runtime stop cancels it through the host's signal.
      h->cancel_on_stop();
      auto slot = h->stop_signal().slot();
      boost::asio::co_spawn(std::move(ex), std::move(body),
                            rebind_cancellation_slot(slot, std::forward<Handler>(handler)));
    }
  }
};

template <class T>
struct spawn_signature {
  using type = void(std::exception_ptr, T);
};
template <>
struct spawn_signature<void> {
  using type = void(std::exception_ptr);
};

}  // namespace detail

/// Spawns `aw` as a *hosted* coroutine on the loop of `ex` (a loop
/// executor, or anything whose context is a coport loop): its continuations
/// run in a dedicated fiber, so unported fiber-blocking calls inside it work
/// and block that fiber only. Completes like `asio::co_spawn`, with
/// `(std::exception_ptr, T)`. The work is counted under the executor's tag
/// (`runtime::get_executor("name")`), or "<hosted>".
template <class Executor, class T, class CompletionToken>
COPORT_CROSS_WORLD("hosted") auto co_spawn_hosted(const Executor& ex, boost::asio::awaitable<T> aw, CompletionToken&& token) {
  detail::loop* l = detail::require_loop(ex, "co_spawn_hosted");
  const work_tag* tag = detail::tag_of_executor(ex);
  if (!tag) tag = detail::diagnostics_of(l).tag("<hosted>");
  hosted_executor hex(detail::host::create(l, tag));
  return boost::asio::async_initiate<CompletionToken, typename detail::spawn_signature<T>::type>(
      detail::initiate_hosted{}, token, std::move(aw), std::move(hex));
}

/// As above, with a function returning the awaitable (like `asio::co_spawn`
/// with a function): the function object, and so a lambda's captures, lives
/// as long as the coroutine.
template <class Executor, class F, class CompletionToken>
  requires std::is_invocable_v<F&>
COPORT_CROSS_WORLD("hosted") auto co_spawn_hosted(const Executor& ex, F f, CompletionToken&& token) {
  using T = detail::awaitable_value_t<F>;
  return co_spawn_hosted(ex, detail::invoke_owned<T>(std::move(f)),
                         std::forward<CompletionToken>(token));
}

}  // namespace coport::bridge

#endif  // COPORT_BRIDGE_FIBERS

#endif
