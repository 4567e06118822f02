#ifndef COPORT_MIGRATION_METRICS_HPP
#define COPORT_MIGRATION_METRICS_HPP

// The records kept for each form of a migration point or RPC method:
// calls, errors, cancellations, latency. Lock-free, so hot paths record
// without contention.

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace coport::migration {

/// A latency histogram read at once, in the buckets exported to Prometheus
/// (`admin::http_server`'s /metrics): powers of four from 1 µs to about 67 s,
/// which fall exactly on the histogram's own bucket bounds, so the counts
/// are exact, not interpolated.
struct latency_buckets {
  static constexpr std::size_t size = 14;
  /// The bounds, in seconds: 1 µs, 4 µs, 16 µs ... 67.1 s.
  static constexpr std::array<double, size> bounds_seconds{1e-6,      4e-6,     1.6e-5,   6.4e-5,   2.56e-4,
                                                           1.024e-3,  4.096e-3, 1.6384e-2, 6.5536e-2, 0.262144,
                                                           1.048576,  4.194304, 16.777216, 67.108864};
  /// Records below each bound (cumulative).
  std::array<std::uint64_t, size> cumulative{};
  /// Every record (the +Inf bucket).
  std::uint64_t count = 0;
  /// The sum of the recorded latencies.
  std::chrono::nanoseconds sum{};
};

/// Latencies in a fixed set of logarithmic buckets (four per power of two,
/// from 1 µs to about 9 hours); thread-safe, lock-free.
class latency_histogram {
 public:
  void record(std::chrono::nanoseconds d) noexcept;
  /// The latency below which a fraction `q` (0..1) of the records fall,
  /// to within a bucket (at most 19% above the true value); zero if empty.
  [[nodiscard]] std::chrono::nanoseconds percentile(double q) const noexcept;
  [[nodiscard]] std::uint64_t count() const noexcept;
  /// The counts in Prometheus' buckets, and the sum. Read while records go
  /// on, the sum may lag the counts by the records in progress.
  [[nodiscard]] latency_buckets buckets() const noexcept;

  static constexpr std::size_t bucket_count = 4 * 45;

 private:
  std::array<std::atomic<std::uint64_t>, bucket_count> buckets_{};
  std::atomic<std::uint64_t> sum_ns_{0};
};

/// Counters of one form of one point (or RPC method).
struct form_metrics {
  std::atomic<std::uint64_t> calls{0};      ///< calls finished
  std::atomic<std::uint64_t> errors{0};     ///< of which ended in an exception
  std::atomic<std::uint64_t> cancelled{0};  ///< of which were cancelled (deadline, stop)
  std::atomic<std::int64_t> in_flight{0};
  latency_histogram latency;

  /// Records one finished call.
  void record(std::chrono::nanoseconds took, bool failed, bool was_cancelled) noexcept {
    latency.record(took);
    if (failed) errors.fetch_add(1, std::memory_order_relaxed);
    if (was_cancelled) cancelled.fetch_add(1, std::memory_order_relaxed);
    calls.fetch_add(1, std::memory_order_relaxed);
  }
};

}  // namespace coport::migration

#endif
