// What the three example programs (coport-example-server, -client,
// -listener) and coport-demo share: exit codes, command-line checks of
// names and URLs (on cli.hpp), opening the transport and writing lines on
// stdout.
#ifndef COPORT_EXAMPLES_EXAMPLE_COMMON_HPP
#define COPORT_EXAMPLES_EXAMPLE_COMMON_HPP

#include "cli.hpp"

#include <coport/messaging/transport/rabbit.hpp>
#include <coport/messaging/wire/target.hpp>
#include <coport/messaging/transport/transport.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <pthread.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace coport_example {

/// Exit codes shared by the programs.
enum exit_code : int {
  exit_ok = 0,
  exit_remote_error = 1,         ///< client: the remote method raised
  exit_timeout = 2,              ///< client: no reply in time
  exit_failure = 3,              ///< the transport could not be opened, bad JSON, any other error
  exit_usage = cli::exit_usage,  ///< a command line the program cannot use (64, sysexits' EX_USAGE)
};

/// A command line the program cannot use (cli.hpp reports it).
using cli::usage_error;

/// SIGTERM and SIGINT, the signals that stop a program gracefully.
inline sigset_t stop_signal_set() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

/// Blocks SIGTERM and SIGINT in the calling thread and so in every thread
/// it starts afterwards, which inherit its mask: call it first in main,
/// before any thread starts (a transport's, an executor's), then read them
/// with stop_signals.
inline void block_stop_signals() {
  const sigset_t set = stop_signal_set();
  if (const int e = pthread_sigmask(SIG_BLOCK, &set, nullptr)) {
    throw std::system_error(e, std::system_category(), "blocking SIGTERM and SIGINT");
  }
}

/// SIGTERM and SIGINT taken without a signal handler: blocked in every
/// thread (block_stop_signals) and read from a signalfd on an executor.
///
/// Why not asio::signal_set: its handler runs asynchronously, on whichever
/// thread the kernel picks, and under ThreadSanitizer (which defers a
/// handler until the thread next enters one of its interceptors) a SIGTERM
/// sent right after "ready" was taken and its deferred handler run, and yet
/// the signal_set never completed: 2 to 4 runs in 20 of the example tests
/// stayed in epoll_wait for good. A blocked signal waits in the kernel until
/// it is read, whatever the threads are doing; and one repeated during the
/// teardown after a graceful stop stays pending instead of killing the
/// program half-way (which would turn exit status 0 into a death by signal).
class stop_signals {
 public:
  /// Requires block_stop_signals() to have been called on this thread.
  explicit stop_signals(const boost::asio::any_io_executor& ex) : desc_(ex, open()) {}

  /// Calls handler(error_code, signal number) when SIGTERM or SIGINT
  /// arrives (one sent before this call included), or with
  /// operation_aborted after cancel(). One wait at a time.
  template <class Handler>
  void async_wait(Handler handler) {
    desc_.async_wait(boost::asio::posix::descriptor_base::wait_read,
                     [this, handler = std::move(handler)](boost::system::error_code ec) mutable {
                       if (ec) return handler(ec, 0);
                       signalfd_siginfo info{};
                       if (::read(desc_.native_handle(), &info, sizeof info) != sizeof info) {
                         return async_wait(std::move(handler));  // nothing to read after all: wait again
                       }
                       handler(ec, static_cast<int>(info.ssi_signo));
                     });
  }

  /// Ends a pending async_wait with operation_aborted.
  void cancel() { desc_.cancel(); }

 private:
  static int open() {
    const sigset_t set = stop_signal_set();
    sigset_t blocked;
    pthread_sigmask(SIG_BLOCK, nullptr, &blocked);
    if (!sigismember(&blocked, SIGTERM) || !sigismember(&blocked, SIGINT)) {
      throw std::logic_error("stop_signals: call block_stop_signals() first, before any thread starts");
    }
    const int fd = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) throw std::system_error(errno, std::system_category(), "signalfd");
    return fd;
  }

  boost::asio::posix::stream_descriptor desc_;
};

/// A topic, server, pool or exchange name given on the command line, as a
/// CLI11 validator (the rules of coport::messaging::validate_name); an
/// empty value passes only when `may_be_empty`.
inline CLI::Validator name_rules(bool may_be_empty = false) {
  return CLI::Validator(
      [may_be_empty](std::string& name) -> std::string {
        if (name.empty()) return may_be_empty ? std::string() : "expects a name, got ''";
        try {
          coport::messaging::validate_name("name", name);
        } catch (const std::exception& e) {
          return e.what();
        }
        return {};
      },
      "");
}

/// `message` with the password of every URL in it masked: for the
/// messages about a command line, which may quote a transport URL.
inline std::string mask_passwords(const std::string& message) {
  std::string out;
  std::size_t pos = 0;
  while (pos < message.size()) {
    const std::size_t end = std::min(message.find(' ', pos), message.size());
    const std::string_view word = std::string_view(message).substr(pos, end - pos);
    out += word.find('@') == std::string_view::npos ? std::string(word) : coport::messaging::mask_url_password(word);
    if (end < message.size()) out += ' ';
    pos = end + 1;
  }
  return out;
}

/// Opens the transport of `url`. A non-empty `exchange` becomes the
/// transport's control exchange: the exchange of every target that names
/// none, RPC and notifications alike (oslo.messaging's control_exchange).
/// Throws what transport::create throws (its message masks passwords).
inline std::shared_ptr<coport::messaging::transport> open_transport(const std::string& url,
                                                                    const std::string& exchange) {
  coport::messaging::transport_options options;
  if (!exchange.empty()) options.control_exchange = exchange;
  return coport::messaging::transport::create(url, std::move(options));
}

/// Writes `line` and a newline on stdout at once: another process reads
/// these lines as they come.
inline void print_line(std::string_view line) {
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

}  // namespace coport_example

#endif
