#include <coport/migration/metrics.hpp>

#include <algorithm>
#include <bit>
#include <cmath>

namespace coport::migration {

namespace {

// Bucket i covers [lower(i), lower(i+1)) in nanoseconds: four buckets per
// power of two from 1 µs (below it: bucket 0).
constexpr std::uint64_t first_ns = 1000;

std::size_t bucket_of(std::uint64_t ns) noexcept {
  if (ns < first_ns) return 0;
  const std::uint64_t x = ns / (first_ns / 4);  // >= 4
  const int log = std::bit_width(x) - 1;         // >= 2
  const std::uint64_t sub = (x >> (log - 2)) & 3;
  const std::size_t b = static_cast<std::size_t>(log - 2) * 4 + static_cast<std::size_t>(sub) + 1;
  return std::min(b, latency_histogram::bucket_count - 1);
}

std::uint64_t lower_of(std::size_t b) noexcept {
  if (b == 0) return 0;
  const std::size_t log = (b - 1) / 4 + 2;
  const std::uint64_t sub = (b - 1) % 4;
  return ((std::uint64_t{4} + sub) << (log - 2)) * (first_ns / 4);
}

}  // namespace

void latency_histogram::record(std::chrono::nanoseconds d) noexcept {
  const auto ns = static_cast<std::uint64_t>(std::max<std::int64_t>(d.count(), 0));
  sum_ns_.fetch_add(ns, std::memory_order_relaxed);
  buckets_[bucket_of(ns)].fetch_add(1, std::memory_order_relaxed);
}

latency_buckets latency_histogram::buckets() const noexcept {
  // Bound j (4^j µs = 2^(2j) µs) is the lower bound of bucket 1 + 8j: the
  // records below it are those of buckets 0 .. 8j.
  static_assert(4 * 2 * (latency_buckets::size - 1) + 1 < bucket_count);
  latency_buckets out;
  std::uint64_t seen = 0;
  std::size_t next = 0;
  for (std::size_t i = 0; i < bucket_count; ++i) {
    if (next < latency_buckets::size && i == 1 + 8 * next) out.cumulative[next++] = seen;
    seen += buckets_[i].load(std::memory_order_relaxed);
  }
  out.count = seen;
  out.sum = std::chrono::nanoseconds(static_cast<std::int64_t>(sum_ns_.load(std::memory_order_relaxed)));
  return out;
}

std::uint64_t latency_histogram::count() const noexcept {
  std::uint64_t n = 0;
  for (const auto& b : buckets_) n += b.load(std::memory_order_relaxed);
  return n;
}

std::chrono::nanoseconds latency_histogram::percentile(double q) const noexcept {
  std::array<std::uint64_t, bucket_count> snap;
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < bucket_count; ++i) {
    snap[i] = buckets_[i].load(std::memory_order_relaxed);
    total += snap[i];
  }
  if (total == 0) return {};
  const auto rank = static_cast<std::uint64_t>(std::ceil(std::clamp(q, 0.0, 1.0) * static_cast<double>(total)));
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < bucket_count; ++i) {
    seen += snap[i];
    if (seen >= std::max<std::uint64_t>(rank, 1)) {
      // The bucket's upper bound: a percentile never under-reports.
      const std::uint64_t upper = i + 1 < bucket_count ? lower_of(i + 1) : lower_of(i) * 2;
      return std::chrono::nanoseconds(static_cast<std::int64_t>(upper));
    }
  }
  return {};
}

}  // namespace coport::migration
