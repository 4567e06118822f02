#ifndef COPORT_BENCH_BENCH_HPP
#define COPORT_BENCH_BENCH_HPP

// What every benchmark family of coport-bench shares, and what each family
// exports. The kit: what one run of a benchmark timed (timing), a benchmark
// and a ratio as the lists name them (lists.cpp), the two clocks and their
// readings, keep() and warmup_of(), and the options of every runtime a
// measurement starts. Then the benchmark functions, family by family, each
// `timing f(std::uint64_t n)` defined in the family's file (floors.cpp,
// bridge.cpp, points.cpp, executors.cpp, admin.cpp, channels.cpp,
// skynet.cpp) and listed in lists.cpp, whose order is the order of the runs.
// The figures of other kinds, the run and its output are in results.hpp.

#include <coport/bridge/runtime.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace coport_bench {

namespace bridge = coport::bridge;

using clock_type = std::chrono::steady_clock;
using std::chrono::nanoseconds;

/// Time between two clock readings on one thread, by both clocks: the
/// steady clock (wall time) and the thread's CPU time. On a shared machine
/// the thread is now and then preempted; wall time counts those gaps, CPU
/// time does not.
struct elapsed_time {
  nanoseconds wall{};
  nanoseconds cpu{};
};

/// Whose CPU time a benchmark's `elapsed_time::cpu` is, which --clock cpu
/// reports: the measuring thread's (most benchmarks: the work runs there);
/// the process's, all threads (work handed between threads that sleep in
/// between); or none, `cpu` being wall time again (a throughput over
/// several threads, where the question is elapsed time).
enum class cpu_scope { thread, process, none };

/// What one run of a benchmark timed: `ops` operations in `elapsed`.
struct timing {
  elapsed_time elapsed;
  std::uint64_t ops = 0;
};

/// A benchmark: `run(n)` times about n iterations of one operation (setup and
/// warm-up excluded) and reports them. Its figure is ns per operation.
struct benchmark {
  std::string_view name;
  std::string_view what;
  timing (*run)(std::uint64_t n);
  /// Whose CPU time `timing::elapsed.cpu` is.
  cpu_scope cpu = cpu_scope::thread;
};

/// numerator / denominator, measured back to back in each repeat. Met when
/// the median ratio is at most `aim` (at least, with `at_least`: speed-ups);
/// without an aim the ratio is informative.
struct ratio_spec {
  std::string_view numerator;
  std::string_view denominator;
  std::optional<double> aim;
  bool at_least = false;
};

/// Keeps the compiler from optimising a computed value away.
template <class T>
void keep(const T& v) {
  asm volatile("" : : "r,m"(v) : "memory");
}

/// Untimed iterations before the timed ones.
inline std::uint64_t warmup_of(std::uint64_t n) { return std::clamp<std::uint64_t>(n / 16, 1, 1000); }

/// Both clocks, read on the calling thread.
struct reading {
  clock_type::time_point wall{};
  nanoseconds cpu{};
};

inline reading read_clocks() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return {clock_type::now(), std::chrono::seconds(ts.tv_sec) + nanoseconds(ts.tv_nsec)};
}

inline elapsed_time between(const reading& from, const reading& to) {
  return {std::chrono::duration_cast<nanoseconds>(to.wall - from.wall), to.cpu - from.cpu};
}

inline elapsed_time since(const reading& from) { return between(from, read_clocks()); }

/// CPU time of the whole process, all its threads: for benchmarks whose
/// work is spread over threads that sleep in between (cpu_scope::process).
inline nanoseconds process_cpu() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return std::chrono::seconds(ts.tv_sec) + nanoseconds(ts.tv_nsec);
}

/// Every runtime of a measurement: no stall detector (its watchdog thread
/// would compete for the two cores, and nothing here is a stall).
inline bridge::runtime_options bench_options() {
  bridge::runtime_options o;
  o.name = "bench";
  o.stall_threshold = std::chrono::milliseconds(0);
  return o;
}

// ---------------------------------------------------------------- the lists

/// Every benchmark, in the order they run and are reported (lists.cpp).
const std::vector<benchmark>& benchmarks();

/// Every ratio, in the order they are reported (lists.cpp).
const std::vector<ratio_spec>& ratios();

/// "<numerator>/<denominator>", a ratio's name in the output.
std::string ratio_name(const ratio_spec& r);

/// The benchmark of that name, or null.
const benchmark* find_benchmark(std::string_view name);

/// Throws if the lists disagree: a ratio naming no benchmark, a name twice.
void check_lists();

// ------------------------------------------------------ floors.cpp: floors

timing floor_coroutine_resume(std::uint64_t n);
timing floor_asio_post(std::uint64_t n);
timing floor_context_switch(std::uint64_t n);
timing floor_cross_thread_wake(std::uint64_t n);

// --------------------------------------------- bridge.cpp: yields, crossings

timing floor_round_robin_yield(std::uint64_t n);
timing bridge_yield(std::uint64_t n);
timing bridge_fiber_to_coroutine(std::uint64_t n);
timing floor_co_spawn(std::uint64_t n);
timing bridge_coroutine_to_fiber(std::uint64_t n);
timing asio_spawn_to_coroutine(std::uint64_t n);
timing asio_coroutine_to_spawn(std::uint64_t n);
timing floor_awaitable_post(std::uint64_t n);
timing bridge_native_resume(std::uint64_t n);
timing bridge_hosted_resume(std::uint64_t n);

// ---------------------------------------------- points.cpp: migration points

timing direct_ported(std::uint64_t n);
timing point_ported(std::uint64_t n);
timing direct_legacy(std::uint64_t n);
timing point_legacy(std::uint64_t n);

// ------------------------------------------ executors.cpp: messaging, executors

timing messaging_call_memory(std::uint64_t n);
timing exec_coro(std::uint64_t n);
timing exec_fiber_hosted(std::uint64_t n);
timing exec_fiber_native(std::uint64_t n);
timing exec_fiber_method(std::uint64_t n);
timing exec_pool1(std::uint64_t n);
timing exec_pool2(std::uint64_t n);
timing exec_pool1_10us(std::uint64_t n);
timing exec_pool2_10us(std::uint64_t n);

// ------------------------------------------------- admin.cpp: admin server

#if COPORT_BENCH_HAS_ADMIN
timing admin_fiber_native_scraped(std::uint64_t n);
timing admin_scrape_1000(std::uint64_t n);
timing admin_report_json_1000(std::uint64_t n);
#endif

// ---------------------------------------------------- channels.cpp: channels

timing floor_fiber_channel(std::uint64_t n);
timing floor_asio_channel(std::uint64_t n);
timing chan_fibers(std::uint64_t n);
timing chan_coroutines(std::uint64_t n);
timing chan_fiber_to_coroutine(std::uint64_t n);

// -------------------------------------------------------- skynet.cpp: skynet

timing floor_skynet_fibers(std::uint64_t n);
timing floor_skynet_coroutines(std::uint64_t n);
timing skynet_fibers(std::uint64_t n);
timing skynet_coroutines(std::uint64_t n);
timing skynet_mixed(std::uint64_t n);

/// The leaves of every skynet tree: a million unless set (--quick: 100 000).
void set_skynet_leaves(std::uint64_t leaves);

}  // namespace coport_bench

#endif
