// coport-bench: the project's benchmark program.
//
//   coport-bench [--quick] [--json FILE] [--report DIR] [--no-rabbit] [--rabbit-cluster] [--repeat N]
//                [--clock wall|cpu] [--list] [--help] [--version] [NAME...]
//
// What it measures: the floors (a coroutine resume, a Boost.Context switch,
// a stock Boost.Fiber yield, an asio::post round trip, a cross-thread
// wake-up, stock channels, skynet on stock fibers and on a plain
// io_context) and coport's figures, each as a ratio to its floor or its
// alternative (Asio's own stackful/stackless crossings, for the bridge's);
// resident memory per parked request (child processes); in-process call
// latency per executor and method kind; the admin server's cost (calls
// while its /metrics is scraped, and one scrape of 1 000 points: its time
// against the same report as JSON, and its size); and, in a full run where
// rabbitmq-server is installed, RPC over a private broker against
// oslo.messaging and against rabbitmq-c alone (bench/rabbit_bench.py,
// coport-bench-amqp), and with --rabbit-cluster coport and oslo.messaging
// once more on a private three-node cluster with quorum queues, in the same
// run. --report writes the HTML page.
//
// Machines here are shared and noisy, so the figures that matter are ratios
// of two measurements taken back to back in the same run (docs/architecture.md,
// "Performance is stated as ratios"). The two sides of a ratio are measured
// one right after the other in every repeat (alternating which goes first),
// and the ratio reported is the median of the per-repeat ratios; an absolute
// ns figure is printed for orientation only. A measurement that is the
// baseline of several ratios is measured once per ratio per repeat.
//
// The program is split by family of benchmark, each in a file of its own
// that says what it measures: floors.cpp, bridge.cpp (yields, crossings),
// points.cpp (migration points), executors.cpp (messaging, executors, call
// latency), admin.cpp (the admin server, when built), channels.cpp,
// skynet.cpp, memory.cpp (parked requests) and rabbit.cpp
// (bench/rabbit_bench.py). bench.hpp is the kit they share and what they
// export, lists.cpp the benchmarks and ratios in run order, run.cpp the
// runner and its output, report_html.cpp the HTML page; this file reads the
// command line and runs the rest in order.

#include "bench.hpp"
#include "report_html.hpp"
#include "results.hpp"

#include <CLI/CLI.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace coport_bench {
namespace {

// ---------------------------------------------------------------------- main

/// Exit status of a bad command line (sysexits' EX_USAGE).
constexpr int exit_usage = 64;

/// A bad command line: `coport-bench: <message>` and a hint, on stderr.
int usage_error(const std::string& message) {
  std::fprintf(stderr, "coport-bench: %s\nRun 'coport-bench --help' for the options.\n", message.c_str());
  return exit_usage;
}

/// Reads the command line into `s`. Returns the exit status when the
/// program is to end here: 0 after --help or --version (printed on stdout),
/// exit_usage after a bad command line (reported on stderr).
std::optional<int> parse(int argc, char** argv, settings& s) {
  CLI::App app(
      "coport-bench: coport's benchmarks, each judged as a ratio to its floor or its alternative "
      "measured in the same run.",
      "coport-bench");
  app.set_version_flag("--version", "coport-bench " COPORT_BENCH_VERSION, "Print the version and exit");
  app.get_formatter()->column_width(22);
  app.add_flag("--quick", s.quick, "3 repeats of >= 10 ms measurements (default: 5 of >= 50 ms)");
  std::string json_path;
  app.add_option("--json", json_path, "also write one JSON object per result, one per line")->type_name("FILE");
  std::string report_dir;
  app.add_option("--report", report_dir,
                 "also write DIR/index.html (bar charts of the ratios against their aims, the tables, "
                 "the machine) and DIR/results.json")
      ->type_name("DIR");
  bool no_rabbit = false;
  app.add_flag("--no-rabbit", no_rabbit,
               "leave out the RabbitMQ figures (a full run includes them when rabbitmq-server is installed: "
               "a private broker, ~2 min)");
  bool rabbit_cluster = false;
  app.add_flag("--rabbit-cluster", rabbit_cluster,
               "also measure coport and oslo.messaging on a private three-node RabbitMQ cluster with quorum queues "
               "(~1.5 min more)");
  int repeats = 0;
  app.add_option("--repeat", repeats, "repeats of each measurement, 1 to 1000")
      ->type_name("N")
      ->check(CLI::Range(1, 1000).description(""));
  std::string clock = "wall";
  app.add_option("--clock", clock,
                 "wall: steady_clock (default); cpu: the measuring thread's CPU time, which leaves out "
                 "preemption on a busy machine")
      ->type_name("wall|cpu")
      ->check(CLI::IsMember({"wall", "cpu"}).description(""));
  app.add_flag("--list", s.list, "list the benchmarks and ratios, run nothing");
  // The child process of one memory figure; not for people.
  std::vector<std::string> parked;
  app.add_option("--parked", parked, "(internal) the child process of one memory figure")
      ->expected(2)
      ->type_name("KIND N")
      ->group("");
  app.add_option("NAME", s.filters,
                 "run the benchmarks whose name contains NAME (and the baselines of their ratios); "
                 "--list names them");
  app.footer(
      "Examples:\n"
      "  coport-bench --report perf/   full run: the table on stdout, perf/index.html, perf/results.json\n"
      "  coport-bench --quick          a quick run, < 1 min\n"
      "  coport-bench skynet chan      only the benchmarks whose name contains a word");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);  // --help, --version
    return usage_error(e.what());
  }
  if (!json_path.empty()) s.json_path = json_path;
  if (!report_dir.empty()) s.report_dir = report_dir;
  s.rabbit = !no_rabbit;
  s.rabbit_cluster = rabbit_cluster;
  s.cpu_clock = clock == "cpu";
  if (!parked.empty()) {
    char* end = nullptr;
    const long n = std::strtol(parked[1].c_str(), &end, 10);
    if (*end != '\0' || n < 1) return usage_error("--parked wants a kind and a count");
    s.parked.emplace(parked[0], static_cast<std::size_t>(n));
  }
  s.repeats = repeats > 0 ? repeats : (s.quick ? 3 : 5);
  return std::nullopt;
}

int run_main(int argc, char** argv) {
  settings parsed;
  if (const std::optional<int> status = parse(argc, argv, parsed)) return *status;
  const settings& s = parsed;
  if (s.parked) return parked_child(s.parked->first, s.parked->second);
  check_lists();
  if (s.quick) set_skynet_leaves(100'000);

  if (s.list) {
    print_list();
    return 0;
  }

  std::vector<const parked_spec*> parked;
  for (const auto& k : parked_kinds()) {
    if (wanted(s.filters, "memory.parked_" + std::string(k.kind))) parked.push_back(&k);
  }
  std::vector<const latency_spec*> latencies;
  for (const auto& l : latency_runs()) {
    if (wanted(s.filters, l.name)) latencies.push_back(&l);
  }
#if COPORT_BENCH_HAS_ADMIN
  const bool scrape_sized = wanted(s.filters, scrape_size_name);
#else
  const bool scrape_sized = false;
#endif
  // The broker figures take a minute and a broker: full runs, or by name.
  const bool rabbit = s.rabbit && (s.filters.empty() ? !s.quick : wanted(s.filters, "rabbit"));
  const auto chosen = select(s.filters);
  if (chosen.empty() && parked.empty() && latencies.empty() && !scrape_sized && !rabbit) {
    return usage_error("no benchmark matches; --list names them");
  }
  // Open the outputs first, so that a bad path fails before the run.
  std::ofstream json_out;
  if (s.json_path) {
    json_out.open(*s.json_path, std::ios::trunc);
    if (!json_out) {
      std::fprintf(stderr, "coport-bench: cannot write %s\n", s.json_path->c_str());
      return 2;
    }
  }
  if (s.report_dir) {
    std::error_code ec;
    std::filesystem::create_directories(*s.report_dir, ec);
    if (ec) {
      std::fprintf(stderr, "coport-bench: cannot create %s: %s\n", s.report_dir->c_str(), ec.message().c_str());
      return 2;
    }
  }

  const auto started = clock_type::now();
  report rep;
  if (!chosen.empty()) rep = run_benchmarks(chosen, s);
  if (!parked.empty()) run_memory(parked, s.quick, rep);
#if COPORT_BENCH_HAS_ADMIN
  if (scrape_sized) run_scrape_size(rep);
#endif

  if (!latencies.empty()) run_latencies(latencies, s.quick, rep);
  if (rabbit) run_rabbit(10, s.rabbit_cluster, rep);

  if (s.json_path) {
    for (const auto& line : rep.lines) json_out << json::serialize(line) << '\n';
    json_out.flush();
    if (!json_out) {
      std::fprintf(stderr, "coport-bench: error writing %s\n", s.json_path->c_str());
      return 1;
    }
  }
  if (s.report_dir) {
    const double seconds = std::chrono::duration<double>(clock_type::now() - started).count();
    write_html_report(*s.report_dir, rep.lines, machine_description(s, seconds));
    std::fprintf(stderr, "report: %s/index.html\n", s.report_dir->c_str());
  }
  return 0;
}


}  // namespace
}  // namespace coport_bench

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);  // executors log every stop at info
  try {
    return coport_bench::run_main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "coport-bench: %s\n", e.what());
    return 1;
  }
}
