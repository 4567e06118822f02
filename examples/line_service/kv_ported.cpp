// Stage 4 of the line-protocol service: fully ported. No fiber is left:
// the acceptor, each connection, the flusher and the STATS worker are
// coroutines on one coport runtime run on the main thread; the map is
// guarded by a bridge::mutex held across co_await; SETs and FLUSH markers
// go to the flusher through a bridge::channel; STATS and FLUSH wait for
// their answer on a bridge::event where stage 1 waited on a fiber future
// and condition variable. INCR and GET stay migration points, now with
// their ported form alone, so the report at exit judges the service ready
// for removing Boost.Fiber. SIGTERM or SIGINT (an asio::signal_set) stops
// it as stage 1 does: no new connections, open ones closed, every queued
// SET flushed; then the report, then exit 0.
//
// It uses only the coroutine side of the bridge (runtime, spawn, mutex,
// channel, event, migration::point's ported form), which the build of the
// bridge without Boost.Fiber keeps.

#include <coport/bridge/channel.hpp>
#include <coport/bridge/event.hpp>
#include <coport/bridge/mutex.hpp>
#include <coport/bridge/runtime.hpp>
#include <coport/bridge/spawn.hpp>
#include <coport/migration/point.hpp>

#include "kv_store.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <csignal>
#include <iostream>
#include <istream>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>

using boost::asio::ip::tcp;
namespace asio = boost::asio;
namespace bridge = coport::bridge;
namespace migration = coport::migration;

namespace {

// A request line longer than this gets an error reply and the connection
// is closed, instead of the buffer growing without bound.
constexpr std::size_t max_line = 64 * 1024;

// One flusher entry: a SET to write, or a FLUSH marker to answer once
// everything queued before it is written.
struct entry {
  std::string line;
  std::shared_ptr<bridge::event> done;
};

// Everything runs on the one loop thread, so the counters need no atomics;
// the mutex is for what a co_await may interleave (INCR's read-modify-write).
struct store {
  explicit store(const asio::any_io_executor& ex) : mtx(ex), sessions_ended(ex, true), to_flush(ex, 1024), flusher_done(ex) {}
  bridge::mutex mtx;  // guards values, clients and accepting
  bridge::event sessions_ended;  // set while no session runs
  std::map<std::string, std::string> values;
  std::set<std::shared_ptr<tcp::socket>> clients;
  bool accepting = true;
  bridge::channel<entry> to_flush;
  bridge::event flusher_done;
  unsigned long long queued = 0;   // SETs the channel accepted
  unsigned long long flushed = 0;  // SETs the flusher wrote
};

using incr_point = migration::point<long long(std::string, long long)>;
using get_point = migration::point<std::string(std::string)>;

// INCR, ported form: a read-modify-write across a co_await, kept whole by
// the lock alone.
asio::awaitable<long long> incr(store& s, std::string key, long long n) {
  auto lk = co_await s.mtx.scoped_lock();
  auto it = s.values.find(key);
  const long long before = it == s.values.end() ? 0 : kv::amount(it->second);
  long long total = 0;
  if (__builtin_add_overflow(before, n, &total)) throw std::out_of_range("INCR overflows " + key);
  const auto ex = co_await asio::this_coro::executor;
  co_await asio::post(ex, asio::use_awaitable);  // other coroutines run here
  s.values[key] = std::to_string(total);
  co_return total;
}

// GET, ported form.
asio::awaitable<std::string> get(store& s, std::string key) {
  auto lk = co_await s.mtx.scoped_lock();
  auto it = s.values.find(key);
  if (it == s.values.end()) co_return "NONE";
  co_return "VALUE " + it->second;
}

// STATS' worker: a coroutine of its own, as stage 1's fiber worker was; it
// answers through `answer`, which the requesting session waits on.
struct stats_answer {
  explicit stats_answer(const asio::any_io_executor& ex) : ready(ex) {}
  bridge::event ready;
  std::size_t keys = 0;
};

asio::awaitable<void> count_keys(store& s, std::shared_ptr<stats_answer> answer) {
  auto lk = co_await s.mtx.scoped_lock();
  answer->keys = s.values.size();
  answer->ready.set();
}

struct service {
  store& s;
  incr_point& incr;
  get_point& get;
  bridge::loop_executor stats_ex;

  asio::awaitable<std::string> handle(std::string line) {
    const auto w = kv::words(line);
    if (w.size() == 3 && w[0] == "SET") {
      {
        auto lk = co_await s.mtx.scoped_lock();
        s.values[w[1]] = w[2];
      }
      entry e{w[1] + "=" + w[2], nullptr};  // named: no aggregate temporary in a co_await (g++ 12)
      auto [ec] = co_await s.to_flush.async_push(std::move(e), asio::as_tuple(asio::use_awaitable));
      if (ec) co_return "ERROR stopping";
      ++s.queued;
      co_return "OK";
    }
    if (w.size() == 2 && w[0] == "GET") co_return co_await get.async_call(w[1]);
    if (w.size() == 3 && w[0] == "INCR") {
      const long long n = kv::amount(w[2]);
      const long long total = co_await incr.async_call(w[1], n);
      co_return "VALUE " + std::to_string(total);
    }
    if (w.size() == 1 && w[0] == "STATS") {
      auto answer = std::make_shared<stats_answer>(s.to_flush.get_executor());
      bridge::spawn(stats_ex, [&st = s, answer] { return count_keys(st, answer); });
      co_await answer->ready.async_wait(asio::use_awaitable);
      co_return "STATS keys=" + std::to_string(answer->keys);
    }
    if (w.size() == 1 && w[0] == "FLUSH") {
      auto done = std::make_shared<bridge::event>(s.to_flush.get_executor());
      entry marker{{}, done};
      auto [ec] = co_await s.to_flush.async_push(std::move(marker), asio::as_tuple(asio::use_awaitable));
      if (ec) co_return "ERROR stopping";
      co_await done->async_wait(asio::use_awaitable);
      co_return "FLUSHED " + std::to_string(s.flushed);
    }
    co_return "ERROR unknown request: " + line;
  }
};

// Drains the channel until it is closed and empty: a SET is written, a
// FLUSH marker answered (everything before it has been written).
asio::awaitable<void> flusher(store& s) {
  const auto ex = co_await asio::this_coro::executor;
  for (;;) {
    auto [ec, e] = co_await s.to_flush.async_pop(asio::as_tuple(asio::use_awaitable));
    if (ec) break;  // closed and drained
    if (e.done) {
      e.done->set();
      continue;
    }
    co_await asio::post(ex, asio::use_awaitable);  // stands for the write
    ++s.flushed;
  }
  s.flusher_done.set();
}

asio::awaitable<void> session(service& svc, std::shared_ptr<tcp::socket> sock) {
  asio::streambuf in(max_line);
  for (;;) {
    auto [ec, n] = co_await asio::async_read_until(*sock, in, '\n', asio::as_tuple(asio::use_awaitable));
    std::string reply;
    bool last = false;
    if (ec == asio::error::not_found) {  // no newline within max_line
      reply = "ERROR line longer than " + std::to_string(max_line) + " bytes";
      last = true;
    } else if (ec) {
      break;  // the peer closed, or stopping
    } else {
      std::istream lines(&in);
      std::string line;
      std::getline(lines, line);
      try {
        reply = co_await svc.handle(std::move(line));
      } catch (const std::exception& e) {
        reply = std::string("ERROR ") + e.what();
      }
    }
    reply += '\n';
    auto [wec, written] = co_await asio::async_write(*sock, asio::buffer(reply), asio::as_tuple(asio::use_awaitable));
    if (wec) break;
    if (last) {
      // Closing with the rest of the line unread would reset the
      // connection, and the peer could lose the reply: end our side, then
      // discard what the peer sends until it closes (or the stop does).
      boost::system::error_code ignored;
      sock->shutdown(tcp::socket::shutdown_send, ignored);
      std::array<char, 4096> discard;
      for (;;) {
        auto [rec, got] = co_await sock->async_read_some(asio::buffer(discard), asio::as_tuple(asio::use_awaitable));
        if (rec) break;
      }
      break;
    }
  }
  boost::system::error_code ignored;
  sock->close(ignored);
  auto lk = co_await svc.s.mtx.scoped_lock();
  svc.s.clients.erase(sock);
  if (svc.s.clients.empty()) svc.s.sessions_ended.set();
}

asio::awaitable<void> accept_clients(service& svc, tcp::acceptor& acceptor, bridge::loop_executor session_ex) {
  for (;;) {
    auto [ec, peer] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;  // closed: stopping
    if (ec) continue;  // this connection failed (e.g. reset before accept), not the acceptor
    auto sock = std::make_shared<tcp::socket>(std::move(peer));
    auto lk = co_await svc.s.mtx.scoped_lock();
    // An accept that completed just before the acceptor closed: the stop
    // has already closed the open connections, so this one is not served.
    if (!svc.s.accepting) co_return;
    svc.s.clients.insert(sock);
    svc.s.sessions_ended.reset();
    bridge::spawn(session_ex, [&svc, sock] { return session(svc, sock); });
  }
}

// Waits for SIGTERM or SIGINT, then stops in order: no new connections,
// open ones closed and their sessions ended, the channel closed once
// nothing can push to it and drained by the flusher, the report printed;
// only then the runtime stopped, whose stop would otherwise cancel the
// flusher with SETs still queued.
asio::awaitable<void> stop_on_signal(store& s, tcp::acceptor& acceptor, asio::signal_set& signals,
                                     bridge::runtime& rt, migration::registry& points) {
  auto [ec, signo] = co_await signals.async_wait(asio::as_tuple(asio::use_awaitable));
  if (ec) co_return;  // cancelled: the runtime is stopping anyway
  std::cout << "stopping on signal " << signo << std::endl;
  boost::system::error_code ignored;
  acceptor.close(ignored);
  {
    auto lk = co_await s.mtx.scoped_lock();
    s.accepting = false;
    for (const auto& c : s.clients) c->close(ignored);
  }
  co_await s.sessions_ended.async_wait(asio::use_awaitable);
  s.to_flush.close();  // pops still drain what was pushed
  co_await s.flusher_done.async_wait(asio::use_awaitable);
  std::cout << points.make_report().to_text() << std::flush;
  rt.stop();
}

}  // namespace

int main(int argc, char**) {
  if (argc > 1) {
    std::cerr << "usage: coport-kv-ported (no arguments; SIGTERM or SIGINT stops it)" << std::endl;
    return 64;
  }
  try {
    auto io = std::make_shared<asio::io_context>();
    bridge::runtime_options runtime_opts;
    runtime_opts.name = "kv";
    bridge::runtime rt(io, runtime_opts);  // this thread is the loop; run() below
    // Before "listening on": a client that sees the port may stop us at once.
    asio::signal_set signals(*io, SIGTERM, SIGINT);
    store s(rt.get_executor());
    // Only the ported forms: the legacy ones are gone, and the registry
    // runs each point's one form whatever the default policy.
    migration::registry points("kv");
    incr_point incr_p(points, "incr", {.ported = [&s](std::string k, long long n) { return incr(s, std::move(k), n); }},
                      rt);
    get_point get_p(points, "get",
                    {.ported = [&s](std::string k) { return get(s, std::move(k)); },
                     .describe = [](const std::string& k) { return boost::json::object{{"key", k}}; }},
                    rt);
    service svc{s, incr_p, get_p, rt.get_executor("kv.stats")};
    tcp::acceptor acceptor(*io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    std::cout << "listening on " << acceptor.local_endpoint().port() << std::endl;
    bridge::spawn(rt.get_executor("kv.flusher"), [&s] { return flusher(s); });
    bridge::spawn(rt.get_executor("kv.accept"),
                  [&svc, &acceptor, ex = rt.get_executor("kv.session")] { return accept_clients(svc, acceptor, ex); });
    bridge::spawn(rt.get_executor("kv.stop"), [&s, &acceptor, &signals, &rt, &points] {
      return stop_on_signal(s, acceptor, signals, rt, points);
    });
    rt.run();
    std::cout << "stopped: " << s.queued << " queued, " << s.flushed << " flushed" << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "coport-kv-ported: " << e.what() << std::endl;
    return 1;
  }
}
