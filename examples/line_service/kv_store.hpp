#ifndef COPORT_EXAMPLES_LINE_SERVICE_KV_STORE_HPP
#define COPORT_EXAMPLES_LINE_SERVICE_KV_STORE_HPP

// What every stage of the line-protocol service shares and what does not
// change while it is ported: parsing a request line, and stopping on
// SIGTERM or SIGINT read from a signalfd (the signals are blocked in every
// thread first, so one sent at any moment waits in the kernel until read).
//
// The protocol, one request per line, one reply line each:
//   SET key value  -> OK                 (also queued for the flusher)
//   GET key        -> VALUE v | NONE
//   INCR key n     -> VALUE total        (read-modify-write under the lock)
//   STATS          -> STATS keys=N       (computed by a worker, through a future)
//   FLUSH          -> FLUSHED N          (once every SET before it is flushed)
//   anything else  -> ERROR <what>

#include <sys/signalfd.h>

#include <csignal>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace kv {

/// A request line split into words.
inline std::vector<std::string> words(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

/// Parses INCR's amount; throws std::invalid_argument for anything but an integer.
inline long long amount(const std::string& text) {
  std::size_t used = 0;
  const long long n = std::stoll(text, &used);
  if (used != text.size()) throw std::invalid_argument("not an integer: " + text);
  return n;
}

/// Blocks SIGTERM and SIGINT in this thread and the threads it starts
/// later, and returns a signalfd that reads them.
inline int stop_signal_fd() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  const int fd = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::system_category(), "signalfd");
  return fd;
}

}  // namespace kv

#endif
