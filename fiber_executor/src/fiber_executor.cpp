#include <coport/fiber_executor/fiber_executor.hpp>

#include <coport/bridge/event.hpp>
#include <coport/bridge/fiber.hpp>
#include <coport/bridge/hosted.hpp>
#include <coport/bridge/use_fiber.hpp>
#include <coport/messaging/serving/serving.hpp>

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
  // The executor a form runs on: tagged with the form's work name, so that
  // its stalls and implicit yields are counted apart.
  const bridge::loop_executor& executor_for(const msg::method_form* f) const {
    auto it = tagged.find(f);
    return it == tagged.end() ? ex : it->second;
  }
  bridge::runtime* rt;
  bridge::loop_executor ex;
  std::map<const msg::method_form*, bridge::loop_executor> tagged;
  std::size_t budget = 0;
  std::size_t in_flight = 0;
  bridge::event slot_free;
};

// Strict mode for one call of a coroutine form: the form's counters must
// not move while the call runs.
class counters_check final : public msg::serving::strict_check {
 public:
  explicit counters_check(const bridge::work_tag& t)
      : tag_(t), yields_(t.implicit_yields.load()), stalls_(t.stalls.load()) {}
  std::string violation() override {
    const std::uint64_t yields = tag_.implicit_yields.load() - yields_;
    const std::uint64_t stalls = tag_.stalls.load() - stalls_;
    if (yields == 0 && stalls == 0) return {};
    std::string what = "strict mode: '" + tag_.name + "'";
    if (yields) what += " blocked fibers " + std::to_string(yields) + " time(s) (implicit yield: unported code)";
    if (yields && stalls) what += " and";
    if (stalls) what += " stalled its loop " + std::to_string(stalls) + " time(s)";
    return what;
  }

 private:
  const bridge::work_tag& tag_;
  std::uint64_t yields_;
  std::uint64_t stalls_;
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
        },
        /*follows_policies=*/true);
    for (auto* rt : rts) shares.push_back(std::make_unique<loop_share>(*rt));
    // One work tag per form: "endpoint.method" for the coroutine form,
    // "endpoint.method [legacy]" for the fiber form.
    for (const auto& e : core->served().dispatcher->endpoints()) {
      for (const auto& [name, m] : e->methods()) {
        for (const msg::method_form* f : {m.legacy(), m.ported()}) {
          if (!f) continue;
          std::string tag = e->name() + "." + name + (f->kind == msg::method_kind::fiber ? " [legacy]" : "");
          for (auto& ls : shares) ls->tagged.emplace(f, ls->rt->get_executor(tag));
          form_tags.emplace(f, shares.front()->rt->registry().tag(tag));
        }
      }
    }
    core->set_metrics_hook([this](std::vector<msg::method_report>& rows) { add_counters(rows); });
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

  // The work tag of a form.
  const bridge::work_tag* tag_of(const msg::method_form* f) const {
    auto it = form_tags.find(f);
    return it == form_tags.end() ? nullptr : it->second;
  }

  // metrics(): each form's implicit yields and stalls since start().
  void add_counters(std::vector<msg::method_report>& rows) const {
    for (auto& row : rows) {
      for (const auto& e : core->served().dispatcher->endpoints()) {
        if (e->name() != row.endpoint) continue;
        const msg::method* m = e->find(row.method);
        if (!m) continue;
        const msg::method_form* f = row.kind == msg::method_kind::fiber ? m->legacy() : m->ported();
        const bridge::work_tag* t = tag_of(f);
        if (!t) continue;
        const auto base = baseline.find(t);
        const auto [y0, s0] = base == baseline.end() ? std::pair<std::uint64_t, std::uint64_t>{} : base->second;
        row.implicit_yields = t->implicit_yields.load() - y0;
        row.stalls = t->stalls.load() - s0;
        break;
      }
    }
  }

  // Starts `form` of request `r` on its tagged executor; `done(exception_ptr)`
  // when it has finished. The shadow run is always a coroutine form.
  template <class Done>
  void launch(const std::shared_ptr<msg::serving::request>& r, loop_share& ls, const msg::method_form& form,
              bool shadow, Done done) {
    const bridge::loop_executor& ex = ls.executor_for(&form);
    auto slot = r->cancellation_slot();
    if (form.kind == msg::method_kind::fiber) {
      bridge::async_run_in_fiber(
          ex, [r] { r->run_plain(); }, asio::bind_cancellation_slot(slot, std::move(done)));
      return;
    }
    auto work = shadow ? msg::serving::request::run_shadow(r) : msg::serving::request::run_coroutine(r);
    if (mode_for(r->target_endpoint().name(), r->target_method().name()) == coroutine_mode::native) {
      asio::co_spawn(ex, std::move(work), asio::bind_cancellation_slot(slot, std::move(done)));
    } else {
      bridge::co_spawn_hosted(ex, std::move(work), asio::bind_cancellation_slot(slot, std::move(done)));
    }
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
    if (form.kind == msg::method_kind::coroutine &&
        core->controls()->strict_for(r->target_endpoint(), r->target_method())) {
      if (const bridge::work_tag* t = tag_of(&form)) r->set_strict_check(std::make_unique<counters_check>(*t));
    }
    if (!r->shadow_form()) return launch(r, ls, form, false, std::move(done));
    // Shadow: the legacy form answers, then the ported form runs on a copy
    // of the arguments and is compared.
    launch(r, ls, form, false, [self = shared_from_this(), &ls, r, done = std::move(done)](std::exception_ptr e) mutable {
      if (e) return done(e);
      self->launch(r, ls, *r->shadow_form(), true, std::move(done));
    });
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
  std::map<const msg::method_form*, const bridge::work_tag*> form_tags;
  // Each tag's (implicit yields, stalls) at start(): a runtime's counters
  // outlive the executors that served on it.
  std::map<const bridge::work_tag*, std::pair<std::uint64_t, std::uint64_t>> baseline;
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
  for (const auto& [form, tag] : impl_->form_tags) {
    impl_->baseline[tag] = {tag->implicit_yields.load(), tag->stalls.load()};
  }
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
std::shared_ptr<msg::migration_controls> fiber_executor::controls() const { return impl_->core->controls(); }

coroutine_mode fiber_executor::mode_of(std::string_view endpoint, std::string_view method) const {
  return impl_->mode_for(endpoint, method);
}

}  // namespace coport
