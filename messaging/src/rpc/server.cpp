#include <coport/messaging/rpc/server.hpp>

#include "detail/log.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <atomic>
#include <mutex>
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

// The server is max_in_flight worker coroutines, each taking one request
// from the listener, serving it, and only then taking the next: the bound on
// requests in flight is the number of workers, and messages nobody can take
// stay with the transport (backpressure) without any queue of our own.
struct rpc_server::state : std::enable_shared_from_this<state> {
  state(std::shared_ptr<transport> tr, target to, std::shared_ptr<const dispatcher> disp,
        asio::any_io_executor exec, server_options o)
      : t(std::move(tr)), where(std::move(to)), d(std::move(disp)), ex(std::move(exec)), opts(o) {}

  std::shared_ptr<transport> t;
  target where;
  std::shared_ptr<const dispatcher> d;
  asio::any_io_executor ex;
  server_options opts;
  std::optional<listener> l;

  std::mutex mutex;  // guards the fields below (workers may run on several threads)
  std::size_t workers = 0;
  std::vector<asio::any_completion_handler<void()>> stop_waiters;

  std::atomic<std::size_t> in_flight{0};
  std::atomic<std::size_t> served{0};

  asio::awaitable<void> handle(incoming_call& in) {
    rpc_request& req = in.request();
    rpc_reply reply;
    std::exception_ptr error;
    try {
      auto [ep, m] = d->find(req);
      const method_form& form = default_form(*m);
      if (form.kind == method_kind::coroutine) {
        reply = co_await invoke_coroutine(form, req);
      } else {
        reply = invoke_plain(form, req);
      }
    } catch (...) {
      error = std::current_exception();
    }
    if (error) reply = failure_reply(error);
    if (req.is_call()) in.reply(std::move(reply));
  }

  asio::awaitable<void> worker() {
    for (;;) {
      auto [ec, in] = co_await l->async_receive_call(asio::as_tuple(asio::use_awaitable));
      if (ec || !in) break;
      in_flight.fetch_add(1, std::memory_order_relaxed);
      co_await handle(*in);
      in_flight.fetch_sub(1, std::memory_order_relaxed);
      served.fetch_add(1, std::memory_order_relaxed);
    }
  }

  void worker_done() {
    std::vector<asio::any_completion_handler<void()>> waiters;
    {
      std::lock_guard lk(mutex);
      if (--workers > 0) return;
      waiters.swap(stop_waiters);
    }
    for (auto& w : waiters) std::move(w)();
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
  {
    std::lock_guard lk(state_->mutex);
    state_->workers = state_->opts.max_in_flight;
  }
  for (std::size_t i = 0; i < state_->opts.max_in_flight; ++i) {
    asio::co_spawn(state_->ex, state_->worker(), [s = state_](std::exception_ptr e) {
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& x) {
          s->t->log().error("rpc server {}: a worker failed: {}", s->where.topic, x.what());
        } catch (...) {
          s->t->log().error("rpc server {}: a worker failed", s->where.topic);
        }
      }
      s->worker_done();
    });
  }
}

void rpc_server::stop_impl(asio::any_completion_handler<void()> done) {
  {
    std::lock_guard lk(state_->mutex);
    if (state_->workers > 0) {
      state_->stop_waiters.push_back(std::move(done));
      // Pending receives end with operation_aborted; each worker exits after
      // the request it is serving has replied.
      if (state_->l) state_->l->stop();
      return;
    }
  }
  std::move(done)();
}

std::size_t rpc_server::in_flight() const noexcept {
  return state_->in_flight.load(std::memory_order_relaxed);
}

std::size_t rpc_server::served() const noexcept {
  return state_->served.load(std::memory_order_relaxed);
}

}  // namespace coport::messaging
