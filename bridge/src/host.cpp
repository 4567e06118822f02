#include "loop.hpp"

#include <coport/bridge/detail/host.hpp>

#include <boost/fiber/operations.hpp>
#include <spdlog/spdlog.h>

#include <optional>
#include <stop_token>

namespace coport::bridge::detail {

namespace {

// Runs a host's continuations in a pooled fiber for as long as the hosted
// coroutine lives.
class host_job final : public fiber_job {
 public:
  explicit host_job(host* h) : host_(h) {
    h->add_ref();
    tag = h->tag();
  }
  ~host_job() override { host_->release(); }
  void run() noexcept override { host_->run_fiber(); }

 private:
  host* host_;
};

}  // namespace

host* host::create(loop* l, const work_tag* tag) { return new host(l, tag); }

void host::release() noexcept {
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    // The last reference may be dropped on any thread (an executor copy dies
    // there); queued continuations still belong to the loop thread, so an
    // unexpected leftover is discarded here rather than run.
    delete this;
  }
}

bool host::running_here() const noexcept {
  return fiber_running_ && fiber_ == running_context();
}

void host::submit(task* t) {
  if (loop_of_thread() == loop_) {
    submit_local(t);
    return;
  }
  add_ref();
  loop_->submit(make_task(
      [this, owned = t]() mutable {
        submit_local(owned);
        release();
      },
      tag_));
}

void host::submit_local(task* t) {
  queue_.push(t);
  if (!fiber_running_) {
    fiber_running_ = true;
    submit_job(loop_, new host_job(this));
  } else if (parked_) {
    parked_ = false;
    wake_.unpark();
  }
}

void host::attach_here() noexcept {
  fiber_ = tl_running;
  fiber_running_ = true;
}

void host::run_fiber() {
  attach_here();
  fiber_info* info = info_of(fiber_);
  info->hosting = this;
  // Runtime stop reaches a coroutine spawned without a cancellation slot
  // through the host's own signal, emitted here on the loop thread.
  std::optional<std::stop_callback<std::function<void()>>> on_stop;
  if (cancel_on_stop_) {
    on_stop.emplace(info->stop, [this] { stop_signal_.emit(boost::asio::cancellation_type::terminal); });
  }
  run_until_done(true);
  on_stop.reset();
  info->hosting = nullptr;
  fiber_ = nullptr;
  fiber_running_ = false;
}

void host::run_here() {
  fiber_info* info = info_of(fiber_);
  host* outer = std::exchange(info->hosting, this);
  run_until_done(false);
  info->hosting = outer;
  fiber_ = nullptr;
  fiber_running_ = false;
}

void host::run_until_done(bool count_steps) {
  fiber_info* info = info_of(fiber_);
  const bool was_idle = info->idle;
  task_queue batch;
  for (;;) {
    // As on the loop fiber: one batch, then let others run.
    queue_.move_to(batch);
    while (task* t = batch.pop()) {
      loop_->publish(tag_);
      if (count_steps) tag_->hosted_steps.fetch_add(1, std::memory_order_relaxed);
      try {
        t->run();
      } catch (const std::exception& e) {
        loop_->log->error("loop '{}': exception escaped hosted coroutine '{}': {}",
                          loop_->opts.name, tag_->name, e.what());
      } catch (...) {
        loop_->log->error("loop '{}': unknown exception escaped hosted coroutine '{}'",
                          loop_->opts.name, tag_->name);
      }
    }
    if (!queue_.empty()) {
      if (loop_->algo_->has_ready_workers() || ++batches_without_yield_ >= batches_before_yield) {
        batches_without_yield_ = 0;
        info->idle = true;  // a scheduling yield of coport's, not the coroutine's
        boost::this_fiber::yield();
        info->idle = was_idle;
      }
      continue;
    }
    batches_without_yield_ = 0;
    if (done_) break;
    parked_ = true;
    info->idle = true;
    wake_.park();
    info->idle = was_idle;
  }
  // co_spawn left its cancellation handler in the stop signal's slot, and
  // that handler keeps a hosted executor, so a reference to this host: a
  // cycle that would leak the host. The coroutine and its frame are gone
  // (its last continuation ran above), so the handler can go.
  if (cancel_on_stop_) stop_signal_.slot().clear();
}

}  // namespace coport::bridge::detail
