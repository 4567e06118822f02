// The loop of a runtime, whichever way it runs its work: its threads, the
// hand-over of work from other threads, stop, tracked work, violations and
// the stall watchdog. How native work and Asio handlers share the thread is
// in fiber_loop.cpp (with fibers) or native_loop.cpp (without).

#include "loop.hpp"

#include "log.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/error.hpp>
#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#include <utility>
#include <vector>

namespace coport::bridge::detail {

constinit thread_local loop* tl_loop = nullptr;

namespace {

// Owns a task handed from another thread until the loop queues it; if the
// io_context is destroyed first, the task is discarded, not leaked.
struct task_owner {
  explicit task_owner(task* p) noexcept : t(p) {}
  task_owner(task_owner&& o) noexcept : t(std::exchange(o.t, nullptr)) {}
  task_owner& operator=(task_owner&&) = delete;
  ~task_owner() {
    if (t) t->discard();
  }
  task* release() noexcept { return std::exchange(t, nullptr); }
  task* t;
};

}  // namespace

loop* loop_of_thread() noexcept { return tl_loop; }

// --------------------------------------------------------------------- loop

loop::loop(std::shared_ptr<boost::asio::io_context> io_, bool external, runtime_options options)
    : io_holder(std::move(io_)),
      io(*io_holder),
      external_(external),
      opts(std::move(options)),
      registry(opts.registry ? opts.registry : std::make_shared<diagnostics>()),
      log(opts.logger ? opts.logger : default_logger()),
      tag_asio(registry->asio_handlers_tag()),
      tag_loop(registry->loop_tag()),
      tag_fiber(registry->fiber_tag()),
      keep_running_(io.get_executor()) {
  // The service outlives a loop on the user's io_context: a later loop on
  // the same io_context reuses it.
  if (boost::asio::has_service<runtime_service>(io)) {
    boost::asio::use_service<runtime_service>(io).owner = this;
  } else {
    boost::asio::make_service<runtime_service>(io, this);
  }
  current_.store(tag_loop, std::memory_order_relaxed);
}

loop::loop(runtime_options options)
    : loop(std::make_shared<boost::asio::io_context>(1), false, std::move(options)) {
  thread_ = std::thread([this] { thread_main(); });
  thread_id = thread_.get_id();
  if (opts.stall_threshold.count() > 0) {
    watchdog_ = std::thread([this] { watchdog_main(); });
  }
}

namespace {

std::shared_ptr<boost::asio::io_context> checked_io(std::shared_ptr<boost::asio::io_context> io) {
  if (!io) throw std::invalid_argument("coport::bridge::runtime: the io_context is null");
  if (tl_loop) {
    throw std::logic_error("coport::bridge::runtime: this thread already runs a coport loop");
  }
  check_thread_can_become_loop();
  if (boost::asio::has_service<runtime_service>(*io) &&
      boost::asio::use_service<runtime_service>(*io).owner) {
    throw std::logic_error("coport::bridge::runtime: this io_context already runs a coport loop");
  }
  return io;
}

}  // namespace

loop::loop(std::shared_ptr<boost::asio::io_context> user_io, runtime_options options)
    : loop(checked_io(std::move(user_io)), true, std::move(options)) {
  thread_id = std::this_thread::get_id();
  // Work started on this thread from now on belongs to the loop.
  become_loop();
}

loop::~loop() {
  request_stop();
  if (external_) {
    if (std::this_thread::get_id() != thread_id) {
      log->critical("loop '{}': a runtime made on its caller's thread was destroyed on another "
                    "thread", opts.name);
      log->flush();
      std::abort();
    }
    // Never run: its fibers still have to be stopped and waited for.
    if (!ran_) run_here();
    stop_watchdog();
    leave_loop();
  }
  join();
}

void loop::run_here() {
  if (!external_ || std::this_thread::get_id() != thread_id) {
    throw std::logic_error("coport::bridge::runtime::run(): only a runtime made on the calling "
                           "thread over an io_context runs there, on the thread that made it");
  }
  if (std::exchange(ran_, true)) {
    throw std::logic_error("coport::bridge::runtime::run(): already run");
  }
  // The watchdog watches run() only: before and after it the thread does
  // the caller's own work, which is no stall of the loop.
  if (opts.stall_threshold.count() > 0) {
    watchdog_ = std::thread([this] { watchdog_main(); });
  }
  run_body();
  stop_watchdog();
  // As io_context::run() leaves it when stopped: restart() to reuse it.
  io.stop();
}

void loop::submit(task* t) {
  if (tl_loop == this) {
    submit_local(t);
    return;
  }
  boost::asio::post(io, [this, owned = task_owner(t)]() mutable {
    submit_local(owned.release());
  });
}

void loop::request_stop() {
  if (stop_requested_.exchange(true, std::memory_order_acq_rel)) return;
  submit(make_task([this] { begin_stop(); }, tag_loop));
}

void loop::join() {
  // A loop on its caller's thread ends when run() returns.
  if (external_) return;
  if (thread_.joinable()) {
    if (thread_.get_id() == std::this_thread::get_id()) {
      log->critical("loop '{}': join() called from its own thread", opts.name);
      std::abort();
    }
    thread_.join();
  }
  stop_watchdog();
}

void loop::stop_watchdog() {
  if (watchdog_.joinable()) {
    {
      std::lock_guard lk(watchdog_mutex_);
      watchdog_stop_ = true;
    }
    watchdog_cv_.notify_all();
    watchdog_.join();
  }
}

void loop::thread_main() {
  {
    std::string short_name = opts.name.substr(0, 15);  // the kernel's limit
    pthread_setname_np(pthread_self(), short_name.c_str());
  }
  become_loop();
  run_body();
}

void loop::run_body() {
  {
    // Asio recycles the memory of coroutine frames and handlers through a
    // per-thread cache that it finds only inside io_context::run(). Native
    // work runs outside run() (on the loop fiber, or between handlers):
    // give this thread a cache of its own for the loop's lifetime (fibers
    // of this thread share it, one at a time).
    asio_thread_key key;
    boost::asio::detail::thread_info_base cache;
    boost::asio::detail::call_stack<boost::asio::detail::thread_context,
                                    boost::asio::detail::thread_info_base>::context
        cache_scope(&key, cache);
    run_native_work();
  }
#if COPORT_BRIDGE_FIBERS
  drain_fiber_pool();
#endif
  if (stop_timer_) stop_timer_->cancel();
}

void loop::run_batch() {
  if (io_stopped_ && !stopping_) {
    // The user stopped the io_context: the loop ends, after stopping its
    // work. Cancelled operations complete through the io_context, so it
    // runs again until then; run_here() leaves it stopped.
    stop_requested_.store(true, std::memory_order_release);
    io.restart();
    begin_stop();
  }
  // Only the tasks queued before this batch run in it: work that keeps
  // re-posting itself must not starve the fibers and the I/O.
  task_queue batch;
  local_.move_to(batch);
  while (task* t = batch.pop()) run_task(t);
}

void loop::run_task(task* t) {
  publish(t->tag ? t->tag : tag_loop);
  in_microtask_ = true;
  try {
    t->run();
  } catch (const std::exception& e) {
    log->error("loop '{}': exception escaped native work '{}': {}", opts.name,
               current_tag()->name, e.what());
  } catch (...) {
    log->error("loop '{}': unknown exception escaped native work '{}'", opts.name,
               current_tag()->name);
  }
  in_microtask_ = false;
}

void loop::poll_handlers() noexcept {
  publish(tag_asio);
  for (int i = 0; i < io_handlers_per_poll; ++i) {
    try {
      if (io.poll_one() == 0) {
        if (external_ && io.stopped()) note_io_stopped();
        break;
      }
    } catch (const std::exception& e) {
      log->error("loop '{}': exception escaped an Asio handler: {}", opts.name, e.what());
    } catch (...) {
      log->error("loop '{}': unknown exception escaped an Asio handler", opts.name);
    }
  }
}

bool loop::wait_for_handler(std::optional<std::chrono::steady_clock::time_point> deadline) noexcept {
  enter_idle();
  try {
    if (io.stopped()) {
      if (!external_) {
        log->warn("loop '{}': its io_context was stopped from outside; restarting it", opts.name);
        io.restart();
      } else if (!stopping_) {
        // The user's io_context was stopped: that ends the loop (run_batch
        // stops the loop's work and restarts the io_context for the
        // cancellations). Nothing to wait for here.
        note_io_stopped();
        leave_idle();
        return false;
      } else {
        // Stopped again while the loop stops its work: cancelled operations
        // still have to complete.
        io.restart();
      }
    }
    if (deadline) {
      io.run_one_until(*deadline);
    } else {
      io.run_one();
    }
  } catch (const std::exception& e) {
    log->error("loop '{}': exception escaped an Asio handler: {}", opts.name, e.what());
  } catch (...) {
    log->error("loop '{}': unknown exception escaped an Asio handler", opts.name);
  }
  leave_idle();
  return true;
}

void loop::begin_stop() {
  if (stopping_) return;
  stopping_ = true;
  // Stop callbacks never finish work synchronously (they wake fibers or queue
  // cancellations), but the list is copied first so that it cannot change
  // while it is walked.
  std::vector<std::stop_source> sources;
  for (tracked_work* w = tracked_head_; w; w = w->next) sources.push_back(w->stop_source());
#if COPORT_BRIDGE_FIBERS
  for (fiber_info* r = raw_head_; r; r = r->raw_next) sources.push_back(r->raw_stop);
#endif
  for (auto& s : sources) s.request_stop();
  if (!work_left()) {
    wake_loop();
    return;
  }
  stop_timer_ = std::make_unique<boost::asio::steady_timer>(io, opts.stop_report_after);
  stop_timer_->async_wait([this](boost::system::error_code ec) {
    if (!ec) report_stop();
  });
}

void loop::report_stop() {
  if (tracked_head_) {
    std::string names;
    for (tracked_work* w = tracked_head_; w; w = w->next) {
      if (!names.empty()) names += ", ";
      names += w->tag ? w->tag->name : tag_fiber->name;
    }
    log->warn("loop '{}': still waiting, after stop, for work that ignores cancellation: {}",
              opts.name, names);
  }
#if COPORT_BRIDGE_FIBERS
  if (raw_head_) {
    std::string names;
    for (fiber_info* r = raw_head_; r; r = r->raw_next) {
      if (!names.empty()) names += ", ";
      names += "raw fiber (work '" + (r->tag ? r->tag->name : tag_fiber->name) + "')";
    }
    log->warn("loop '{}': {} raw fiber(s) did not end after the stop (blocked where a stop cannot "
              "reach them, or retrying after operation_aborted): {}; they are abandoned: never "
              "resumed, their stacks never freed",
              opts.name, raw_live_.load(), names);
    abandon_raw_fibers();
    if (stopping_ && !work_left()) wake_loop();
  }
#endif
}

void loop::note_io_stopped() noexcept {
  if (io_stopped_) return;
  io_stopped_ = true;
  wake_loop();
}

void loop::track(tracked_work* w) noexcept {
  (w->tag ? w->tag : tag_loop)->calls.fetch_add(1, std::memory_order_relaxed);
  w->prev = nullptr;
  w->next = tracked_head_;
  if (tracked_head_) tracked_head_->prev = w;
  tracked_head_ = w;
  tracked_count.fetch_add(1, std::memory_order_relaxed);
  if (stopping_) w->request_stop();
}

void loop::untrack(tracked_work* w) noexcept {
  if (w->prev) w->prev->next = w->next; else tracked_head_ = w->next;
  if (w->next) w->next->prev = w->prev;
  w->prev = w->next = nullptr;
  tracked_count.fetch_sub(1, std::memory_order_relaxed);
  if (stopping_ && tracked_head_ == nullptr) wake_loop();
}

void loop::report_violation(violation::kind k, const work_tag* tag, std::string message) {
  if (k == violation::kind::loop_block) tag->loop_blocks.fetch_add(1, std::memory_order_relaxed);
  violation v{k, tag->name, std::move(message)};
  if (opts.on_violation) {
    opts.on_violation(v);
    return;
  }
  if (opts.strict) {
    log->critical("loop '{}': strict mode: {}", opts.name, v.message);
    log->flush();
    std::abort();
  }
  if (k == violation::kind::implicit_yield) return;  // counted, too frequent to log
  log->error("loop '{}': {}", opts.name, v.message);
}

loop_stats loop::stats() const noexcept {
  using namespace std::chrono;
  const std::int64_t now = steady_clock::now().time_since_epoch().count();
  std::int64_t idle = idle_ns_.load(std::memory_order_relaxed);
  // A wait going on now counts as idle up to now.
  if (const std::int64_t since = idle_since_ns_.load(std::memory_order_relaxed); since != 0 && since < now) {
    idle += now - since;
  }
  const std::int64_t up = now - started_at_.time_since_epoch().count();
  idle = std::clamp<std::int64_t>(idle, 0, up);
  const auto at_least_given = [](std::atomic<std::int64_t>& given, std::int64_t v) {
    std::int64_t seen = given.load(std::memory_order_relaxed);
    while (seen < v && !given.compare_exchange_weak(seen, v, std::memory_order_relaxed)) {
    }
    return std::max(seen, v);
  };
  loop_stats s;
  s.name = opts.name;
  s.idle = nanoseconds(at_least_given(idle_given_, idle));
  s.busy = nanoseconds(at_least_given(busy_given_, up - idle));
  s.stalls = stalls_.load(std::memory_order_relaxed);
  s.tracked_work = tracked_count.load(std::memory_order_relaxed);
#if COPORT_BRIDGE_FIBERS
  s.fibers = pool.live() + raw_live_.load(std::memory_order_relaxed);
#endif
  return s;
}

void loop::leave_idle() noexcept {
  idle_.store(false, std::memory_order_seq_cst);
  const std::int64_t since = idle_since_ns_.exchange(0, std::memory_order_relaxed);
  if (since != 0) {
    idle_ns_.fetch_add(std::chrono::steady_clock::now().time_since_epoch().count() - since,
                       std::memory_order_relaxed);
  }
  if (watchdog_asleep_.load(std::memory_order_seq_cst) && watchdog_asleep_.exchange(false)) {
    // Taking the mutex orders this notify after the watchdog's wait began
    // (it checks the flag under the mutex before waiting).
    { std::lock_guard lk(watchdog_mutex_); }
    watchdog_cv_.notify_one();
  }
}

void loop::watchdog_main() {
  {
    // "<name> watch", within the kernel's 15 characters: top -H and the
    // tests tell it from the loop thread.
    std::string short_name = opts.name.substr(0, 9) + " watch";
    pthread_setname_np(pthread_self(), short_name.c_str());
  }
  using clock = std::chrono::steady_clock;
  const auto threshold = opts.stall_threshold;
  const auto period = std::clamp<clock::duration>(threshold / 4, std::chrono::milliseconds(1),
                                                  std::chrono::milliseconds(100));
  std::uint64_t seen = ~std::uint64_t{0};
  clock::time_point since{};
  const work_tag* stalled = nullptr;
  std::unique_lock lk(watchdog_mutex_);
  while (!watchdog_cv_.wait_for(lk, period, [this] { return watchdog_stop_; })) {
    if (idle_.load(std::memory_order_relaxed)) {
      // Nothing can stall while the loop waits in the kernel: sleep until
      // it leaves idle (leave_idle) or the loop is joined.
      seen = ~std::uint64_t{0};
      stalled = nullptr;
      watchdog_asleep_.store(true, std::memory_order_seq_cst);
      if (idle_.load(std::memory_order_seq_cst)) {
        watchdog_cv_.wait(lk, [this] { return watchdog_stop_ || !watchdog_asleep_.load(std::memory_order_seq_cst); });
      }
      watchdog_asleep_.store(false, std::memory_order_relaxed);
      if (watchdog_stop_) break;
      continue;
    }
    const auto now = clock::now();
    const std::uint64_t p = progress_.load(std::memory_order_relaxed);
    if (p != seen) {
      if (stalled) {
        log->warn("loop '{}': stall in '{}' ended after at least {} ms", opts.name,
                  stalled->name,
                  std::chrono::duration_cast<std::chrono::milliseconds>(now - since).count());
      }
      seen = p;
      since = now;
      stalled = nullptr;
      continue;
    }
    // The same piece of work has held the loop for at least now - since.
    const auto held = std::chrono::duration_cast<std::chrono::microseconds>(now - since);
    if (!stalled && held >= threshold) {
      stalled = current_tag();
      stalled->stalls.fetch_add(1, std::memory_order_relaxed);
      stalls_.fetch_add(1, std::memory_order_relaxed);
      std::string message = "'" + stalled->name + "' kept the loop from Asio for " +
                            std::to_string(held.count() / 1000) + " ms (threshold " +
                            std::to_string(threshold.count()) + " ms)";
      lk.unlock();
      if (opts.on_violation) {
        opts.on_violation(violation{violation::kind::stall, stalled->name, message});
      } else if (opts.strict) {
        log->critical("loop '{}': strict mode: stall: {}", opts.name, message);
        log->flush();
        std::abort();
      } else {
        log->warn("loop '{}': stall: {}", opts.name, message);
      }
      lk.lock();
    }
    if (stalled) {
      auto us = static_cast<std::uint64_t>(held.count());
      auto prev = stalled->longest_stall_us.load(std::memory_order_relaxed);
      while (us > prev && !stalled->longest_stall_us.compare_exchange_weak(prev, us)) {
      }
    }
  }
}

// ------------------------------------------------------- loop_api functions

loop* current_loop() noexcept { return tl_loop; }

void submit(loop* l, task* t) { l->submit(t); }

boost::asio::io_context& io_of(loop* l) noexcept { return l->io; }

diagnostics& diagnostics_of(loop* l) noexcept { return *l->registry; }

loop* loop_of_context(boost::asio::execution_context& ctx) noexcept {
  if (!boost::asio::has_service<runtime_service>(ctx)) return nullptr;
  return boost::asio::use_service<runtime_service>(ctx).owner;
}

}  // namespace coport::bridge::detail

namespace coport::bridge::detail {

void track(loop* l, tracked_work* w) noexcept { l->track(w); }

void untrack(loop* l, tracked_work* w) noexcept { l->untrack(w); }

void log_error(loop* l, const std::string& message) noexcept {
  try {
    l->log->error("loop '{}': {}", l->opts.name, message);
  } catch (...) {
  }
}

}  // namespace coport::bridge::detail

namespace coport::bridge::detail {

void log_exception(loop* l, const work_tag* tag, std::exception_ptr e) {
  const std::string name = tag ? tag->name : std::string("<unnamed>");
  try {
    std::rethrow_exception(e);
  } catch (const boost::system::system_error& x) {
    // Cancelled by the runtime's own stop: expected, not an error.
    if (x.code() == boost::asio::error::operation_aborted && l->stop_requested()) {
      try {
        l->log->debug("loop '{}': work '{}' was cancelled by the stop: {}", l->opts.name, name,
                      x.what());
      } catch (...) {
      }
      return;
    }
    log_error(l, "work '" + name + "' ended with an exception: " + x.what());
  } catch (const std::exception& x) {
    log_error(l, "work '" + name + "' ended with an exception: " + x.what());
  } catch (...) {
    log_error(l, "work '" + name + "' ended with an unknown exception");
  }
}

}  // namespace coport::bridge::detail
