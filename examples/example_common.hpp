// What the three example programs (coport-example-server, -client,
// -listener) and coport-demo share: exit codes, command-line checks of
// names and URLs (on cli.hpp), opening the transport and writing lines on
// stdout.
#ifndef COPORT_EXAMPLES_EXAMPLE_COMMON_HPP
#define COPORT_EXAMPLES_EXAMPLE_COMMON_HPP

#include "cli.hpp"

#include <coport/messaging/rabbit.hpp>
#include <coport/messaging/target.hpp>
#include <coport/messaging/transport.hpp>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

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

/// After a graceful stop: SIGTERM and SIGINT are ignored while the program
/// tears down and exits, so that a repeated signal (a supervisor that
/// signals twice) cannot kill it half-way and turn exit status 0 into a
/// death by signal. Call it after clearing the signal_set, whose removal
/// would restore the default action.
inline void ignore_stop_signals() {
  std::signal(SIGTERM, SIG_IGN);
  std::signal(SIGINT, SIG_IGN);
}

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
