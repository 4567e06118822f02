// Small non-template pieces: error category, logger, diagnostics registry,
// task block cache and the parker.

#include "log.hpp"

#include <coport/bridge/detail/loop_api.hpp>
#include <coport/bridge/detail/task.hpp>
#include <coport/bridge/diagnostics.hpp>
#include <coport/bridge/error.hpp>

#if COPORT_BRIDGE_FIBERS
#include <coport/bridge/detail/parker.hpp>

#include <boost/fiber/context.hpp>
#endif
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>

namespace coport::bridge {

namespace {

class bridge_category_impl final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "coport.bridge"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::blocking_on_loop: return "fiber-blocking call on the loop fiber";
      case errc::not_on_runtime: return "not called from a fiber of a coport runtime";
      case errc::timed_out: return "timed out";
      case errc::runtime_stopped: return "runtime stopped";
      case errc::implicit_yield: return "implicit yield in strict mode";
      case errc::channel_closed: return "channel closed";
      case errc::foreign_executor: return "executor does not belong to a coport runtime";
    }
    return "unknown coport.bridge error";
  }
  boost::system::error_condition default_error_condition(int ev) const noexcept override {
    switch (static_cast<errc>(ev)) {
      case errc::timed_out: return boost::system::errc::timed_out;
      default: return {ev, *this};
    }
  }
};

}  // namespace

const boost::system::error_category& bridge_category() noexcept {
  static const bridge_category_impl category;
  return category;
}

const work_tag* diagnostics::tag(std::string_view name) {
  std::lock_guard lk(mutex_);
  auto it = tags_.find(std::string(name));
  if (it == tags_.end()) {
    it = tags_.emplace(std::string(name), std::make_unique<work_tag>(std::string(name))).first;
  }
  return it->second.get();
}

namespace {

// "<loop>", "<asio handler>", "<fiber>", "<hosted>", "<raw fiber>": names the
// bridge gives work that has none of its own.
bool internal_name(std::string_view n) noexcept {
  return n.size() >= 2 && n.front() == '<' && n.back() == '>';
}

bool ends_with(std::string_view s, std::string_view suffix) noexcept {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

// The derived tag is cached on the base tag: two threads may both intern it
// the first time, and both get the same interned tag, so the race is benign.
const work_tag* diagnostics::fiber_callee_tag(const work_tag* caller) {
  if (!caller || internal_name(caller->name)) return fiber_tag();
  if (ends_with(caller->name, " [fiber]")) return caller;
  if (const work_tag* t = caller->as_fiber_.load(std::memory_order_acquire)) return t;
  const work_tag* t = tag(caller->name + " [fiber]");
  caller->as_fiber_.store(t, std::memory_order_release);
  return t;
}

const work_tag* diagnostics::raw_fiber_tag(const work_tag* creator) {
  if (!creator || internal_name(creator->name)) return raw_fiber_tag();
  if (ends_with(creator->name, " [raw fiber]")) return creator;
  if (const work_tag* t = creator->as_raw_fiber_.load(std::memory_order_acquire)) return t;
  const work_tag* t = tag(creator->name + " [raw fiber]");
  creator->as_raw_fiber_.store(t, std::memory_order_release);
  return t;
}

work_counters read_counters(const work_tag& t) {
  constexpr auto r = std::memory_order_relaxed;
  work_counters c{t.name, t.implicit_yields.load(r), t.stalls.load(r), t.loop_blocks.load(r),
                  std::chrono::microseconds(t.longest_stall_us.load(r))};
  c.calls = t.calls.load(r);
  c.fiber_time = std::chrono::nanoseconds(t.fiber_time_ns.load(r));
  c.raw_fibers = t.raw_fibers.load(r);
  c.awaits = t.awaits.load(r);
  c.use_fiber_waits = t.use_fiber_waits.load(r);
  c.runs_in_fiber = t.runs_in_fiber.load(r);
  c.hosted_steps = t.hosted_steps.load(r);
  return c;
}

work_counters diagnostics::counters(std::string_view name) const {
  std::lock_guard lk(mutex_);
  auto it = tags_.find(std::string(name));
  if (it == tags_.end()) return work_counters{std::string(name)};
  return read_counters(*it->second);
}

std::vector<work_counters> diagnostics::snapshot() const {
  std::vector<work_counters> out;
  {
    std::lock_guard lk(mutex_);
    out.reserve(tags_.size());
    for (const auto& [name, t] : tags_) out.push_back(read_counters(*t));
  }
  std::sort(out.begin(), out.end(),
            [](const work_counters& a, const work_counters& b) { return a.name < b.name; });
  return out;
}

}  // namespace coport::bridge

namespace coport::bridge::detail {

std::shared_ptr<spdlog::logger> default_logger() {
  static std::mutex m;
  std::lock_guard lk(m);
  if (auto existing = spdlog::get("coport")) return existing;
  auto made = std::make_shared<spdlog::logger>("coport",
                                               std::make_shared<spdlog::sinks::stderr_sink_mt>());
  spdlog::initialize_logger(made);  // registers it, with the global level
  return made;
}

// ------------------------------------------------------------- task blocks

namespace {

// Three size classes cover Asio's coroutine continuations and the bridge's
// own tasks; anything larger goes to the global allocator.
constexpr std::size_t block_sizes[] = {64, 128, 256};
constexpr std::size_t max_cached_per_class = 4096;

struct free_block {
  free_block* next;
};

struct block_cache {
  free_block* head[3] = {};
  std::size_t count[3] = {};
  ~block_cache() {
    for (auto& h : head) {
      while (h) ::operator delete(std::exchange(h, h->next));
    }
    dead = true;
  }
  static thread_local bool dead;
};

thread_local bool block_cache::dead = false;
thread_local block_cache cache;

int size_class(std::size_t size) noexcept {
  for (int i = 0; i < 3; ++i)
    if (size <= block_sizes[i]) return i;
  return -1;
}

}  // namespace

void* allocate_task_block(std::size_t size) {
  const int c = size_class(size);
  if (c < 0) return ::operator new(size);
  if (!block_cache::dead) {
    if (free_block* b = cache.head[c]) {
      cache.head[c] = b->next;
      --cache.count[c];
      return b;
    }
  }
  return ::operator new(block_sizes[c]);
}

void deallocate_task_block(void* p, std::size_t size) noexcept {
  const int c = size_class(size);
  if (c < 0 || block_cache::dead || cache.count[c] >= max_cached_per_class) {
    ::operator delete(p);
    return;
  }
  auto* b = static_cast<free_block*>(p);
  b->next = cache.head[c];
  cache.head[c] = b;
  ++cache.count[c];
}

#if COPORT_BRIDGE_FIBERS
// ------------------------------------------------------------------ parker

void parker::park() noexcept {
  auto* ctx = running_context();
  boost::fibers::detail::spinlock_lock lk{lock_};
  while (!notified_) {
    waker_ = ctx->create_waker();
    armed_ = true;
    ctx->suspend(lk);  // releases lk once this fiber is off the CPU
    lk.lock();
  }
  notified_ = false;
  armed_ = false;
}

bool parker::park_until(std::chrono::steady_clock::time_point deadline) noexcept {
  auto* ctx = running_context();
  boost::fibers::detail::spinlock_lock lk{lock_};
  while (!notified_) {
    if (std::chrono::steady_clock::now() >= deadline) {
      armed_ = false;
      return false;
    }
    waker_ = ctx->create_waker();
    armed_ = true;
    ctx->wait_until(deadline, lk, boost::fibers::waker(waker_));
    lk.lock();
  }
  notified_ = false;
  armed_ = false;
  return true;
}

void parker::unpark() noexcept {
  boost::fibers::detail::spinlock_lock lk{lock_};
  notified_ = true;
  if (!armed_) return;
  armed_ = false;
  // Woken with lock_ held, as Boost.Fiber's own wait queues do. A fiber of
  // another thread is woken by queueing it there and then notifying that
  // thread's scheduling algorithm; the woken fiber takes lock_ again before
  // its park() returns, so its thread cannot end, and destroy the algorithm
  // being notified, before wake() has returned here (TSan saw a plain
  // thread's round_robin destroyed under a notify). The unlock is then this
  // parker's last use: the woken fiber may destroy it right after.
  waker_.wake();
}
#endif

}  // namespace coport::bridge::detail
