#include <coport/bridge/use_fiber.hpp>

#include <catch2/catch.hpp>

#include "bridge_test_support.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <boost/fiber/operations.hpp>

#include <array>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

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

namespace {

// An operation completing with several values, after a post (so the caller
// really waits): `void(error_code, int, std::string)`.
template <class Token>
auto async_pair(asio::any_io_executor ex, boost::system::error_code ec, Token&& token) {
  return asio::async_initiate<Token, void(boost::system::error_code, int, std::string)>(
      [ex, ec](auto handler) {
        asio::post(ex, [h = std::move(handler), ec]() mutable { std::move(h)(ec, 7, "seven"); });
      },
      token);
}

// The same values without a leading error: `void(int, std::string)`.
template <class Token>
auto async_pair_no_error(asio::any_io_executor ex, Token&& token) {
  return asio::async_initiate<Token, void(int, std::string)>(
      [ex](auto handler) {
        asio::post(ex, [h = std::move(handler)]() mutable { std::move(h)(8, "eight"); });
      },
      token);
}

}  // namespace

TEST_CASE("use_fiber and use_fiber[ec] serve every form of Asio socket, resolver and timer operation",
          "[bridge][use_fiber]") {
  bridge::runtime rt(test_options("uf"));
  const auto ex = rt.get_executor();
  tcp::acceptor acceptor(ex, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  const auto port = acceptor.local_endpoint().port();

  // Four connections, accepted in the four forms: into a socket with [ec]
  // and throwing, and moved out (a returned socket) with [ec] and throwing.
  // Each gets one line back as "<n>:<line>", then the server closes it. The
  // server records the [ec] outcomes, the test thread checks them.
  auto server = in_fiber(rt, [&] {
    std::vector<std::string> log;
    auto serve = [&](tcp::socket s, int n) {
      std::string line;
      boost::system::error_code ec = asio::error::would_block;
      const std::size_t len =
          asio::async_read_until(s, asio::dynamic_buffer(line), '\n', bridge::use_fiber[ec]);
      log.push_back("read_until:" + ec.message());
      const std::string reply = std::to_string(n) + ":" + line.substr(0, len);
      ec = asio::error::would_block;
      asio::async_write(s, asio::buffer(reply), bridge::use_fiber[ec]);
      log.push_back("write:" + ec.message());
    };
    boost::system::error_code ec = asio::error::would_block;
    tcp::socket s0(ex);
    acceptor.async_accept(s0, bridge::use_fiber[ec]);
    log.push_back("accept into:" + ec.message());
    serve(std::move(s0), 0);
    tcp::socket s1(ex);
    acceptor.async_accept(s1, bridge::use_fiber);
    serve(std::move(s1), 1);
    ec = asio::error::would_block;
    tcp::socket s2 = acceptor.async_accept(bridge::use_fiber[ec]);
    log.push_back("accept moved:" + ec.message());
    serve(std::move(s2), 2);
    serve(acceptor.async_accept(bridge::use_fiber), 3);
    return log;
  });

  auto client = in_fiber(rt, [&] {
    std::vector<std::string> log;
    tcp::resolver resolver(ex);
    boost::system::error_code ec = asio::error::would_block;
    const tcp::resolver::results_type with_ec =
        resolver.async_resolve("127.0.0.1", std::to_string(port), bridge::use_fiber[ec]);
    log.push_back("resolve:" + ec.message());
    const auto thrown = resolver.async_resolve("127.0.0.1", std::to_string(port), bridge::use_fiber);
    for (int i = 0; i < 4; ++i) {
      tcp::socket s(ex);
      if (i % 2 == 0) {
        ec = asio::error::would_block;
        const tcp::endpoint ep = asio::async_connect(s, with_ec, bridge::use_fiber[ec]);
        log.push_back("connect:" + ec.message() + ":" + std::to_string(ep.port() == port));
      } else {
        const tcp::endpoint ep = asio::async_connect(s, thrown, bridge::use_fiber);
        log.push_back("connect:" + std::to_string(ep.port() == port));
      }
      const std::string line = "line " + std::to_string(i) + "\n";
      asio::async_write(s, asio::buffer(line), bridge::use_fiber);
      // read_some until the server closes: the last read ends with eof.
      std::array<char, 64> buf{};
      std::string reply;
      for (;;) {
        ec = {};
        const std::size_t n = s.async_read_some(asio::buffer(buf), bridge::use_fiber[ec]);
        reply.append(buf.data(), n);
        if (ec) break;
      }
      log.push_back(reply + (ec == asio::error::eof ? "eof" : ec.message()));
    }
    std::array<char, 1> one{};
    tcp::socket unconnected(ex);
    try {
      unconnected.async_read_some(asio::buffer(one), bridge::use_fiber);
      log.push_back("read on a closed socket: no throw");
    } catch (const boost::system::system_error&) {
      log.push_back("read on a closed socket threw");
    }
    return log;
  });

  const std::string ok = boost::system::error_code{}.message();
  const std::vector<std::string> served{
      "accept into:" + ok, "read_until:" + ok, "write:" + ok,  // 0
      "read_until:" + ok,  "write:" + ok,                      // 1
      "accept moved:" + ok, "read_until:" + ok, "write:" + ok,  // 2
      "read_until:" + ok,  "write:" + ok};                     // 3
  CHECK(get(server) == served);
  const std::vector<std::string> talked{
      "resolve:" + ok,      "connect:" + ok + ":1", "0:line 0\neof", "connect:1", "1:line 1\neof",
      "connect:" + ok + ":1", "2:line 2\neof",        "connect:1",     "3:line 3\neof",
      "read on a closed socket threw"};
  CHECK(get(client) == talked);
}

TEST_CASE("use_fiber serves posts, timers and operations completing with several values",
          "[bridge][use_fiber]") {
  bridge::runtime rt(test_options("uf"));
  const auto ex = rt.get_executor();
  auto r = in_fiber(rt, [&] {
    std::vector<std::string> seen;
    asio::post(ex, bridge::use_fiber);  // signature void()
    boost::system::error_code ec = asio::error::would_block;
    asio::post(ex, bridge::use_fiber[ec]);
    seen.push_back("post:" + ec.message());

    asio::steady_timer t(ex, 1ms);
    t.async_wait(bridge::use_fiber);
    t.expires_after(1ms);
    ec = asio::error::would_block;
    t.async_wait(bridge::use_fiber[ec]);
    seen.push_back("timer:" + ec.message());

    auto [n, s] = async_pair(ex, {}, bridge::use_fiber);
    seen.push_back(std::to_string(n) + s);
    ec = {};
    const std::tuple<int, std::string> failed = async_pair(ex, asio::error::eof, bridge::use_fiber[ec]);
    seen.push_back(std::to_string(std::get<0>(failed)) + std::get<1>(failed) + ":" + ec.message());
    try {
      (void)async_pair(ex, asio::error::eof, bridge::use_fiber);
      seen.push_back("no throw");
    } catch (const boost::system::system_error& e) {
      seen.push_back(e.code() == asio::error::eof ? "threw eof" : "threw other");
    }
    auto [m, u] = async_pair_no_error(ex, bridge::use_fiber);
    seen.push_back(std::to_string(m) + u);
    return seen;
  });
  const std::string ok = boost::system::error_code{}.message();
  const std::string eof = boost::system::error_code(asio::error::eof).message();
  CHECK(get(r) == std::vector<std::string>{"post:" + ok, "timer:" + ok, "7seven", "7seven:" + eof,
                                           "threw eof", "8eight"});
}
