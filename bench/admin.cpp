// coport-bench's figures of the admin server (built with coport::admin):
// exec.fiber_native's calls while its admin::http_server runs and a
// scraper GETs /metrics over HTTP every 10 ms (admin.fiber_native_scraped),
// one /metrics body of 1 000 migration points against the same report as
// JSON (admin.scrape_1000, admin.report_json_1000), and that body's size
// (admin.scrape_1000_size).

#include "bench.hpp"
#include "results.hpp"
#include "service.hpp"

#include <coport/admin/http_server.hpp>
#include <coport/bridge/bridge.hpp>
#include <coport/fiber_executor/fiber_executor.hpp>
#include <coport/messaging/rpc/client.hpp>
#include <coport/migration/points.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

namespace coport_bench {

namespace asio = boost::asio;
namespace migration = coport::migration;

namespace {

namespace admin = coport::admin;
namespace http = boost::beast::http;

/// How often the scraper of admin.fiber_native_scraped GETs /metrics: 1500
/// times as often as Prometheus does by default (every 15 s).
constexpr std::chrono::milliseconds scrape_interval{10};

/// Scrapes an admin server's /metrics every `scrape_interval` from a
/// thread of its own, as Prometheus does: a blocking Beast client on one
/// keep-alive connection (a new one when the server closes it), the first
/// scrape at once. Checks each answer (200, coport's series in it).
class scraper {
 public:
  explicit scraper(std::uint16_t port) : port_(port), thread_([this] { run(); }) {}
  scraper(const scraper&) = delete;
  scraper& operator=(const scraper&) = delete;
  ~scraper() { join(); }

  /// Stops scraping and returns the scrapes made; throws what a scrape
  /// failed with.
  std::uint64_t finish() {
    join();
    if (error_) std::rethrow_exception(error_);
    return scrapes_;
  }
  /// Bytes of /metrics bodies read (after finish()).
  [[nodiscard]] std::uint64_t bytes() const noexcept { return bytes_; }

 private:
  void join() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  void run() {
    try {
      asio::io_context io;
      asio::ip::tcp::socket socket(io);
      const asio::ip::tcp::endpoint server(asio::ip::make_address("127.0.0.1"), port_);
      boost::beast::flat_buffer buffer;
      http::request<http::empty_body> req{http::verb::get, "/metrics", 11};
      req.set(http::field::host, "127.0.0.1:" + std::to_string(port_));
      req.set(http::field::user_agent, "coport-bench");
      req.keep_alive(true);
      auto next = clock_type::now();
      for (;;) {
        {
          std::unique_lock lock(mutex_);
          if (wake_.wait_until(lock, next, [this] { return stopping_; })) return;
        }
        if (!socket.is_open()) {
          socket.connect(server);
          buffer.clear();
        }
        http::write(socket, req);
        http::response_parser<http::string_body> parser;
        parser.body_limit(64 * 1024 * 1024);
        http::read(socket, buffer, parser);
        const auto& res = parser.get();
        if (res.result() != http::status::ok ||
            res.body().find("coport_migration_calls_total{") == std::string::npos) {
          throw std::runtime_error("GET /metrics answered " + std::to_string(res.result_int()) +
                                   " without coport's series");
        }
        ++scrapes_;
        bytes_ += res.body().size();
        if (!res.keep_alive()) socket.close();
        // Behind (a slow scrape, a preempted thread): the next one at once,
        // then on time again, as Prometheus' scrape loop.
        next = std::max(next + scrape_interval, clock_type::now());
      }
    } catch (const std::exception& e) {
      error_ = std::make_exception_ptr(std::runtime_error(std::string("the /metrics scraper failed: ") + e.what()));
    }
  }

  std::uint16_t port_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;  // guarded by mutex_
  // The scraper's thread only, until joined.
  std::uint64_t scrapes_ = 0;
  std::uint64_t bytes_ = 0;
  std::exception_ptr error_;
  std::thread thread_;  // last: starts once the rest is built
};

/// What the scrapers of admin.fiber_native_scraped did over the run, for
/// the note after it (stderr): scrapes, bytes read, timed calls.
struct scraped_totals {
  std::uint64_t scrapes = 0;
  std::uint64_t bytes = 0;
  std::uint64_t calls = 0;
  nanoseconds timed{};
};
scraped_totals scraped;

/// The points of admin.scrape_1000: a registry of 1 000 points in both
/// forms, each form with calls recorded (some failed) over several
/// latency buckets, and an admin server (never started) whose source it
/// is. metrics_text() and report() build their answers as GET /metrics and
/// GET /migration.json do, without the HTTP around them.
struct thousand_points {
  static constexpr std::size_t points = 1000;
  migration::registry reg{"bench"};
  admin::http_server server;

  thousand_points() {
    for (std::size_t i = 0; i < points; ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "point_%04zu", i);
      migration::point_record& p = reg.declare(name, true, true);
      for (migration::form_kind k : {migration::form_kind::fiber, migration::form_kind::coroutine}) {
        for (std::size_t j = 0; j < 4; ++j) {
          const auto took = std::chrono::microseconds(2 + 37 * ((i + j) % 7) + 900 * j);
          p.metrics(k).record(took, (i + j) % 13 == 0, false);
        }
      }
    }
    server.add(admin::source_of(reg));
  }
};

/// admin.scrape_1000 and admin.report_json_1000 time n / 256 answers (at
/// least one): one is about as long as 256 operations of the other
/// benchmarks, so that calibration starts at one answer.
std::uint64_t answers_of(std::uint64_t n) { return std::max<std::uint64_t>(n / 256, 1); }

template <class Answer>
timing time_answers(std::uint64_t n, Answer answer) {
  thousand_points world;
  const std::uint64_t count = answers_of(n);
  std::size_t size = 0;
  for (std::uint64_t i = 0, w = warmup_of(count); i < w; ++i) size += answer(world).size();
  const reading t0 = read_clocks();
  for (std::uint64_t i = 0; i < count; ++i) size += answer(world).size();
  const auto elapsed = since(t0);
  keep(size);
  return {elapsed, count};
}

/// The size of one /metrics body of admin.scrape_1000's points: bytes, and
/// series (sample lines: neither a comment nor blank). Also the size of the
/// same report as JSON (GET /migration.json).
struct scrape_size {
  std::size_t bytes = 0;
  std::size_t series = 0;
  std::size_t json_bytes = 0;
};

scrape_size measure_scrape_size() {
  const thousand_points world;
  const std::string text = world.server.metrics_text();
  scrape_size s;
  s.bytes = text.size();
  for (std::size_t at = 0; at < text.size();) {
    std::size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    if (end > at && text[at] != '#') ++s.series;
    at = end + 1;
  }
  s.json_bytes = json::serialize(world.server.report().to_json()).size();
  return s;
}

}  // namespace

/// exec.fiber_native with the admin server of that service running and
/// scraped: its executor's report and policies, the loop and the loop's
/// work counters as sources, and a scraper GETting /metrics over HTTP every
/// 10 ms while the calls run. The server and the scraper run on threads of
/// their own (the server never on the loop); the figure is the calls'.
timing admin_fiber_native_scraped(std::uint64_t n) {
  bridge::runtime rt(bench_options());
  msg::service svc = bench_service("bench");
  coport::fiber_executor_options o;
  o.modes["add_native"] = coport::coroutine_mode::native;
  coport::fiber_executor ex(svc, rt, o);
  admin::http_server server;
  server.add({[&ex] { return migration::report(ex.report()); },
              [&ex](std::string_view name, migration::policy p) { return ex.controls()->set_policy(name, p); }});
  server.add_loop(rt);
  server.add_work_counters("bench", rt.registry());
  ex.start();
  server.start();
  elapsed_time e;
  std::uint64_t scrapes = 0;
  {
    scraper scrape(server.port());
    msg::rpc_client client(svc.transport, msg::target{.topic = "bench"});
    auto f = asio::co_spawn(rt.get_executor(), sequential_calls(client, "add_native", n), asio::use_future);
    e = f.get();
    scrapes = scrape.finish();
    scraped.bytes += scrape.bytes();
  }
  server.stop();
  ex.async_stop(asio::use_future).get();
  // A run of ten intervals or more that was never scraped measured nothing
  // of what it claims (the runs together are checked by report_scrapes()).
  if (scrapes == 0 && e.wall >= 10 * scrape_interval) {
    throw std::runtime_error("admin.fiber_native_scraped: /metrics was not scraped once in " +
                             std::to_string(e.wall.count() / 1'000'000) + " ms of calls");
  }
  scraped.scrapes += scrapes;
  scraped.calls += n;
  scraped.timed += e.wall;
  return {e, n};
}

/// After the runs: how often admin.fiber_native_scraped's runs were scraped
/// (stderr). Throws when they were never scraped in three intervals or
/// more of calls all told: short runs (--quick) are each shorter than the
/// one check, but each is scraped once at its start.
void report_scrapes() {
  if (scraped.calls == 0) return;
  const double timed_s = std::chrono::duration<double>(scraped.timed).count();
  if (scraped.scrapes == 0) {
    if (scraped.timed < 3 * scrape_interval) return;
    throw std::runtime_error("admin.fiber_native_scraped: /metrics was not scraped once in " +
                             std::to_string(scraped.timed.count() / 1'000'000) + " ms of calls");
  }
  const double scrapes = static_cast<double>(scraped.scrapes);
  std::fprintf(stderr,
               "admin.fiber_native_scraped: %llu scrapes of /metrics (%.0f bytes each) during %.2f s of timed "
               "calls: one per %.1f ms (aim %lld ms; each run's first at once)\n",
               static_cast<unsigned long long>(scraped.scrapes), static_cast<double>(scraped.bytes) / scrapes,
               timed_s, timed_s * 1000 / scrapes, static_cast<long long>(scrape_interval.count()));
}

timing admin_scrape_1000(std::uint64_t n) {
  return time_answers(n, [](const thousand_points& w) { return w.server.metrics_text(); });
}

timing admin_report_json_1000(std::uint64_t n) {
  return time_answers(n, [](const thousand_points& w) { return json::serialize(w.server.report().to_json()); });
}

/// Sizes one /metrics body of 1 000 points: a size line (its bytes and
/// series, and the same report's bytes as JSON), printed and added.
void run_scrape_size(report& rep) {
  std::fprintf(stderr, "sizing one /metrics body of %zu points ...\n", thousand_points::points);
  const scrape_size z = measure_scrape_size();
  std::printf("\n%-28s %10s  %8s  %8s  %s\n", "scrape size (/metrics body)", "bytes", "series", "points",
              "as JSON (/migration.json)");
  std::printf("%-28s %10zu  %8zu  %8zu  %zu bytes\n", std::string(scrape_size_name).c_str(), z.bytes, z.series,
              thousand_points::points, z.json_bytes);
  json::object o;
  o["name"] = scrape_size_name;
  o["kind"] = "size";
  o["value"] = z.bytes;
  o["unit"] = "bytes";
  o["series"] = z.series;
  o["points"] = thousand_points::points;
  o["json_bytes"] = z.json_bytes;
  o["description"] = scrape_size_what;
  rep.lines.push_back(std::move(o));
  std::fflush(stdout);
}

}  // namespace coport_bench
