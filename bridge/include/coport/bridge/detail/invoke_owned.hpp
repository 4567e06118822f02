#ifndef COPORT_BRIDGE_DETAIL_INVOKE_OWNED_HPP
#define COPORT_BRIDGE_DETAIL_INVOKE_OWNED_HPP

#include <boost/asio/awaitable.hpp>

#include <type_traits>

namespace coport::bridge::detail {

/// Calls `f` inside a coroutine frame that owns it, so that a lambda's
/// captures outlive every step of the coroutine it returns.
template <class T, class F>
boost::asio::awaitable<T> invoke_owned(F f) {
  co_return co_await f();
}

template <class F>
using awaitable_value_t = typename std::invoke_result_t<F&>::value_type;

}  // namespace coport::bridge::detail

#endif
