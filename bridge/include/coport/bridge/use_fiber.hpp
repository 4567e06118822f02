#ifndef COPORT_BRIDGE_USE_FIBER_HPP
#define COPORT_BRIDGE_USE_FIBER_HPP

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
/// stores the error in `ec` instead. Operations completing with
/// `(std::exception_ptr, T)` (co_spawn, run_in_fiber) rethrow the exception.
///
/// Legal on any fiber except the loop fiber of a coport runtime (there it
/// throws `errc::blocking_on_loop`). On a coport fiber, a stop request
/// cancels the operation (terminal cancellation), provided its I/O object
/// belongs to the fiber's own loop.
class use_fiber_t {
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

template <class Tuple, std::size_t... I>
auto take_rest(Tuple&& t, std::index_sequence<I...>) {
  if constexpr (sizeof...(I) == 0) {
    return;
  } else if constexpr (sizeof...(I) == 1) {
    return std::move(std::get<(I + 1)...>(t));
  } else {
    return std::make_tuple(std::move(std::get<I + 1>(t))...);
  }
}

template <class Tuple, std::size_t... I>
auto take_all(Tuple&& t, std::index_sequence<I...>) {
  if constexpr (sizeof...(I) == 1) {
    return std::move(std::get<0>(t));
  } else {
    return std::make_tuple(std::move(std::get<I>(t))...);
  }
}

template <class First, class... Rest>
struct use_fiber_result {
  using tuple = std::tuple<std::decay_t<First>, std::decay_t<Rest>...>;
  static constexpr bool leading_error =
      std::is_same_v<std::decay_t<First>, boost::system::error_code> ||
      std::is_same_v<std::decay_t<First>, std::exception_ptr>;

  static auto unpack(tuple&& t, boost::system::error_code* ec_out) {
    if constexpr (std::is_same_v<std::decay_t<First>, boost::system::error_code>) {
      const auto ec = std::get<0>(t);
      if (ec_out) {
        *ec_out = ec;
      } else if (ec) {
        throw boost::system::system_error(ec);
      }
      return take_rest(std::move(t), std::index_sequence_for<Rest...>{});
    } else if constexpr (std::is_same_v<std::decay_t<First>, std::exception_ptr>) {
      if (std::get<0>(t)) std::rethrow_exception(std::get<0>(t));
      return take_rest(std::move(t), std::index_sequence_for<Rest...>{});
    } else {
      return take_all(std::move(t), std::index_sequence_for<First, Rest...>{});
    }
  }
};

template <class... Args, class Initiation, class... InitArgs>
auto use_fiber_wait(Initiation&& init, use_fiber_t token, InitArgs&&... init_args) {
  check_can_block("use_fiber");
  auto st = std::make_shared<use_fiber_state<Args...>>();
  loop* l = current_loop();
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
  template <class Initiation, class... InitArgs>
  static auto initiate(Initiation&& init, coport::bridge::use_fiber_t token,
                       InitArgs&&... args) {
    return coport::bridge::detail::use_fiber_wait<Args...>(
        std::forward<Initiation>(init), token, std::forward<InitArgs>(args)...);
  }
};

}  // namespace boost::asio

#endif
