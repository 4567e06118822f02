// The command line of every example program and of coport-demo, on CLI11:
// the same --help layout and --version line everywhere, and one answer to a
// command line a program cannot use:
//
//   <program>: <message>              (on stderr)
//   Run with --help for more information.
//
// with exit status 64 (sysexits' EX_USAGE). A program builds its CLI::App,
// calls setup() on it, adds its options and runs parse():
//
//   CLI::App app("what the program does", "coport-example-listener");
//   cli::setup(app);
//   app.add_option("--count", c.count, "...")->check(cli::count());
//   if (const auto status = cli::parse(app, argc, argv, check)) return *status;
//
// COPORT_VERSION (the project's version) comes from examples/cli.cmake.
#ifndef COPORT_EXAMPLES_CLI_HPP
#define COPORT_EXAMPLES_CLI_HPP

#include <CLI/CLI.hpp>
#include <boost/asio/ip/address.hpp>

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#ifndef COPORT_VERSION
#error "COPORT_VERSION is not defined: link the program to coport_example_cli (examples/cli.cmake)"
#endif

namespace coport_example::cli {

/// The exit status of a command line the program cannot use.
inline constexpr int exit_usage = 64;

/// A command line the program cannot use, found by the program's own checks
/// (a value only it can judge, options that go together). parse() reports
/// it as it reports CLI11's errors.
class usage_error : public CLI::ValidationError {
 public:
  explicit usage_error(const std::string& message) : CLI::ValidationError(message) {}
};

/// Reports a command line `program` cannot use, in the form every program
/// uses, and returns exit_usage: for a check made after parse() returned.
inline int report_usage_error(std::string_view program, std::string_view message) {
  std::fprintf(stderr, "%.*s: %.*s\nRun with --help for more information.\n", static_cast<int>(program.size()),
               program.data(), static_cast<int>(message.size()), message.data());
  std::fflush(stderr);
  return exit_usage;
}

/// "<program> <version>", what --version prints.
inline std::string version_text(const CLI::App& app) { return app.get_name() + " " + COPORT_VERSION; }

/// The help layout of the programs: the usage line first, spelled out
/// ("usage: coport-example-listener --transport URL --topic TOPIC
/// [--pool NAME] ..."), then the description, the arguments, the commands
/// with their own synopsis ("report [--json]"), and the options. Lines of at
/// most 80 columns when the descriptions' lines are (52 columns each).
class formatter : public CLI::Formatter {
 public:
  formatter() {
    label("Positionals", "Arguments");
    column_width(28);
  }

  /// The words of `app`'s synopsis: its options (bracketed unless
  /// required, "..." when repeatable), its positionals, then "COMMAND ..."
  /// when it has commands. --help and --version are left out.
  static std::vector<std::string> synopsis(const CLI::App* app) {
    std::vector<std::string> words;
    for (const bool positional : {false, true}) {
      for (const CLI::Option* opt : app->get_options()) {
        if (opt->get_group().empty() || opt->get_positional() != positional) continue;  // hidden, or later
        if (opt == app->get_help_ptr() || opt == app->get_help_all_ptr() || opt == app->get_version_ptr()) continue;
        std::string word = opt->get_name(positional);
        if (!positional && opt->get_type_size() != 0) {
          const std::string value = opt->get_option_text().empty() ? opt->get_type_name() : opt->get_option_text();
          if (!value.empty()) word += " " + value;
        }
        if (!opt->get_required()) word = "[" + word + "]";
        if (opt->get_expected_max() >= CLI::detail::expected_max_vector_size) word += "...";
        words.push_back(std::move(word));
      }
    }
    if (!app->get_subcommands([](const CLI::App* s) { return !s->get_name().empty(); }).empty()) {
      words.emplace_back("COMMAND ...");
    }
    return words;
  }

  std::string make_usage(const CLI::App* app, std::string name) const override {
    // Lines of at most 80 columns, the continuation lines under the first
    // word after the name.
    std::string out = "usage: " + name;
    const std::size_t indent = out.size() + 1;
    std::size_t line_start = 0;
    for (const std::string& word : synopsis(app)) {
      if (out.size() - line_start + 1 + word.size() > 80 && out.size() - line_start > indent) {
        out += "\n";
        line_start = out.size();
        out += std::string(indent - 1, ' ');
      }
      out += " " + word;
    }
    return out + "\n";
  }

  // A positional's line has its name only, no type ("ORDERS", not
  // "ORDERS INT").
  std::string make_option(const CLI::Option* opt, bool is_positional) const override {
    if (!is_positional) return CLI::Formatter::make_option(opt, is_positional);
    std::stringstream out;
    CLI::detail::format_help(out, make_option_name(opt, true), make_option_desc(opt), column_width_);
    return out.str();
  }

  std::string make_subcommand(const CLI::App* sub) const override {
    std::string name = sub->get_name();
    for (const std::string& word : synopsis(sub)) name += " " + word;
    std::stringstream out;
    CLI::detail::format_help(out, name, sub->get_description(), column_width_);
    return out.str();
  }

  std::string make_help(const CLI::App* app, std::string name, CLI::AppFormatMode mode) const override {
    if (mode == CLI::AppFormatMode::Sub) return make_expanded(app);
    std::string out = make_usage(app, name);
    if (const std::string description = make_description(app); !description.empty()) out += "\n" + description;
    out += make_positionals(app);
    out += make_subcommands(app, mode);
    out += make_groups(app, mode);
    if (const std::string footer = make_footer(app); !footer.empty()) out += "\n" + footer;
    return out;
  }
};

struct setup_options {
  /// --version prints version_text(); false for a program whose --version
  /// means something else (it throws CLI::CallForVersion itself).
  bool version_flag = true;
  /// Applied to every message about a bad command line before it is
  /// printed, e.g. to mask the password of a transport URL given in the
  /// wrong place.
  std::function<std::string(const std::string&)> redact;
};

/// What every program's CLI::App has: --help (-h), --version, the help
/// layout, the form of the error message, commands listed as "Commands".
inline void setup(CLI::App& app, setup_options options = {}) {
  app.set_help_flag("-h,--help", "print this help and exit");
  if (options.version_flag) {
    app.set_version_flag("--version", version_text(app), "print the program's name and version and exit");
  }
  app.formatter(std::make_shared<formatter>());
  app.group("Commands");  // the group of the commands added after this call
  app.failure_message([redact = std::move(options.redact)](const CLI::App* a, const CLI::Error& e) {
    // a is the program's App even when the error is a command's.
    const std::string message = redact ? redact(e.what()) : std::string(e.what());
    return a->get_name() + ": " + message + "\nRun with --help for more information.\n";
  });
}

/// Parses the command line with `app`, then runs `check`, the checks CLI11
/// cannot make (they throw usage_error). Returns the status main() is to
/// return when the program is not to run: 0 after --help or --version
/// (printed on stdout), exit_usage after a command line it cannot use
/// (reported on stderr); std::nullopt when the program is to run.
inline std::optional<int> parse(CLI::App& app, int argc, const char* const* argv,
                                const std::function<void()>& check = {}) {
  try {
    app.parse(argc, argv);
    if (check) check();
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : exit_usage;
  }
  return std::nullopt;
}

// ------------------------------------------------------------- validators
// Each returns what is wrong with a value, which CLI11 prefixes with the
// option's name ("--threads: expects a whole number of at least 1, got
// '0'").

/// A whole number of at least `min`.
inline CLI::Validator count(std::size_t min = 1) {
  return CLI::Validator(
      [min](std::string& text) -> std::string {
        std::size_t n = 0;
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
        if (ec == std::errc() && end == text.data() + text.size() && n >= min) return {};
        return "expects a whole number of at least " + std::to_string(min) + ", got '" + text + "'";
      },
      "");
}

/// A number of seconds above `above` (and at most a billion).
inline CLI::Validator seconds(double above = 0) {
  return CLI::Validator(
      [above](std::string& text) -> std::string {
        std::size_t used = 0;
        double s = 0;
        try {
          s = std::stod(text, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used != 0 && used == text.size() && s > above && s <= 1e9) return {};
        std::ostringstream bound;
        bound << above;
        return "expects a number of seconds above " + bound.str() + ", got '" + text + "'";
      },
      "");
}

/// One of `words` ("expects fiber or coro, got 'x'").
inline CLI::Validator one_of(std::initializer_list<std::string_view> words) {
  std::vector<std::string> allowed(words.begin(), words.end());
  return CLI::Validator(
      [allowed](std::string& text) -> std::string {
        std::string list;
        for (std::size_t i = 0; i < allowed.size(); ++i) {
          if (allowed[i] == text) return {};
          list += (i == 0 ? "" : i + 1 == allowed.size() ? " or " : ", ") + allowed[i];
        }
        return "expects " + list + ", got '" + text + "'";
      },
      "");
}

/// An address to listen on: "HOST:PORT", an IPv6 host in brackets
/// ("[::1]:9100"); port 0 lets the system choose.
struct listen_address {
  std::string host;
  std::uint16_t port = 0;
};

/// Reads "HOST:PORT"; std::nullopt unless HOST is an IP address and PORT a
/// number up to 65535.
inline std::optional<listen_address> parse_listen_address(std::string_view text) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  std::string_view host = text.substr(0, colon);
  const std::string_view port = text.substr(colon + 1);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return std::nullopt;
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return std::nullopt;  // an IPv6 address without its brackets
  }
  unsigned n = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), n);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || n > 65535) return std::nullopt;
  boost::system::error_code bad;
  boost::asio::ip::make_address(std::string(host), bad);
  if (bad) return std::nullopt;
  return listen_address{std::string(host), static_cast<std::uint16_t>(n)};
}

/// "HOST:PORT" as parse_listen_address() reads it.
inline CLI::Validator listen_address_check();

/// --http HOST:PORT, the address of the admin HTTP server (coport::admin),
/// read into `text`; `after_start` says what the program does once it
/// serves (a help line fragment, or empty).
inline CLI::Option* add_http_option(CLI::App& app, std::string& text, const std::string& after_start = "") {
  return app
      .add_option("--http", text,
                  "serve /metrics, the /migration dashboard and POST\n"
                  "/policy on HOST:PORT (port 0: one the system\n"
                  "chooses, printed)" +
                      after_start +
                      ";\n"
                      "policy changes need the token in\n"
                      "$COPORT_ADMIN_TOKEN")
      ->type_name("HOST:PORT")
      ->check(listen_address_check());
}

/// "HOST:PORT" as parse_listen_address() reads it.
inline CLI::Validator listen_address_check() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        if (parse_listen_address(text)) return {};
        return "expects HOST:PORT with an IP address (IPv6 in brackets) and a port up to 65535, got '" + text +
               "'";
      },
      "");
}

}  // namespace coport_example::cli

#endif
