#include <coport/messaging/errors.hpp>
#include <coport/messaging/transport.hpp>

#include "log.hpp"
#include "memory_driver.hpp"

#include <boost/asio/append.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <spdlog/spdlog.h>

#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace asio = boost::asio;

namespace coport::messaging {

// ------------------------------------------------------------ listener_impl

void listener_impl::async_receive_call(call_receiver h) {
  std::move(h)(make_error_code(asio::error::operation_not_supported), std::unique_ptr<incoming_call>());
}

void listener_impl::async_receive_notification(notification_receiver h) {
  std::move(h)(make_error_code(asio::error::operation_not_supported),
               std::unique_ptr<incoming_notification>());
}

// ------------------------------------------------------------------ drivers

namespace {

std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}

std::map<std::string, driver_factory, std::less<>>& registry() {
  static std::map<std::string, driver_factory, std::less<>> r;
  return r;
}

}  // namespace

void register_driver(std::string scheme, driver_factory factory) {
  std::lock_guard lk(registry_mutex());
  registry()[std::move(scheme)] = std::move(factory);
}

// ---------------------------------------------------------------- transport

// A call waiting for its reply. Whoever takes it out of the pending map (the
// reply or the timeout) completes it; the other does nothing.
struct transport::pending_call {
  // Built with its handler: Boost 1.81's any_completion_handler must not be
  // move-assigned (its move assignment recurses without end).
  pending_call(asio::any_io_executor ex,
               asio::any_completion_handler<void(std::exception_ptr, rpc_reply)> h)
      : handler(std::move(h)), timer(std::move(ex)) {}
  asio::any_completion_handler<void(std::exception_ptr, rpc_reply)> handler;
  asio::steady_timer timer;
  std::string msg_id;
};

struct transport::state {
  std::mutex mutex;
  std::unordered_map<std::string, std::shared_ptr<pending_call>> pending;
  std::string reply_queue;
  // A thread for the timeouts of calls whose handler has no executor of its
  // own (futures, fiber tokens, plain callbacks); started on first use.
  std::once_flag timer_thread_started;
  asio::io_context timer_io{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> timer_work;
  std::thread timer_thread;
};

std::shared_ptr<transport> transport::create(std::string_view url, transport_options options) {
  const auto colon = url.find("://");
  if (colon == std::string_view::npos) {
    throw invalid_url("transport URL '" + mask_password(url) + "' has no scheme (\"memory://\", "
                      "\"rabbit://...\")");
  }
  const std::string scheme(url.substr(0, colon));
  std::unique_ptr<driver> d;
  if (scheme == "memory") {
    d = make_memory_driver(url, options);
  } else {
    driver_factory factory;
    {
      std::lock_guard lk(registry_mutex());
      auto it = registry().find(scheme);
      if (it != registry().end()) factory = it->second;
    }
    if (!factory) {
      throw invalid_url("no transport driver for scheme '" + scheme + "' in '" + mask_password(url) +
                        "' (link the driver's library; memory:// is built in)");
    }
    d = factory(url, options);
  }
  return std::shared_ptr<transport>(new transport(std::move(d), std::move(options)));
}

transport::transport(std::unique_ptr<driver> d, transport_options options)
    : options_(std::move(options)),
      log_(options_.logger ? options_.logger : default_logger()),
      driver_(std::move(d)),
      state_(std::make_unique<state>()) {}

transport::~transport() {
  driver_->shutdown();
  std::unordered_map<std::string, std::shared_ptr<pending_call>> left;
  {
    std::lock_guard lk(state_->mutex);
    left.swap(state_->pending);
  }
  for (auto& [id, call] : left) {
    finish(call, std::make_exception_ptr(transport_error("the transport was closed before the reply")),
           {});
  }
  if (state_->timer_thread.joinable()) {
    state_->timer_work.reset();
    state_->timer_io.stop();
    state_->timer_thread.join();
  }
}

listener transport::listen(const target& t) {
  t.validate_for_listen();
  return listener(driver_->listen(t));
}

listener transport::listen_notifications(const std::vector<target>& targets,
                                         std::optional<std::string> pool) {
  if (targets.empty()) throw invalid_target("a notification listener needs at least one target");
  for (const auto& t : targets) {
    if (t.topic.empty()) throw invalid_target("notification target has an empty topic");
    validate_name("topic", t.topic);
  }
  if (pool) validate_name("pool", *pool);
  return listener(driver_->listen_notifications(targets, pool));
}

std::size_t transport::pending_calls() const {
  std::lock_guard lk(state_->mutex);
  return state_->pending.size();
}

void transport::start_call(target to, rpc_request request, std::chrono::steady_clock::duration timeout,
                           asio::any_io_executor timer_ex,
                           asio::any_completion_handler<void(std::exception_ptr, rpc_reply)> handler) {
  if (!timer_ex) {
    std::call_once(state_->timer_thread_started, [this] {
      state_->timer_work.emplace(state_->timer_io.get_executor());
      state_->timer_thread = std::thread([this] { state_->timer_io.run(); });
    });
    timer_ex = state_->timer_io.get_executor();
  }
  // The timer is armed, cancelled and fires through one strand: its
  // executor may be run by several threads.
  timer_ex = asio::make_strand(std::move(timer_ex));
  auto call = std::make_shared<pending_call>(timer_ex, std::move(handler));
  {
    std::lock_guard lk(state_->mutex);
    if (state_->reply_queue.empty()) {
      std::weak_ptr<transport> weak = weak_from_this();
      state_->reply_queue = driver_->start_replies([weak](rpc_reply r) {
        if (auto self = weak.lock()) self->on_reply(std::move(r));
      });
    }
    if (request.msg_id.empty()) request.msg_id = make_unique_id();
    request.reply_q = state_->reply_queue;
    call->msg_id = request.msg_id;
    state_->pending.emplace(call->msg_id, call);
  }
  if (!request.timeout) {
    request.timeout = std::chrono::duration<double>(timeout).count();
  }
  // Arm the timeout on the timer's executor, where its handler runs. The
  // handler holds the transport weakly: the last reference must never be
  // dropped on the transport's own timer thread (its destructor joins it).
  asio::dispatch(call->timer.get_executor(), [weak = weak_from_this(), call, timeout] {
    call->timer.expires_after(timeout);
    call->timer.async_wait([weak, call](boost::system::error_code ec) {
      auto self = weak.lock();
      if (ec || !self) return;
      {
        std::lock_guard lk(self->state_->mutex);
        if (self->state_->pending.erase(call->msg_id) == 0) return;  // the reply won
      }
      self->finish(call,
                   std::make_exception_ptr(timeout_error(
                       "Timed out waiting for a reply to message ID " + call->msg_id)),
                   {});
    });
  });
  driver_->async_send(to, std::move(request),
                      [weak = weak_from_this(), call](boost::system::error_code ec) {
                        auto self = weak.lock();
                        if (!ec || !self) return;
                        {
                          std::lock_guard lk(self->state_->mutex);
                          if (self->state_->pending.erase(call->msg_id) == 0) return;
                        }
                        self->finish(call,
                                     std::make_exception_ptr(transport_error(
                                         "could not send the call: " + ec.message())),
                                     {});
                      });
}

void transport::on_reply(rpc_reply reply) {
  std::shared_ptr<pending_call> call;
  {
    std::lock_guard lk(state_->mutex);
    auto it = state_->pending.find(reply.msg_id);
    if (it == state_->pending.end()) {
      log_->debug("reply for message {} arrived after its call ended; dropped", reply.msg_id);
      return;
    }
    call = std::move(it->second);
    state_->pending.erase(it);
  }
  std::exception_ptr e;
  if (reply.failure) e = exception_from(*reply.failure);
  finish(call, e, std::move(reply));
}

void transport::finish(const std::shared_ptr<pending_call>& call, std::exception_ptr e,
                       rpc_reply reply) {
  asio::post(call->timer.get_executor(), [call] { call->timer.cancel(); });
  std::move(call->handler)(e, std::move(reply));
}

}  // namespace coport::messaging
