// The client side of coport-demo: the traffic a run sends to the metering
// service (fixed data from a fixed seed), the answers it must get back, and
// the driver that sends it from coroutine callers and fiber callers alike.
#ifndef COPORT_EXAMPLES_DEMO_TRAFFIC_HPP
#define COPORT_EXAMPLES_DEMO_TRAFFIC_HPP

#include "metering.hpp"

#include <coport/bridge/runtime.hpp>
#include <coport/messaging/rpc/client.hpp>
#include <coport/messaging/notify/notify.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/json/value.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace demo {

/// The methods of the metering endpoint.
enum class op { record, total, stats, resources, usage };
inline constexpr op all_ops[] = {op::record, op::total, op::stats, op::resources, op::usage};
std::string_view method_of(op o) noexcept;

/// One RPC call: `record` sends `sample`; queries use its meter (and, for
/// `usage`, its resource). A query can also be sent to the REST API
/// (rest.hpp), whose routes answer the same values.
struct call {
  op what = op::record;
  metering::usage sample;
};

/// The REST API's target for query `c` ("/v2/meters/cpu/statistics").
std::string rest_target(const call& c);
/// The migration point of the REST route `o` is sent to ("rest.statistics").
std::string_view rest_point_of(op o) noexcept;

/// The traffic of a run and the answers it must get: `record` calls and
/// usage notifications first (the writes), then queries, whose answers are
/// known from what was written. Besides, a fifth as many REST requests as
/// RPC queries, over the same four queries. The same counts always give the
/// same traffic.
class traffic {
 public:
  /// `calls` RPC calls, of which three in five are `record`, the rest
  /// queries spread over the four query methods and the meters;
  /// `notifications` usage notifications; and REST queries.
  traffic(std::size_t calls, std::size_t notifications);

  [[nodiscard]] const std::vector<call>& records() const noexcept { return records_; }
  [[nodiscard]] const std::vector<metering::usage>& notifications() const noexcept { return notifications_; }
  [[nodiscard]] const std::vector<call>& queries() const noexcept { return queries_; }
  /// The queries sent to the REST API (after every write, as queries()).
  [[nodiscard]] const std::vector<call>& rest_queries() const noexcept { return rest_; }
  /// REST queries of each route's point ("rest.statistics", ...).
  [[nodiscard]] std::map<std::string, std::uint64_t> rest_by_point() const;
  /// Calls of each method ("record", ...), records and queries together.
  [[nodiscard]] std::map<std::string, std::uint64_t> calls_by_method() const;
  [[nodiscard]] std::size_t call_count() const noexcept { return records_.size() + queries_.size(); }

  /// What is wrong with `result` as the answer to `c`, once every record and
  /// notification has been stored; empty when it is right.
  [[nodiscard]] std::string check(const call& c, const boost::json::value& result) const;
  /// True when `meter` has idle samples (volume 0): the meters whose `stats`
  /// the ported form of release 2 gets wrong.
  [[nodiscard]] bool has_idle_samples(const std::string& meter) const;
  /// Sum of the volumes sent (records and notifications).
  [[nodiscard]] double volume_sent() const;

 private:
  struct expected_meter {
    std::uint64_t count = 0;
    double sum = 0;
    double max = 0;
    std::uint64_t idle = 0;
    std::map<std::string, double> by_resource;
  };
  void expect(const metering::usage& u);

  std::vector<call> records_;
  std::vector<metering::usage> notifications_;
  std::vector<call> queries_;
  std::vector<call> rest_;
  std::map<std::string, expected_meter, std::less<>> expected_;
};

/// Sends traffic to the metering service the way its real clients do:
/// `callers` coroutines (rpc_client with asio::use_awaitable) and `callers`
/// fibers (the same client with bridge::use_fiber) on a runtime of their
/// own, and a notifier used from a coroutine and from a fiber; REST queries
/// from `rest_clients` coroutines, each with a keep-alive connection per
/// route. Checks every answer against the traffic's expectations and prints
/// progress on stderr.
class driver {
 public:
  driver(std::shared_ptr<coport::messaging::transport> t, coport::bridge::runtime& rt, const traffic& plan,
         std::size_t callers);

  /// Starts a phase: progress lines are labelled `label` and count up to
  /// the phase's `calls`, `notifications` and `rest` queries, sent to the
  /// REST API on 127.0.0.1:`rest_port`.
  void begin(std::string label, std::size_t calls, std::size_t notifications, std::size_t rest = 0,
             std::uint16_t rest_port = 0);

  /// Sends `calls`, `notifications` and the REST queries `rest`, and returns
  /// once every call and query is answered and `stored()` (the service's
  /// count of notifications stored) covers the notifications sent. Exits
  /// the process with a message when nothing moves for a minute.
  void send(std::span<const call> calls, std::span<const metering::usage> notifications,
            const std::function<std::uint64_t()>& stored, std::span<const call> rest = {});

  /// Sends the REST API a request it cannot parse (it must answer 400 and
  /// close the connection) and one for an unknown route (404); records a
  /// failure for any other answer. Returns true when both were as expected.
  bool send_bad_requests();

  /// Calls answered in the phase, and of those, answers that were wrong or
  /// failed.
  [[nodiscard]] std::uint64_t answered() const noexcept { return answered_.load(); }
  /// REST queries answered in the phase (rightly or not).
  [[nodiscard]] std::uint64_t rest_answered() const noexcept { return rest_answered_.load(); }
  [[nodiscard]] std::uint64_t failures() const noexcept;
  /// The first failures, described.
  [[nodiscard]] std::vector<std::string> first_failures() const;
  [[nodiscard]] std::size_t callers() const noexcept { return callers_; }
  /// The coroutines that send REST queries.
  static constexpr std::size_t rest_clients = 4;

 private:
  boost::asio::awaitable<void> coroutine_caller(std::span<const call> calls, std::size_t first);
  void fiber_caller(std::span<const call> calls, std::size_t first);
  boost::asio::awaitable<void> coroutine_notifier(std::span<const metering::usage> notes);
  void fiber_notifier(std::span<const metering::usage> notes);
  boost::asio::awaitable<void> rest_client(std::span<const call> queries, std::size_t first);
  boost::asio::awaitable<bool> bad_requests();

  void answer(const call& c, const boost::json::value& result);
  void fail(std::string what);
  void wait(const std::function<std::uint64_t()>& stored);
  void print_progress(std::uint64_t stored);

  coport::messaging::rpc_client client_;
  coport::messaging::notifier notifier_;
  coport::bridge::runtime* rt_;
  const traffic* plan_;
  std::size_t callers_;
  std::uint16_t rest_port_ = 0;

  std::string label_;
  std::size_t phase_calls_ = 0;
  std::size_t phase_notes_ = 0;
  std::size_t phase_rest_ = 0;
  std::atomic<std::uint64_t> answered_{0};
  std::atomic<std::uint64_t> rest_answered_{0};
  std::atomic<std::uint64_t> notes_sent_{0};
  std::atomic<std::uint64_t> notes_failed_{0};
  std::uint64_t calls_target_ = 0;  // calls and notifications of the phase's send()s so far
  std::uint64_t notes_target_ = 0;
  std::uint64_t rest_target_ = 0;
  int last_tenth_ = -1;
  std::chrono::steady_clock::time_point last_line_{};

  mutable std::mutex mutex_;
  std::condition_variable moved_;
  std::uint64_t failures_ = 0;
  std::vector<std::string> first_failures_;
};

}  // namespace demo

#endif
