#ifndef COPORT_BRIDGE_REPORT_HPP
#define COPORT_BRIDGE_REPORT_HPP

// The bridge report: per unit of work (a work tag), what it did on the loop
// and which cross-world calls it still makes, with the verdict on removing
// Boost.Fiber and its reasons. For code that is not RPC, or next to an RPC
// service's migration report (coport/migration/report.hpp), whose wording it
// shares. Available in the fiber-free bridge too, where the fiber columns
// stay zero.

#include <coport/bridge/diagnostics.hpp>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace coport::bridge {

/// One row per work tag that has anything counted, sorted by name; a
/// verdict computed from the rows alone.
struct report {
  struct row {
    /// The work tag's name ("<fiber>", "<raw fiber>", "<loop>", "<asio
    /// handler>", "<hosted>" for work without a name of its own).
    std::string work;
    std::uint64_t calls = 0;
    std::chrono::nanoseconds fiber_time{};
    std::uint64_t implicit_yields = 0;
    std::uint64_t stalls = 0;
    std::chrono::microseconds longest_stall{};
    std::uint64_t loop_blocks = 0;
    std::uint64_t raw_fibers = 0;
    /// Cross-world calls: made by this work (`await`, `use_fiber`), made
    /// into it (`run_in_fiber` jobs, steps of a hosted coroutine).
    std::uint64_t awaits = 0;
    std::uint64_t runs_in_fiber = 0;
    std::uint64_t use_fiber_waits = 0;
    std::uint64_t hosted_steps = 0;
  };

  /// What the verdict is about, as in migration::report.
  std::string goal = "removing Boost.Fiber";
  std::vector<row> rows;
  /// Empty: ready. Otherwise one line per reason.
  std::vector<std::string> not_ready;

  /// The report of every tag of `registry` with anything counted, judged.
  [[nodiscard]] static report of(const diagnostics& registry);
  /// The report of these counters (a `diagnostics::snapshot()`), judged;
  /// rows with nothing counted are left out.
  [[nodiscard]] static report of(const std::vector<work_counters>& counters);

  [[nodiscard]] bool ready() const noexcept { return not_ready.empty(); }
  /// "ready for <goal>" or "not ready for <goal>: N reason(s)".
  [[nodiscard]] std::string verdict() const;
  /// Computes `not_ready` from the rows: fiber time spent in work, raw
  /// fibers, each kind of cross-world call still made per work, implicit
  /// yields and loop blocks. Stalls are shown, not judged: they are a
  /// latency problem whichever world causes them.
  void judge();
  /// The row of `work`, or nullptr.
  [[nodiscard]] const row* find(std::string_view work) const noexcept;
  /// A table for people (aligned columns), then the verdict with reasons.
  [[nodiscard]] std::string to_text() const;
  [[nodiscard]] boost::json::object to_json() const;
  /// Reads what to_json() wrote; throws report_decode_error naming the field
  /// that is wrong.
  [[nodiscard]] static report from_json(const boost::json::value& v);
};

/// A bridge report in JSON that does not have the expected fields.
class report_decode_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace coport::bridge

#endif
