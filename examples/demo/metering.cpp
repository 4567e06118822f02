#include "metering.hpp"

#include <coport/bridge/fiber.hpp>
#include <coport/migration/point.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/value_to.hpp>

#include <algorithm>
#include <cmath>
#include <exception>
#include <mutex>
#include <set>
#include <utility>

namespace asio = boost::asio;
namespace bridge = coport::bridge;
namespace json = boost::json;
namespace msg = coport::messaging;

namespace metering {

// ------------------------------------------------------------------ storage

std::uint64_t legacy_storage::add(const usage& u) {
  bridge::this_fiber::sleep_for(storage_latency);  // the round trip: blocks this fiber
  std::lock_guard lk(store_->lock_);              // blocks this fiber while another holds it
  auto& rows = store_->samples_[u.meter];
  rows.push_back(sample{u.resource, u.volume});
  return rows.size();
}

std::vector<sample> legacy_storage::samples(const std::string& meter) {
  bridge::this_fiber::sleep_for(storage_latency);
  std::lock_guard lk(store_->lock_);
  const auto it = store_->samples_.find(meter);
  return it == store_->samples_.end() ? std::vector<sample>{} : it->second;
}

asio::awaitable<std::uint64_t> ported_storage::add(usage u) {
  asio::steady_timer round_trip(co_await asio::this_coro::executor, storage_latency);
  co_await round_trip.async_wait(asio::use_awaitable);  // suspends this coroutine only
  const auto lk = co_await store_->lock_.scoped_lock();
  auto& rows = store_->samples_[u.meter];
  rows.push_back(sample{std::move(u.resource), u.volume});
  co_return rows.size();
}

asio::awaitable<std::vector<sample>> ported_storage::samples(std::string meter) {
  asio::steady_timer round_trip(co_await asio::this_coro::executor, storage_latency);
  co_await round_trip.async_wait(asio::use_awaitable);
  const auto lk = co_await store_->lock_.scoped_lock();
  const auto it = store_->samples_.find(meter);
  co_return it == store_->samples_.end() ? std::vector<sample>{} : it->second;
}

// ---------------------------------------------------------------- answers

double round_cents(double v) { return std::round(v * 100) / 100; }

double total_of(const std::vector<sample>& samples) {
  double sum = 0;
  for (const auto& s : samples) sum += s.volume;
  return sum;
}

meter_stats stats_of(const std::vector<sample>& samples) {
  meter_stats st;
  for (const auto& s : samples) {
    ++st.count;
    st.sum += s.volume;
    st.max = std::max(st.max, s.volume);
  }
  st.mean = st.count == 0 ? 0 : round_cents(st.sum / static_cast<double>(st.count));
  return st;
}

std::vector<std::string> resources_of(const std::vector<sample>& samples) {
  std::set<std::string> names;
  for (const auto& s : samples) names.insert(s.resource);
  return {names.begin(), names.end()};
}

double usage_of(const std::vector<sample>& samples, const std::string& resource) {
  double sum = 0;
  for (const auto& s : samples) {
    if (s.resource == resource) sum += s.volume;
  }
  return sum;
}

namespace {

// The ported `stats` of release 2, rewritten during the port with a filter
// that looked harmless: idle samples (volume 0) are left out, so the count
// and the mean differ from the legacy answer for every meter that has one.
// Release 3 fixes it; shadow runs of release 2 find it.
meter_stats stats_skipping_idle(const std::vector<sample>& samples) {
  meter_stats st;
  for (const auto& s : samples) {
    if (s.volume == 0) continue;
    ++st.count;
    st.sum += s.volume;
    st.max = std::max(st.max, s.volume);
  }
  st.mean = st.count == 0 ? 0 : round_cents(st.sum / static_cast<double>(st.count));
  return st;
}

}  // namespace

// ---------------------------------------------------------------- service

service::service(release r, asio::any_io_executor store_executor, point_host points)
    : release_(r),
      store_(std::make_unique<sample_store>(std::move(store_executor))),
      legacy_(*store_),
      ported_(*store_),
      rpc_(std::make_shared<msg::endpoint>("metering", msg::endpoint_target{std::nullopt, "1.0"})) {
  add_legacy_forms();
  if (release_ != release::legacy) add_ported_forms();
  if (points.registry && points.runtime) add_notification_point(points);
  add_listener();
}

service::~service() = default;

// What the service was written as: plain functions on the legacy client.
// Each blocks its fiber on the client's round trip and lock.
void service::add_legacy_forms() {
  rpc_->add("record", {"meter", "resource", "volume"},
            [this](std::string meter, std::string resource, double volume) {
              return legacy_.add(usage{std::move(meter), std::move(resource), volume});
            });
  rpc_->add("total", {"meter"}, [this](std::string meter) { return total_of(legacy_.samples(meter)); });
  rpc_->add("stats", {"meter"}, [this](std::string meter) { return stats_of(legacy_.samples(meter)); });
  rpc_->add("resources", {"meter"}, [this](std::string meter) { return resources_of(legacy_.samples(meter)); });
  rpc_->add("usage", {"meter", "resource"}, [this](std::string meter, std::string resource) {
    return usage_of(legacy_.samples(meter), resource);
  });
}

// The ported forms: coroutines on the ported client, registered next to
// the legacy forms under the same names. Which form serves a call is the
// method's migration policy.
void service::add_ported_forms() {
  rpc_->add("record", {"meter", "resource", "volume"},
            [this](std::string meter, std::string resource, double volume) -> asio::awaitable<std::uint64_t> {
              usage u{std::move(meter), std::move(resource), volume};
              co_return co_await ported_.add(std::move(u));
            });
  rpc_->add("total", {"meter"}, [this](std::string meter) -> asio::awaitable<double> {
    co_return total_of(co_await ported_.samples(std::move(meter)));
  });
  if (release_ == release::mixed) {
    rpc_->add("stats", {"meter"}, [this](std::string meter) -> asio::awaitable<meter_stats> {
      co_return stats_skipping_idle(co_await ported_.samples(std::move(meter)));
    });
    // Ported in shape only: the body still calls the legacy client, which
    // blocks this coroutine's host fiber at each call.
    rpc_->add("usage", {"meter", "resource"},
              [this](std::string meter, std::string resource) -> asio::awaitable<double> {
                co_return usage_of(legacy_.samples(meter), resource);
              });
    // `resources` has no ported form in this release.
    return;
  }
  rpc_->add("stats", {"meter"}, [this](std::string meter) -> asio::awaitable<meter_stats> {
    co_return stats_of(co_await ported_.samples(std::move(meter)));
  });
  rpc_->add("resources", {"meter"}, [this](std::string meter) -> asio::awaitable<std::vector<std::string>> {
    co_return resources_of(co_await ported_.samples(std::move(meter)));
  });
  rpc_->add("usage", {"meter", "resource"},
            [this](std::string meter, std::string resource) -> asio::awaitable<double> {
              co_return usage_of(co_await ported_.samples(std::move(meter)), resource);
            });
}

// Storing a notification's sample, as a migration point: release 1 has the
// legacy form only, later releases both (the registry's policy chooses;
// its default is ported). The sample is passed by pointer: the listener
// holds the notification until the call ends, and a shadow call then
// copies no strings.
void service::add_notification_point(const point_host& points) {
  coport::migration::point<std::uint64_t(const usage*)>::forms forms;
  forms.legacy = [this](const usage* u) { return legacy_.add(*u); };
  if (release_ != release::legacy) {
    forms.ported = [this](const usage* u) -> asio::awaitable<std::uint64_t> { co_return co_await ported_.add(*u); };
  }
  store_note_ = std::make_unique<coport::migration::point<std::uint64_t(const usage*)>>(
      *points.registry, "notifications.usage", std::move(forms), *points.runtime);
}

// Usage notifications. A listener runs plain handlers inline on its
// executor, where nothing may block, so even release 1 handles them in a
// coroutine: through the point, whose legacy form (the legacy client's
// call) runs in a pooled fiber (run_in_fiber) and whose ported form
// co_awaits the ported client. Without a point the handler does the same
// itself.
void service::add_listener() {
  msg::notification_filter only_usage;
  only_usage.event_type = "compute\\.instance\\.usage$";
  notifications_ = std::make_shared<msg::notification_endpoint>("metering.usage", std::move(only_usage));
  notifications_->on(msg::priority::info, [this](const msg::notification& n) -> asio::awaitable<void> {
    usage u;
    bool valid = true;
    try {
      u = json::value_to<usage>(n.payload);
    } catch (const std::exception&) {
      valid = false;  // acknowledged and dropped: requeueing it would not make it valid
    }
    if (!valid) {
      ++refused_;
      co_return;
    }
    if (store_note_) {
      co_await store_note_->async_call(&u);
    } else if (release_ == release::legacy) {
      auto store = [this, u] { return legacy_.add(u); };
      co_await bridge::run_in_fiber(std::move(store));
    } else {
      co_await ported_.add(std::move(u));
    }
    ++stored_;
  });
}

}  // namespace metering
