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
/// long as the registry; executors and fibers carry a pointer to one. Every
/// counter is written with relaxed atomics, from any loop of the registry,
/// and read the same way: a reading taken while work runs is a moment's view,
/// not a consistent cut across counters.
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

  /// Pieces of this work the bridge saw start: fiber jobs (`run_in_fiber`,
  /// `async_run_in_fiber`, `spawn_fiber`), hosted coroutines, coroutines of
  /// `bridge::spawn`, raw fibers and `this_fiber::work_scope`s. A coroutine
  /// started with plain `asio::co_spawn` is not seen starting.
  mutable std::atomic<std::uint64_t> calls{0};
  /// Time on the CPU in fibers while they ran this work, in nanoseconds
  /// (measured by the scheduler at each switch and charged when the fiber
  /// leaves the CPU; a hosted coroutine's steps run in its host fiber and
  /// count here too).
  mutable std::atomic<std::uint64_t> fiber_time_ns{0};
  /// Raw fibers (created with Boost.Fiber calls) that ran under this name.
  mutable std::atomic<std::uint64_t> raw_fibers{0};
  /// Cross-world calls made by this work: `bridge::await` (a fiber waits
  /// for a coroutine) and fiber-blocking Asio operations (`use_fiber`).
  mutable std::atomic<std::uint64_t> awaits{0};
  mutable std::atomic<std::uint64_t> use_fiber_waits{0};
  /// Cross-world calls made *into* this work: fiber jobs started under this
  /// name (`run_in_fiber`, `async_run_in_fiber`, `spawn_fiber`), and steps
  /// a hosted coroutine of this name ran in its host fiber.
  mutable std::atomic<std::uint64_t> runs_in_fiber{0};
  mutable std::atomic<std::uint64_t> hosted_steps{0};

 private:
  friend class diagnostics;
  // The tags named after this one ("<name> [fiber]", "<name> [raw fiber]"),
  // made on first use and kept, so that the hot path interns nothing.
  mutable std::atomic<const work_tag*> as_fiber_{nullptr};
  mutable std::atomic<const work_tag*> as_raw_fiber_{nullptr};
};

/// A copy of one tag's counters.
struct work_counters {
  std::string name;
  std::uint64_t implicit_yields = 0;
  std::uint64_t stalls = 0;
  std::uint64_t loop_blocks = 0;
  std::chrono::microseconds longest_stall{0};
  std::uint64_t calls = 0;
  std::chrono::nanoseconds fiber_time{0};
  std::uint64_t raw_fibers = 0;
  std::uint64_t awaits = 0;
  std::uint64_t use_fiber_waits = 0;
  std::uint64_t runs_in_fiber = 0;
  std::uint64_t hosted_steps = 0;
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
  /// Tag used for raw fibers whose creator had no name of its own.
  const work_tag* raw_fiber_tag() { return tag("<raw fiber>"); }
  /// "<caller> [fiber]": fiber work started by `caller` without a name of
  /// its own (run_in_fiber(fn)); `fiber_tag()` for a null caller.
  const work_tag* fiber_callee_tag(const work_tag* caller);
  /// "<creator> [raw fiber]": a raw fiber created by `creator`'s work;
  /// `raw_fiber_tag()` for a null creator, and `creator` itself when it is
  /// already a raw fiber's tag.
  const work_tag* raw_fiber_tag(const work_tag* creator);

 private:
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::unique_ptr<work_tag>> tags_;
};

/// Counters of one tag, read now.
work_counters read_counters(const work_tag& tag);

}  // namespace coport::bridge

#endif
