#ifndef COPORT_BENCH_RESULTS_HPP
#define COPORT_BENCH_RESULTS_HPP

// How a run of coport-bench goes and what it writes. The settings the
// command line gives (coport_bench.cpp), the lines of the results (one JSON
// object each: the --json file, the report page), the benchmarks' run
// (run.cpp: selection, schedule, calibration, repeats, the table and the
// lines of measurements and ratios) and the figures of other kinds, each
// from its family: resident memory per parked request (memory.cpp), call
// latency (executors.cpp), the size of one scrape (admin.cpp) and the
// RabbitMQ figures (rabbit.cpp).

#include "bench.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace coport_bench {

namespace json = boost::json;

struct settings {
  bool quick = false;
  int repeats = 5;
  bool list = false;
  // Time by the measuring thread's CPU clock instead of steady_clock: leaves
  // out the gaps in which the machine ran someone else's work on that core.
  bool cpu_clock = false;
  std::optional<std::string> json_path;
  /// --report DIR: the HTML page and the JSON there.
  std::optional<std::string> report_dir;
  /// --no-rabbit: leave out the broker figures of a full run.
  bool rabbit = true;
  /// --rabbit-cluster: the broker figures also on a three-node cluster.
  bool rabbit_cluster = false;
  std::vector<std::string> filters;
  /// `--parked KIND N`: be the child process of one memory measurement.
  std::optional<std::pair<std::string, std::size_t>> parked;
  nanoseconds target() const {
    return quick ? std::chrono::milliseconds(10) : std::chrono::milliseconds(50);
  }
};

/// The results of a run, one JSON object per figure, in output order.
struct report {
  std::vector<json::object> lines;
};

/// A finite figure as a JSON number; NaN or infinity as null.
json::value number_or_null(double v);

// -------------------------------------------------------------- run.cpp

/// True when nothing is filtered or a filter is part of `name`.
bool wanted(const std::vector<std::string>& filters, std::string_view name);

/// The benchmarks to run: those whose name contains one of the filters (all
/// without filters), plus the denominator of every ratio whose numerator is
/// selected, since a figure is judged against its baseline.
std::vector<const benchmark*> select(const std::vector<std::string>& filters);

/// Runs `chosen` (each ratio's two sides back to back, progress on stderr),
/// then prints the tables of measurements and ratios on stdout and returns
/// their lines.
report run_benchmarks(const std::vector<const benchmark*>& chosen, const settings& s);

/// What the report says about the machine and the run.
json::object machine_description(const settings& s, double seconds);

/// --list: every figure and ratio, one a line, on stdout (lists.cpp).
void print_list();

// ------------------------------------------------------------- memory.cpp

struct parked_spec {
  std::string_view kind;
  std::string_view what;
  std::optional<double> aim;  // bytes per request
};

/// The kinds of parked request measured, each "memory.parked_<kind>".
const std::vector<parked_spec>& parked_kinds();

/// The child of `--parked KIND N`: parks N requests of one kind (casts that
/// wait forever) and prints the resident bytes they added, per request.
/// Runs in a fresh process so that no earlier allocation is reused.
int parked_child(const std::string& kind, std::size_t n);

/// Measures each of `chosen` in a child process and prints its table.
void run_memory(const std::vector<const parked_spec*>& chosen, bool quick, report& rep);

// ---------------------------------------------------------- executors.cpp

/// In-process calls per executor and method kind, one after the other from
/// a coroutine client on the server's own thread: calls/s, p50 and p99.
struct latency_spec {
  std::string_view name;
  std::string_view what;
  timing (*run)(std::uint64_t n);
};

/// The call latency runs, each "call.<executor and method kind>".
const std::vector<latency_spec>& latency_runs();

/// Times each of `chosen`'s calls one by one and prints their table.
void run_latencies(const std::vector<const latency_spec*>& chosen, bool quick, report& rep);

// -------------------------------------------------------------- admin.cpp

#if COPORT_BENCH_HAS_ADMIN
/// The size figure's name and description (--list, the output).
inline constexpr std::string_view scrape_size_name = "admin.scrape_1000_size";
inline constexpr std::string_view scrape_size_what =
    "one /metrics body of admin.scrape_1000's 1 000 points (series: its sample lines)";

/// After the runs: how often admin.fiber_native_scraped's runs were scraped
/// (stderr). Throws when they were never scraped in three intervals or
/// more of calls all told.
void report_scrapes();

/// Sizes one /metrics body of 1 000 points and prints it.
void run_scrape_size(report& rep);
#endif

// ------------------------------------------------------------- rabbit.cpp

/// RPC over a RabbitMQ broker against oslo.messaging and against
/// rabbitmq-c alone, by bench/rabbit_bench.py; its figures join the
/// results. False, with the reason on stderr, when it cannot run here.
bool run_rabbit(double seconds, bool cluster, report& rep);

}  // namespace coport_bench

#endif
