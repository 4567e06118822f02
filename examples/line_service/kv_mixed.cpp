// Stage 3 of the line-protocol service: half ported, on coport's runtime.
// Connections are still fibers (use_fiber), but the shared state is
// guarded by a bridge::mutex that fibers lock() and coroutines co_await;
// the flusher is a coroutine popping a bridge::channel that fibers push
// with buffered_channel's status interface (bridge::status_channel); and
// two requests are migration points with both forms: INCR on canary (each
// call runs the fiber or the coroutine form, both updating the same map)
// and GET in shadow (the fiber form answers, the coroutine form is
// compared). SIGTERM stops it as stage 1 does, then prints the report.
//
//   coport-kv-mixed [--incr POLICY] [--get POLICY]
//
// Built with COPORT_KV_LEGACY_POINTS, it is the step before: both requests
// are migration points with their legacy forms only, and the hand-written
// coroutine forms are left out. tools/port builds that step through
// coport-port, which writes the two coroutine forms and registers them
// (coport-kv-mixed-generated), and load-tests them under shadow and ported.

#include <coport/bridge/bridge.hpp>
#include <coport/bridge/status_channel.hpp>
#include <coport/migration/point.hpp>

#include "kv_store.hpp"

#include <boost/asio.hpp>
#include <boost/fiber/all.hpp>

#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

using boost::asio::ip::tcp;
namespace asio = boost::asio;
namespace bridge = coport::bridge;
namespace migration = coport::migration;

namespace {

// One flusher entry: a SET to write, or a FLUSH marker to answer once
// everything before it is written.
struct entry {
  std::string line;
  std::shared_ptr<bridge::event> done;
};

struct store {
  explicit store(asio::any_io_executor ex) : mtx(ex), sessions_ended(ex), to_flush(ex, 1024), flusher_done(ex) {}
  bridge::mutex mtx;  // guards values and clients, in both worlds
  bridge::event sessions_ended;
  std::map<std::string, std::string> values;
  std::set<std::shared_ptr<tcp::socket>> clients;
  bridge::channel<entry> to_flush;
  bridge::event flusher_done;
  std::atomic<unsigned long long> queued{0};
  std::atomic<unsigned long long> flushed{0};
};

// INCR, legacy form: runs in the calling fiber.
long long incr_fiber(store& s, const std::string& key, long long n) {
  std::unique_lock<bridge::mutex> lk(s.mtx);
  auto it = s.values.find(key);
  const long long before = it == s.values.end() ? 0 : kv::amount(it->second);
  boost::this_fiber::yield();  // other fibers and coroutines run here
  s.values[key] = std::to_string(before + n);
  return before + n;
}

#ifndef COPORT_KV_LEGACY_POINTS
// INCR, ported form: the same update as a coroutine, under the same mutex.
asio::awaitable<long long> incr_coroutine(store& s, std::string key, long long n) {
  auto lk = co_await s.mtx.scoped_lock();
  auto it = s.values.find(key);
  const long long before = it == s.values.end() ? 0 : kv::amount(it->second);
  co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);  // an explicit yield
  s.values[key] = std::to_string(before + n);
  co_return before + n;
}
#endif

std::string get_fiber(store& s, const std::string& key) {
  std::unique_lock<bridge::mutex> lk(s.mtx);
  auto it = s.values.find(key);
  return it == s.values.end() ? "NONE" : "VALUE " + it->second;
}

#ifndef COPORT_KV_LEGACY_POINTS
asio::awaitable<std::string> get_coroutine(store& s, std::string key) {
  auto lk = co_await s.mtx.scoped_lock();
  auto it = s.values.find(key);
  co_return it == s.values.end() ? "NONE" : "VALUE " + it->second;
}
#endif

struct service {
  store& s;
  migration::point<long long(std::string, long long)>& incr;
  migration::point<std::string(std::string)>& get;

  std::string handle(const std::string& line) {
    const auto w = kv::words(line);
    bridge::status_channel<entry> flush(s.to_flush);
    if (w.size() == 3 && w[0] == "SET") {
      {
        std::unique_lock<bridge::mutex> lk(s.mtx);
        s.values[w[1]] = w[2];
      }
      ++s.queued;
      if (flush.push(entry{w[1] + "=" + w[2], nullptr}) != bridge::channel_op_status::success) return "ERROR stopping";
      return "OK";
    }
    if (w.size() == 2 && w[0] == "GET") return get.call(w[1]);
    if (w.size() == 3 && w[0] == "INCR") return "VALUE " + std::to_string(incr.call(w[1], kv::amount(w[2])));
    if (w.size() == 1 && w[0] == "STATS") {
      auto keys = boost::fibers::async([this] {
        std::unique_lock<bridge::mutex> lk(s.mtx);
        return s.values.size();
      });
      return "STATS keys=" + std::to_string(keys.get());
    }
    if (w.size() == 1 && w[0] == "FLUSH") {
      auto done = std::make_shared<bridge::event>(s.to_flush.get_executor());
      if (flush.push(entry{{}, done}) != bridge::channel_op_status::success) return "ERROR stopping";
      done->wait();
      return "FLUSHED " + std::to_string(s.flushed.load());
    }
    return "ERROR unknown request: " + line;
  }
};

// The ported flusher: a coroutine; it drains what was pushed before close.
asio::awaitable<void> flusher(store& s) {
  for (;;) {
    auto [ec, e] = co_await s.to_flush.async_pop(asio::as_tuple(asio::use_awaitable));
    if (ec) break;  // closed and drained
    if (e.done) {
      e.done->set();
      continue;
    }
    co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);  // stands for the write
    ++s.flushed;
  }
  s.flusher_done.set();
}

void session(service& svc, std::shared_ptr<tcp::socket> sock) {
  asio::streambuf in;
  for (;;) {
    boost::system::error_code ec;
    asio::async_read_until(*sock, in, '\n', bridge::use_fiber[ec]);
    if (ec) break;
    std::istream lines(&in);
    std::string line;
    std::getline(lines, line);
    std::string reply;
    try {
      reply = svc.handle(line);
    } catch (const std::exception& e) {
      reply = std::string("ERROR ") + e.what();
    }
    reply += '\n';
    asio::async_write(*sock, asio::buffer(reply), bridge::use_fiber[ec]);
    if (ec) break;
  }
  std::unique_lock<bridge::mutex> lk(svc.s.mtx);
  svc.s.clients.erase(sock);
  if (svc.s.clients.empty()) svc.s.sessions_ended.set();
}

void accept_clients(service& svc, tcp::acceptor& acceptor) {
  for (;;) {
    auto sock = std::make_shared<tcp::socket>(acceptor.get_executor());
    boost::system::error_code ec;
    acceptor.async_accept(*sock, bridge::use_fiber[ec]);
    if (ec) return;  // closed: stopping
    std::unique_lock<bridge::mutex> lk(svc.s.mtx);
    svc.s.clients.insert(sock);
    svc.s.sessions_ended.reset();
    boost::fibers::fiber(session, std::ref(svc), sock).detach();
  }
}

void stop_on_signal(store& s, tcp::acceptor& acceptor, int signal_fd, bridge::runtime& rt,
                    migration::registry& points) {
  asio::posix::stream_descriptor signals(acceptor.get_executor(), signal_fd);
  boost::system::error_code ec;
  signals.async_wait(asio::posix::descriptor_base::wait_read, bridge::use_fiber[ec]);
  std::cout << "stopping" << std::endl;
  acceptor.close();
  {
    std::unique_lock<bridge::mutex> lk(s.mtx);
    for (const auto& c : s.clients) c->close();
    if (s.clients.empty()) s.sessions_ended.set();
  }
  s.sessions_ended.wait();
  s.to_flush.close();  // pops still drain what was pushed
  s.flusher_done.wait();
  std::cout << points.make_report().to_text() << std::flush;
  rt.stop();
}

}  // namespace

int main(int argc, char** argv) {
  try {
    migration::registry_options opts{.policies = {{"incr", migration::policy::canary(50)},
                                                   {"get", migration::policy::shadow()}}};
    for (int i = 1; i + 1 < argc; i += 2) {
      const std::string flag = argv[i];
      if (flag != "--incr" && flag != "--get") throw std::invalid_argument("unknown option " + flag);
      opts.policies[flag.substr(2)] = migration::policy::parse(argv[i + 1]);
    }
    const int signal_fd = kv::stop_signal_fd();
    auto io = std::make_shared<asio::io_context>();
    bridge::runtime_options runtime_opts;
    runtime_opts.name = "kv";
    bridge::runtime rt(io, runtime_opts);
    store s(rt.get_executor());
    migration::registry points("kv", opts);
    migration::point<long long(std::string, long long)> incr(
        points, "incr",
        {.legacy = [&s](std::string k, long long n) { return incr_fiber(s, k, n); },
#ifndef COPORT_KV_LEGACY_POINTS
         .ported = [&s](std::string k, long long n) { return incr_coroutine(s, std::move(k), n); },
#endif
        },
        rt);
    migration::point<std::string(std::string)> get(
        points, "get",
        {.legacy = [&s](std::string k) { return get_fiber(s, k); },
#ifndef COPORT_KV_LEGACY_POINTS
         .ported = [&s](std::string k) { return get_coroutine(s, std::move(k)); },
#endif
         .describe = [](const std::string& k) { return boost::json::object{{"key", k}}; }},
        rt);
    service svc{s, incr, get};
    tcp::acceptor acceptor(*io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    std::cout << "listening on " << acceptor.local_endpoint().port() << std::endl;
    bridge::spawn(rt.get_executor("kv.flusher"), [&s] { return flusher(s); });
    boost::fibers::fiber(accept_clients, std::ref(svc), std::ref(acceptor)).detach();
    boost::fibers::fiber(stop_on_signal, std::ref(s), std::ref(acceptor), signal_fd, std::ref(rt), std::ref(points))
        .detach();
    rt.run();
    std::cout << "stopped: " << s.queued << " queued, " << s.flushed << " flushed" << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "coport-kv-mixed: " << e.what() << std::endl;
    return 1;
  }
}
