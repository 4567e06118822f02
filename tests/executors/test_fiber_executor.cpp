#include <coport/fiber_executor/fiber_executor.hpp>
#include <coport/messaging/client.hpp>

#include <catch2/catch.hpp>

#include "messaging_test_support.hpp"

#include <boost/asio/use_future.hpp>

namespace asio = boost::asio;
namespace json = boost::json;
namespace msg = coport::messaging;
namespace bridge = coport::bridge;
using namespace coport::test;

TEST_CASE("fiber_executor serves each method kind", "[executors][fiber_executor]") {
  bridge::runtime rt;
  auto t = msg::transport::create(unique_memory_url());
  auto e = std::make_shared<msg::endpoint>("calc");
  e->add("add", {"a", "b"}, [](int a, int b) -> asio::awaitable<int> { co_return a + b; });
  e->add("mul", {"a", "b"}, [](int a, int b) { return a * b; });
  e->add("sub", {"a", "b"}, [](int a, int b) -> asio::awaitable<int> { co_return a - b; });
  auto d = std::make_shared<msg::dispatcher>();
  d->add(e);
  coport::fiber_executor_options o;
  o.modes["calc.sub"] = coport::coroutine_mode::native;
  coport::fiber_executor ex({t, msg::target{.topic = "calc", .server = "s1"}, d}, rt, o);
  ex.start();
  msg::rpc_client client(t, msg::target{.topic = "calc"});
  CHECK(wait(client.async_call<int>("add", msg::args("a", 2, "b", 3), asio::use_future)) == 5);
  CHECK(wait(client.async_call<int>("mul", msg::args("a", 2, "b", 3), asio::use_future)) == 6);
  CHECK(wait(client.async_call<int>("sub", msg::args("a", 2, "b", 3), asio::use_future)) == -1);
  wait(ex.async_stop(asio::use_future));
  for (const auto& m : ex.metrics()) {
    INFO(m.method << " " << m.mode);
    CHECK(m.calls == 1);
  }
}
