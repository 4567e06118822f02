#include "loop.hpp"

#include "log.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/error.hpp>
#include <boost/fiber/algo/round_robin.hpp>
#include <boost/fiber/fiber.hpp>
#include <boost/fiber/fixedsize_stack.hpp>
#include <boost/fiber/operations.hpp>

#include <boost/asio/detail/call_stack.hpp>
#include <boost/asio/detail/thread_context.hpp>
#include <boost/asio/detail/thread_info_base.hpp>

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#include <utility>
#include <vector>

namespace coport::bridge::detail {

constinit thread_local boost::fibers::context* tl_running = nullptr;

boost::fibers::context* running_context() noexcept {
  if (auto* c = tl_running) return c;
  return boost::fibers::context::active();
}

namespace {

thread_local loop* tl_loop = nullptr;

// Busy loops hand control to Asio after this many fiber switches, so that
// ready I/O and timers are not starved by fibers that keep each other busy.
// Each poll costs an epoll_wait(0); 64 switches amortise it to a few percent
// of a fiber switch.
constexpr unsigned io_poll_every_switches = 64;
// Boost.Fiber puts its dispatcher back in the ready queue each time it
// resumes a fiber, which would cost an extra switch per round. While other
// fibers are ready the dispatcher is passed over, but never for more than
// this many switches: it is what moves sleepers whose time has come and
// fibers woken by other threads into the ready queue.
constexpr unsigned dispatcher_every_switches = 64;

// Handlers run per poll, so that handlers which keep reposting themselves to
// the io_context cannot starve the fibers.
constexpr int io_handlers_per_poll = 64;

class runtime_service final : public boost::asio::execution_context::service {
 public:
  using key_type = runtime_service;
  static inline boost::asio::execution_context::id id;
  explicit runtime_service(boost::asio::execution_context& ctx, loop* l = nullptr)
      : service(ctx), owner(l) {}
  void shutdown() override {}
  loop* owner;
};

// Identifies the loop fiber's entry in Asio's per-thread call stack; it
// matches no io_context, so Asio never mistakes the loop fiber for a thread
// running one.
struct asio_thread_key : boost::asio::detail::thread_context {};

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

// Raw fibers abandoned after a stop (loop::abandon_raw_fibers) are never
// resumed and never freed. They are kept reachable here so that leak checkers
// do not report memory that is given up on purpose.
std::mutex abandoned_mutex;
std::vector<boost::fibers::context*>* abandoned_fibers = nullptr;

}  // namespace

loop* loop_of_thread() noexcept { return tl_loop; }

// ---------------------------------------------------------------- algorithm

void loop_algorithm::awakened(boost::fibers::context* ctx) noexcept {
  if (ctx->get_properties() == nullptr && ctx->is_context(boost::fibers::type::worker_context)) {
    // A fiber created with plain Boost.Fiber calls: it inherits the work tag
    // of whatever fiber created it, and gets a stop source of its own, so
    // that runtime stop reaches it even when its creator has no stop token
    // (the loop fiber, a thread's main context) or ended long ago. A stop of
    // the creator's work is forwarded to it.
    auto* info = new fiber_info(ctx);
    info->raw = ctx;
    info->stop = info->raw_stop.get_token();
    if (auto* parent = info_of(tl_running)) {
      info->tag = parent->tag;
      if (parent->stop.stop_possible()) {
        info->from_creator.emplace(parent->stop, fiber_info::forward_stop{info->raw_stop});
      }
    }
    ctx->set_properties(info);
    loop_.raw_started(info);
  }
  if (ctx == tl_running) {
    // Only a switch that bypassed pick_next() (a fiber launched with
    // launch::dispatch) re-queues the context believed to be running.
    tl_running = boost::fibers::context::active();
  }
  if (!ctx->is_context(boost::fibers::type::dispatcher_context)) ++ready_workers_;
  ctx->ready_link(ready_);
}

boost::fibers::context* loop_algorithm::pick_next() noexcept {
  auto* self = tl_running;
  if (self->is_context(boost::fibers::type::worker_context) && !self->worker_is_linked()) {
    // The scheduler asks for the next context as `self` ends: it has just
    // left the scheduler's list of live fibers. (Its link in the list of
    // ended ones cannot tell: the last node of that list looks unlinked.)
    fiber_info* info = info_of(self);
    if (info && info->raw) loop_.raw_ended(info);
  }
  if (self->is_context(boost::fibers::type::dispatcher_context)) {
    switches_since_dispatcher_ = 0;
    if (in_io_) {
      // An Asio handler run directly by the io_context tried to block. The
      // scheduler's dispatcher cannot be suspended; continuing would corrupt
      // it, so this is fatal.
      loop_.log->critical(
          "loop '{}': an Asio handler running directly on the io_context blocked on a fiber "
          "primitive; handlers must not block (use the loop executor and co_await, or a fiber)",
          loop_.opts.name);
      loop_.log->flush();
      std::abort();
    }
    if (switches_since_io_ >= io_poll_every_switches) poll_io();
  } else {
    on_blocking_switch(self);
  }
  if (ready_.empty()) return nullptr;
  boost::fibers::context* next = &ready_.front();
  ready_.pop_front();
  if (next->is_context(boost::fibers::type::dispatcher_context) && ready_workers_ > 0 &&
      switches_since_dispatcher_ < dispatcher_every_switches) {
    next->ready_link(ready_);  // to the back; take the fiber behind it
    next = &ready_.front();
    ready_.pop_front();
  }
  if (!next->is_context(boost::fibers::type::dispatcher_context)) --ready_workers_;
  ++switches_since_io_;
  ++switches_since_dispatcher_;
  tl_running = next;
  if (next == loop_.loop_ctx_) {
    loop_.publish(loop_.tag_loop);
  } else if (next->is_context(boost::fibers::type::dispatcher_context)) {
    loop_.publish(loop_.tag_asio);
  } else {
    const fiber_info* info = info_of(next);
    const work_tag* tag = info ? (info->hosting ? info->hosting->tag() : info->tag) : nullptr;
    loop_.publish(tag ? tag : loop_.tag_fiber);
  }
  return next;
}

// Called when `self` gives up the CPU without being the dispatcher: it yields,
// blocks, or ends. Two of those cases are what the diagnostics look for.
void loop_algorithm::on_blocking_switch(boost::fibers::context* self) noexcept {
  if (self == loop_.loop_ctx_) {
    if (loop_.in_microtask_) {
      const work_tag* tag = loop_.current_tag();
      loop_.report_violation(
          violation::kind::loop_block, tag,
          "native work '" + tag->name +
              "' blocked the loop fiber on a fiber primitive; the loop's native work stalls "
              "until it is released (co_await instead, or run this code hosted or in a fiber)");
    }
    return;
  }
  const fiber_info* info = info_of(self);
  if (info && info->hosting && !info->idle) {
    const work_tag* tag = info->hosting->tag();
    tag->implicit_yields.fetch_add(1, std::memory_order_relaxed);
    if (loop_.opts.strict) {
      loop_.report_violation(violation::kind::implicit_yield, tag,
                             "hosted coroutine '" + tag->name +
                                 "' blocked its host fiber on a fiber primitive (implicit yield)");
    }
  }
}

void loop_algorithm::poll_io() noexcept {
  switches_since_io_ = 0;
  in_io_ = true;
  loop_.publish(loop_.tag_asio);
  for (int i = 0; i < io_handlers_per_poll; ++i) {
    try {
      if (loop_.io.poll_one() == 0) {
        if (loop_.external_ && loop_.io.stopped()) loop_.note_io_stopped();
        break;
      }
    } catch (const std::exception& e) {
      loop_.log->error("loop '{}': exception escaped an Asio handler: {}", loop_.opts.name, e.what());
    } catch (...) {
      loop_.log->error("loop '{}': unknown exception escaped an Asio handler", loop_.opts.name);
    }
  }
  in_io_ = false;
}

void loop_algorithm::suspend_until(std::chrono::steady_clock::time_point const& deadline) noexcept {
  // Nothing is ready: wait in the kernel for I/O, a timer, a post from
  // another thread (see notify()) or the earliest sleeping fiber's deadline.
  switches_since_io_ = 0;
  // A wake-up handler that poll_io() ran since the scheduler last moved
  // remotely readied fibers to the ready queue may have announced a fiber
  // still on its way: go back to the scheduler instead of sleeping on a
  // wake-up already spent.
  if (std::exchange(loop_.woken_, false)) return;
  in_io_ = true;
  loop_.enter_idle();
  try {
    if (loop_.io.stopped()) {
      if (!loop_.external_) {
        loop_.log->warn("loop '{}': its io_context was stopped from outside; restarting it",
                        loop_.opts.name);
        loop_.io.restart();
      } else if (!loop_.stopping_) {
        // The user's io_context was stopped: that ends the loop (the loop
        // fiber sees it, stops the loop's work and restarts the io_context
        // for the cancellations). Nothing to wait for here.
        loop_.note_io_stopped();
        loop_.leave_idle();
        in_io_ = false;
        return;
      } else {
        // Stopped again while the loop stops its work: cancelled operations
        // still have to complete.
        loop_.io.restart();
      }
    }
    if (deadline == std::chrono::steady_clock::time_point::max()) {
      loop_.io.run_one();
    } else {
      loop_.io.run_one_until(deadline);
    }
  } catch (const std::exception& e) {
    loop_.log->error("loop '{}': exception escaped an Asio handler: {}", loop_.opts.name, e.what());
  } catch (...) {
    loop_.log->error("loop '{}': unknown exception escaped an Asio handler", loop_.opts.name);
  }
  loop_.leave_idle();
  loop_.woken_ = false;
  loop_.publish(loop_.tag_asio);
  in_io_ = false;
}

void loop_algorithm::notify() noexcept {
  // Another thread made a fiber of this loop ready. If the dispatcher is
  // waiting in the kernel it must wake up; one pending no-op handler is
  // enough however many wake-ups arrive before it runs.
  if (!loop_.wake_pending_.exchange(true, std::memory_order_acq_rel)) {
    try {
      boost::asio::post(loop_.io, [l = &loop_] {
        l->wake_pending_.store(false, std::memory_order_release);
        l->woken_ = true;
      });
    } catch (...) {
      loop_.wake_pending_.store(false, std::memory_order_release);
    }
  }
}

// --------------------------------------------------------------------- loop

loop::loop(runtime_options options)
    : io_holder(std::make_shared<boost::asio::io_context>(1)),
      io(*io_holder),
      external_(false),
      opts(std::move(options)),
      registry(opts.registry ? opts.registry : std::make_shared<diagnostics>()),
      log(opts.logger ? opts.logger : default_logger()),
      tag_asio(registry->asio_handlers_tag()),
      tag_loop(registry->loop_tag()),
      tag_fiber(registry->fiber_tag()),
      keep_running_(io.get_executor()) {
  boost::asio::make_service<runtime_service>(io, this);
  current_.store(tag_loop, std::memory_order_relaxed);
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
  if (!boost::fibers::context::active()->is_context(boost::fibers::type::main_context)) {
    throw std::logic_error(
        "coport::bridge::runtime: a runtime on the calling thread must be made on the thread's "
        "main context, not inside a fiber");
  }
  if (boost::asio::has_service<runtime_service>(*io) &&
      boost::asio::use_service<runtime_service>(*io).owner) {
    throw std::logic_error("coport::bridge::runtime: this io_context already runs a coport loop");
  }
  return io;
}

}  // namespace

loop::loop(std::shared_ptr<boost::asio::io_context> user_io, runtime_options options)
    : io_holder(checked_io(std::move(user_io))),
      io(*io_holder),
      external_(true),
      opts(std::move(options)),
      registry(opts.registry ? opts.registry : std::make_shared<diagnostics>()),
      log(opts.logger ? opts.logger : default_logger()),
      tag_asio(registry->asio_handlers_tag()),
      tag_loop(registry->loop_tag()),
      tag_fiber(registry->fiber_tag()),
      keep_running_(io.get_executor()) {
  // The service outlives this loop on the user's io_context: a later loop on
  // the same io_context reuses it.
  if (boost::asio::has_service<runtime_service>(io)) {
    boost::asio::use_service<runtime_service>(io).owner = this;
  } else {
    boost::asio::make_service<runtime_service>(io, this);
  }
  current_.store(tag_loop, std::memory_order_relaxed);
  thread_id = std::this_thread::get_id();
  // Fibers created on this thread from now on are scheduled by the loop.
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

void loop::become_loop() {
  tl_loop = this;
  boost::fibers::use_scheduling_algorithm<loop_algorithm>(*this);
  // The thread's main context is the loop fiber: it runs native work.
  loop_ctx_ = boost::fibers::context::active();
  tl_running = loop_ctx_;
}

void loop::leave_loop() noexcept {
  // Boost.Fiber's scheduler lives until the thread exits, longer than this
  // loop: hand the thread back to a stock algorithm that does not refer to
  // the loop. No fiber of the loop is left to move to it.
  boost::fibers::use_scheduling_algorithm<boost::fibers::algo::round_robin>();
  tl_running = nullptr;
  tl_loop = nullptr;
  loop_ctx_ = nullptr;
  algo_ = nullptr;
  keep_running_.reset();
  boost::asio::use_service<runtime_service>(io).owner = nullptr;
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
    // work runs on the loop fiber, outside run(): give this thread a cache
    // of its own for the loop's lifetime (fibers of this thread share it,
    // one at a time).
    asio_thread_key key;
    boost::asio::detail::thread_info_base cache;
    boost::asio::detail::call_stack<boost::asio::detail::thread_context,
                                    boost::asio::detail::thread_info_base>::context
        cache_scope(&key, cache);
    run_loop_fiber();
  }

  // Every tracked job has ended; release the idle pooled fibers and wait for
  // them, so that the scheduler finds no fiber of ours when the thread exits.
  draining_fibers_ = true;
  pool.release_idle();
  while (pool.live() > 0) {
    loop_parked_ = true;
    loop_parker_.park();
  }
  if (stop_timer_) stop_timer_->cancel();
}

void loop::run_loop_fiber() {
  task_queue batch;
  for (;;) {
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
    local_.move_to(batch);
    while (task* t = batch.pop()) {
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
    if (!local_.empty()) {
      if (algo_->has_ready_workers() || ++batches_without_yield_ >= batches_before_yield) {
        batches_without_yield_ = 0;
        boost::this_fiber::yield();
      }
      continue;
    }
    batches_without_yield_ = 0;
    if (stopping_ && tracked_head_ == nullptr && raw_head_ == nullptr) return;
    if (io_stopped_ && !stopping_) continue;
    loop_parked_ = true;
    loop_parker_.park();
  }
}

void loop::begin_stop() {
  if (stopping_) return;
  stopping_ = true;
  // Stop callbacks never finish work synchronously (they wake fibers or queue
  // cancellations), but the list is copied first so that it cannot change
  // while it is walked.
  std::vector<std::stop_source> sources;
  for (tracked_work* w = tracked_head_; w; w = w->next) sources.push_back(w->stop_source());
  for (fiber_info* r = raw_head_; r; r = r->raw_next) sources.push_back(r->raw_stop);
  for (auto& s : sources) s.request_stop();
  if (tracked_head_ == nullptr && raw_head_ == nullptr) {
    wake_loop_fiber();
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
  if (raw_head_) {
    std::string names;
    for (fiber_info* r = raw_head_; r; r = r->raw_next) {
      if (!names.empty()) names += ", ";
      names += "raw fiber (work '" + (r->tag ? r->tag->name : tag_fiber->name) + "')";
    }
    log->warn("loop '{}': {} raw fiber(s) did not end after the stop (blocked where a stop cannot "
              "reach them, or retrying after operation_aborted): {}; they are abandoned: never "
              "resumed, their stacks never freed",
              opts.name, raw_live_, names);
    abandon_raw_fibers();
    if (stopping_ && tracked_head_ == nullptr && raw_head_ == nullptr) wake_loop_fiber();
  }
}

void loop::raw_started(fiber_info* info) noexcept {
  info->raw_prev = nullptr;
  info->raw_next = raw_head_;
  if (raw_head_) raw_head_->raw_prev = info;
  raw_head_ = info;
  ++raw_live_;
  if (stopping_) info->raw_stop.request_stop();
}

void loop::raw_ended(fiber_info* info) noexcept {
  if (info->raw_prev) info->raw_prev->raw_next = info->raw_next; else raw_head_ = info->raw_next;
  if (info->raw_next) info->raw_next->raw_prev = info->raw_prev;
  info->raw_prev = info->raw_next = nullptr;
  info->raw = nullptr;
  --raw_live_;
  if (stopping_ && raw_head_ == nullptr && tracked_head_ == nullptr) wake_loop_fiber();
}

void loop::note_io_stopped() noexcept {
  if (io_stopped_) return;
  io_stopped_ = true;
  wake_loop_fiber();
}

// A raw fiber that did not end after the stop is taken off the scheduler
// (Boost.Fiber's scheduler otherwise waits for it when the thread exits, for
// ever): it leaves the ready and sleep queues and is detached. One woken from
// another thread at this very moment stays, and is waited for.
void loop::abandon_raw_fibers() noexcept {
  std::lock_guard lk(abandoned_mutex);
  if (!abandoned_fibers) abandoned_fibers = new std::vector<boost::fibers::context*>();
  fiber_info* r = raw_head_;
  while (r) {
    fiber_info* next = r->raw_next;
    boost::fibers::context* ctx = r->raw;
    if (!ctx->remote_ready_is_linked()) {
      if (ctx->ready_is_linked()) {
        ctx->ready_unlink();
        --algo_->ready_workers_;
      }
      if (ctx->sleep_is_linked()) ctx->sleep_unlink();
      ctx->detach();
      try {
        abandoned_fibers->push_back(ctx);
      } catch (...) {
      }
      raw_ended(r);
    }
    r = next;
  }
}

void loop::track(tracked_work* w) noexcept {
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
  if (stopping_ && tracked_head_ == nullptr) wake_loop_fiber();
}

void loop::on_fiber_exit() {
  if (draining_fibers_ && pool.live() == 0) wake_loop_fiber();
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

void loop::leave_idle() noexcept {
  idle_.store(false, std::memory_order_seq_cst);
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

// -------------------------------------------------------------- fiber pool

void fiber_pool::run(fiber_job* job) {
  loop_.track(job);
  if (worker* w = idle_) {
    idle_ = w->next_idle;
    --idle_count_;
    assign(w, job);
    w->wake.unpark();
    return;
  }
  start_worker(job);
}

// The job's name and stop token go on the fiber before it next runs, so the
// scheduler already sees whose work it switches to.
void fiber_pool::assign(worker* w, fiber_job* job) {
  w->job = job;
  w->info->tag = job->tag ? job->tag : loop_.tag_fiber;
  w->info->stop = job->stop_token();
}

void fiber_pool::start_worker(fiber_job* job) {
  auto* w = new worker;
  auto* info = new fiber_info(nullptr);
  w->info = info;
  assign(w, job);
  ++live_;
  try {
    boost::fibers::fiber(boost::fibers::launch::post,
                         static_cast<boost::fibers::fiber_properties*>(info), std::allocator_arg,
                         boost::fibers::fixedsize_stack(loop_.opts.fiber_stack_size),
                         [this, w] { worker_main(w); })
        .detach();
  } catch (...) {
    --live_;
    delete w;
    loop_.untrack(job);
    loop_.log->error("loop '{}': could not create a fiber for '{}'", loop_.opts.name,
                     job->tag ? job->tag->name : "<fiber>");
    job->request_stop();
    delete job;
  }
}

void fiber_pool::worker_main(worker* w) {
  fiber_info* info = w->info;
  for (;;) {
    fiber_job* job = std::exchange(w->job, nullptr);
    job->run();
    loop_.untrack(job);
    delete job;
    info->tag = nullptr;
    info->stop = {};
    if (loop_.stopping() || idle_count_ >= loop_.opts.max_idle_fibers) break;
    w->next_idle = idle_;
    idle_ = w;
    ++idle_count_;
    info->idle = true;
    w->wake.park();
    info->idle = false;
    if (w->exit) break;
  }
  --live_;
  delete w;
  loop_.on_fiber_exit();
}

void fiber_pool::release_idle() {
  while (worker* w = idle_) {
    idle_ = w->next_idle;
    --idle_count_;
    w->exit = true;
    w->wake.unpark();
  }
}

// ------------------------------------------------------- loop_api functions

loop* current_loop() noexcept { return tl_loop; }

void submit(loop* l, task* t) { l->submit(t); }

bool in_loop_fiber(const loop* l) noexcept { return tl_loop == l && l->on_loop_fiber(); }

boost::asio::io_context& io_of(loop* l) noexcept { return l->io; }

diagnostics& diagnostics_of(loop* l) noexcept { return *l->registry; }

loop* loop_of_context(boost::asio::execution_context& ctx) noexcept {
  if (!boost::asio::has_service<runtime_service>(ctx)) return nullptr;
  return boost::asio::use_service<runtime_service>(ctx).owner;
}

void submit_job(loop* l, fiber_job* job) {
  if (tl_loop == l) {
    l->pool.run(job);
    return;
  }
  l->submit(make_task([l, job] { l->pool.run(job); }, job->tag));
}

void check_can_block(const char* what) {
  loop* l = tl_loop;
  if (!l) return;  // a plain thread or fiber: blocking is its own business
  auto* ctx = tl_running;
  if (ctx->is_context(boost::fibers::type::dispatcher_context)) {
    throw error(errc::blocking_on_loop,
                std::string(what) +
                    " was called from an Asio handler run directly by the loop's io_context; "
                    "handlers must not block");
  }
  if (ctx == l->loop_ctx_) {
    const work_tag* tag = l->current_tag();
    tag->loop_blocks.fetch_add(1, std::memory_order_relaxed);
    throw error(errc::blocking_on_loop,
                std::string(what) + " was called on the loop fiber by native work '" + tag->name +
                    "'; it would block the whole loop. Use the co_await form, or run this code "
                    "hosted (co_spawn_hosted) or in a fiber (run_in_fiber)");
  }
  if (l->opts.strict) {
    const fiber_info* info = info_of(ctx);
    if (info && info->hosting) {
      const work_tag* tag = info->hosting->tag();
      tag->implicit_yields.fetch_add(1, std::memory_order_relaxed);
      throw error(errc::implicit_yield, std::string("strict mode: hosted coroutine '") + tag->name +
                                            "' called " + what +
                                            ", which blocks its host fiber (implicit yield)");
    }
  }
}

loop* require_runtime_fiber(const char* what) {
  loop* l = tl_loop;
  if (!l) {
    throw error(errc::not_on_runtime, std::string(what) +
                                          " must be called from a fiber of a coport runtime; "
                                          "this thread runs no coport loop");
  }
  check_can_block(what);
  return l;
}

void count_implicit_yield_if_hosted() noexcept {
  if (!tl_loop) return;
  const fiber_info* info = info_of(tl_running);
  if (info && info->hosting && !info->idle) {
    info->hosting->tag()->implicit_yields.fetch_add(1, std::memory_order_relaxed);
  }
}

std::stop_token current_stop_token() noexcept {
  if (!tl_loop) return {};
  const fiber_info* info = info_of(tl_running);
  return info ? info->stop : std::stop_token{};
}

const work_tag* current_tag() noexcept {
  loop* l = tl_loop;
  if (!l) return nullptr;
  auto* ctx = tl_running;
  if (ctx == l->loop_ctx_) return l->current_tag();
  const fiber_info* info = info_of(ctx);
  if (info && info->hosting) return info->hosting->tag();
  if (info && info->tag) return info->tag;
  return l->tag_fiber;
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
