#ifndef COPORT_MESSAGING_ENDPOINT_HPP
#define COPORT_MESSAGING_ENDPOINT_HPP

// rpc/: remote procedure calls over a transport. The client (call, cast,
// fanout), endpoints with their methods in fiber and coroutine forms, the
// dispatcher that finds the method a request names, invoking a method form
// into a reply, and rpc_server, the minimal server. It does not know
// notify/ (beside it) or serving/ (above it, where executors serve
// endpoints).
//
// Endpoints: named RPC methods with typed parameters. A method is a *fiber
// method* (a plain function returning a value; it may block fibers) or a
// *coroutine method* (returning asio::awaitable<T>); the kind follows from
// the signature. One name may carry both forms while it is being ported.

#include <coport/messaging/detail/forms.hpp>
#include <coport/messaging/wire/errors.hpp>
#include <coport/messaging/wire/message.hpp>
#include <coport/messaging/wire/target.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/json/value_from.hpp>
#include <boost/json/value_to.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

namespace coport::messaging {

/// What a method learns about the call it serves.
struct request_context {
  /// The caller's context dictionary.
  context ctxt;
  /// The call's message id (empty for a cast).
  std::string msg_id;
  std::string method;
  /// When the caller stops waiting (from its timeout), if it sent one.
  std::optional<std::chrono::steady_clock::time_point> deadline;

  /// Builds the context of `request`, received now.
  static request_context of(const rpc_request& request);
};

/// One implementation of a method. Exactly one of `call` / `co_call` is set,
/// by `kind`. Both take the context and the call's arguments (which they may
/// consume) and return the JSON result.
struct method_form {
  method_kind kind;
  std::function<boost::json::value(request_context&, boost::json::object&)> call;
  std::function<boost::asio::awaitable<boost::json::value>(request_context&, boost::json::object&)>
      co_call;
};

/// A method of an endpoint, with its legacy (fiber) and/or ported
/// (coroutine) implementation.
class method {
 public:
  explicit method(std::string name) : name_(std::move(name)) {}
  const std::string& name() const noexcept { return name_; }
  /// The fiber form, if registered.
  const method_form* legacy() const noexcept { return legacy_ ? &*legacy_ : nullptr; }
  /// The coroutine form, if registered.
  const method_form* ported() const noexcept { return ported_ ? &*ported_ : nullptr; }
  bool has_both_forms() const noexcept { return legacy_ && ported_; }
  /// Parameter names of the typed forms (empty for raw methods).
  const std::vector<std::string>& parameters() const noexcept { return params_; }

 private:
  friend class endpoint;
  std::string name_;
  std::vector<std::string> params_;
  std::optional<method_form> legacy_;
  std::optional<method_form> ported_;
};

namespace detail {

template <class F>
struct callable_traits : callable_traits<decltype(&std::decay_t<F>::operator())> {};
template <class R, class... A>
struct callable_traits<R (*)(A...)> {
  using result = R;
  using args = std::tuple<A...>;
};
template <class C, class R, class... A>
struct callable_traits<R (C::*)(A...)> : callable_traits<R (*)(A...)> {};
template <class C, class R, class... A>
struct callable_traits<R (C::*)(A...) const> : callable_traits<R (*)(A...)> {};
template <class C, class R, class... A>
struct callable_traits<R (C::*)(A...) noexcept> : callable_traits<R (*)(A...)> {};
template <class C, class R, class... A>
struct callable_traits<R (C::*)(A...) const noexcept> : callable_traits<R (*)(A...)> {};
template <class R, class... A>
struct callable_traits<R (*)(A...) noexcept> : callable_traits<R (*)(A...)> {};

/// "an integer", "a string", ...: what a parameter of type T expects.
template <class T>
std::string_view expected_json() {
  if constexpr (std::is_same_v<T, bool>) return "a boolean";
  else if constexpr (std::is_integral_v<T>) return "an integer";
  else if constexpr (std::is_floating_point_v<T>) return "a number";
  else if constexpr (std::is_convertible_v<std::string, T> && !std::is_same_v<T, boost::json::value>)
    return "a string";
  else return "a value of the parameter's type";
}

/// Names of JSON kinds, for messages.
std::string_view describe(const boost::json::value& v) noexcept;

/// Checks that `args` holds exactly `names` (in any order).
void check_argument_names(const std::string& method, const std::vector<std::string>& names,
                          const boost::json::object& args);

template <class T>
T convert_argument(const std::string& method, const std::string& name, boost::json::object& args) {
  boost::json::value* v = args.if_contains(name);
  if (!v) throw bad_arguments(method, name, "is missing");
  try {
    return boost::json::value_to<T>(*v);
  } catch (const std::exception&) {
    throw bad_arguments(method, name,
                        "expects " + std::string(expected_json<T>()) + ", got " +
                            std::string(describe(*v)));
  }
}

template <class Tuple, std::size_t... I>
Tuple convert_arguments(const std::string& method, const std::vector<std::string>& names,
                        boost::json::object& args, std::index_sequence<I...>) {
  return Tuple{convert_argument<std::tuple_element_t<I, Tuple>>(method, names[I], args)...};
}

/// std::tuple of the decayed element types of Tuple from index First on.
template <std::size_t First, class Tuple, class Seq>
struct values_of;
template <std::size_t First, class Tuple, std::size_t... I>
struct values_of<First, Tuple, std::index_sequence<I...>> {
  using type = std::tuple<std::decay_t<std::tuple_element_t<First + I, Tuple>>...>;
};

template <class T>
boost::json::value to_json(T&& v) {
  return boost::json::value_from(std::forward<T>(v));
}

}  // namespace detail

/// Where an endpoint lives: its namespace and the API version it serves.
struct endpoint_target {
  std::optional<std::string> ns;
  std::string version = "1.0";
};

/// A set of methods served under one namespace and version (an
/// oslo.messaging endpoint object). Build it before serving; it is then
/// read-only and may be shared by several servers and executors.
class endpoint {
 public:
  /// `name` identifies the endpoint in reports ("metering").
  explicit endpoint(std::string name, endpoint_target where = {});

  /// Registers a method with typed parameters, named in `params` in the
  /// order of `fn`'s parameters (after an optional leading
  /// `const request_context&`). Parameters and result convert with
  /// Boost.JSON (`value_to` / `value_from`, so user types work through
  /// `tag_invoke` or Boost.Describe). `fn` returning
  /// `asio::awaitable<T>` registers the coroutine (ported) form, anything
  /// else the fiber (legacy) form; a name may have one of each. Throws
  /// std::invalid_argument for a duplicate form or a parameter count that
  /// does not match.
  template <class F>
  endpoint& add(std::string name, std::vector<std::string> params, F fn);

  /// Registers a method taking the raw JSON arguments:
  /// `json::value fn(request_context&, json::object& args)` (fiber form) or
  /// `asio::awaitable<json::value> fn(request_context&, json::object&)`
  /// (coroutine form).
  template <class F>
  endpoint& add_raw(std::string name, F fn);

  const std::string& name() const noexcept { return name_; }
  const endpoint_target& target() const noexcept { return where_; }
  /// The served version, parsed.
  const messaging::version& served_version() const noexcept { return served_; }
  /// The method called `name`, or null. Names starting with '_' are found
  /// here (for reports) but never dispatched.
  const method* find(std::string_view name) const;
  /// Every method, by name.
  const std::map<std::string, method, std::less<>>& methods() const noexcept { return methods_; }

 private:
  void add_form(std::string name, std::vector<std::string> params, method_form form);

  std::string name_;
  endpoint_target where_;
  messaging::version served_;
  std::map<std::string, method, std::less<>> methods_;
};

template <class F>
endpoint& endpoint::add(std::string name, std::vector<std::string> params, F fn) {
  using traits = detail::callable_traits<F>;
  using args_t = typename traits::args;
  using result_t = typename traits::result;
  constexpr std::size_t arity = std::tuple_size_v<args_t>;
  constexpr bool takes_context = [] {
    if constexpr (arity == 0) return false;
    else return std::is_same_v<std::decay_t<std::tuple_element_t<0, args_t>>, request_context>;
  }();
  constexpr std::size_t first = takes_context ? 1 : 0;
  using values_t =
      typename detail::values_of<first, args_t, std::make_index_sequence<arity - first>>::type;
  if (params.size() != arity - first) {
    throw std::invalid_argument("method '" + name + "' takes " + std::to_string(arity - first) +
                                " parameters but " + std::to_string(params.size()) +
                                " names were given");
  }
  auto shared = std::make_shared<F>(std::move(fn));
  auto invoke = [shared](request_context& ctx, values_t& values) -> decltype(auto) {
    return std::apply(
        [&](auto&... v) -> decltype(auto) {
          if constexpr (takes_context) return (*shared)(ctx, std::move(v)...);
          else return (*shared)(std::move(v)...);
        },
        values);
  };
  auto convert = [names = params, method = name](boost::json::object& args) {
    detail::check_argument_names(method, names, args);
    return detail::convert_arguments<values_t>(method, names, args,
                                               std::make_index_sequence<arity - first>{});
  };
  method_form form;
  if constexpr (detail::is_awaitable<result_t>::value) {
    using value_t = typename detail::is_awaitable<result_t>::value_type;
    form.kind = method_kind::coroutine;
    form.co_call = [invoke, convert](request_context& ctx, boost::json::object& args)
        -> boost::asio::awaitable<boost::json::value> {
      values_t values = convert(args);
      if constexpr (std::is_void_v<value_t>) {
        co_await invoke(ctx, values);
        co_return boost::json::value(nullptr);
      } else {
        co_return detail::to_json(co_await invoke(ctx, values));
      }
    };
  } else {
    form.kind = method_kind::fiber;
    form.call = [invoke, convert](request_context& ctx, boost::json::object& args) {
      values_t values = convert(args);
      if constexpr (std::is_void_v<result_t>) {
        invoke(ctx, values);
        return boost::json::value(nullptr);
      } else {
        return detail::to_json(invoke(ctx, values));
      }
    };
  }
  add_form(std::move(name), std::move(params), std::move(form));
  return *this;
}

template <class F>
endpoint& endpoint::add_raw(std::string name, F fn) {
  using result_t = std::invoke_result_t<F&, request_context&, boost::json::object&>;
  method_form form;
  if constexpr (detail::is_awaitable<result_t>::value) {
    form.kind = method_kind::coroutine;
    form.co_call = std::move(fn);
  } else {
    form.kind = method_kind::fiber;
    form.call = std::move(fn);
  }
  add_form(std::move(name), {}, std::move(form));
  return *this;
}

/// The form of `m` an executor runs: the ported (coroutine) form when there
/// is one, otherwise the legacy form.
const method_form& default_form(const method& m) noexcept;

/// Finds the method a request names among endpoints (oslo.messaging's RPC
/// dispatcher rules): endpoints in the request's namespace whose version is
/// compatible with the request's are searched in order. Read-only after
/// construction; thread-safe.
class dispatcher {
 public:
  dispatcher() = default;
  explicit dispatcher(std::vector<std::shared_ptr<const endpoint>> endpoints)
      : endpoints_(std::move(endpoints)) {}

  void add(std::shared_ptr<const endpoint> e) { endpoints_.push_back(std::move(e)); }

  /// The method `request` names, and its endpoint. Throws no_such_method
  /// (no endpoint in a compatible version has it, or its name starts with
  /// '_') or unsupported_version (no endpoint in the namespace serves a
  /// compatible version).
  std::pair<const endpoint*, const method*> find(const rpc_request& request) const;

  const std::vector<std::shared_ptr<const endpoint>>& endpoints() const noexcept {
    return endpoints_;
  }

 private:
  std::vector<std::shared_ptr<const endpoint>> endpoints_;
};

}  // namespace coport::messaging

#endif
