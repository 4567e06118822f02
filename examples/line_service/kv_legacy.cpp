// Stage 1 of the line-protocol service: legacy code on Boost.Fiber's own
// Asio integration (the round_robin scheduler and yield token of
// Boost.Fiber's examples/asio, which this build takes from Debian's
// libboost1.81-doc). A fiber per connection, a map under a fiber mutex, a
// channel to a flusher fiber, a future from a worker fiber; SIGTERM stops
// it: no new connections, open ones closed, every queued SET flushed.
//
// Stage 2 is this file moved onto coport's runtime by a substitution of
// five kinds of lines (tests/boost_examples/port.py), nothing else.

#include <boost/asio.hpp>
#include <boost/fiber/all.hpp>

#include "round_robin.hpp"
#include "yield.hpp"

#include "kv_store.hpp"

#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>

using boost::asio::ip::tcp;
namespace fibers = boost::fibers;

namespace {

struct store {
  fibers::mutex mtx;  // guards values and clients
  fibers::condition_variable sessions_ended;
  std::map<std::string, std::string> values;
  std::set<std::shared_ptr<tcp::socket>> clients;
  bool accepting = true;

  fibers::buffered_channel<std::string> to_flush{1024};
  fibers::mutex flush_mtx;  // guards the counts below
  fibers::condition_variable flush_progress;
  unsigned long long queued = 0;
  unsigned long long flushed = 0;
  bool flusher_done = false;
};

std::string handle(store& s, const std::string& line) {
  const auto w = kv::words(line);
  if (w.size() == 3 && w[0] == "SET") {
    {
      std::unique_lock<fibers::mutex> lk(s.mtx);
      s.values[w[1]] = w[2];
    }
    {
      std::unique_lock<fibers::mutex> lk(s.flush_mtx);
      ++s.queued;
    }
    if (s.to_flush.push(w[1] + "=" + w[2]) != fibers::channel_op_status::success) return "ERROR stopping";
    return "OK";
  }
  if (w.size() == 2 && w[0] == "GET") {
    std::unique_lock<fibers::mutex> lk(s.mtx);
    auto it = s.values.find(w[1]);
    return it == s.values.end() ? "NONE" : "VALUE " + it->second;
  }
  if (w.size() == 3 && w[0] == "INCR") {
    const long long n = kv::amount(w[2]);
    std::unique_lock<fibers::mutex> lk(s.mtx);
    auto it = s.values.find(w[1]);
    const long long before = it == s.values.end() ? 0 : kv::amount(it->second);
    boost::this_fiber::yield();  // other fibers run here: only the lock keeps the update whole
    s.values[w[1]] = std::to_string(before + n);
    return "VALUE " + std::to_string(before + n);
  }
  if (w.size() == 1 && w[0] == "STATS") {
    auto keys = fibers::async([&s] {
      std::unique_lock<fibers::mutex> lk(s.mtx);
      return s.values.size();
    });
    return "STATS keys=" + std::to_string(keys.get());
  }
  if (w.size() == 1 && w[0] == "FLUSH") {
    std::unique_lock<fibers::mutex> lk(s.flush_mtx);
    const unsigned long long target = s.queued;
    s.flush_progress.wait(lk, [&] { return s.flushed >= target; });
    return "FLUSHED " + std::to_string(s.flushed);
  }
  return "ERROR unknown request: " + line;
}

void flusher(store& s) {
  std::string entry;
  while (s.to_flush.pop(entry) == fibers::channel_op_status::success) {
    boost::this_fiber::yield();  // stands for the write to disk
    std::unique_lock<fibers::mutex> lk(s.flush_mtx);
    ++s.flushed;
    s.flush_progress.notify_all();
  }
  std::unique_lock<fibers::mutex> lk(s.flush_mtx);
  s.flusher_done = true;
  s.flush_progress.notify_all();
}

void session(store& s, std::shared_ptr<tcp::socket> sock) {
  boost::asio::streambuf in;
  for (;;) {
    boost::system::error_code ec;
    boost::asio::async_read_until(*sock, in, '\n', boost::fibers::asio::yield[ec]);
    if (ec) break;
    std::istream lines(&in);
    std::string line;
    std::getline(lines, line);
    std::string reply;
    try {
      reply = handle(s, line);
    } catch (const std::exception& e) {
      reply = std::string("ERROR ") + e.what();
    }
    reply += '\n';
    boost::asio::async_write(*sock, boost::asio::buffer(reply), boost::fibers::asio::yield[ec]);
    if (ec) break;
  }
  std::unique_lock<fibers::mutex> lk(s.mtx);
  s.clients.erase(sock);
  s.sessions_ended.notify_all();
}

void accept_clients(store& s, tcp::acceptor& acceptor, std::shared_ptr<boost::asio::io_context> io_ctx) {
  for (;;) {
    auto sock = std::make_shared<tcp::socket>(*io_ctx);
    boost::system::error_code ec;
    acceptor.async_accept(*sock, boost::fibers::asio::yield[ec]);
    std::unique_lock<fibers::mutex> lk(s.mtx);
    if (ec) {  // closed: stopping
      s.accepting = false;
      s.sessions_ended.notify_all();
      return;
    }
    s.clients.insert(sock);
    fibers::fiber(session, std::ref(s), sock).detach();
  }
}

// Waits for SIGTERM or SIGINT, then stops in order: no new connections,
// open ones closed, their sessions ended, everything queued flushed. Every
// fiber has ended before the io_context stops: one still waiting for a
// completion then would wait forever, and the thread's scheduler waits for
// all its fibers when the thread exits.
void stop_on_signal(store& s, tcp::acceptor& acceptor, int signal_fd, std::shared_ptr<boost::asio::io_context> io_ctx) {
  boost::asio::posix::stream_descriptor signals(*io_ctx, signal_fd);
  boost::system::error_code ec;
  signals.async_wait(boost::asio::posix::descriptor_base::wait_read, boost::fibers::asio::yield[ec]);
  std::cout << "stopping" << std::endl;
  acceptor.close();
  {
    std::unique_lock<fibers::mutex> lk(s.mtx);
    for (const auto& c : s.clients) c->close();
    s.sessions_ended.wait(lk, [&] { return s.clients.empty() && !s.accepting; });
  }
  {
    std::unique_lock<fibers::mutex> lk(s.flush_mtx);
    s.flush_progress.wait(lk, [&] { return s.flushed >= s.queued; });
  }
  s.to_flush.close();
  {
    std::unique_lock<fibers::mutex> lk(s.flush_mtx);
    s.flush_progress.wait(lk, [&] { return s.flusher_done; });
  }
  io_ctx->stop();
}

}  // namespace

int main() {
  try {
    const int signal_fd = kv::stop_signal_fd();
    std::shared_ptr<boost::asio::io_context> io_ctx = std::make_shared<boost::asio::io_context>();
    boost::fibers::use_scheduling_algorithm< boost::fibers::asio::round_robin >( io_ctx);
    store s;
    tcp::acceptor acceptor(*io_ctx, tcp::endpoint(boost::asio::ip::address_v4::loopback(), 0));
    std::cout << "listening on " << acceptor.local_endpoint().port() << std::endl;
    fibers::fiber(flusher, std::ref(s)).detach();
    fibers::fiber(accept_clients, std::ref(s), std::ref(acceptor), io_ctx).detach();
    fibers::fiber(stop_on_signal, std::ref(s), std::ref(acceptor), signal_fd, io_ctx).detach();
    io_ctx->run();
    std::cout << "stopped: " << s.queued << " queued, " << s.flushed << " flushed" << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "kv: " << e.what() << std::endl;
    return 1;
  }
}
