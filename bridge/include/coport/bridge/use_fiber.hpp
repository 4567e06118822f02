#ifndef COPORT_BRIDGE_USE_FIBER_HPP
#define COPORT_BRIDGE_USE_FIBER_HPP

#include <coport/bridge/blocking.hpp>
#include <coport/bridge/detail/config.hpp>

#if !COPORT_BRIDGE_FIBERS
// Fiber-free build: the calls of this header fail to compile, naming themselves.
#include <coport/bridge/detail/removed.hpp>
#else

// The `use_fiber` completion token: any Asio asynchronous operation started
// from a fiber blocks that fiber (only it) until the operation completes.

#include <coport/bridge/detail/parker.hpp>
#include <coport/bridge/runtime.hpp>

#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/post.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include <exception>
#include <memory>
#include <optional>
#include <stop_token>
#include <tuple>
#include <type_traits>

namespace coport::bridge {

/// Completion token that makes an Asio operation fiber-blocking:
/// `auto n = sock.async_read_some(buf, bridge::use_fiber);` returns the
/// result or throws `boost::system::system_error`; the `use_fiber[ec]` form
/// stores the error in `ec` instead (and clears `ec` for an operation that
/// has no error, such as `asio::post`). Operations completing with
/// `(std::exception_ptr, T)` (co_spawn, run_in_fiber) rethrow the exception.
/// The call returns nothing, the one value, or a `std::tuple` of the values
/// that follow the error. Works with every initiation form, including
/// `acceptor.async_accept(socket, use_fiber)`.
///
/// Legal on any fiber except the loop fiber of a coport runtime (there it
/// throws `errc::blocking_on_loop`). On a coport fiber, a stop request
/// cancels the operation (terminal cancellation), provided its I/O object
/// belongs to the fiber's own loop.
class COPORT_FIBER_BLOCKING_TOKEN COPORT_CROSS_WORLD("use_fiber") use_fiber_t {
 public:
  constexpr use_fiber_t() = default;
  /// The non-throwing form: errors go to `ec`.
  constexpr use_fiber_t operator[](boost::system::error_code& ec) const noexcept {
    use_fiber_t t;
    t.ec_ = &ec;
    return t;
  }
  boost::system::error_code* error_out() const noexcept { return ec_; }

 private:
  boost::system::error_code* ec_ = nullptr;
};

inline constexpr use_fiber_t use_fiber{};

namespace detail {

template <class... Args>
struct use_fiber_state {
  parker done;
  std::optional<std::tuple<std::decay_t<Args>...>> result;
  boost::asio::cancellation_signal signal;
  bool cancellable = false;
  bool finished = false;
};

template <class... Args>
class use_fiber_handler {
 public:
  explicit use_fiber_handler(std::shared_ptr<use_fiber_state<Args...>> st) : st_(std::move(st)) {}

  template <class... A>
  void operator()(A&&... args) {
    auto st = std::move(st_);
    st->result.emplace(std::forward<A>(args)...);
    st->finished = true;
    st->done.unpark();
  }

  using cancellation_slot_type = boost::asio::cancellation_slot;
  cancellation_slot_type get_cancellation_slot() const noexcept {
    return st_ && st_->cancellable ? st_->signal.slot() : cancellation_slot_type();
  }

 private:
  std::shared_ptr<use_fiber_state<Args...>> st_;
};

// What a use_fiber call returns for completion values `Vs`: nothing, the
// one value, or a tuple of them.
template <class... Vs>
struct values_result {
  using type = std::tuple<std::decay_t<Vs>...>;
};
template <>
struct values_result<> {
  using type = void;
};
template <class V>
struct values_result<V> {
  using type = std::decay_t<V>;
};

template <class First>
inline constexpr bool is_leading_error_v =
    std::is_same_v<std::decay_t<First>, boost::system::error_code> ||
    std::is_same_v<std::decay_t<First>, std::exception_ptr>;

// The result type of a use_fiber call for signature `void(Args...)`: a
// leading error_code or exception_ptr is taken out (thrown, or stored in
// `ec`), the rest are the values.
template <class... Args>
struct use_fiber_value {
  using type = void;
};
template <class First, class... Rest>
struct use_fiber_value<First, Rest...> {
  using type = typename std::conditional_t<is_leading_error_v<First>, values_result<Rest...>,
                                           values_result<First, Rest...>>::type;
};
// Named explicitly, never deduced: Asio's completion_token_for check names
// async_result::initiate's return type for every overload it considers,
// including ones whose signature holds a type that cannot even be built
// (async_accept(ex, token) tried with a socket as the executor). A deduced
// type would instantiate the body there and fail to compile.
template <class... Args>
using use_fiber_value_t = typename use_fiber_value<Args...>::type;

template <class R, std::size_t Skip, class Tuple, std::size_t... I>
R take_values(Tuple&& t, std::index_sequence<I...>) {
  if constexpr (std::is_void_v<R>) {
    return;
  } else if constexpr (sizeof...(I) == 1) {
    return std::move(std::get<(I + Skip)...>(t));
  } else {
    return R(std::move(std::get<I + Skip>(t))...);
  }
}

template <class First, class... Rest>
struct use_fiber_result {
  using tuple = std::tuple<std::decay_t<First>, std::decay_t<Rest>...>;
  using value = use_fiber_value_t<First, Rest...>;

  static value unpack(tuple&& t, boost::system::error_code* ec_out) {
    if constexpr (std::is_same_v<std::decay_t<First>, boost::system::error_code>) {
      const auto ec = std::get<0>(t);
      if (ec_out) {
        *ec_out = ec;
      } else if (ec) {
        throw boost::system::system_error(ec);
      }
      return take_values<value, 1>(std::move(t), std::index_sequence_for<Rest...>{});
    } else if constexpr (std::is_same_v<std::decay_t<First>, std::exception_ptr>) {
      if (std::get<0>(t)) std::rethrow_exception(std::get<0>(t));
      if (ec_out) ec_out->clear();
      return take_values<value, 1>(std::move(t), std::index_sequence_for<Rest...>{});
    } else {
      if (ec_out) ec_out->clear();
      return take_values<value, 0>(std::move(t), std::index_sequence_for<First, Rest...>{});
    }
  }
};

template <class... Args, class Initiation, class... InitArgs>
use_fiber_value_t<Args...> use_fiber_wait(Initiation&& init, use_fiber_t token, InitArgs&&... init_args) {
  check_can_block("use_fiber");
  auto st = std::make_shared<use_fiber_state<Args...>>();
  loop* l = current_loop();
  if (l) current_tag()->use_fiber_waits.fetch_add(1, std::memory_order_relaxed);
  std::stop_token stop = current_stop_token();
  st->cancellable = l && stop.stop_possible();
  std::forward<Initiation>(init)(use_fiber_handler<Args...>(st),
                                 std::forward<InitArgs>(init_args)...);
  if (st->cancellable) {
    std::stop_callback cancel(stop, [st, l] {
      submit(l, make_task([st] {
               if (!st->finished) st->signal.emit(boost::asio::cancellation_type::terminal);
             }, nullptr));
    });
    st->done.park();
  } else {
    st->done.park();
  }
  if constexpr (sizeof...(Args) == 0) {
    // An operation without an error (asio::post): [ec] reports success.
    if (token.error_out()) token.error_out()->clear();
    return;
  } else {
    return use_fiber_result<Args...>::unpack(std::move(*st->result), token.error_out());
  }
}

}  // namespace detail

}  // namespace coport::bridge

namespace boost::asio {

template <class... Args>
class async_result<coport::bridge::use_fiber_t, void(Args...)> {
 public:
  using return_type = coport::bridge::detail::use_fiber_value_t<Args...>;

  template <class Initiation, class... InitArgs>
  static return_type initiate(Initiation&& init, coport::bridge::use_fiber_t token,
                              InitArgs&&... args) {
    return coport::bridge::detail::use_fiber_wait<Args...>(
        std::forward<Initiation>(init), token, std::forward<InitArgs>(args)...);
  }
};

}  // namespace boost::asio

#endif  // COPORT_BRIDGE_FIBERS

#endif
