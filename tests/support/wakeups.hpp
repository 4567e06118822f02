// Counting the wake-ups of a process, for the tests that check an idle
// runtime sleeps.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

namespace coport::test {

/// Voluntary context switches so far of the threads of this process whose
/// name starts with `prefix` (Linux, /proc/self/task/*/status): a thread adds
/// one each time it goes to sleep, so a thread woken periodically adds one
/// per period. Threads that have exited are not counted. A prefix leaves out
/// the test's own threads and those of the tools it runs under (a
/// sanitizer's background thread wakes on its own).
inline std::uint64_t thread_wakeups(std::string_view prefix) {
  constexpr std::string_view key = "voluntary_ctxt_switches:";
  std::uint64_t total = 0;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    std::getline(comm, name);
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    std::ifstream status(task.path() / "status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.compare(0, key.size(), key) == 0) total += std::stoull(line.substr(key.size()));
    }
  }
  return total;
}

}  // namespace coport::test
