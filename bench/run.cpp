// How coport-bench runs its benchmarks and reports them: the selection by
// name (with the baselines of the selected ratios), the schedule (registry
// order, a ratio's two sides back to back where its numerator is listed),
// calibration, repeats alternating which side goes first, the summary of
// each figure (median, min, max), the tables on stdout and the JSON lines of
// measurements and ratios, and the description of the machine the report
// page shows.

#include "bench.hpp"
#include "results.hpp"

#include <boost/version.hpp>

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <map>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace coport_bench {

namespace {

struct summary {
  double median = 0;
  double min = 0;
  double max = 0;
  std::size_t count = 0;
};

summary summarise(std::vector<double> v) {
  summary s;
  s.count = v.size();
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  s.median = v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
  s.min = v.front();
  s.max = v.back();
  return s;
}

/// One unit of the schedule: a ratio's two sides, or a measurement that is
/// the side of no selected ratio.
struct step {
  const benchmark* numerator;
  const benchmark* denominator = nullptr;  // null: a lone measurement
  const ratio_spec* ratio = nullptr;
};

class runner {
 public:
  explicit runner(const settings& s) : s_(s) {}

  void run(const std::vector<step>& steps) {
    const auto started = clock_type::now();
    for (std::size_t i = 0; i < steps.size(); ++i) {
      const step& st = steps[i];
      std::fprintf(stderr, "[%zu/%zu] %s", i + 1, steps.size(),
                   std::string(st.numerator->name).c_str());
      if (st.denominator) std::fprintf(stderr, " / %s", std::string(st.denominator->name).c_str());
      std::fprintf(stderr, " ...");
      std::fflush(stderr);
      const auto t0 = clock_type::now();
      if (st.denominator) {
        run_pair(st);
        const summary r = summarise(ratio_samples_[st.ratio]);
        std::fprintf(stderr, " ratio %.2f (%.2f..%.2f)", r.median, r.min, r.max);
      } else {
        for (int rep = 0; rep < s_.repeats; ++rep) measure(*st.numerator);
        const summary m = summarise(samples_[st.numerator->name]);
        std::fprintf(stderr, " %.1f ns (%.1f..%.1f)", m.median, m.min, m.max);
      }
      std::fprintf(stderr, " [%.2f s]\n", seconds_since(t0));
    }
    std::fprintf(stderr, "done in %.1f s\n", seconds_since(started));
  }

  const std::vector<double>& samples(std::string_view name) { return samples_[name]; }
  const std::vector<double>& ratio_samples(const ratio_spec* r) { return ratio_samples_[r]; }
  const std::vector<double>& side_samples(const ratio_spec* r, bool numerator) {
    return numerator ? num_samples_[r] : den_samples_[r];
  }
  std::uint64_t iterations(std::string_view name) const {
    auto it = iterations_.find(name);
    return it == iterations_.end() ? 0 : it->second;
  }

 private:
  static double seconds_since(clock_type::time_point t0) {
    return std::chrono::duration<double>(clock_type::now() - t0).count();
  }

  // The two sides alternate which goes first, so that neither always
  // inherits the other's cache and frequency state.
  void run_pair(const step& st) {
    // Calibrate both first, so that no calibration run falls between them.
    calibrated(*st.denominator);
    calibrated(*st.numerator);
    for (int rep = 0; rep < s_.repeats; ++rep) {
      double num = 0;
      double den = 0;
      if (rep % 2 == 0) {
        den = measure(*st.denominator);
        num = measure(*st.numerator);
      } else {
        num = measure(*st.numerator);
        den = measure(*st.denominator);
      }
      num_samples_[st.ratio].push_back(num);
      den_samples_[st.ratio].push_back(den);
      ratio_samples_[st.ratio].push_back(num / den);
    }
  }

  /// One measurement, in ns per operation; records it under the benchmark.
  double measure(const benchmark& b) {
    const std::uint64_t n = calibrated(b);
    const timing t = b.run(n);
    const nanoseconds e = s_.cpu_clock ? t.elapsed.cpu : t.elapsed.wall;
    const double ns =
        t.ops ? static_cast<double>(e.count()) / static_cast<double>(t.ops) : std::nan("");
    samples_[b.name].push_back(ns);
    return ns;
  }

  /// Iterations that make one measurement of `b` last at least the target
  /// time; found once, on first use, then fixed so repeats are comparable.
  /// The calibration runs double as warm-up.
  std::uint64_t calibrated(const benchmark& b) {
    if (auto it = iterations_.find(b.name); it != iterations_.end()) return it->second;
    const double target = static_cast<double>(s_.target().count());
    std::uint64_t n = 256;
    for (;;) {
      const timing t = b.run(n);
      const double took = static_cast<double>(t.elapsed.wall.count());
      if (took >= target || n >= (std::uint64_t{1} << 40)) break;
      const double factor = took > 0 ? std::clamp(1.2 * target / took, 1.5, 100.0) : 100.0;
      n = static_cast<std::uint64_t>(static_cast<double>(n) * factor);
    }
    iterations_.emplace(b.name, n);
    return n;
  }

  const settings& s_;
  std::map<std::string_view, std::vector<double>> samples_;
  std::map<std::string_view, std::uint64_t> iterations_;
  std::map<const ratio_spec*, std::vector<double>> ratio_samples_;
  std::map<const ratio_spec*, std::vector<double>> num_samples_;
  std::map<const ratio_spec*, std::vector<double>> den_samples_;
};

/// Registry order; a ratio runs where its numerator is listed, a benchmark
/// that is a side of no selected ratio runs alone.
std::vector<step> schedule(const std::vector<const benchmark*>& chosen) {
  auto is_chosen = [&](std::string_view name) {
    return std::any_of(chosen.begin(), chosen.end(),
                       [&](const benchmark* b) { return b->name == name; });
  };
  std::vector<step> steps;
  for (const benchmark* b : chosen) {
    bool in_ratio = false;
    for (const auto& r : ratios()) {
      if (!is_chosen(r.numerator) || !is_chosen(r.denominator)) continue;
      if (r.numerator == b->name) {
        steps.push_back({b, find_benchmark(r.denominator), &r});
        in_ratio = true;
      } else if (r.denominator == b->name) {
        in_ratio = true;  // measured with its numerator
      }
    }
    if (!in_ratio) steps.push_back({b});
  }
  return steps;
}

std::string range(double lo, double hi, const char* fmt) {
  char a[32];
  char b[32];
  std::snprintf(a, sizeof a, fmt, lo);
  std::snprintf(b, sizeof b, fmt, hi);
  return std::string(a) + ".." + b;
}

/// The clock of a benchmark's figures in this run, as the JSON names it:
/// "wall", "cpu" (the measuring thread's) or "process cpu" (all threads').
std::string clock_of(const benchmark& b, const settings& s) {
  if (!s.cpu_clock || b.cpu == cpu_scope::none) return "wall";
  return b.cpu == cpu_scope::process ? "process cpu" : "cpu";
}

report print_results(runner& r, const std::vector<const benchmark*>& chosen,
                     const std::vector<step>& steps, const settings& s) {
  report out;
  std::printf("coport-bench: %s mode, %d repeats, >= %lld ms per measurement, %s clock, "
              "%u hardware threads, Boost %d.%d.%d\n\n",
              s.quick ? "quick" : "full", s.repeats,
              static_cast<long long>(
                  std::chrono::duration_cast<std::chrono::milliseconds>(s.target()).count()),
              s.cpu_clock ? "thread CPU" : "steady", std::thread::hardware_concurrency(),
              BOOST_VERSION / 100000,
              BOOST_VERSION / 100 % 1000, BOOST_VERSION % 100);

  std::printf("%-28s %10s  %-20s %4s %12s\n", "measurement", "ns/op", "min..max", "n",
              "iterations");
  for (const benchmark* b : chosen) {
    const summary m = summarise(r.samples(b->name));
    // A figure on another clock than the run's says which.
    const std::string clock = clock_of(*b, s);
    const bool other_clock = clock != (s.cpu_clock ? "cpu" : "wall");
    std::printf("%-28s %10.1f  %-20s %4zu %12llu%s%s\n", std::string(b->name).c_str(), m.median,
                range(m.min, m.max, "%.1f").c_str(), m.count,
                static_cast<unsigned long long>(r.iterations(b->name)), other_clock ? "  " : "",
                other_clock ? clock.c_str() : "");
    json::object o;
    o["name"] = b->name;
    o["kind"] = "measurement";
    o["value"] = number_or_null(m.median);
    o["unit"] = "ns";
    o["min"] = number_or_null(m.min);
    o["max"] = number_or_null(m.max);
    o["samples"] = m.count;
    o["iterations"] = r.iterations(b->name);
    o["clock"] = clock_of(*b, s);
    o["description"] = b->what;
    out.lines.push_back(std::move(o));
  }

  bool any_ratio = false;
  for (const step& st : steps) {
    if (!st.ratio) continue;
    if (!any_ratio) {
      std::printf("\n%-52s %7s  %-12s %6s  %s\n", "ratio (median of per-repeat ratios)", "median",
                  "min..max", "aim", "met");
      any_ratio = true;
    }
    const ratio_spec& rs = *st.ratio;
    const summary q = summarise(r.ratio_samples(st.ratio));
    const summary num = summarise(r.side_samples(st.ratio, true));
    const summary den = summarise(r.side_samples(st.ratio, false));
    // No std::optional<bool> here: GCC 12 warns (wrongly) that it may be
    // read uninitialised.
    const bool met = rs.aim && std::isfinite(q.median) && (rs.at_least ? q.median >= *rs.aim : q.median <= *rs.aim);
    char aim[16] = "-";
    if (rs.aim) std::snprintf(aim, sizeof aim, rs.at_least ? ">=%.2f" : "%.2f", *rs.aim);
    const std::string label = std::string(rs.numerator) + " / " + std::string(rs.denominator);
    std::printf("%-52s %7.2f  %-12s %6s  %s\n", label.c_str(), q.median,
                range(q.min, q.max, "%.2f").c_str(), aim,
                rs.aim ? (met ? "yes" : "NO") : "-");
    json::object o;
    o["name"] = ratio_name(rs);
    o["kind"] = "ratio";
    o["value"] = number_or_null(q.median);
    o["unit"] = "ratio";
    o["numerator_name"] = rs.numerator;
    o["denominator_name"] = rs.denominator;
    // Medians of the two sides as measured in this ratio's pairs (ns/op);
    // "ratio" is the median of the per-repeat ratios, not their quotient.
    o["numerator"] = number_or_null(num.median);
    o["denominator"] = number_or_null(den.median);
    o["ratio"] = number_or_null(q.median);
    o["min"] = number_or_null(q.min);
    o["max"] = number_or_null(q.max);
    o["samples"] = q.count;
    o["aim"] = rs.aim ? json::value(*rs.aim) : json::value(nullptr);
    o["aim_is"] = rs.at_least ? "at least" : "at most";
    o["met"] = rs.aim ? json::value(met) : json::value(nullptr);
    const std::string num_clock = clock_of(*st.numerator, s);
    const std::string den_clock = clock_of(*st.denominator, s);
    o["clock"] = num_clock == den_clock ? num_clock : num_clock + " / " + den_clock;
    out.lines.push_back(std::move(o));
  }
  std::fflush(stdout);
  return out;
}

/// The first line of `path` that starts with `key`, after the key and any
/// of " \t:=\"" around the value; empty if none.
std::string read_field(const char* path, std::string_view key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.starts_with(key)) continue;
    std::string v = line.substr(key.size());
    const auto first = v.find_first_not_of(" \t:=\"");
    const auto last = v.find_last_not_of(" \t\"");
    return first == std::string::npos ? std::string() : v.substr(first, last - first + 1);
  }
  return {};
}

}  // namespace

json::value number_or_null(double v) {
  if (std::isfinite(v)) return json::value(v);
  return json::value(nullptr);
}

/// True when nothing is filtered or a filter is part of `name`.
bool wanted(const std::vector<std::string>& filters, std::string_view name) {
  if (filters.empty()) return true;
  return std::any_of(filters.begin(), filters.end(),
                     [&](const std::string& f) { return name.find(f) != std::string_view::npos; });
}

/// The benchmarks to run: those whose name contains one of the filters (all
/// without filters), plus the denominator of every ratio whose numerator is
/// selected, since a figure is judged against its baseline.
std::vector<const benchmark*> select(const std::vector<std::string>& filters) {
  std::vector<bool> chosen(benchmarks().size());
  for (std::size_t i = 0; i < benchmarks().size(); ++i) chosen[i] = wanted(filters, benchmarks()[i].name);
  auto index_of = [](std::string_view name) {
    return static_cast<std::size_t>(find_benchmark(name) - benchmarks().data());
  };
  for (const auto& r : ratios()) {
    if (chosen[index_of(r.numerator)]) chosen[index_of(r.denominator)] = true;
  }
  std::vector<const benchmark*> out;
  for (std::size_t i = 0; i < benchmarks().size(); ++i) {
    if (chosen[i]) out.push_back(&benchmarks()[i]);
  }
  return out;
}

report run_benchmarks(const std::vector<const benchmark*>& chosen, const settings& s) {
  const auto steps = schedule(chosen);
  runner r(s);
  r.run(steps);
#if COPORT_BENCH_HAS_ADMIN
  // The admin figures' note on their scrapes comes after the runs' progress
  // and before the tables: it throws when they measured nothing of what
  // they claim.
  report_scrapes();
#endif
  return print_results(r, chosen, steps, s);
}

/// What the report says about the machine and the run.
json::object machine_description(const settings& s, double seconds) {
  json::object m;
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) == 0) m["host"] = host;
  m["cpu"] = read_field("/proc/cpuinfo", "model name");
  m["hardware_threads"] = std::thread::hardware_concurrency();
  const std::string mem_kib = read_field("/proc/meminfo", "MemTotal");
  if (!mem_kib.empty()) m["memory_gib"] = std::round(std::strtod(mem_kib.c_str(), nullptr) / 1048576.0 * 10) / 10;
  m["os"] = read_field("/etc/os-release", "PRETTY_NAME");
  utsname u{};
  if (::uname(&u) == 0) m["kernel"] = std::string(u.sysname) + " " + u.release + " " + u.machine;
  m["load_average"] = read_field("/proc/loadavg", "");
#if defined(__clang__)
  m["compiler"] = "clang " __clang_version__;
#elif defined(__GNUC__)
  m["compiler"] = "g++ " __VERSION__;
#endif
  m["build_type"] = COPORT_BENCH_BUILD_TYPE;
  m["boost"] = std::to_string(BOOST_VERSION / 100000) + "." + std::to_string(BOOST_VERSION / 100 % 1000) + "." +
               std::to_string(BOOST_VERSION % 100);
  m["mode"] = s.quick ? "quick" : "full";
  m["repeats"] = s.repeats;
  m["clock"] = s.cpu_clock ? "thread CPU" : "steady (wall)";
  const std::time_t now = std::time(nullptr);
  char date[32] = {};
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  m["date"] = date;
  m["duration_s"] = std::round(seconds * 10) / 10;
  return m;
}

}  // namespace coport_bench
