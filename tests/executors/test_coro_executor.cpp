#include <coport/coro_executor/coro_executor.hpp>
#include <coport/messaging/client.hpp>

#include <catch2/catch.hpp>

#include "messaging_test_support.hpp"

#include <boost/asio/use_future.hpp>

namespace asio = boost::asio;
namespace json = boost::json;
namespace msg = coport::messaging;
using namespace coport::test;

TEST_CASE("coro_executor serves a coroutine method", "[executors][coro_executor]") {
  asio_loop loop;
  auto t = msg::transport::create(unique_memory_url());
  auto e = std::make_shared<msg::endpoint>("calc");
  e->add("add", {"a", "b"}, [](int a, int b) -> asio::awaitable<int> { co_return a + b; });
  auto d = std::make_shared<msg::dispatcher>();
  d->add(e);
  coport::coro_executor ex({t, msg::target{.topic = "calc", .server = "s1"}, d}, loop.get_executor());
  ex.start();
  msg::rpc_client client(t, msg::target{.topic = "calc"});
  CHECK(wait(client.async_call<int>("add", msg::args("a", 2, "b", 3), asio::use_future)) == 5);
  wait(ex.async_stop(asio::use_future));
  auto m = ex.metrics();
  REQUIRE(m.size() == 1);
  CHECK(m[0].calls == 1);
}
