#include <coport/bridge/use_fiber.hpp>

#include <catch2/catch.hpp>

#include "bridge_test_support.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/fiber/operations.hpp>

#include <utility>

using namespace std::chrono_literals;
using namespace coport::test;
using asio::ip::tcp;

TEST_CASE("an Asio timer waited with use_fiber blocks only its fiber", "[bridge][use_fiber]") {
  bridge::runtime rt(test_options("uf"));
  asio::steady_timer t(rt.get_executor(), 1h);
  int other_progress = 0;  // loop thread only
  std::promise<void> about_to_wait;
  auto slow = in_fiber(rt, [&] {
    about_to_wait.set_value();
    boost::system::error_code ec;
    t.async_wait(bridge::use_fiber[ec]);
    return std::make_pair(ec, other_progress);
  });
  get(about_to_wait.get_future());
  settle(rt);  // the fiber is blocked on the timer
  // Only another fiber running meanwhile can end the wait.
  auto other = in_fiber(rt, [&] {
    ++other_progress;
    t.cancel();
    return 0;
  });
  get(other);
  auto [ec, progress] = get(slow);
  CHECK(ec == asio::error::operation_aborted);
  CHECK(progress == 1);
}

TEST_CASE("use_fiber throws on error and the [ec] form reports it", "[bridge][use_fiber]") {
  bridge::runtime rt(test_options("uf"));
  auto codes = in_fiber(rt, [&] {
    asio::steady_timer t(rt.get_executor(), 1h);
    // Cancel the wait from native code once the fiber is blocked.
    asio::post(rt.get_executor(), [&] { t.cancel(); });
    boost::system::error_code ec;
    t.async_wait(bridge::use_fiber[ec]);
    std::string thrown;
    t.expires_after(1h);
    asio::post(rt.get_executor(), [&] { t.cancel(); });
    try {
      t.async_wait(bridge::use_fiber);
    } catch (const boost::system::system_error& e) {
      thrown = e.code().message();
    }
    return std::make_pair(ec, thrown);
  });
  auto [ec, thrown] = get(codes);
  CHECK(ec == asio::error::operation_aborted);
  CHECK(thrown == boost::system::error_code(asio::error::operation_aborted).message());
}

TEST_CASE("socket I/O with use_fiber returns the transferred sizes", "[bridge][use_fiber]") {
  bridge::runtime rt(test_options("uf"));
  tcp::acceptor acceptor(rt.get_executor(), tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  const auto port = acceptor.local_endpoint().port();
  auto server = in_fiber(rt, [&] {
    tcp::socket s = acceptor.async_accept(bridge::use_fiber);
    std::string buf(5, '\0');
    std::size_t n = asio::async_read(s, asio::buffer(buf), bridge::use_fiber);
    asio::async_write(s, asio::buffer(buf), bridge::use_fiber);
    return std::to_string(n) + ":" + buf;
  });
  auto client = in_fiber(rt, [&] {
    tcp::socket s(rt.get_executor());
    s.async_connect(tcp::endpoint(asio::ip::address_v4::loopback(), port), bridge::use_fiber);
    asio::async_write(s, asio::buffer(std::string("hello")), bridge::use_fiber);
    std::string echo(5, '\0');
    asio::async_read(s, asio::buffer(echo), bridge::use_fiber);
    return echo;
  });
  CHECK(get(server) == "5:hello");
  CHECK(get(client) == "hello");
}

TEST_CASE("co_spawn with use_fiber returns the value or rethrows", "[bridge][use_fiber]") {
  bridge::runtime rt(test_options("uf"));
  auto r = in_fiber(rt, [&] {
    int v = asio::co_spawn(rt.get_executor(), []() -> asio::awaitable<int> { co_return 5; },
                           bridge::use_fiber);
    try {
      asio::co_spawn(
          rt.get_executor(),
          []() -> asio::awaitable<int> {
            throw std::runtime_error("from co_spawn");
            co_return 0;
          },
          bridge::use_fiber);
    } catch (const std::runtime_error& e) {
      return std::to_string(v) + e.what();
    }
    return std::string("no exception");
  });
  CHECK(get(r) == "5from co_spawn");
}

TEST_CASE("use_fiber on the loop fiber throws blocking_on_loop", "[bridge][use_fiber]") {
  bridge::runtime rt(test_options("uf"));
  auto code = in_coro(rt, [&]() -> asio::awaitable<boost::system::error_code> {
    asio::steady_timer t(rt.get_executor(), 1ms);
    try {
      t.async_wait(bridge::use_fiber);
    } catch (const bridge::error& e) {
      co_return e.code();
    }
    co_return boost::system::error_code{};
  });
  CHECK(get(code) == bridge::errc::blocking_on_loop);
}

TEST_CASE("use_fiber works from a thread that runs no coport loop", "[bridge][use_fiber]") {
  bridge::runtime rt(test_options("uf"));
  // The test thread's own (default Boost.Fiber) context blocks; the timer
  // completes on the loop thread and wakes it from there.
  asio::steady_timer t(rt.get_executor(), 2ms);
  boost::system::error_code ec = asio::error::would_block;
  t.async_wait(bridge::use_fiber[ec]);
  CHECK_FALSE(ec);
}

TEST_CASE("a stop request cancels a use_fiber operation", "[bridge][use_fiber][cancel]") {
  bridge::runtime rt(test_options("uf"));
  std::promise<void> blocked;
  auto outcome = in_coro(rt, [&]() -> asio::awaitable<bool> {
    asio::cancellation_signal cancel;
    auto ex = co_await asio::this_coro::executor;
    auto [e] = co_await bridge::async_run_in_fiber(
        ex,
        [&] {
          asio::steady_timer t(ex, 1h);
          asio::post(ex, [&] { cancel.emit(asio::cancellation_type::terminal); });
          t.async_wait(bridge::use_fiber);
        },
        asio::bind_cancellation_slot(cancel.slot(), asio::as_tuple(asio::use_awaitable)));
    try {
      if (e) std::rethrow_exception(e);
    } catch (const boost::system::system_error& err) {
      co_return err.code() == asio::error::operation_aborted;
    }
    co_return false;
  });
  CHECK(get(outcome));
}
