#include <coport/fiber_executor/fiber_executor.hpp>

#include <coport/bridge/event.hpp>
#include <coport/bridge/fiber.hpp>
#include <coport/bridge/hosted.hpp>
#include <coport/bridge/use_fiber.hpp>
#include <coport/messaging/serving.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>

namespace asio = boost::asio;
namespace msg = coport::messaging;

namespace coport {

namespace {

// One loop's share of the executor. Touched only on that loop's thread.
struct loop_share {
  explicit loop_share(bridge::runtime& r) : rt(&r), ex(r.get_executor()), slot_free(ex) {}
  bridge::runtime* rt;
  bridge::loop_executor ex;
  std::size_t budget = 0;
  std::size_t in_flight = 0;
  bridge::event slot_free;
};

std::string_view to_string(coroutine_mode m) noexcept { return m == coroutine_mode::native ? "native" : "hosted"; }

}  // namespace

struct fiber_executor::impl : std::enable_shared_from_this<fiber_executor::impl> {
  impl(msg::service s, std::vector<bridge::runtime*> rts, fiber_executor_options o) : opts(std::move(o)) {
    core = std::make_shared<msg::serving::core>(
        std::move(s), opts, "fiber_executor",
        [this](const msg::endpoint& e, const msg::method& m, const msg::method_form& f) -> std::string {
          if (f.kind == msg::method_kind::fiber) return "fiber";
          return std::string(to_string(mode_for(e.name(), m.name())));
        });
    for (auto* rt : rts) shares.push_back(std::make_unique<loop_share>(*rt));
    // max_in_flight split over the loops, the remainder to the first ones.
    const std::size_t n = shares.size();
    for (std::size_t i = 0; i < n; ++i) {
      shares[i]->budget = opts.max_in_flight / n + (i < opts.max_in_flight % n ? 1 : 0);
    }
  }

  coroutine_mode mode_for(std::string_view endpoint, std::string_view method) const {
    std::string full;
    full.reserve(endpoint.size() + 1 + method.size());
    full.append(endpoint).append(".").append(method);
    if (auto it = opts.modes.find(full); it != opts.modes.end()) return it->second;
    if (auto it = opts.modes.find(method); it != opts.modes.end()) return it->second;
    return opts.default_mode;
  }

  // Loop thread: the request has finished and replied.
  static void finished(const std::shared_ptr<msg::serving::core>& core, loop_share& ls,
                       msg::serving::request& r) {
    // The dispatch fiber waits only when every slot was taken.
    if (ls.in_flight-- == ls.budget) ls.slot_free.set();
    core->release(r);
  }

  // Dispatch fiber, loop thread: runs the request's method.
  void run(std::shared_ptr<msg::serving::request> r, loop_share& ls) {
    r->arm_deadline();
    auto slot = r->cancellation_slot();
    auto done = [self = shared_from_this(), &ls, r](std::exception_ptr e) {
      const auto& core = self->core;
      if (e) {
        // Only the bookkeeping around the method can get here (the method's
        // own exceptions became its failure reply).
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& x) {
          core->log().error("fiber_executor: serving {} failed: {}", r->message().method, x.what());
        } catch (...) {
          core->log().error("fiber_executor: serving {} failed", r->message().method);
        }
        r->finish(msg::failure_reply(e));
      }
      finished(core, ls, *r);
    };
    const msg::method_form& form = r->form();
    if (form.kind == msg::method_kind::fiber) {
      bridge::async_run_in_fiber(
          ls.ex, [r] { r->run_plain(); },
          asio::bind_cancellation_slot(slot, std::move(done)));
    } else if (mode_for(r->target_endpoint().name(), r->target_method().name()) == coroutine_mode::native) {
      asio::co_spawn(ls.ex, msg::serving::request::run_coroutine(r),
                     asio::bind_cancellation_slot(slot, std::move(done)));
    } else {
      bridge::co_spawn_hosted(ls.ex, msg::serving::request::run_coroutine(r),
                              asio::bind_cancellation_slot(slot, std::move(done)));
    }
  }

  // The dispatch fiber of one loop.
  void dispatch(loop_share& ls) {
    auto& listener = core->get_listener();
    try {
      for (;;) {
        while (ls.in_flight >= ls.budget && !core->stopping()) {
          ls.slot_free.reset();
          if (ls.in_flight >= ls.budget) ls.slot_free.wait();
        }
        if (core->stopping()) break;
        boost::system::error_code ec;
        auto in = listener.async_receive_call(bridge::use_fiber[ec]);
        if (ec || !in) break;
        auto r = core->accept(std::move(in), ls.ex);
        if (!r) continue;
        ++ls.in_flight;
        run(std::move(r), ls);
      }
    } catch (const boost::system::system_error& e) {
      // The runtime is stopping: its fibers are interrupted.
      if (e.code() != asio::error::operation_aborted) {
        core->log().error("fiber_executor: dispatch failed: {}", e.what());
      }
    } catch (const std::exception& e) {
      core->log().error("fiber_executor: dispatch failed: {}", e.what());
    }
  }

  fiber_executor_options opts;
  std::shared_ptr<msg::serving::core> core;
  std::vector<std::unique_ptr<loop_share>> shares;
  bool started = false;
};

fiber_executor::fiber_executor(msg::service s, bridge::runtime& rt, fiber_executor_options options)
    : impl_(std::make_shared<impl>(std::move(s), std::vector<bridge::runtime*>{&rt}, std::move(options))) {}

fiber_executor::fiber_executor(msg::service s, bridge::runtime_pool& pool, fiber_executor_options options) {
  std::vector<bridge::runtime*> rts;
  for (std::size_t i = 0; i < pool.size(); ++i) rts.push_back(&pool[i]);
  impl_ = std::make_shared<impl>(std::move(s), std::move(rts), std::move(options));
}

fiber_executor::~fiber_executor() {
  if (impl_->started && !impl_->core->stopping()) stop_impl([] {});
}

void fiber_executor::start() {
  if (impl_->started) throw std::logic_error("fiber_executor: already started");
  impl_->core->open(impl_->shares.front()->ex);
  impl_->started = true;
  for (auto& ls : impl_->shares) {
    if (ls->budget == 0) continue;
    impl_->core->loop_started();
    bridge::spawn_fiber(ls->ex, [self = impl_, share = ls.get()] {
      self->dispatch(*share);
      self->core->loop_exited();
    });
  }
}

void fiber_executor::stop_impl(asio::any_completion_handler<void()> done) {
  if (!impl_->started) return std::move(done)();
  impl_->core->stop(std::move(done), impl_->shares.front()->ex);
  // Dispatch fibers waiting for a free slot look at stopping() again.
  for (auto& ls : impl_->shares) {
    asio::post(ls->ex, [self = impl_, share = ls.get()] { share->slot_free.set(); });
  }
}

std::size_t fiber_executor::in_flight() const noexcept { return impl_->core->in_flight(); }
std::size_t fiber_executor::peak_in_flight() const noexcept { return impl_->core->peak_in_flight(); }
std::vector<msg::method_report> fiber_executor::metrics() const { return impl_->core->metrics(); }
std::uint64_t fiber_executor::rejected() const noexcept { return impl_->core->rejected(); }

coroutine_mode fiber_executor::mode_of(std::string_view endpoint, std::string_view method) const {
  return impl_->mode_for(endpoint, method);
}

}  // namespace coport
