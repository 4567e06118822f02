// Built against an installed coport: a fiber awaits a coroutine that awaits
// fiber work; then one call through each executor; then rabbit:// gets the
// rabbit driver, which linking coport::rabbit brought without a call into it.
#include <coport/bridge/bridge.hpp>
#include <coport/coro_executor/coro_executor.hpp>
#include <coport/fiber_executor/fiber_executor.hpp>
#include <coport/messaging/rpc/client.hpp>
#include <coport/messaging/wire/errors.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <cstdio>
#include <string>
#include <thread>

namespace asio = boost::asio;
namespace bridge = coport::bridge;
namespace msg = coport::messaging;

asio::awaitable<int> ported() { co_return 1 + co_await bridge::run_in_fiber([] { return 40; }); }

int main() {
  bridge::runtime rt;
  auto v = bridge::async_run_in_fiber(rt.get_executor(), [] { return bridge::await(ported()) + 1; },
                                      asio::use_future);
  const int result = v.get();

  auto t = msg::transport::create("memory://consumer");
  auto e = std::make_shared<msg::endpoint>("answer");
  e->add("get", {}, []() -> asio::awaitable<int> { co_return 42; });
  auto d = std::make_shared<msg::dispatcher>();
  d->add(e);
  const msg::service svc{t, msg::target{.topic = "answer", .server = "s"}, d};
  msg::rpc_client client(t, msg::target{.topic = "answer"});

  coport::fiber_executor fibers(svc, rt);
  fibers.start();
  const int via_fibers = client.async_call<int>("get", msg::args(), asio::use_future).get();
  fibers.async_stop(asio::use_future).get();

  asio::io_context io;
  auto work = asio::make_work_guard(io);
  std::thread io_thread([&io] { io.run(); });
  int via_coroutines = 0;
  {
    coport::coro_executor coros(svc, io.get_executor());
    coros.start();
    via_coroutines = client.async_call<int>("get", msg::args(), asio::use_future).get();
    coros.async_stop(asio::use_future).get();
  }
  work.reset();
  io_thread.join();

  // Only the rabbit driver reads a rabbit:// query, and names a typo in it.
  bool rabbit = false;
  try {
    (void)msg::transport::create("rabbit://u:p@h/?hearbeat=5");
  } catch (const msg::invalid_url& e) {
    rabbit = std::string(e.what()).find("unknown parameter 'hearbeat'") != std::string::npos;
  }

  std::printf("consumer result %d, executors %d %d, rabbit driver %s\n", result, via_fibers, via_coroutines,
              rabbit ? "linked" : "missing");
  return result == 42 && via_fibers == 42 && via_coroutines == 42 && rabbit ? 0 : 1;
}
