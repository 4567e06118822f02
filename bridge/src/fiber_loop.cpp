// The fiber side of a loop (COPORT_WITH_FIBERS=ON): the Boost.Fiber
// scheduling algorithm driven by Asio, the loop fiber that runs native work,
// the fiber pool, raw fibers, and the checks of blocking calls. The rest of
// the loop (threads, stop, the watchdog) is in loop.cpp.

#include "loop.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/error.hpp>
#include <boost/fiber/algo/round_robin.hpp>
#include <boost/fiber/fiber.hpp>
#include <boost/fiber/fixedsize_stack.hpp>
#include <boost/fiber/operations.hpp>

#include <spdlog/spdlog.h>

#include <mutex>
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

// Each poll costs an epoll_wait(0); 64 switches amortise it to a few percent
// of a fiber switch.
constexpr unsigned io_poll_every_switches = 64;
// Boost.Fiber puts its dispatcher back in the ready queue each time it
// resumes a fiber, which would cost an extra switch per round. While other
// fibers are ready the dispatcher is passed over, but never for more than
// this many switches: it is what moves sleepers whose time has come and
// fibers woken by other threads into the ready queue.
constexpr unsigned dispatcher_every_switches = 64;

// Raw fibers abandoned after a stop (loop::abandon_raw_fibers) are never
// resumed and never freed. They are kept reachable here so that leak checkers
// do not report memory that is given up on purpose.
std::mutex abandoned_mutex;
std::vector<boost::fibers::context*>* abandoned_fibers = nullptr;

}  // namespace

// ---------------------------------------------------------------- algorithm

void loop_algorithm::awakened(boost::fibers::context* ctx) noexcept {
  if (ctx->get_properties() == nullptr && ctx->is_context(boost::fibers::type::worker_context)) {
    // A fiber created with plain Boost.Fiber calls: it inherits the work tag
    // of whatever fiber created it, and gets a stop source of its own, so
    // that runtime stop reaches it even when its creator has no stop token
    // (the loop fiber, a thread's main context) or ended long ago. A stop of
    // the creator's work is forwarded to it.
    // It is named "<creator> [raw fiber]" rather than after its creator, so
    // that its time and stalls are not blamed on the creator's own code and
    // the report shows that raw fibers remain.
    auto* info = new fiber_info(ctx);
    info->raw = ctx;
    info->stop = info->raw_stop.get_token();
    const work_tag* creator = nullptr;
    if (auto* parent = info_of(tl_running)) {
      creator = parent->hosting ? parent->hosting->tag() : parent->tag;
      if (parent->stop.stop_possible()) {
        info->from_creator.emplace(parent->stop, fiber_info::forward_stop{info->raw_stop});
      }
    } else if (tl_running == loop_.loop_ctx_) {
      creator = loop_.current_tag();
    }
    try {
      info->tag = loop_.registry->raw_fiber_tag(creator);
    } catch (...) {
      info->tag = loop_.tag_fiber;  // out of memory while interning the name
    }
    info->tag->raw_fibers.fetch_add(1, std::memory_order_relaxed);
    info->tag->calls.fetch_add(1, std::memory_order_relaxed);
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
  if (ready_.empty()) {
    switch_slice(nullptr);  // the scheduler resumes its dispatcher
    return nullptr;
  }
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
    switch_slice(nullptr);
    loop_.publish(loop_.tag_loop);
  } else if (next->is_context(boost::fibers::type::dispatcher_context)) {
    switch_slice(nullptr);
    loop_.publish(loop_.tag_asio);
  } else {
    const fiber_info* info = info_of(next);
    const work_tag* tag = info ? (info->hosting ? info->hosting->tag() : info->tag) : nullptr;
    if (!tag) tag = loop_.tag_fiber;
    switch_slice(tag);
    loop_.publish(tag);
  }
  return next;
}

// The time between two switches belongs to the fiber that ran between them.
// A switch that does not change the tag charged (two fibers of one name
// taking turns, the loop fiber and the dispatcher) reads no clock: the slice
// simply goes on. Measured with coport-bench's bridge.yield, a clock read at
// every switch made a yield about 1.4 times as costly. The counter is a
// relaxed atomic add because the loops of a pool share their tags.
void loop_algorithm::switch_slice(const work_tag* next_tag) noexcept {
  if (next_tag == slice_tag_) return;
  const auto now = std::chrono::steady_clock::now();
  if (slice_tag_) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now - slice_start_).count();
    slice_tag_->fiber_time_ns.fetch_add(static_cast<std::uint64_t>(ns), std::memory_order_relaxed);
  }
  slice_tag_ = next_tag;
  slice_start_ = now;
}

void loop_algorithm::rename_running(const work_tag* t) noexcept {
  switch_slice(t);
  loop_.publish(t);
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
  loop_.poll_handlers();
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
  std::optional<std::chrono::steady_clock::time_point> until;
  if (deadline != std::chrono::steady_clock::time_point::max()) until = deadline;
  if (loop_.wait_for_handler(until)) {
    loop_.woken_ = false;
    loop_.publish(loop_.tag_asio);
  }
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

void check_thread_can_become_loop() {
  if (!boost::fibers::context::active()->is_context(boost::fibers::type::main_context)) {
    throw std::logic_error(
        "coport::bridge::runtime: a runtime on the calling thread must be made on the thread's "
        "main context, not inside a fiber");
  }
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

void loop::drain_fiber_pool() {
  // Every tracked job has ended; release the idle pooled fibers and wait for
  // them, so that the scheduler finds no fiber of ours when the thread exits.
  draining_fibers_ = true;
  pool.release_idle();
  while (pool.live() > 0) {
    loop_parked_ = true;
    loop_parker_.park();
  }
}

void loop::run_native_work() {
  for (;;) {
    run_batch();
    if (!local_.empty()) {
      if (algo_->has_ready_workers() || ++batches_without_yield_ >= batches_before_yield) {
        batches_without_yield_ = 0;
        boost::this_fiber::yield();
      }
      continue;
    }
    batches_without_yield_ = 0;
    if (stopping_ && !work_left()) return;
    if (io_stopped_ && !stopping_) continue;
    loop_parked_ = true;
    loop_parker_.park();
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
  if (stopping_ && !work_left()) wake_loop();
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

void loop::on_fiber_exit() {
  if (draining_fibers_ && pool.live() == 0) wake_loop();
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

bool in_loop_fiber(const loop* l) noexcept { return tl_loop == l && l->on_loop_fiber(); }

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
