#ifndef COPORT_MESSAGING_DETAIL_FORMS_HPP
#define COPORT_MESSAGING_DETAIL_FORMS_HPP

// detail/: the bottom of coport::messaging, what more than one folder above
// needs and none of them owns. Here: the two forms a handler comes in,
// which RPC methods (rpc/endpoint.hpp) and notification handlers
// (notify/notify.hpp) share, and the trait that tells them apart. The
// library's internal logging is beside it in messaging/src/detail/.

#include <coport/migration/policy.hpp>

#include <boost/asio/awaitable.hpp>

#include <type_traits>

namespace coport::messaging {

/// A method's form: `fiber` (a plain function, runs to its end in a fiber
/// or thread) or `coroutine` (returns an awaitable); the two forms of every
/// migration point.
using method_kind = migration::form_kind;
using migration::to_string;

namespace detail {

template <class T>
struct is_awaitable : std::false_type {};
template <class T, class E>
struct is_awaitable<boost::asio::awaitable<T, E>> : std::true_type {
  using value_type = T;
};

}  // namespace detail

}  // namespace coport::messaging

#endif
