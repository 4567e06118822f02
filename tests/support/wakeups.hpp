// Counting the wake-ups of a process, for the tests that check an idle
// runtime sleeps.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace coport::test {

/// Voluntary context switches of every thread of this process so far (Linux,
/// /proc/self/task/*/status): a thread adds one each time it goes to sleep,
/// so a thread woken periodically adds one per period. Threads that have
/// exited are not counted.
inline std::uint64_t process_wakeups() {
  constexpr std::string_view key = "voluntary_ctxt_switches:";
  std::uint64_t total = 0;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream status(task.path() / "status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.compare(0, key.size(), key) == 0) total += std::stoull(line.substr(key.size()));
    }
  }
  return total;
}

}  // namespace coport::test
