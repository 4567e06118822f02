#ifndef COPORT_BRIDGE_DETAIL_REMOVED_HPP
#define COPORT_BRIDGE_DETAIL_REMOVED_HPP

// The fiber-only calls of the bridge, as they are in a fiber-free build
// (COPORT_WITH_FIBERS=OFF): declared, so that a call names itself, and
// failing to compile when used, with a message that says what ported code
// uses instead. fiber.hpp, use_fiber.hpp, await.hpp, hosted.hpp and
// status_channel.hpp include this instead of their fiber side.

#include <coport/bridge/detail/config.hpp>

#include <boost/asio/async_result.hpp>

#include <string>
#include <string_view>

#if COPORT_BRIDGE_FIBERS
#error "coport/bridge/detail/removed.hpp is for the fiber-free bridge only"
#endif

namespace coport::bridge {

/// The name of fiber work for run_in_fiber, kept so that a named call
/// reaches run_in_fiber's message below.
struct work {
  explicit work(std::string_view n) : name(n) {}
  std::string name;
};

template <class... A>
void run_in_fiber(A&&...) {
  static_assert(detail::fiber_side_removed<A...>,
                COPORT_BRIDGE_REMOVED("run_in_fiber()", "port the function to a coroutine and co_await it"));
}

template <class... A>
void async_run_in_fiber(A&&...) {
  static_assert(detail::fiber_side_removed<A...>,
                COPORT_BRIDGE_REMOVED("async_run_in_fiber()", "port the function to a coroutine and co_await it"));
}

template <class... A>
void spawn_fiber(A&&...) {
  static_assert(detail::fiber_side_removed<A...>,
                COPORT_BRIDGE_REMOVED("spawn_fiber()", "start a coroutine with bridge::spawn(ex, ...)"));
}

template <class... A>
void await(A&&...) {
  static_assert(detail::fiber_side_removed<A...>,
                COPORT_BRIDGE_REMOVED("await()", "co_await the awaitable in a coroutine"));
}

template <class... A>
void co_spawn_hosted(A&&...) {
  static_assert(detail::fiber_side_removed<A...>,
                COPORT_BRIDGE_REMOVED("co_spawn_hosted()", "use asio::co_spawn on a loop executor"));
}

template <class... A>
void spawn_hosted(A&&...) {
  static_assert(detail::fiber_side_removed<A...>,
                COPORT_BRIDGE_REMOVED("spawn_hosted()", "use bridge::spawn(ex, ...)"));
}

/// See status_channel.hpp; the fiber side's status API of bridge::channel.
template <class T>
class status_channel {
  static_assert(detail::fiber_side_removed<T>,
                COPORT_BRIDGE_REMOVED("status_channel<T>", "co_await ch.async_push(v, token) / ch.async_pop(token)"));
};

/// The completion token that blocks a fiber, as a fiber-free build has it:
/// any use fails to compile.
class use_fiber_t {
 public:
  template <class E>
  use_fiber_t operator[](E&) const {
    static_assert(detail::fiber_side_removed<E>,
                  COPORT_BRIDGE_REMOVED("use_fiber[ec]", "co_await the operation with asio::use_awaitable"));
    return {};
  }
};
inline constexpr use_fiber_t use_fiber{};

namespace this_fiber {

/// See fiber.hpp; a fiber's work scope, which a fiber-free build has no use for.
template <class Never = void>
class work_scope {
 public:
  explicit work_scope(std::string_view) {
    static_assert(detail::fiber_side_removed<Never>,
                  COPORT_BRIDGE_REMOVED("this_fiber::work_scope",
                                        "name coroutine work with runtime::get_executor(name)"));
  }
};

template <class... A>
void sleep_for(A&&...) {
  static_assert(detail::fiber_side_removed<A...>,
                COPORT_BRIDGE_REMOVED("this_fiber::sleep_for()", "co_await an asio::steady_timer"));
}

template <class... A>
void sleep_until(A&&...) {
  static_assert(detail::fiber_side_removed<A...>,
                COPORT_BRIDGE_REMOVED("this_fiber::sleep_until()", "co_await an asio::steady_timer"));
}

template <class Never = void>
void interruption_point() {
  static_assert(detail::fiber_side_removed<Never>,
                COPORT_BRIDGE_REMOVED("this_fiber::interruption_point()",
                                      "a coroutine is cancelled through its cancellation slot"));
}

template <class Never = void>
bool stop_requested() {
  static_assert(detail::fiber_side_removed<Never>,
                COPORT_BRIDGE_REMOVED("this_fiber::stop_requested()",
                                      "co_await asio::this_coro::cancellation_state"));
  return false;
}

}  // namespace this_fiber

}  // namespace coport::bridge

template <class... Signatures>
struct boost::asio::async_result<coport::bridge::use_fiber_t, Signatures...> {
  template <class Initiation, class... Args>
  static auto initiate(Initiation&&, coport::bridge::use_fiber_t, Args&&...) {
    static_assert(coport::bridge::detail::fiber_side_removed<Initiation>,
                  COPORT_BRIDGE_REMOVED("use_fiber", "co_await the operation with asio::use_awaitable"));
  }
};

#endif
