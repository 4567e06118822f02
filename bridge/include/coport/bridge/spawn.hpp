#ifndef COPORT_BRIDGE_SPAWN_HPP
#define COPORT_BRIDGE_SPAWN_HPP

#include <coport/bridge/detail/invoke_owned.hpp>
#include <coport/bridge/hosted.hpp>
#include <coport/bridge/runtime.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>

#include <exception>
#include <optional>
#include <stop_token>
#include <string>

namespace coport::bridge {

namespace detail {

// A detached coroutine the loop tracks: runtime stop emits terminal
// cancellation on it, and stop waits for it to finish.
class spawned_coroutine final : public tracked_work {
 public:
  explicit spawned_coroutine(loop* l, const work_tag* t) : loop_(l) { tag = t; }

  boost::asio::cancellation_slot slot() { return signal_.slot(); }
  // Loop thread; after co_spawn so that a stop already requested reaches
  // the coroutine's slot.
  void arm() {
    on_stop_.emplace(stop_token(), emitter{this});
  }
  void finish(std::exception_ptr e) {
    untrack(loop_, this);
    if (e) log_exception(loop_, tag, e);
    // Asio may still unwind the coroutine's last frame, which holds
    // cancellation state inside signal_; free it after this step.
    submit(loop_, make_task([this] { delete this; }, nullptr));
  }

 private:
  struct emitter {
    spawned_coroutine* self;
    void operator()() const noexcept {
      self->signal_.emit(boost::asio::cancellation_type::terminal);
    }
  };
  loop* loop_;
  boost::asio::cancellation_signal signal_;
  std::optional<std::stop_callback<emitter>> on_stop_;
};

}  // namespace detail

/// Starts `aw` as a native coroutine on `ex` (a loop executor, possibly
/// tagged with a work name) and returns at once; callable from any thread.
/// Unlike `co_spawn(..., detached)` the coroutine is tracked: runtime stop
/// cancels it and waits for it, and an exception escaping it is logged.
template <class Executor, class T>
void spawn(const Executor& ex, boost::asio::awaitable<T> aw) {
  detail::loop* l = detail::require_loop(ex, "bridge::spawn");
  const work_tag* tag = detail::tag_of_executor(ex);
  auto start = [l, tag, ex, aw = std::move(aw)]() mutable {
    auto* sc = new detail::spawned_coroutine(l, tag);
    detail::track(l, sc);
    boost::asio::co_spawn(ex, std::move(aw),
                          boost::asio::bind_cancellation_slot(
                              sc->slot(), [sc](std::exception_ptr e, auto&&...) { sc->finish(e); }));
    sc->arm();
  };
  // Tracking lists belong to the loop thread.
  detail::submit(l, detail::make_task(std::move(start), tag));
}

/// As spawn(), with a function returning the awaitable; the function
/// object (a lambda's captures) lives as long as the coroutine.
template <class Executor, class F>
  requires std::is_invocable_v<F&>
void spawn(const Executor& ex, F f) {
  spawn(ex, detail::invoke_owned<detail::awaitable_value_t<F>>(std::move(f)));
}

#if COPORT_BRIDGE_FIBERS
/// As spawn(), but the coroutine is hosted (see co_spawn_hosted).
template <class Executor, class T>
void spawn_hosted(const Executor& ex, boost::asio::awaitable<T> aw) {
  detail::loop* l = detail::require_loop(ex, "bridge::spawn_hosted");
  const work_tag* tag = detail::tag_of_executor(ex);
  // The host's fiber job is tracked, and a coroutine spawned without a slot
  // of its own is cancelled through the host when the runtime stops.
  co_spawn_hosted(ex, std::move(aw), [l, tag](std::exception_ptr e, auto&&...) {
    if (e) detail::log_exception(l, tag, e);
  });
}

/// As spawn_hosted(), with a function returning the awaitable.
template <class Executor, class F>
  requires std::is_invocable_v<F&>
void spawn_hosted(const Executor& ex, F f) {
  spawn_hosted(ex, detail::invoke_owned<detail::awaitable_value_t<F>>(std::move(f)));
}
#endif

}  // namespace coport::bridge

#endif
