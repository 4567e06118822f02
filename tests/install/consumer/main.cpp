// Built against an installed coport: a fiber awaits a coroutine that awaits
// fiber work.
#include <coport/bridge/bridge.hpp>

#include <boost/asio/use_future.hpp>

#include <cstdio>

namespace asio = boost::asio;
namespace bridge = coport::bridge;

asio::awaitable<int> ported() { co_return 1 + co_await bridge::run_in_fiber([] { return 40; }); }

int main() {
  bridge::runtime rt;
  auto v = bridge::async_run_in_fiber(rt.get_executor(), [] { return bridge::await(ported()) + 1; },
                                      asio::use_future);
  const int result = v.get();
  std::printf("consumer result %d\n", result);
  return result == 42 ? 0 : 1;
}
