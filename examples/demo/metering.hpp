// The metering service of coport-demo, in the three releases of its port.
//
// A metering service stores usage samples (meter, resource, volume) sent to
// it by RPC (`record`) and by notifications ("compute.instance.usage"), and
// answers queries on them (`total`, `stats`, `resources`, `usage`). Its
// storage is reached through two clients that front the same store:
//
//   legacy_storage   the client the service was written with: each call
//                    blocks the calling fiber (a round trip, then the store's
//                    lock);
//   ported_storage   its replacement: each call is co_awaited and blocks
//                    nothing.
//
// Each release registers the forms of the methods it has (see release):
// a plain function is the legacy (fiber) form, one returning
// asio::awaitable<T> the ported (coroutine) form. Storing a usage
// notification is a migration point of its own ("notifications.usage"),
// and so is each route of the service's REST API (rest.hpp): the report
// shows the three sources of work side by side.
#ifndef COPORT_EXAMPLES_DEMO_METERING_HPP
#define COPORT_EXAMPLES_DEMO_METERING_HPP

#include <coport/bridge/mutex.hpp>
#include <coport/messaging/rpc/endpoint.hpp>
#include <coport/messaging/notify/notify.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/describe/class.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace coport::bridge {
class runtime;
}
namespace coport::migration {
class registry;
template <class Signature>
class point;
}  // namespace coport::migration

namespace metering {

/// One usage sample, as `record` takes it and as a usage notification
/// carries it in its payload.
struct usage {
  std::string meter;
  std::string resource;
  double volume = 0;
};
BOOST_DESCRIBE_STRUCT(usage, (), (meter, resource, volume))

/// What `stats(meter)` answers. `mean` is rounded to two decimals.
struct meter_stats {
  std::uint64_t count = 0;
  double sum = 0;
  double max = 0;
  double mean = 0;
  bool operator==(const meter_stats&) const = default;
};
BOOST_DESCRIBE_STRUCT(meter_stats, (), (count, sum, max, mean))

/// The event type of usage notifications.
inline constexpr const char* usage_event = "compute.instance.usage";

/// How long one storage round trip takes (the simulated I/O of both
/// clients).
inline constexpr std::chrono::microseconds storage_latency{100};

/// A stored sample.
struct sample {
  std::string resource;
  double volume = 0;
};

/// The store both clients front: samples by meter, in arrival order. Its
/// lock is a dual-world bridge::mutex because fibers (legacy_storage) and
/// coroutines (ported_storage) take it: a fiber blocks in lock(), a
/// coroutine co_awaits scoped_lock(). Neither holds it across a wait, so on
/// one loop it is never contended; it is what keeps the store correct when
/// the service runs on a pool of loops or a multi-threaded io_context.
class sample_store {
 public:
  /// `ex`: where coroutines waiting for the lock resume when their own
  /// executor is unknown (the service's loop or io_context).
  explicit sample_store(boost::asio::any_io_executor ex) : lock_(std::move(ex)) {}

 private:
  friend class legacy_storage;
  friend class ported_storage;
  coport::bridge::mutex lock_;
  std::map<std::string, std::vector<sample>, std::less<>> samples_;
};

/// The legacy storage client: every call blocks the calling fiber. Called
/// from a hosted coroutine it blocks the coroutine's host fiber (an implicit
/// yield, which the migration report counts); called from a native
/// coroutine it throws bridge::errc::blocking_on_loop.
class legacy_storage {
 public:
  explicit legacy_storage(sample_store& store) : store_(&store) {}
  /// Appends a sample; returns the meter's sample count.
  std::uint64_t add(const usage& u);
  /// The samples of `meter` (a copy), oldest first.
  std::vector<sample> samples(const std::string& meter);

 private:
  sample_store* store_;
};

/// The ported storage client: the same operations, co_awaited.
class ported_storage {
 public:
  explicit ported_storage(sample_store& store) : store_(&store) {}
  /// Appends a sample; returns the meter's sample count.
  boost::asio::awaitable<std::uint64_t> add(usage u);
  /// The samples of `meter` (a copy), oldest first.
  boost::asio::awaitable<std::vector<sample>> samples(std::string meter);

 private:
  sample_store* store_;
};

/// The releases of the service, one per step of its port.
enum class release {
  /// Before the port: every method in its legacy form only; notifications
  /// stored through the legacy client (run_in_fiber).
  legacy = 1,
  /// Half-way: `resources` is legacy only; `record`, `total`, `stats` and
  /// `usage` have both forms. The ported `stats` skips idle (zero-volume)
  /// samples, a porting bug that shadow runs catch; the ported `usage`
  /// still calls the legacy storage client (it must run hosted).
  mixed = 2,
  /// Every method in both forms, the ported forms complete and correct.
  ported = 3,
};

/// Where the service declares its migration points other than RPC
/// methods. Both null (a service on coro_executor, without a coport
/// runtime): usage notifications are stored by the ported client directly,
/// and the report has no row for them.
struct point_host {
  /// The registry of the points (one for the service's non-RPC points).
  coport::migration::registry* registry = nullptr;
  /// The runtime the points' forms run on (the service's loop).
  coport::bridge::runtime* runtime = nullptr;
};

/// The metering service of one release over a store of its own.
class service {
 public:
  /// `store_executor`: the service's loop or io_context (see sample_store).
  /// With `points`, storing a usage notification is the migration point
  /// "notifications.usage" of `points.registry`: legacy only in release 1,
  /// both forms later (its policy is the registry's to set).
  service(release r, boost::asio::any_io_executor store_executor, point_host points = {});
  ~service();
  service(const service&) = delete;
  service& operator=(const service&) = delete;

  [[nodiscard]] release current_release() const noexcept { return release_; }
  /// The service's two storage clients, for its other front ends (the REST
  /// API); they outlive every call made through them while the service lives.
  [[nodiscard]] legacy_storage& legacy_client() noexcept { return legacy_; }
  [[nodiscard]] ported_storage& ported_client() noexcept { return ported_; }

  /// The RPC endpoint "metering" (version 1.0).
  [[nodiscard]] std::shared_ptr<coport::messaging::endpoint> rpc_endpoint() const { return rpc_; }
  /// The notification endpoint: stores the samples of usage notifications.
  [[nodiscard]] std::shared_ptr<coport::messaging::notification_endpoint> listener_endpoint() const {
    return notifications_;
  }
  /// Usage notifications stored so far.
  [[nodiscard]] std::uint64_t notifications_stored() const noexcept { return stored_.load(); }
  /// Usage notifications refused (a payload that is not a usage sample).
  [[nodiscard]] std::uint64_t notifications_refused() const noexcept { return refused_.load(); }

 private:
  void add_legacy_forms();
  void add_ported_forms();
  void add_listener();
  void add_notification_point(const point_host& points);

  release release_;
  std::unique_ptr<sample_store> store_;
  legacy_storage legacy_;
  ported_storage ported_;
  std::shared_ptr<coport::messaging::endpoint> rpc_;
  std::shared_ptr<coport::messaging::notification_endpoint> notifications_;
  // Stores one notification's sample (held by the caller for the call;
  // see add_notification_point); null without a point_host.
  std::unique_ptr<coport::migration::point<std::uint64_t(const usage*)>> store_note_;
  std::atomic<std::uint64_t> stored_{0};
  std::atomic<std::uint64_t> refused_{0};
};

/// The answers every correct release gives, computed from samples: the
/// legacy forms use them, the ported forms of release 3 as well.
double total_of(const std::vector<sample>& samples);
meter_stats stats_of(const std::vector<sample>& samples);
std::vector<std::string> resources_of(const std::vector<sample>& samples);
double usage_of(const std::vector<sample>& samples, const std::string& resource);
/// `v` rounded to two decimals, halves away from zero.
double round_cents(double v);

}  // namespace metering

#endif
