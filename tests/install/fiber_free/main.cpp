// Built against the fiber-free components of an installed coport: an RPC
// round trip over memory:// served by coro_executor; rabbit:// is refused,
// naming the library that has its driver.
#include <coport/coro_executor/coro_executor.hpp>
#include <coport/messaging/rpc/client.hpp>
#include <coport/messaging/wire/errors.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <cstdio>
#include <string>
#include <thread>

namespace asio = boost::asio;
namespace msg = coport::messaging;

int main() {
  auto t = msg::transport::create("memory://fiber-free");
  auto e = std::make_shared<msg::endpoint>("answer");
  e->add("twice", {"n"}, [](int n) -> asio::awaitable<int> { co_return 2 * n; });
  auto d = std::make_shared<msg::dispatcher>();
  d->add(e);
  const msg::service svc{t, msg::target{.topic = "answer", .server = "s"}, d};
  msg::rpc_client client(t, msg::target{.topic = "answer"});

  asio::io_context io;
  auto work = asio::make_work_guard(io);
  std::thread io_thread([&io] { io.run(); });
  int reply = 0;
  {
    coport::coro_executor coros(svc, io.get_executor());
    coros.start();
    reply = client.async_call<int>("twice", msg::args("n", 21), asio::use_future).get();
    coros.async_stop(asio::use_future).get();
  }
  work.reset();
  io_thread.join();

  std::string refusal = "none";
  try {
    (void)msg::transport::create("rabbit://u:p@h/");
  } catch (const msg::invalid_url& err) {
    refusal = err.what();
  }
  std::printf("fiber-free consumer: reply %d, rabbit:// refused: %s\n", reply, refusal.c_str());
  return reply == 42 && refusal.find("needs coport::rabbit") != std::string::npos ? 0 : 1;
}
