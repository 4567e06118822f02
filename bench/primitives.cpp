// coport-bench-primitives: the coroutine side of the bridge's primitives
// against Asio's experimental::channel and concurrent_channel, on one coport
// runtime.
//
//   coport-bench-primitives [--quick] [--repeat N] [--json FILE] [--help]
//
// Each bridge primitive is measured with the same work done with Asio's
// experimental::channel (no lock: one thread only) and with its
// concurrent_channel (a mutex, like the bridge's primitives, which are shared
// across loops and threads), all on the same runtime's executor:
//   channel  a producer coroutine pushes n ints to a consumer coroutine
//            (bridge::channel<int> / channel<void(error_code, int)>), with
//            capacity 16 and 0 (a rendezvous); ns per item;
//   mutex    K coroutines each take the lock M times and hold it across a
//            `co_await asio::post` (bridge::mutex::scoped_lock / a
//            channel<void(error_code)> of capacity 1 as a semaphore:
//            async_send acquires, try_receive releases); ns per lock;
//   event    a ping-pong of two coroutines (two bridge::events: set, then
//            async_wait and reset / two channels: try_send, async_receive);
//            ns per round.
// The synchronous halves (unlock, set) are matched with Asio's synchronous
// calls (try_receive, try_send), so that each side pays one asynchronous
// wait per step.
//
// Output: one JSON object per line (the shape of coport-bench --json, checked
// by check_bench_json.cmake): a "measurement" per figure (value in ns per
// operation, the median of the repeats; n operations per repeat) and a
// "ratio" per baseline (bridge / Asio, the median of the per-repeat ratios,
// aim 1.0). The sides run back to back in every repeat, the bridge first in
// one repeat and last in the next. Machines here are noisy: read ratios, and compare two
// builds with primitives_ratios.py, which interleaves their runs.
//
// Only the coroutine side of the bridge is used (runtime, spawn, mutex,
// channel, event), so the program builds without Boost.Fiber as well.

#include <coport/bridge/channel.hpp>
#include <coport/bridge/event.hpp>
#include <coport/bridge/mutex.hpp>
#include <coport/bridge/runtime.hpp>
#include <coport/bridge/spawn.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/channel.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace asio = boost::asio;
namespace bridge = coport::bridge;
using error_code = boost::system::error_code;
using clock_type = std::chrono::steady_clock;

namespace {

/// A value the optimiser must assume is read.
template <class T>
void keep(const T& v) {
  asm volatile("" : : "g"(&v) : "memory");
}

double ns_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::nano>(clock_type::now() - t0).count();
}

// ---------------------------------------------------------------- channel

// Asio's baselines come in both kinds: experimental::channel, which takes no
// lock (one thread only), and experimental::concurrent_channel, which locks
// a mutex as the bridge's primitives do (they are shared across loops and
// threads).
struct plain_kind {
  using int_channel = asio::experimental::channel<void(error_code, int)>;
  using signal_channel = asio::experimental::channel<void(error_code)>;
};
struct concurrent_kind {
  using int_channel = asio::experimental::concurrent_channel<void(error_code, int)>;
  using signal_channel = asio::experimental::concurrent_channel<void(error_code)>;
};

asio::awaitable<void> bridge_producer(bridge::channel<int>& ch, std::uint64_t n, bridge::event& done) {
  for (std::uint64_t i = 0; i < n; ++i) co_await ch.async_push(static_cast<int>(i), asio::use_awaitable);
  done.set();
}

/// ns for n items through a bridge::channel<int> of `capacity`.
asio::awaitable<double> bridge_channel(bridge::loop_executor ex, std::size_t capacity, std::uint64_t n) {
  bridge::channel<int> ch(ex, capacity);
  bridge::event produced(ex);
  const auto t0 = clock_type::now();
  bridge::spawn(ex, [&ch, n, &produced] { return bridge_producer(ch, n, produced); });
  long long sum = 0;
  for (std::uint64_t i = 0; i < n; ++i) sum += co_await ch.async_pop(asio::use_awaitable);
  co_await produced.async_wait(asio::use_awaitable);
  const double ns = ns_since(t0);
  keep(sum);
  co_return ns;
}

template <class Kind>
asio::awaitable<void> asio_producer(typename Kind::int_channel& ch, std::uint64_t n, bridge::event& done) {
  for (std::uint64_t i = 0; i < n; ++i) co_await ch.async_send(error_code(), static_cast<int>(i), asio::use_awaitable);
  done.set();
}

/// ns for n items through an Asio channel of `capacity`.
template <class Kind>
asio::awaitable<double> asio_channel(bridge::loop_executor ex, std::size_t capacity, std::uint64_t n) {
  typename Kind::int_channel ch(ex, capacity);
  bridge::event produced(ex);
  const auto t0 = clock_type::now();
  bridge::spawn(ex, [&ch, n, &produced] { return asio_producer<Kind>(ch, n, produced); });
  long long sum = 0;
  for (std::uint64_t i = 0; i < n; ++i) sum += co_await ch.async_receive(asio::use_awaitable);
  co_await produced.async_wait(asio::use_awaitable);
  const double ns = ns_since(t0);
  keep(sum);
  co_return ns;
}

// ------------------------------------------------------------------ mutex

constexpr std::uint64_t lockers = 4;

// What the K lockers share; the last one to finish sets `done`.
struct lock_run {
  explicit lock_run(const bridge::loop_executor& ex) : done(ex) {}
  std::uint64_t held = 0;  // incremented under the lock
  std::uint64_t running = lockers;
  bridge::event done;
};

asio::awaitable<void> bridge_locker(bridge::mutex& m, std::uint64_t times, lock_run& run) {
  const auto ex = co_await asio::this_coro::executor;
  for (std::uint64_t i = 0; i < times; ++i) {
    auto lk = co_await m.scoped_lock();
    co_await asio::post(ex, asio::use_awaitable);  // the others queue on the lock meanwhile
    ++run.held;
  }
  if (--run.running == 0) run.done.set();
}

/// ns for `lockers` coroutines taking a bridge::mutex `times` times each.
asio::awaitable<double> bridge_mutex(bridge::loop_executor ex, std::size_t, std::uint64_t times) {
  bridge::mutex m(ex);
  lock_run run(ex);
  const auto t0 = clock_type::now();
  for (std::uint64_t k = 0; k < lockers; ++k) bridge::spawn(ex, [&m, times, &run] { return bridge_locker(m, times, run); });
  co_await run.done.async_wait(asio::use_awaitable);
  const double ns = ns_since(t0);
  if (run.held != lockers * times) throw std::logic_error("bridge::mutex: a lock was lost");
  co_return ns;
}

template <class Kind>
asio::awaitable<void> semaphore_locker(typename Kind::signal_channel& sem, std::uint64_t times, lock_run& run) {
  const auto ex = co_await asio::this_coro::executor;
  for (std::uint64_t i = 0; i < times; ++i) {
    co_await sem.async_send(error_code(), asio::use_awaitable);  // acquire: the one slot
    co_await asio::post(ex, asio::use_awaitable);
    ++run.held;
    // Release: frees the slot, which the longest waiting sender then takes.
    if (!sem.try_receive([](error_code) {})) throw std::logic_error("semaphore released while not held");
  }
  if (--run.running == 0) run.done.set();
}

/// The same with an experimental::channel<void(error_code)> of capacity 1 as
/// a semaphore.
template <class Kind>
asio::awaitable<double> asio_semaphore(bridge::loop_executor ex, std::size_t, std::uint64_t times) {
  typename Kind::signal_channel sem(ex, 1);
  lock_run run(ex);
  const auto t0 = clock_type::now();
  for (std::uint64_t k = 0; k < lockers; ++k) {
    bridge::spawn(ex, [&sem, times, &run] { return semaphore_locker<Kind>(sem, times, run); });
  }
  co_await run.done.async_wait(asio::use_awaitable);
  const double ns = ns_since(t0);
  if (run.held != lockers * times) throw std::logic_error("channel semaphore: a lock was lost");
  co_return ns;
}

// ------------------------------------------------------------------ event

asio::awaitable<void> bridge_ponger(bridge::event& ping, bridge::event& pong, std::uint64_t rounds,
                                    bridge::event& done) {
  for (std::uint64_t r = 0; r < rounds; ++r) {
    co_await ping.async_wait(asio::use_awaitable);
    ping.reset();  // before pong.set(): the pinger sets ping again only after it
    pong.set();
  }
  done.set();
}

/// ns for `rounds` round trips between two coroutines over two bridge::events.
asio::awaitable<double> bridge_event(bridge::loop_executor ex, std::size_t, std::uint64_t rounds) {
  bridge::event ping(ex), pong(ex), done(ex);
  const auto t0 = clock_type::now();
  bridge::spawn(ex, [&ping, &pong, rounds, &done] { return bridge_ponger(ping, pong, rounds, done); });
  for (std::uint64_t r = 0; r < rounds; ++r) {
    ping.set();
    co_await pong.async_wait(asio::use_awaitable);
    pong.reset();
  }
  co_await done.async_wait(asio::use_awaitable);
  co_return ns_since(t0);
}

template <class Kind>
asio::awaitable<void> asio_ponger(typename Kind::signal_channel& ping, typename Kind::signal_channel& pong, std::uint64_t rounds,
                                  bridge::event& done) {
  for (std::uint64_t r = 0; r < rounds; ++r) {
    co_await ping.async_receive(asio::use_awaitable);
    if (!pong.try_send(error_code())) throw std::logic_error("pong still full");
  }
  done.set();
}

/// The same over two experimental::channel<void(error_code)> of capacity 1:
/// try_send sets, async_receive waits and resets.
template <class Kind>
asio::awaitable<double> asio_event(bridge::loop_executor ex, std::size_t, std::uint64_t rounds) {
  typename Kind::signal_channel ping(ex, 1), pong(ex, 1);
  bridge::event done(ex);
  const auto t0 = clock_type::now();
  bridge::spawn(ex, [&ping, &pong, rounds, &done] { return asio_ponger<Kind>(ping, pong, rounds, done); });
  for (std::uint64_t r = 0; r < rounds; ++r) {
    if (!ping.try_send(error_code())) throw std::logic_error("ping still full");
    co_await pong.async_receive(asio::use_awaitable);
  }
  co_await done.async_wait(asio::use_awaitable);
  co_return ns_since(t0);
}

// ----------------------------------------------------------------- runner

using bench_fn = std::function<asio::awaitable<double>(bridge::loop_executor, std::size_t, std::uint64_t)>;

struct side {
  std::string name;
  std::string description;
  bench_fn run;
};

/// A bridge primitive and its Asio baselines (the plain and the concurrent
/// channel), measured in turns.
struct pair_spec {
  side bridge_side;
  std::vector<side> asio_sides;
  std::size_t capacity;  // for the channels; unused by the others
  std::uint64_t n;       // operations timed per repeat
  std::uint64_t ops;     // operations those n make (locks: lockers * n)
};

struct figure {
  std::string name;
  std::string description;
  std::uint64_t ops = 0;
  std::vector<double> ns_per_op;  // one per repeat
};

struct ratio {
  std::string numerator;
  std::string denominator;
  std::vector<double> per_repeat;
};

struct results {
  std::vector<figure> figures;
  std::vector<ratio> ratios;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

std::vector<pair_spec> pairs(bool quick) {
  const std::uint64_t items = quick ? 20'000 : 500'000;
  const std::uint64_t locks = quick ? 1'000 : 50'000;  // per locker
  const std::uint64_t rounds = quick ? 5'000 : 200'000;
  using plain = plain_kind;
  using concurrent = concurrent_kind;
  std::vector<pair_spec> out;
  for (const std::size_t cap : {std::size_t{16}, std::size_t{0}}) {
    const std::string c = std::to_string(cap);
    out.push_back({{"channel.bridge.cap" + c, "bridge::channel<int>(" + c + "), coroutine to coroutine, ns per item",
                    bridge_channel},
                   {{"channel.asio.cap" + c,
                     "asio::experimental::channel<void(error_code, int)>(" + c + "), coroutine to coroutine, ns per item",
                     asio_channel<plain>},
                    {"channel.asio_concurrent.cap" + c,
                     "asio::experimental::concurrent_channel<void(error_code, int)>(" + c +
                         "), coroutine to coroutine, ns per item",
                     asio_channel<concurrent>}},
                   cap, items, items});
  }
  out.push_back({{"mutex.bridge", "bridge::mutex scoped_lock, 4 coroutines, a co_await post held, ns per lock",
                  bridge_mutex},
                 {{"mutex.asio_semaphore",
                   "experimental::channel<void(error_code)>(1) as a semaphore, same work, ns per lock",
                   asio_semaphore<plain>},
                  {"mutex.asio_concurrent_semaphore",
                   "experimental::concurrent_channel<void(error_code)>(1) as a semaphore, same work, ns per lock",
                   asio_semaphore<concurrent>}},
                 0, locks, lockers * locks});
  out.push_back({{"event.bridge", "two bridge::events, ping-pong of two coroutines, ns per round", bridge_event},
                 {{"event.asio_channel", "two experimental::channel<void(error_code)>(1), same ping-pong, ns per round",
                   asio_event<plain>},
                  {"event.asio_concurrent_channel",
                   "two experimental::concurrent_channel<void(error_code)>(1), same ping-pong, ns per round",
                   asio_event<concurrent>}},
                 0, rounds, rounds});
  return out;
}

asio::awaitable<void> measure_all(bridge::loop_executor ex, bool quick, int repeats, results& out) {
  for (const pair_spec& p : pairs(quick)) {
    std::fprintf(stderr, "%s\n", p.bridge_side.name.c_str());
    // An untimed warm-up of each side: allocator pools, caches, branch history.
    const std::uint64_t warm = std::max<std::uint64_t>(p.n / 10, 1);
    co_await p.bridge_side.run(ex, p.capacity, warm);
    for (const side& a : p.asio_sides) co_await a.run(ex, p.capacity, warm);
    figure b{p.bridge_side.name, p.bridge_side.description, p.ops, {}};
    std::vector<figure> baselines;
    std::vector<ratio> ratios;
    for (const side& a : p.asio_sides) {
      baselines.push_back({a.name, a.description, p.ops, {}});
      ratios.push_back({b.name, a.name, {}});
    }
    for (int i = 0; i < repeats; ++i) {
      // The bridge side first in even repeats, last in odd ones.
      std::vector<double> asio_ns(p.asio_sides.size());
      double bridge_ns = 0;
      if (i % 2 == 0) bridge_ns = co_await p.bridge_side.run(ex, p.capacity, p.n);
      for (std::size_t k = 0; k < p.asio_sides.size(); ++k) {
        asio_ns[k] = co_await p.asio_sides[k].run(ex, p.capacity, p.n);
      }
      if (i % 2 == 1) bridge_ns = co_await p.bridge_side.run(ex, p.capacity, p.n);
      b.ns_per_op.push_back(bridge_ns / static_cast<double>(p.ops));
      for (std::size_t k = 0; k < p.asio_sides.size(); ++k) {
        baselines[k].ns_per_op.push_back(asio_ns[k] / static_cast<double>(p.ops));
        ratios[k].per_repeat.push_back(bridge_ns / asio_ns[k]);
      }
    }
    out.figures.push_back(std::move(b));
    for (auto& f : baselines) out.figures.push_back(std::move(f));
    for (auto& r : ratios) out.ratios.push_back(std::move(r));
  }
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string json_number(double v) {
  std::ostringstream o;
  o.precision(6);
  o << v;
  return o.str();
}

void write_json(std::ostream& o, const results& r, int repeats) {
  for (const figure& f : r.figures) {
    o << "{\"name\": " << json_string(f.name) << ", \"kind\": \"measurement\", \"unit\": \"ns/op\", \"value\": "
      << json_number(median(f.ns_per_op)) << ", \"n\": " << f.ops << ", \"repeats\": " << repeats
      << ", \"min\": " << json_number(*std::min_element(f.ns_per_op.begin(), f.ns_per_op.end()))
      << ", \"max\": " << json_number(*std::max_element(f.ns_per_op.begin(), f.ns_per_op.end()))
      << ", \"description\": " << json_string(f.description) << "}\n";
  }
  auto value_of = [&r](const std::string& name) {
    for (const figure& f : r.figures) {
      if (f.name == name) return median(f.ns_per_op);
    }
    return 0.0;
  };
  for (const ratio& q : r.ratios) {
    const double m = median(q.per_repeat);
    o << "{\"name\": " << json_string(q.numerator + "/" + q.denominator)
      << ", \"kind\": \"ratio\", \"unit\": \"ratio\", \"value\": " << json_number(m)
      << ", \"ratio\": " << json_number(m) << ", \"numerator\": " << json_number(value_of(q.numerator))
      << ", \"denominator\": " << json_number(value_of(q.denominator)) << ", \"aim\": 1.0, \"met\": "
      << (m <= 1.0 ? "true" : "false") << "}\n";
  }
}

void usage(std::ostream& o) {
  o << "Usage: coport-bench-primitives [--quick] [--repeat N] [--json FILE] [--help]\n"
       "  --quick      small counts and 2 repeats (a few seconds at most; ctest runs it)\n"
       "  --repeat N   repeats of each pair, the median reported (default 5)\n"
       "  --json FILE  write the JSON lines to FILE instead of stdout\n"
       "  --help       this text\n";
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  int repeats = 0;
  std::string json_file;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help") {
      usage(std::cout);
      return 0;
    }
    if (a == "--quick") {
      quick = true;
    } else if ((a == "--repeat" || a == "--json") && i + 1 < argc) {
      const std::string v = argv[++i];
      if (a == "--json") {
        json_file = v;
        continue;
      }
      char* end = nullptr;
      const long r = std::strtol(v.c_str(), &end, 10);
      if (end == v.c_str() || *end != '\0' || r < 1 || r > 1000) {
        std::cerr << "coport-bench-primitives: --repeat needs a whole number from 1 to 1000, not '" << v << "'\n";
        usage(std::cerr);
        return 64;
      }
      repeats = static_cast<int>(r);
    } else {
      std::cerr << "coport-bench-primitives: unknown or incomplete option '" << a << "'\n";
      usage(std::cerr);
      return 64;
    }
  }
  if (repeats == 0) repeats = quick ? 2 : 5;

  try {
    auto io = std::make_shared<asio::io_context>(1);
    bridge::runtime_options opts;
    opts.name = "bench";
    opts.stall_threshold = std::chrono::milliseconds(0);  // no watchdog in the measured loop
    bridge::runtime rt(io, opts);
    results res;
    std::exception_ptr failure;
    const bridge::loop_executor ex = rt.get_executor("bench.primitives");
    bridge::spawn(ex, [&]() -> asio::awaitable<void> {
      try {
        co_await measure_all(ex, quick, repeats, res);
      } catch (...) {
        failure = std::current_exception();
      }
      rt.stop();
    });
    rt.run();
    if (failure) std::rethrow_exception(failure);
    if (res.ratios.empty()) throw std::runtime_error("the runtime stopped before the measurements ended");
    if (json_file.empty()) {
      write_json(std::cout, res, repeats);
    } else {
      std::ofstream f(json_file);
      write_json(f, res, repeats);
      if (!f) throw std::runtime_error("cannot write " + json_file);
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "coport-bench-primitives: " << e.what() << "\n";
    return 1;
  }
}
