// Leftover legacy code in a fiber-free build: each REMOVED_<call> variant
// uses one fiber-only call and must fail to compile with a message that
// names it (tests/nofibers/CMakeLists.txt); with none defined the file is
// ported code and compiles.
#include <coport/bridge/await.hpp>
#include <coport/bridge/channel.hpp>
#include <coport/bridge/event.hpp>
#include <coport/bridge/fiber.hpp>
#include <coport/bridge/hosted.hpp>
#include <coport/bridge/mutex.hpp>
#include <coport/bridge/runtime.hpp>
#include <coport/bridge/spawn.hpp>
#include <coport/bridge/status_channel.hpp>
#include <coport/bridge/use_fiber.hpp>
#include <coport/migration/point.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <mutex>

namespace asio = boost::asio;
namespace bridge = coport::bridge;

asio::awaitable<int> ported(bridge::runtime& rt, bridge::mutex& m, bridge::event& ev,
                            bridge::channel<int>& ch) {
  auto lk = co_await m.scoped_lock();
  co_await ev.async_wait(asio::use_awaitable);
  co_await ch.async_push(1, asio::use_awaitable);
  asio::steady_timer t(rt.get_executor(), std::chrono::milliseconds(1));
  co_await t.async_wait(asio::use_awaitable);
  co_return co_await ch.async_pop(asio::use_awaitable);
}

int legacy(bridge::runtime& rt, bridge::mutex& m, bridge::event& ev, bridge::channel<int>& ch) {
  (void)rt, (void)m, (void)ev, (void)ch;
#if defined(REMOVED_RUN_IN_FIBER)
  auto aw = bridge::run_in_fiber([] { return 1; });
#elif defined(REMOVED_NAMED_RUN_IN_FIBER)
  auto aw = bridge::run_in_fiber(bridge::work("legacy.parse"), [] { return 1; });
#elif defined(REMOVED_WORK_SCOPE)
  bridge::this_fiber::work_scope scope("kv.flusher");
#elif defined(REMOVED_SPAWN_FIBER)
  bridge::spawn_fiber(rt.get_executor(), [] {});
#elif defined(REMOVED_AWAIT)
  return bridge::await(ported(rt, m, ev, ch));
#elif defined(REMOVED_USE_FIBER)
  asio::steady_timer t(rt.get_executor(), std::chrono::milliseconds(1));
  t.async_wait(bridge::use_fiber);
#elif defined(REMOVED_MUTEX_LOCK)
  std::lock_guard lk(m);
#elif defined(REMOVED_EVENT_WAIT)
  ev.wait();
#elif defined(REMOVED_CHANNEL_POP)
  return ch.pop();
#elif defined(REMOVED_SLEEP_FOR)
  bridge::this_fiber::sleep_for(std::chrono::milliseconds(1));
#elif defined(REMOVED_STATUS_CHANNEL)
  bridge::status_channel<int> status(ch);
#elif defined(REMOVED_POINT_LEGACY_FORM)
  coport::migration::registry reg("x");
  using point_t = coport::migration::point<int(int)>;
  point_t p(reg, "p", point_t::forms{.legacy = [](int x) { return x; }}, rt);
#elif defined(REMOVED_POINT_CALL)
  coport::migration::registry reg("x");
  using point_t = coport::migration::point<int(int)>;
  point_t p(reg, "p", point_t::forms{.ported = [](int x) -> asio::awaitable<int> { co_return x; }}, rt);
  return p.call(1);
#endif
  return 0;
}
