#include <coport/messaging/rpc/client.hpp>

#include <catch2/catch.hpp>

#include "bridge_test_support.hpp"

#include <coport/messaging/rpc/server.hpp>

// One messaging client serves legacy and ported code alike: the same call
// blocks a fiber with use_fiber and suspends a coroutine with use_awaitable.

using namespace coport::test;
namespace messaging = coport::messaging;
namespace json = boost::json;

namespace {

std::shared_ptr<messaging::dispatcher> calculator() {
  auto e = std::make_shared<messaging::endpoint>("calc");
  e->add("add", {"a", "b"}, [](int a, int b) -> asio::awaitable<int> { co_return a + b; });
  e->add("fail", {}, []() -> int { throw std::domain_error("out of range"); });
  auto d = std::make_shared<messaging::dispatcher>();
  d->add(e);
  return d;
}

messaging::target topic(std::string t, std::string server = "") {
  messaging::target x;
  x.topic = std::move(t);
  x.server = std::move(server);
  return x;
}

}  // namespace

TEST_CASE("a fiber calls an RPC method with use_fiber and only that fiber blocks",
          "[bridge][messaging]") {
  bridge::runtime rt(test_options("tokens"));
  auto tr = messaging::transport::create("memory://bridge-tokens-1");
  messaging::rpc_server server(tr, topic("calc", "s1"), calculator(), rt.get_executor());
  server.start();
  messaging::rpc_client client(tr, topic("calc"));
  auto sum = in_fiber(rt, [&] {
    return client.async_call<int>("add", messaging::args("a", 40, "b", 2), bridge::use_fiber);
  });
  CHECK(get(sum) == 42);
  auto failure = in_fiber(rt, [&] {
    try {
      client.async_call("fail", {}, bridge::use_fiber);
    } catch (const messaging::remote_error& e) {
      return e.exc_type() + ": " + e.value();
    }
    return std::string("no error");
  });
  CHECK(get(failure) == "domain_error: out of range");
  get(server.async_stop(asio::use_future));
}

TEST_CASE("a native coroutine and a fiber on one loop call the same server", "[bridge][messaging]") {
  bridge::runtime rt(test_options("tokens"));
  auto tr = messaging::transport::create("memory://bridge-tokens-2");
  messaging::rpc_server server(tr, topic("calc", "s1"), calculator(), rt.get_executor());
  server.start();
  messaging::rpc_client client(tr, topic("calc"));
  auto from_coroutine = in_coro(rt, [&]() -> asio::awaitable<int> {
    co_return co_await client.async_call<int>("add", messaging::args("a", 1, "b", 2), asio::use_awaitable);
  });
  auto from_fiber = in_fiber(rt, [&] {
    return client.async_call<int>("add", messaging::args("a", 3, "b", 4), bridge::use_fiber);
  });
  CHECK(get(from_coroutine) == 3);
  CHECK(get(from_fiber) == 7);
  get(server.async_stop(asio::use_future));
}
