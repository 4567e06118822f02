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

#include <spdlog/spdlog.h>

namespace coport::bridge::detail {

namespace {

// Handlers run per poll while native work is queued, so that work which
// keeps re-queueing itself cannot starve I/O and timers, nor handlers that
// keep reposting themselves the native work.
constexpr int io_handlers_per_poll = 64;

}  // namespace

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
        poll_io();
      }
      continue;
    }
    batches_without_yield_ = 0;
    if (stopping_ && !work_left()) return;
    if (io_stopped_ && !stopping_) continue;
    wait_io();
  }
}

void loop::poll_io() noexcept {
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

void loop::wait_io() noexcept {
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
        return;
      } else {
        // Stopped again while the loop stops its work: cancelled operations
        // still have to complete.
        io.restart();
      }
    }
    publish(tag_asio);
    io.run_one();
  } catch (const std::exception& e) {
    log->error("loop '{}': exception escaped an Asio handler: {}", opts.name, e.what());
  } catch (...) {
    log->error("loop '{}': unknown exception escaped an Asio handler", opts.name);
  }
  leave_idle();
}

// ------------------------------------------------------- loop_api functions

bool in_loop_fiber(const loop* l) noexcept { return tl_loop == l && l->on_loop_fiber(); }

const work_tag* current_tag() noexcept {
  loop* l = tl_loop;
  return l ? l->current_tag() : nullptr;
}

}  // namespace coport::bridge::detail
