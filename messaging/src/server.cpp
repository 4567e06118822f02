#include <coport/messaging/server.hpp>

#include "log.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <atomic>
#include <vector>

namespace asio = boost::asio;

namespace coport::messaging {

rpc_reply failure_reply(std::exception_ptr e) {
  rpc_reply r;
  r.failure = failure_from(e);
  return r;
}

asio::awaitable<rpc_reply> invoke_coroutine(const method_form& form, rpc_request& request) {
  request_context ctx = request_context::of(request);
  std::exception_ptr error;
  try {
    rpc_reply r;
    r.result = co_await form.co_call(ctx, request.args);
    co_return r;
  } catch (...) {
    error = std::current_exception();
  }
  co_return failure_reply(error);
}

rpc_reply invoke_plain(const method_form& form, rpc_request& request) {
  request_context ctx = request_context::of(request);
  try {
    rpc_reply r;
    r.result = form.call(ctx, request.args);
    return r;
  } catch (...) {
    return failure_reply(std::current_exception());
  }
}

struct rpc_server::state : std::enable_shared_from_this<state> {
  state(std::shared_ptr<transport> tr, target to, std::shared_ptr<const dispatcher> disp,
        asio::any_io_executor exec, server_options o)
      : t(std::move(tr)),
        where(std::move(to)),
        d(std::move(disp)),
        ex(std::move(exec)),
        strand(asio::make_strand(ex)),
        opts(o),
        slot_freed(strand) {}

  std::shared_ptr<transport> t;
  target where;
  std::shared_ptr<const dispatcher> d;
  asio::any_io_executor ex;
  asio::strand<asio::any_io_executor> strand;
  server_options opts;
  std::optional<listener> l;

  // Strand only.
  std::size_t in_flight = 0;
  bool stopping = false;
  bool loop_done = true;
  asio::steady_timer slot_freed;  // cancelled when a request finishes
  std::vector<asio::any_completion_handler<void()>> stop_waiters;

  std::atomic<std::size_t> in_flight_seen{0};
  std::atomic<std::size_t> served{0};

  void maybe_finish() {
    if (!loop_done || in_flight > 0) return;
    auto waiters = std::move(stop_waiters);
    for (auto& w : waiters) std::move(w)();
  }

  asio::awaitable<void> handle(std::unique_ptr<incoming_call> in) {
    rpc_request& req = in->request();
    rpc_reply reply;
    std::exception_ptr error;
    try {
      auto [ep, m] = d->find(req);
      const method_form* form = m->ported() ? m->ported() : m->legacy();
      if (form->kind == method_kind::coroutine) {
        reply = co_await invoke_coroutine(*form, req);
      } else {
        reply = invoke_plain(*form, req);
      }
    } catch (...) {
      error = std::current_exception();
    }
    if (error) reply = failure_reply(error);
    if (req.is_call()) in->reply(std::move(reply));
  }

  asio::awaitable<void> receive_loop() {
    auto self = shared_from_this();
    for (;;) {
      while (in_flight >= opts.max_in_flight && !stopping) {
        slot_freed.expires_at(asio::steady_timer::time_point::max());
        co_await slot_freed.async_wait(asio::as_tuple(asio::use_awaitable));
      }
      if (stopping) break;
      auto [ec, in] = co_await l->async_receive_call(asio::as_tuple(asio::use_awaitable));
      if (ec || !in) break;
      ++in_flight;
      in_flight_seen.store(in_flight, std::memory_order_relaxed);
      asio::co_spawn(ex, handle(std::move(in)), [self](std::exception_ptr e) {
        if (e) {
          try {
            std::rethrow_exception(e);
          } catch (const std::exception& x) {
            self->t->log().error("rpc server {}: request handling failed: {}", self->where.topic, x.what());
          } catch (...) {
            self->t->log().error("rpc server {}: request handling failed", self->where.topic);
          }
        }
        asio::post(self->strand, [self] {
          --self->in_flight;
          self->in_flight_seen.store(self->in_flight, std::memory_order_relaxed);
          self->served.fetch_add(1, std::memory_order_relaxed);
          self->slot_freed.cancel();
          self->maybe_finish();
        });
      });
    }
    loop_done = true;
    maybe_finish();
  }
};

rpc_server::rpc_server(std::shared_ptr<transport> t, target server, std::shared_ptr<const dispatcher> d,
                       asio::any_io_executor ex, server_options options)
    : state_(std::make_shared<state>(std::move(t), std::move(server), std::move(d), std::move(ex),
                                     options)) {
  if (options.max_in_flight == 0) throw std::invalid_argument("rpc_server: max_in_flight must be > 0");
}

rpc_server::~rpc_server() {
  if (state_->l) state_->l->stop();
}

void rpc_server::start() {
  state_->l.emplace(state_->t->listen(state_->where));
  asio::dispatch(state_->strand, [s = state_] {
    s->loop_done = false;
    asio::co_spawn(s->strand, s->receive_loop(), [s](std::exception_ptr e) {
      if (e) s->t->log().error("rpc server {}: receive loop failed", s->where.topic);
    });
  });
}

void rpc_server::stop_impl(asio::any_completion_handler<void()> done) {
  asio::dispatch(state_->strand, [s = state_, done = std::move(done)]() mutable {
    s->stopping = true;
    s->stop_waiters.push_back(std::move(done));
    if (s->l) s->l->stop();
    s->slot_freed.cancel();
    s->maybe_finish();
  });
}

std::size_t rpc_server::in_flight() const noexcept {
  return state_->in_flight_seen.load(std::memory_order_relaxed);
}

std::size_t rpc_server::served() const noexcept {
  return state_->served.load(std::memory_order_relaxed);
}

}  // namespace coport::messaging
