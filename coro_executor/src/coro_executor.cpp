#include <coport/coro_executor/coro_executor.hpp>

#include <coport/messaging/serving/serving.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

namespace asio = boost::asio;
namespace msg = coport::messaging;

namespace coport {

namespace {

std::string list_methods(const std::vector<std::string>& methods) {
  std::string s = "coro_executor: " + std::to_string(methods.size()) +
                  " method(s) have only a fiber form and cannot run without fibers: ";
  for (std::size_t i = 0; i < methods.size(); ++i) s += (i ? ", " : "") + methods[i];
  s += ". Port them (add a coroutine form), serve the service with fiber_executor, or set "
       "coro_executor_options::fiber_method_threads to run them on a thread pool.";
  return s;
}

}  // namespace

fiber_methods_remain::fiber_methods_remain(std::vector<std::string> methods)
    : std::runtime_error(list_methods(methods)), methods_(std::move(methods)) {}

struct coro_executor::impl : std::enable_shared_from_this<coro_executor::impl> {
  impl(msg::service s, asio::any_io_executor e, coro_executor_options o)
      : opts(std::move(o)), ex(std::move(e)), dispatch_strand(asio::make_strand(ex)), slot_timer(dispatch_strand) {
    core = std::make_shared<msg::serving::core>(
        std::move(s), opts, "coro_executor",
        [threads = opts.fiber_method_threads](const msg::endpoint&, const msg::method& m,
                                              const msg::method_form& f) -> std::string {
          if (f.kind == msg::method_kind::coroutine) return "native";
          if (m.ported()) return "unused";  // the ported form serves every call
          return threads > 0 ? "thread pool" : "refused";
        },
        /*follows_policies=*/false);
  }

  // A plain function on the thread pool (coro_executor_options::fiber_method_threads).
  static asio::awaitable<void> serve_on_pool(std::shared_ptr<msg::serving::request> r,
                                             asio::thread_pool::executor_type pool) {
    // The reply is sent from the pool thread, once the function returns.
    // Named before the co_await: g++ 12 destroys a lambda temporary of a
    // co_await expression twice, which released `r` twice (use after free).
    auto run = [r]() -> asio::awaitable<void> { r->run_plain(); co_return; };
    co_await asio::co_spawn(pool, std::move(run), asio::use_awaitable);
  }

  // Any thread: the request has replied.
  void finished(msg::serving::request& r) {
    core->release(r);
    if (polling_thread) {
      { std::lock_guard lk(poll_mutex); }
      poll_cv.notify_one();
      return;
    }
    // Pairs with the fence in dispatch(): either it sees the slot free or
    // this sees it waiting.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (waiting_for_slot.exchange(false, std::memory_order_acq_rel)) {
      asio::post(dispatch_strand, [self = shared_from_this()] { self->slot_timer.cancel(); });
    }
  }

  // Starts the request from inside its own executor: co_spawn connects the
  // cancellation slot on the calling thread, and a cancellation (deadline,
  // stop) is emitted on the request's executor, so both happen there.
  void run(std::shared_ptr<msg::serving::request> r) {
    auto where = r->get_executor();
    asio::dispatch(where, [self = shared_from_this(), r = std::move(r)]() mutable { self->start(std::move(r)); });
  }

  // The request's executor.
  void start(std::shared_ptr<msg::serving::request> r) {
    auto strand = r->get_executor();
    auto slot = r->cancellation_slot();
    r->arm_deadline();
    auto body = r->form().kind == msg::method_kind::coroutine ? msg::serving::request::run_coroutine(r)
                                                               : serve_on_pool(r, pool->get_executor());
    asio::co_spawn(strand, std::move(body),
                   asio::bind_cancellation_slot(slot, [self = shared_from_this(), r](std::exception_ptr e) {
                     if (e) {
                       try {
                         std::rethrow_exception(e);
                       } catch (const std::exception& x) {
                         self->core->log().error("coro_executor: serving {} failed: {}", r->message().method,
                                                 x.what());
                       } catch (...) {
                       }
                       r->finish(msg::failure_reply(e));
                     }
                     self->finished(*r);
                   }));
  }

  // Where a new request runs: a strand of its own, or the executor itself
  // when one thread runs it.
  asio::any_io_executor request_executor() {
    if (opts.single_thread) return ex;
    return asio::make_strand(ex);
  }

  bool full() const noexcept { return core->in_flight() >= opts.max_in_flight; }

  // The dispatch coroutine, on dispatch_strand: receives on the executor.
  asio::awaitable<void> dispatch() {
    auto& listener = core->get_listener();
    for (;;) {
      while (full() && !core->stopping()) {
        slot_timer.expires_at(std::chrono::steady_clock::time_point::max());
        waiting_for_slot.store(true, std::memory_order_seq_cst);
        std::atomic_thread_fence(std::memory_order_seq_cst);
        // A request that finished between full() and the store has not seen
        // the flag: look again before sleeping.
        if (!full() || core->stopping()) {
          waiting_for_slot.store(false, std::memory_order_relaxed);
          break;
        }
        co_await slot_timer.async_wait(asio::as_tuple(asio::use_awaitable));
      }
      if (core->stopping()) break;
      auto [ec, in] = co_await listener.async_receive_call(asio::as_tuple(asio::use_awaitable));
      if (ec || !in) break;
      auto r = core->accept(std::move(in), request_executor());
      if (r) run(std::move(r));
    }
  }

  // The polling thread: receives from a blocking transport.
  void poll_loop() {
    auto& listener = core->get_listener();
    try {
      for (;;) {
        {
          std::unique_lock lk(poll_mutex);
          poll_cv.wait(lk, [&] { return !full() || core->stopping(); });
        }
        if (core->stopping()) break;
        auto in = listener.poll_call(opts.poll_interval);
        if (!in) continue;
        auto r = core->accept(std::move(in), request_executor());
        if (r) run(std::move(r));
      }
      // A message the listener handed over as it stopped is still served.
      while (auto in = listener.poll_call(std::chrono::milliseconds(0))) {
        if (auto r = core->accept(std::move(in), request_executor())) run(std::move(r));
      }
    } catch (const std::exception& e) {
      core->log().error("coro_executor: polling failed: {}", e.what());
    }
    core->loop_exited();
  }

  coro_executor_options opts;
  asio::any_io_executor ex;
  asio::strand<asio::any_io_executor> dispatch_strand;
  asio::steady_timer slot_timer;
  std::atomic<bool> waiting_for_slot{false};
  std::shared_ptr<msg::serving::core> core;
  std::optional<asio::thread_pool> pool;
  bool started = false;
  bool polling_thread = false;
  std::mutex poll_mutex;
  std::condition_variable poll_cv;
  std::thread poller;
};

coro_executor::coro_executor(msg::service s, asio::any_io_executor ex, coro_executor_options options)
    : impl_(std::make_shared<impl>(std::move(s), std::move(ex), std::move(options))) {}

coro_executor::~coro_executor() {
  if (impl_->started && !impl_->core->stopping()) stop_impl([] {});
  if (impl_->poller.joinable()) impl_->poller.join();
  if (impl_->pool) impl_->pool->join();
}

void coro_executor::start() {
  if (impl_->started) throw std::logic_error("coro_executor: already started");
  if (impl_->opts.fiber_method_threads == 0) {
    if (auto left = msg::fiber_only_methods(*impl_->core->served().dispatcher); !left.empty()) {
      throw fiber_methods_remain(std::move(left));
    }
  } else {
    impl_->pool.emplace(impl_->opts.fiber_method_threads);
  }
  impl_->core->open(impl_->dispatch_strand);  // the deadline timer, serialized
  impl_->started = true;
  // Without fibers every method in both forms runs its ported form,
  // whatever its migration policy says; say so once.
  {
    const auto& controls = *impl_->core->controls();
    std::string overridden;
    for (const auto& e : controls.served().endpoints()) {
      for (const auto& [name, m] : e->methods()) {
        if (!m.has_both_forms()) continue;
        const auto p = controls.policy_of(*e, m);
        if (p.what == msg::policy::kind::ported) continue;
        overridden += (overridden.empty() ? "" : ", ") + e->name() + "." + name + " (" + p.to_string() + ")";
      }
    }
    if (!overridden.empty()) {
      impl_->core->log().warn("coro_executor: runs the ported form of every method; these have another policy: {}",
                              overridden);
    }
  }
  using polling = coro_executor_options::polling;
  impl_->polling_thread = impl_->opts.poll == polling::thread ||
                          (impl_->opts.poll == polling::automatic && impl_->core->get_listener().blocking());
  impl_->core->loop_started();
  if (impl_->polling_thread) {
    impl_->poller = std::thread([self = impl_] { self->poll_loop(); });
  } else {
    asio::co_spawn(impl_->dispatch_strand, impl_->dispatch(), [self = impl_](std::exception_ptr e) {
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& x) {
          self->core->log().error("coro_executor: dispatch failed: {}", x.what());
        } catch (...) {
        }
      }
      self->core->loop_exited();
    });
  }
}

void coro_executor::stop_impl(asio::any_completion_handler<void()> done) {
  if (!impl_->started) return std::move(done)();
  impl_->core->stop(std::move(done), impl_->ex);
  if (impl_->polling_thread) {
    { std::lock_guard lk(impl_->poll_mutex); }
    impl_->poll_cv.notify_all();
  } else {
    asio::post(impl_->dispatch_strand, [self = impl_] { self->slot_timer.cancel(); });
  }
}

std::size_t coro_executor::in_flight() const noexcept { return impl_->core->in_flight(); }
std::size_t coro_executor::peak_in_flight() const noexcept { return impl_->core->peak_in_flight(); }
std::vector<msg::method_report> coro_executor::metrics() const { return impl_->core->metrics(); }
std::uint64_t coro_executor::rejected() const noexcept { return impl_->core->rejected(); }
std::shared_ptr<msg::migration_controls> coro_executor::controls() const { return impl_->core->controls(); }
bool coro_executor::polls_from_thread() const noexcept { return impl_->polling_thread; }

}  // namespace coport
