#include <coport/messaging/wire/errors.hpp>
#include <coport/messaging/transport/transport.hpp>

#include "detail/log.hpp"
#include "transport/memory_driver.hpp"

#include <boost/asio/append.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <spdlog/spdlog.h>

#include <map>
#include <optional>
#include <condition_variable>
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

struct listener_impl::poll_state {
  std::mutex mutex;
  std::condition_variable cv;
  bool pending = false;  // a receive is outstanding
  bool ended = false;    // the listener stopped
  std::unique_ptr<incoming_call> ready;
};

std::unique_ptr<incoming_call> listener_impl::poll_call(std::chrono::milliseconds timeout) {
  if (!poll_) poll_ = std::make_shared<poll_state>();
  auto st = poll_;
  std::unique_lock lk(st->mutex);
  if (!st->pending && !st->ready && !st->ended) {
    st->pending = true;
    lk.unlock();
    async_receive_call([st](boost::system::error_code ec, std::unique_ptr<incoming_call> in) {
      {
        std::lock_guard g(st->mutex);
        st->pending = false;
        if (ec || !in) st->ended = true;
        else st->ready = std::move(in);
      }
      st->cv.notify_all();
    });
    lk.lock();
  }
  st->cv.wait_for(lk, timeout, [&] { return st->ready || st->ended; });
  return std::move(st->ready);
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

// Why transport::create refuses `url`. The schemes of coport's own driver
// libraries (coport::<scheme>) name the library the program must link.
std::string no_driver_message(const std::string& scheme, std::string_view url) {
  static constexpr std::string_view driver_libraries[] = {"rabbit"};
  for (const auto library : driver_libraries) {
    if (scheme == library) {
      return scheme + ":// needs coport::" + scheme + ", which this program does not link ('" + mask_password(url) +
             "'): link coport::" + scheme + " (find_package(coport COMPONENTS " + scheme + "))";
    }
  }
  return "no transport driver for scheme '" + scheme + "' in '" + mask_password(url) +
         "' (link the driver's library; memory:// is built in)";
}

}  // namespace

transport_stats driver::stats() const {
  const std::string url = describe();
  transport_stats s;
  s.driver = url.substr(0, url.find("://"));
  s.connected = true;
  return s;
}

void register_driver(std::string scheme, driver_factory factory) {
  std::lock_guard lk(registry_mutex());
  registry()[std::move(scheme)] = std::move(factory);
}

// ---------------------------------------------------------------- transport

// A call waiting for its reply. Whoever takes it out of the pending set
// (the reply, the deadline, the caller's cancellation, a send failure)
// completes it; the others find nothing.
struct transport::pending_call {
  asio::any_completion_handler<void(std::exception_ptr, rpc_reply)> handler;
  std::multimap<std::chrono::steady_clock::time_point, std::string>::iterator deadline;
};

// Call deadlines live in one ordered set per transport, watched by a single
// timer on the transport's own thread: a call costs a set insertion, not a
// timer and its system calls.
struct transport::state {
  std::mutex mutex;
  std::unordered_map<std::string, pending_call> pending;
  std::multimap<std::chrono::steady_clock::time_point, std::string> deadlines;
  std::chrono::steady_clock::time_point armed_for = std::chrono::steady_clock::time_point::max();
  std::string reply_queue;

  // The timer's world, owned jointly with its thread: when the transport's
  // last owner lets go inside a timer handler (which holds it for a moment),
  // the destructor runs on that thread and cannot join it; the thread then
  // outlives the transport and ends with this.
  struct timer_world {
    asio::io_context io{1};
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
    std::optional<asio::steady_timer> timer;
  };
  std::once_flag timer_thread_started;
  std::shared_ptr<timer_world> timers = std::make_shared<timer_world>();
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
    if (!factory) throw invalid_url(no_driver_message(scheme, url));
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
  std::unordered_map<std::string, pending_call> left;
  {
    std::lock_guard lk(state_->mutex);
    left.swap(state_->pending);
    state_->deadlines.clear();
  }
  for (auto& [id, call] : left) {
    std::move(call.handler)(
        std::make_exception_ptr(transport_error("the transport was closed before the reply")), rpc_reply{});
  }
  if (state_->timer_thread.joinable()) {
    state_->timers->work.reset();
    state_->timers->io.stop();
    if (state_->timer_thread.get_id() == std::this_thread::get_id()) {
      state_->timer_thread.detach();
    } else {
      state_->timer_thread.join();
    }
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
                           asio::any_completion_handler<void(std::exception_ptr, rpc_reply)> handler) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const std::string msg_id = request.msg_id;
  bool rearm = false;
  {
    std::lock_guard lk(state_->mutex);
    if (state_->reply_queue.empty()) {
      std::weak_ptr<transport> weak = weak_from_this();
      state_->reply_queue = driver_->start_replies([weak](rpc_reply r) {
        if (auto self = weak.lock()) self->on_reply(std::move(r));
      });
    }
    request.reply_q = state_->reply_queue;
    auto it = state_->deadlines.emplace(deadline, msg_id);
    state_->pending.emplace(msg_id, pending_call{std::move(handler), it});
    if (deadline < state_->armed_for) {
      state_->armed_for = deadline;
      rearm = true;
    }
  }
  if (!request.timeout) request.timeout = std::chrono::duration<double>(timeout).count();
  if (rearm) arm_deadline_timer();
  driver_->async_send(to, std::move(request), [weak = weak_from_this(), msg_id](boost::system::error_code ec) {
    auto self = weak.lock();
    if (!ec || !self) return;
    if (auto call = self->take_call(msg_id)) {
      std::move(call->handler)(
          std::make_exception_ptr(transport_error("could not send the call: " + ec.message())), rpc_reply{});
    }
  });
}

std::optional<transport::pending_call> transport::take_call(const std::string& msg_id) {
  std::lock_guard lk(state_->mutex);
  auto it = state_->pending.find(msg_id);
  if (it == state_->pending.end()) return std::nullopt;
  state_->deadlines.erase(it->second.deadline);
  std::optional<pending_call> out(std::move(it->second));
  state_->pending.erase(it);
  return out;
}

void transport::abandon_call(const std::string& msg_id) {
  if (auto call = take_call(msg_id)) {
    std::move(call->handler)(std::make_exception_ptr(boost::system::system_error(
                                 asio::error::operation_aborted, "call " + msg_id + " cancelled")),
                             rpc_reply{});
  }
}

// Runs on any thread: (re)arms the deadline timer on the transport's thread
// for the earliest pending deadline.
void transport::arm_deadline_timer() {
  std::call_once(state_->timer_thread_started, [this] {
    auto& world = *state_->timers;
    world.work.emplace(world.io.get_executor());
    world.timer.emplace(world.io);
    state_->timer_thread = std::thread([world = state_->timers] { world->io.run(); });
  });
  asio::post(state_->timers->io, [weak = weak_from_this()] {
    auto self = weak.lock();
    if (!self) return;
    std::chrono::steady_clock::time_point earliest;
    {
      std::lock_guard lk(self->state_->mutex);
      earliest = self->state_->deadlines.empty() ? std::chrono::steady_clock::time_point::max()
                                                 : self->state_->deadlines.begin()->first;
      self->state_->armed_for = earliest;
    }
    self->state_->timers->timer->expires_at(earliest);
    self->state_->timers->timer->async_wait([weak](boost::system::error_code ec) {
      auto s = weak.lock();
      if (!ec && s) s->on_deadline();
    });
  });
}

// Transport thread: completes every call whose deadline passed.
void transport::on_deadline() {
  const auto now = std::chrono::steady_clock::now();
  std::vector<std::pair<std::string, pending_call>> expired;
  {
    std::lock_guard lk(state_->mutex);
    while (!state_->deadlines.empty() && state_->deadlines.begin()->first <= now) {
      auto d = state_->deadlines.begin();
      auto it = state_->pending.find(d->second);
      state_->deadlines.erase(d);
      if (it == state_->pending.end()) continue;
      expired.emplace_back(it->first, std::move(it->second));
      state_->pending.erase(it);
    }
    state_->armed_for = std::chrono::steady_clock::time_point::max();
  }
  for (auto& [id, call] : expired) {
    std::move(call.handler)(std::make_exception_ptr(timeout_error(
                                "Timed out waiting for a reply to message ID " + id)),
                            rpc_reply{});
  }
  arm_deadline_timer();
}

void transport::on_reply(rpc_reply reply) {
  auto call = take_call(reply.msg_id);
  if (!call) {
    log_->debug("reply for message {} arrived after its call ended; dropped", reply.msg_id);
    return;
  }
  std::exception_ptr e;
  if (reply.failure) e = exception_from(*reply.failure);
  std::move(call->handler)(e, std::move(reply));
}

}  // namespace coport::messaging
