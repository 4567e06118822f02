// The loop without fibers (COPORT_WITH_FIBERS=OFF): the thread runs queued
// native work (coroutine steps, tasks) and Asio's handlers in turn, and waits
// in the kernel when neither is ready. The rest of the loop (threads, stop,
// the watchdog) is in loop.cpp.
//
// Native work runs as tasks, never inside a handler the io_context runs: a
// completion that a handler delivers to a coroutine on a loop executor is
// queued (in_loop_fiber() is false in handlers), so that each step runs,
// and is counted, under its own work tag, as with fibers.

#include "loop.hpp"

namespace coport::bridge::detail {

void check_thread_can_become_loop() {}

void loop::become_loop() { tl_loop = this; }

void loop::leave_loop() noexcept {
  tl_loop = nullptr;
  keep_running_.reset();
  boost::asio::use_service<runtime_service>(io).owner = nullptr;
}

void loop::run_native_work() {
  for (;;) {
    run_batch();
    if (!local_.empty()) {
      if (++batches_without_yield_ >= batches_before_yield) {
        batches_without_yield_ = 0;
        poll_handlers();
      }
      continue;
    }
    batches_without_yield_ = 0;
    if (stopping_ && !work_left()) return;
    if (io_stopped_ && !stopping_) continue;
    publish(tag_asio);  // a handler that stalls the loop is blamed as one
    (void)wait_for_handler(std::nullopt);
  }
}

// ------------------------------------------------------- loop_api functions

bool in_loop_fiber(const loop* l) noexcept { return tl_loop == l && l->on_loop_fiber(); }

const work_tag* current_tag() noexcept {
  loop* l = tl_loop;
  return l ? l->current_tag() : nullptr;
}

}  // namespace coport::bridge::detail
