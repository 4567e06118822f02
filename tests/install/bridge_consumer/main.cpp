// Ported code on an installed fiber-free bridge: a producer and a consumer
// coroutine on one runtime, a channel between them and a mutex around the
// total.
#include <coport/bridge/channel.hpp>
#include <coport/bridge/mutex.hpp>
#include <coport/bridge/runtime.hpp>
#include <coport/bridge/spawn.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstdio>
#include <memory>

int main() {
  namespace asio = boost::asio;
  namespace bridge = coport::bridge;
  auto io = std::make_shared<asio::io_context>();
  int total = 0;
  {
    bridge::runtime rt(io);
    bridge::channel<int> ch(rt.get_executor(), 4);
    bridge::mutex m(rt.get_executor());
    bridge::spawn(rt.get_executor("producer"), [&]() -> asio::awaitable<void> {
      for (int i = 1; i <= 10; ++i) co_await ch.async_push(i, asio::use_awaitable);
      ch.close();
    });
    bridge::spawn(rt.get_executor("consumer"), [&]() -> asio::awaitable<void> {
      for (;;) {
        auto [ec, v] = co_await ch.async_pop(asio::as_tuple(asio::use_awaitable));
        if (ec) break;
        auto lk = co_await m.scoped_lock();
        total += v;
      }
      io->stop();
    });
    rt.run();
  }
  std::printf("fiber-free bridge: total %d, fibers %d\n", total, COPORT_BRIDGE_FIBERS);
  return total == 55 ? 0 : 1;
}
