#include <coport/messaging/notify/notify.hpp>

#include <coport/messaging/wire/errors.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <regex>
#include <stdexcept>
#include <string_view>

namespace asio = boost::asio;
namespace json = boost::json;

namespace coport::messaging {

// ----------------------------------------------------------------- notifier

context sanitize_context(const context& ctxt) {
  // oslo.messaging's _sanitize_context (the keys of oslo.context's
  // RequestContext that carry no secret, and their old names).
  static constexpr std::array<std::string_view, 27> safe_keys = {
      "user_id",
      "project_id",
      "domain_id",
      "user_domain_id",
      "project_domain_id",
      "is_admin",
      "request_id",
      "roles",
      "user_name",
      "project_name",
      "domain_name",
      "user_domain_name",
      "project_domain_name",
      "service_user_id",
      "service_user_domain_id",
      "service_user_domain_name",
      "service_project_id",
      "service_project_name",
      "service_project_domain_id",
      "service_project_domain_name",
      "service_roles",
      "global_request_id",
      "system_scope",
      "user",
      "domain",
      "user_domain",
      "project_domain",
  };
  context safe;
  for (const auto& kv : ctxt) {
    if (std::find(safe_keys.begin(), safe_keys.end(), kv.key()) != safe_keys.end()) {
      safe.emplace(kv.key(), kv.value());
    }
  }
  return safe;
}

notifier::notifier(std::shared_ptr<transport> t, std::string publisher_id,
                   std::vector<std::string> topics)
    : transport_(std::move(t)), publisher_id_(std::move(publisher_id)), topics_(std::move(topics)) {
  if (!transport_) throw std::invalid_argument("notifier: the transport is null");
  if (topics_.empty()) throw std::invalid_argument("notifier: at least one topic is needed");
  for (const auto& topic : topics_) validate_name("topic", topic);
}

notifier notifier::prepare(std::string publisher_id) const {
  notifier copy = *this;
  copy.publisher_id_ = std::move(publisher_id);
  return copy;
}

notification notifier::make_notification(context ctxt, priority p, std::string event_type,
                                         json::value payload) const {
  notification n;
  // str(uuid.uuid4()), with its dashes, as oslo.messaging's notifier.
  const std::string hex = make_unique_id();
  n.message_id = hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
                 hex.substr(16, 4) + "-" + hex.substr(20);
  n.publisher_id = publisher_id_;
  n.event_type = std::move(event_type);
  n.prio = p;
  n.payload = std::move(payload);
  n.timestamp = utc_timestamp();
  n.ctxt = sanitize_context(ctxt);
  n.unique_id = make_unique_id();
  return n;
}

void notifier::start_notify(notification n,
                            asio::any_completion_handler<void(std::exception_ptr)> done) const {
  // One copy per topic; the caller hears once, when the last is taken.
  struct fan_in {
    explicit fan_in(asio::any_completion_handler<void(std::exception_ptr)> h, std::size_t n)
        : done(std::move(h)), left(n) {}
    asio::any_completion_handler<void(std::exception_ptr)> done;
    std::mutex mutex;
    std::size_t left;
    std::exception_ptr first_error;
  };
  auto fan = std::make_shared<fan_in>(std::move(done), topics_.size());
  auto sent = [fan](std::exception_ptr e) {
    std::exception_ptr error;
    {
      std::lock_guard lk(fan->mutex);
      if (e && !fan->first_error) fan->first_error = e;
      if (--fan->left > 0) return;
      error = fan->first_error;
    }
    std::move(fan->done)(error);
  };
  for (std::size_t i = 0; i < topics_.size(); ++i) {
    const std::string& topic = topics_[i];
    try {
      target to;
      to.topic = topic;
      notification copy = i + 1 == topics_.size() ? std::move(n) : n;
      transport_->async_notify(std::move(to), std::move(copy),
                               [sent, topic](boost::system::error_code ec) {
                                 sent(ec ? std::make_exception_ptr(transport_error(
                                               "could not send the notification to topic '" +
                                               topic + "': " + ec.message()))
                                         : std::exception_ptr());
                               });
    } catch (...) {
      // The caller hears of it through its handler, like any other failure.
      sent(std::current_exception());
    }
  }
}

// ---------------------------------------------------------------- endpoints

namespace {

// Python's re.match: anchored at the start, not at the end.
bool match_start(const std::regex& re, std::string_view text) {
  return std::regex_search(text.begin(), text.end(), re, std::regex_constants::match_continuous);
}

std::regex compile(const std::string& field, const std::string& expression) {
  try {
    return std::regex(expression, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    throw std::invalid_argument("notification filter: " + field + " '" + expression +
                                "' is not a valid regular expression: " + e.what());
  }
}

using regex_map = std::vector<std::pair<std::string, std::regex>>;

regex_map compile_map(const std::string& field, const std::map<std::string, std::string>& m) {
  regex_map out;
  out.reserve(m.size());
  for (const auto& [key, expression] : m) out.emplace_back(key, compile(field + "[" + key + "]", expression));
  return out;
}

// A missing key, or a value that is not a string, fails (as oslo's filter).
bool match_map(const regex_map& m, const json::object* data) {
  for (const auto& [key, re] : m) {
    if (!data) return false;
    const json::value* v = data->if_contains(key);
    if (!v || !v->is_string() || !match_start(re, v->get_string())) return false;
  }
  return true;
}

bool match_metadata(const regex_map& m, const notification& n) {
  for (const auto& [key, re] : m) {
    const std::string* value = key == "message_id" ? &n.message_id
                               : key == "timestamp" ? &n.timestamp
                                                    : nullptr;
    if (!value || !match_start(re, *value)) return false;
  }
  return true;
}

// A filter with its expressions compiled.
struct filter_program {
  explicit filter_program(const notification_filter& f)
      : context(compile_map("context", f.context)),
        metadata(compile_map("metadata", f.metadata)),
        payload(compile_map("payload", f.payload)) {
    if (f.publisher_id) publisher_id = compile("publisher_id", *f.publisher_id);
    if (f.event_type) event_type = compile("event_type", *f.event_type);
  }

  bool matches(const notification& n) const {
    if (publisher_id && !match_start(*publisher_id, n.publisher_id)) return false;
    if (event_type && !match_start(*event_type, n.event_type)) return false;
    if (!match_map(context, &n.ctxt)) return false;
    if (!match_metadata(metadata, n)) return false;
    return match_map(payload, n.payload.if_object());
  }

  std::optional<std::regex> publisher_id;
  std::optional<std::regex> event_type;
  regex_map context;
  regex_map metadata;
  regex_map payload;
};

}  // namespace

struct notification_endpoint::compiled_filter : filter_program {
  using filter_program::filter_program;
};

bool notification_filter::matches(const notification& n) const { return filter_program(*this).matches(n); }

bool notification_filter::empty() const noexcept {
  return !publisher_id && !event_type && context.empty() && metadata.empty() && payload.empty();
}

notification_endpoint::notification_endpoint(std::string name, notification_filter filter)
    : name_(std::move(name)),
      filter_(std::move(filter)),
      compiled_(filter_.empty() ? nullptr : std::make_unique<const compiled_filter>(filter_)) {}

notification_endpoint::~notification_endpoint() = default;
notification_endpoint::notification_endpoint(notification_endpoint&&) noexcept = default;
notification_endpoint& notification_endpoint::operator=(notification_endpoint&&) noexcept = default;

bool notification_endpoint::accepts(const notification& n) const {
  return !compiled_ || compiled_->matches(n);
}

const notification_handler* notification_endpoint::handler(priority p) const noexcept {
  const auto& slot = handlers_[static_cast<std::size_t>(p)];
  return slot ? &*slot : nullptr;
}

const notification_batch_handler* notification_endpoint::batch_handler(priority p) const noexcept {
  const auto& slot = batch_handlers_[static_cast<std::size_t>(p)];
  return slot ? &*slot : nullptr;
}

bool notification_endpoint::handles(priority p) const noexcept {
  return handler(p) || batch_handler(p);
}

void notification_endpoint::set(priority p, notification_handler h) {
  auto& slot = handlers_[static_cast<std::size_t>(p)];
  if (slot) {
    throw std::invalid_argument("notification endpoint '" + name_ + "' already has a handler for '" +
                                std::string(to_string(p)) + "'");
  }
  slot.emplace(std::move(h));
}

void notification_endpoint::set_batch(priority p, notification_batch_handler h) {
  auto& slot = batch_handlers_[static_cast<std::size_t>(p)];
  if (slot) {
    throw std::invalid_argument("notification endpoint '" + name_ +
                                "' already has a batch handler for '" + std::string(to_string(p)) +
                                "'");
  }
  slot.emplace(std::move(h));
}

// ----------------------------------------------------------------- listener

namespace {

template <class Arg>
asio::awaitable<notification_result> invoke(const notification_handler_form<Arg>& form, Arg arg) {
  if (form.kind == method_kind::coroutine) co_return co_await form.co_call(arg);
  co_return form.call(arg);
}

std::string describe_exception(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "an exception that is not a std::exception";
  }
}

}  // namespace

struct notification_listener::state : std::enable_shared_from_this<state> {
  state(std::shared_ptr<transport> tr, std::vector<target> ts,
        std::vector<std::shared_ptr<const notification_endpoint>> eps, asio::any_io_executor exec,
        notification_listener_options o)
      : t(std::move(tr)),
        targets(std::move(ts)),
        endpoints(std::move(eps)),
        ex(std::move(exec)),
        strand(asio::make_strand(ex)),
        opts(std::move(o)),
        slot_freed(strand),
        batch_timer(strand) {}

  std::shared_ptr<transport> t;
  std::vector<target> targets;
  std::vector<std::shared_ptr<const notification_endpoint>> endpoints;
  asio::any_io_executor ex;
  asio::strand<asio::any_io_executor> strand;
  notification_listener_options opts;
  std::optional<listener> l;

  // Strand only.
  std::size_t in_flight = 0;
  bool stopping = false;
  bool loop_done = true;
  asio::steady_timer slot_freed;  // cancelled when messages are answered
  std::vector<std::unique_ptr<incoming_notification>> batch;
  asio::steady_timer batch_timer;
  // A batch timer that fired just before its batch was flushed another way
  // must not flush the next batch: each batch has its own generation.
  std::uint64_t batch_generation = 0;
  std::vector<asio::any_completion_handler<void()>> stop_waiters;

  std::atomic<std::size_t> in_flight_seen{0};
  std::atomic<std::size_t> handled{0};
  std::atomic<std::size_t> requeued{0};

  const std::string& name() const { return targets.front().topic; }

  void maybe_finish() {
    if (!loop_done || in_flight > 0) return;
    auto waiters = std::move(stop_waiters);
    stop_waiters.clear();
    for (auto& w : waiters) std::move(w)();
  }

  void answer(incoming_notification& in, notification_result r) {
    const notification& n = in.message();
    try {
      if (r == notification_result::requeue && opts.allow_requeue) {
        in.requeue();
        requeued.fetch_add(1, std::memory_order_relaxed);
        return;
      }
      if (r == notification_result::requeue) {
        t->log().warn("notification listener {}: {} notification {} ({}) not handled; acknowledged "
                      "anyway (requeue is not allowed)",
                      name(), to_string(n.prio), n.message_id, n.event_type);
      }
      in.ack();
      handled.fetch_add(1, std::memory_order_relaxed);
    } catch (...) {
      t->log().error("notification listener {}: could not answer notification {}: {}", name(),
                     n.message_id, describe_exception(std::current_exception()));
    }
  }

  // Runs the handlers of priority `p` for `group` (messages of that
  // priority), endpoint by endpoint; requeue as soon as one asks for it.
  asio::awaitable<notification_result> dispatch(priority p,
                                                const std::vector<incoming_notification*>& group,
                                                bool prefer_batch) {
    for (const auto& e : endpoints) {
      const notification_handler* single = e->handler(p);
      const notification_batch_handler* batched = e->batch_handler(p);
      if (!single && !batched) continue;
      notification_result r = notification_result::handled;
      std::exception_ptr error;
      try {
        std::vector<incoming_notification*> accepted;
        for (incoming_notification* in : group) {
          if (e->accepts(in->message())) accepted.push_back(in);
        }
        if (accepted.empty()) continue;
        if (batched && (prefer_batch || !single)) {
          // Each endpoint gets its own copies: a batch handler may consume them.
          std::vector<notification> copies;
          copies.reserve(accepted.size());
          for (incoming_notification* in : accepted) copies.push_back(in->message());
          r = co_await invoke<std::vector<notification>&>(*batched, copies);
        } else {
          for (incoming_notification* in : accepted) {
            r = co_await invoke<const notification&>(*single, in->message());
            if (r == notification_result::requeue) break;
          }
        }
      } catch (...) {
        error = std::current_exception();
      }
      if (error) {
        const notification& first = group.front()->message();
        t->log().error("notification listener {}: endpoint '{}' raised handling {} '{}' "
                       "notification(s) (first: {} {}): {}",
                       name(), e->name(), group.size(), to_string(p), first.event_type,
                       first.message_id, describe_exception(error));
        r = notification_result::requeue;
      }
      if (r == notification_result::requeue) co_return r;
    }
    co_return notification_result::handled;
  }

  asio::awaitable<void> handle_one(std::unique_ptr<incoming_notification> in) {
    const std::vector<incoming_notification*> group{in.get()};
    const notification_result r = co_await dispatch(in->message().prio, group, false);
    answer(*in, r);
  }

  asio::awaitable<void> handle_batch(std::vector<std::unique_ptr<incoming_notification>> messages) {
    // Priority groups in oslo's order (it sorts a batch by priority), each
    // in arrival order.
    for (int p = 0; p <= static_cast<int>(priority::sample); ++p) {
      std::vector<incoming_notification*> group;
      for (auto& in : messages) {
        if (in->message().prio == static_cast<priority>(p)) group.push_back(in.get());
      }
      if (group.empty()) continue;
      const notification_result r = co_await dispatch(static_cast<priority>(p), group, true);
      for (incoming_notification* in : group) answer(*in, r);
    }
  }

  // Strand. Runs `work` (handling `count` messages) on the executor.
  void spawn(asio::awaitable<void> work, std::size_t count) {
    // Posted, not spawned from here: co_spawn starts its coroutine with a
    // dispatch, which runs it inline when the calling thread runs the
    // executor (an io_context thread always does), that is inside this
    // strand, until it first suspends. A plain handler would then block the
    // receive loop and run serialized with every other handler.
    asio::post(ex, [self = shared_from_this(), work = std::move(work), count]() mutable {
      asio::co_spawn(self->ex, std::move(work), [self, count](std::exception_ptr e) {
        if (e) {
          // Messages not answered are requeued by the transport when their
          // incoming_notification is destroyed.
          self->t->log().error("notification listener {}: handling failed: {}", self->name(),
                               describe_exception(e));
        }
        asio::post(self->strand, [self, count] {
          self->in_flight -= count;
          self->in_flight_seen.store(self->in_flight, std::memory_order_relaxed);
          self->slot_freed.cancel();
          self->maybe_finish();
        });
      });
    });
  }

  // Strand.
  void flush_batch() {
    if (batch.empty()) return;
    ++batch_generation;
    batch_timer.cancel();
    auto messages = std::move(batch);
    batch.clear();
    const std::size_t count = messages.size();
    spawn(handle_batch(std::move(messages)), count);
  }

  // Strand: the first message of a batch arrived.
  void arm_batch_timer() {
    batch_timer.expires_after(opts.batch_timeout);
    batch_timer.async_wait([self = shared_from_this(), generation = batch_generation](
                               boost::system::error_code ec) {
      if (ec || generation != self->batch_generation) return;
      self->flush_batch();
    });
  }

  asio::awaitable<void> receive_loop() {
    auto self = shared_from_this();
    for (;;) {
      while (in_flight >= opts.max_in_flight && !stopping) {
        slot_freed.expires_at(asio::steady_timer::time_point::max());
        co_await slot_freed.async_wait(asio::as_tuple(asio::use_awaitable));
      }
      if (stopping) break;
      auto [ec, in] = co_await l->async_receive_notification(asio::as_tuple(asio::use_awaitable));
      if (ec || !in) {
        if (ec && ec != asio::error::operation_aborted) {
          t->log().error("notification listener {}: receiving failed, no longer listening: {}",
                         name(), ec.message());
        }
        break;
      }
      ++in_flight;
      in_flight_seen.store(in_flight, std::memory_order_relaxed);
      if (opts.batch_size == 1) {
        spawn(handle_one(std::move(in)), 1);
        continue;
      }
      batch.push_back(std::move(in));
      if (batch.size() >= opts.batch_size) {
        flush_batch();
      } else if (batch.size() == 1 && opts.batch_timeout > std::chrono::steady_clock::duration::zero()) {
        arm_batch_timer();
      }
    }
    // Messages already taken are handled, not given back (as oslo's
    // listener processes what it consumed before stopping).
    flush_batch();
    loop_done = true;
    maybe_finish();
  }
};

notification_listener::notification_listener(
    std::shared_ptr<transport> t, std::vector<target> targets,
    std::vector<std::shared_ptr<const notification_endpoint>> endpoints, asio::any_io_executor ex,
    notification_listener_options options) {
  if (!t) throw std::invalid_argument("notification_listener: the transport is null");
  if (targets.empty()) throw std::invalid_argument("notification_listener: at least one target is needed");
  if (endpoints.empty()) {
    // oslo's listener consumes only the priorities its endpoints handle;
    // this one would take (and acknowledge) everything.
    throw std::invalid_argument("notification_listener: at least one endpoint is needed");
  }
  for (const auto& e : endpoints) {
    if (!e) throw std::invalid_argument("notification_listener: an endpoint is null");
  }
  if (options.max_in_flight == 0) {
    throw std::invalid_argument("notification_listener: max_in_flight must be > 0");
  }
  if (options.batch_size == 0) throw std::invalid_argument("notification_listener: batch_size must be > 0");
  if (options.batch_size > options.max_in_flight) {
    // A batch is collected within the in-flight budget: a larger one could
    // never fill.
    throw std::invalid_argument("notification_listener: batch_size (" +
                                std::to_string(options.batch_size) + ") is above max_in_flight (" +
                                std::to_string(options.max_in_flight) + ")");
  }
  state_ = std::make_shared<state>(std::move(t), std::move(targets), std::move(endpoints),
                                   std::move(ex), std::move(options));
}

notification_listener::~notification_listener() {
  if (state_->l) state_->l->stop();
}

void notification_listener::start() {
  if (state_->l) throw std::logic_error("notification_listener: already started");
  state_->l.emplace(state_->t->listen_notifications(state_->targets, state_->opts.pool));
  asio::dispatch(state_->strand, [s = state_] {
    if (s->stopping) return;  // stopped before it started
    s->loop_done = false;
    asio::co_spawn(s->strand, s->receive_loop(), [s](std::exception_ptr e) {
      if (!e) return;
      s->t->log().error("notification listener {}: receive loop failed: {}", s->name(),
                        describe_exception(e));
      s->loop_done = true;
      s->maybe_finish();
    });
  });
}

void notification_listener::stop_impl(asio::any_completion_handler<void()> done) {
  asio::dispatch(state_->strand, [s = state_, done = std::move(done)]() mutable {
    s->stopping = true;
    s->stop_waiters.push_back(std::move(done));
    if (s->l) s->l->stop();
    s->slot_freed.cancel();
    s->maybe_finish();
  });
}

std::size_t notification_listener::in_flight() const noexcept {
  return state_->in_flight_seen.load(std::memory_order_relaxed);
}

std::size_t notification_listener::handled() const noexcept {
  return state_->handled.load(std::memory_order_relaxed);
}

std::size_t notification_listener::requeued() const noexcept {
  return state_->requeued.load(std::memory_order_relaxed);
}

}  // namespace coport::messaging
