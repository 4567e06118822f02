// What the three example programs (coport-example-server, -client,
// -listener) share: command-line helpers, exit codes, opening the transport
// and writing lines on stdout.
#ifndef COPORT_EXAMPLES_EXAMPLE_COMMON_HPP
#define COPORT_EXAMPLES_EXAMPLE_COMMON_HPP

#include <coport/messaging/target.hpp>
#include <coport/messaging/transport.hpp>

#include <charconv>
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
  exit_remote_error = 1,  ///< client: the remote method raised
  exit_timeout = 2,       ///< client: no reply in time
  exit_failure = 3,       ///< the transport could not be opened, bad JSON, any other error
  exit_usage = 64,        ///< a command line the program cannot use (sysexits' EX_USAGE)
};

/// A command line the program cannot use; main prints it with the usage
/// text and exits with exit_usage.
class usage_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// After a graceful stop: SIGTERM and SIGINT are ignored while the program
/// tears down and exits, so that a repeated signal (a supervisor that
/// signals twice) cannot kill it half-way and turn exit status 0 into a
/// death by signal. Call it after clearing the signal_set, whose removal
/// would restore the default action.
inline void ignore_stop_signals() {
  std::signal(SIGTERM, SIG_IGN);
  std::signal(SIGINT, SIG_IGN);
}

/// True when the command line asks for the help text (--help or -h).
inline bool wants_help(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--help" || a == "-h") return true;
  }
  return false;
}

/// True for a word that starts an option ("--topic").
inline bool is_option(std::string_view word) { return word.starts_with("--"); }

/// The value after option argv[i] (which it steps over), or a usage_error.
inline std::string option_value(int argc, char** argv, int& i) {
  if (i + 1 >= argc) throw usage_error(std::string(argv[i]) + " needs a value");
  return argv[++i];
}

/// `text` as a whole number of at least `min`, or a usage_error naming
/// `option`.
inline std::size_t parse_count(std::string_view option, std::string_view text, std::size_t min = 1) {
  std::size_t n = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || end != text.data() + text.size() || n < min) {
    throw usage_error(std::string(option) + " expects a whole number of at least " + std::to_string(min) +
                      ", got '" + std::string(text) + "'");
  }
  return n;
}

/// `text` as a number of seconds above `above`, or a usage_error naming
/// `option`.
inline double parse_seconds(std::string_view option, const std::string& text, double above = 0) {
  std::size_t used = 0;
  double s = 0;
  try {
    s = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || !(s > above) || s > 1e9) {
    throw usage_error(std::string(option) + " expects a number of seconds above " + std::to_string(above) +
                      ", got '" + text + "'");
  }
  return s;
}

/// Checks a topic, server, pool or exchange name given on the command line
/// (the rules of coport::messaging::validate_name), as a usage_error.
inline void check_name(std::string_view option, const std::string& name) {
  try {
    coport::messaging::validate_name(option, name);
  } catch (const std::exception& e) {
    throw usage_error(e.what());
  }
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
