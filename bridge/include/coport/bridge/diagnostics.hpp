#ifndef COPORT_BRIDGE_DIAGNOSTICS_HPP
#define COPORT_BRIDGE_DIAGNOSTICS_HPP

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace coport::bridge {

/// A named piece of work (a coroutine, a fiber, a method) whose behaviour on
/// the loop is counted. Tags are interned by `diagnostics::tag()` and live as
/// long as the registry; executors and fibers carry a pointer to one.
struct work_tag {
  explicit work_tag(std::string n) : name(std::move(n)) {}
  const std::string name;
  /// Times a hosted coroutine blocked its host fiber on a fiber primitive.
  mutable std::atomic<std::uint64_t> implicit_yields{0};
  /// Times this work kept its loop from Asio longer than the stall threshold.
  mutable std::atomic<std::uint64_t> stalls{0};
  /// Times native code on the loop fiber tried to block it on a fiber primitive.
  mutable std::atomic<std::uint64_t> loop_blocks{0};
  /// Longest stall seen, in microseconds.
  mutable std::atomic<std::uint64_t> longest_stall_us{0};
};

/// A copy of one tag's counters.
struct work_counters {
  std::string name;
  std::uint64_t implicit_yields = 0;
  std::uint64_t stalls = 0;
  std::uint64_t loop_blocks = 0;
  std::chrono::microseconds longest_stall{0};
};

/// What went wrong, for `runtime_options::on_violation`.
struct violation {
  enum class kind { implicit_yield, loop_block, stall };
  kind what;
  std::string work;     ///< name of the work tag responsible
  std::string message;  ///< one line for a log or a test failure
};

/// Interned work tags and their counters. One registry may be shared by the
/// loops of a pool so that counters add up per name across loops.
/// Thread-safe.
class diagnostics {
 public:
  /// The tag for `name`, created on first use; the pointer stays valid for the
  /// registry's lifetime.
  const work_tag* tag(std::string_view name);
  /// Counters of `name` (all zero if the name was never used).
  [[nodiscard]] work_counters counters(std::string_view name) const;
  /// Counters of every tag, sorted by name.
  [[nodiscard]] std::vector<work_counters> snapshot() const;

  /// Tag used for Asio handlers that run directly on the io_context.
  const work_tag* asio_handlers_tag() { return tag("<asio handler>"); }
  /// Tag used for native work posted without a name.
  const work_tag* loop_tag() { return tag("<loop>"); }
  /// Tag used for fibers started without a name.
  const work_tag* fiber_tag() { return tag("<fiber>"); }

 private:
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::unique_ptr<work_tag>> tags_;
};

/// Counters of one tag, read now.
work_counters read_counters(const work_tag& tag);

}  // namespace coport::bridge

#endif
