#include <coport/messaging/serving/executor.hpp>
#include <coport/messaging/serving/serving.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/post.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <bit>
#include <cmath>

namespace asio = boost::asio;

namespace coport::messaging {

// --------------------------------------------------------------- metrics

metrics_table::metrics_table(
    const dispatcher& d, std::string executor_name,
    const std::function<std::string(const endpoint&, const method&, const method_form&)>& mode_of)
    : executor_(std::move(executor_name)) {
  for (const auto& e : d.endpoints()) {
    for (const auto& [name, m] : e->methods()) {
      for (const method_form* f : {m.legacy(), m.ported()}) {
        if (!f) continue;
        rows_.push_back(row{f, e->name(), name, f->kind, mode_of(*e, m, *f), std::make_unique<method_metrics>()});
      }
    }
  }
  std::sort(rows_.begin(), rows_.end(), [](const row& a, const row& b) { return a.form < b.form; });
}

method_metrics* metrics_table::find(const method_form* form) const noexcept {
  auto it = std::lower_bound(rows_.begin(), rows_.end(), form,
                             [](const row& r, const method_form* f) { return r.form < f; });
  return it != rows_.end() && it->form == form ? it->metrics.get() : nullptr;
}

std::vector<method_report> metrics_table::report() const {
  std::vector<method_report> out;
  out.reserve(rows_.size());
  for (const auto& r : rows_) {
    method_report m;
    m.endpoint = r.endpoint;
    m.method = r.method;
    m.kind = r.kind;
    m.mode = r.mode;
    m.executor = executor_;
    m.calls = r.metrics->calls.load(std::memory_order_relaxed);
    m.errors = r.metrics->errors.load(std::memory_order_relaxed);
    m.cancelled = r.metrics->cancelled.load(std::memory_order_relaxed);
    m.in_flight = r.metrics->in_flight.load(std::memory_order_relaxed);
    m.p50 = r.metrics->latency.percentile(0.5);
    m.p99 = r.metrics->latency.percentile(0.99);
    m.latency = r.metrics->latency.buckets();
    out.push_back(std::move(m));
  }
  std::sort(out.begin(), out.end(), [](const method_report& a, const method_report& b) {
    return std::tie(a.endpoint, a.method, a.kind) < std::tie(b.endpoint, b.method, b.kind);
  });
  return out;
}

migration_report executor::report() const {
  auto c = controls();
  if (!c) throw std::logic_error(std::string(name()) + ": no migration controls");
  return make_report(*c, metrics(), name());
}

std::vector<std::string> fiber_only_methods(const dispatcher& d) {
  std::vector<std::string> out;
  for (const auto& e : d.endpoints()) {
    for (const auto& [name, m] : e->methods()) {
      if (!m.ported() && m.legacy() && !name.starts_with('_')) out.push_back(e->name() + "." + name);
    }
  }
  return out;
}

// --------------------------------------------------------------- request

namespace serving {

request::request(std::shared_ptr<core> c, std::unique_ptr<incoming_call> in, asio::any_io_executor ex)
    : core_(std::move(c)), in_(std::move(in)), ex_(std::move(ex)), started_(std::chrono::steady_clock::now()) {}

request::~request() = default;

void request::arm_deadline() {
  const auto& timeout = message().timeout;
  if (!timeout || !context_.deadline) return;
  core_->add_deadline(*this, *context_.deadline);
}

void request::cancel(cancel_reason why) {
  cancel_reason none = cancel_reason::none;
  if (!reason_.compare_exchange_strong(none, why)) return;
  asio::post(ex_, [w = weak_from_this()] {
    if (auto self = w.lock(); self && (!self->finished_ || self->shadow_running_)) {
      self->signal_.emit(asio::cancellation_type::terminal);
    }
  });
}

void request::finish_result(boost::json::value result) {
  rpc_reply r;
  r.result = std::move(result);
  finish(std::move(r));
}

void request::finish_error(std::exception_ptr e) { finish(failure_reply(e)); }

void request::run_plain() noexcept {
  std::exception_ptr error;
  try {
    boost::json::value result = form_->call(context_, message().args);
    return finish_result(std::move(result));
  } catch (...) {
    error = std::current_exception();
  }
  try {
    finish_error(error);
  } catch (...) {
    core_->log().error("{}: could not build the failure reply of {}", core_->executor_name(), message().method);
  }
}

asio::awaitable<void> request::run_coroutine(std::shared_ptr<request> r) {
  std::exception_ptr error;
  try {
    boost::json::value result = co_await r->form_->co_call(r->context_, r->message().args);
    if (r->strict_) {
      if (std::string what = r->strict_->violation(); !what.empty()) throw strict_mode_violation(what);
    }
    r->finish_result(std::move(result));
    co_return;
  } catch (...) {
    error = std::current_exception();
  }
  r->finish_error(error);
}

namespace {

std::string describe_outcome(const rpc_reply& reply) {
  if (reply.failure) return "error: " + reply.failure->exc_type + ": " + reply.failure->message;
  return boost::json::serialize(reply.result);
}

}  // namespace

asio::awaitable<void> request::run_shadow(std::shared_ptr<request> r) {
  // The primary form has replied; the request stays in flight (and
  // cancellable, under the caller's deadline) until this is done.
  if (r->reason_.load() != cancel_reason::none || !r->primary_outcome_) {
    // Cancelled (deadline, stop) before the shadow could start.
    r->shadow_running_ = false;
    r->core_->remove_deadline(*r);
    co_return;
  }
  rpc_reply outcome;
  method_metrics* m = r->core_->metrics_ ? r->core_->metrics_->find(r->shadow_) : nullptr;
  if (m) m->in_flight.fetch_add(1, std::memory_order_relaxed);
  const auto started = std::chrono::steady_clock::now();
  std::exception_ptr error;
  try {
    request_context ctx = r->context_;
    boost::json::object args = *r->shadow_args_;
    outcome.result = co_await r->shadow_->co_call(ctx, args);
  } catch (...) {
    error = std::current_exception();
  }
  if (error) outcome = failure_reply(error);
  r->shadow_running_ = false;
  r->core_->remove_deadline(*r);
  if (m) {
    m->latency.record(std::chrono::steady_clock::now() - started);
    m->calls.fetch_add(1, std::memory_order_relaxed);
    if (error) m->errors.fetch_add(1, std::memory_order_relaxed);
    m->in_flight.fetch_sub(1, std::memory_order_relaxed);
  }
  if (r->reason_.load() != cancel_reason::none || !r->primary_outcome_) {
    // Cut short (deadline, stop): nothing to compare.
    if (m) m->cancelled.fetch_add(1, std::memory_order_relaxed);
    co_return;
  }
  const rpc_reply& primary = *r->primary_outcome_;
  bool equal = false;
  if (primary.failure && outcome.failure) {
    equal = primary.failure->exc_type == outcome.failure->exc_type &&
            primary.failure->message == outcome.failure->message;
  } else if (!primary.failure && !outcome.failure) {
    equal = primary.result == outcome.result;
  }
  std::string legacy_text = equal ? std::string() : describe_outcome(primary);
  std::string ported_text = equal ? std::string() : describe_outcome(outcome);
  migration_controls& controls = *r->core_->controls();
  const std::size_t rank =
      controls.record_shadow(*r->endpoint_, *r->method_, equal, *r->shadow_args_, legacy_text, ported_text);
  // One warning per kept mismatch: a method that differs on every call
  // does not flood the log; the report counts them all.
  if (rank > 0) {
    r->core_->log().warn("{}: shadow call of {}.{} differs: legacy {} / ported {}{}", r->core_->executor_name(),
                         r->endpoint_->name(), r->method_->name(), legacy_text, ported_text,
                         rank == controls.options().mismatches_kept
                             ? " (further mismatches of this method are counted, not logged)"
                             : "");
  }
}

void request::finish(rpc_reply reply) {
  if (shadow_) {
    if (finished_.load()) return;
    primary_outcome_ = reply;  // before finished_: run_shadow reads it after
    shadow_running_ = true;
  } else {
    core_->remove_deadline(*this);
  }
  if (finished_.exchange(true)) return;
  const bool failed = reply.failure.has_value();
  if (metrics_) {
    metrics_->latency.record(std::chrono::steady_clock::now() - started_);
    metrics_->calls.fetch_add(1, std::memory_order_relaxed);
    if (failed) metrics_->errors.fetch_add(1, std::memory_order_relaxed);
    if (reason_.load() != cancel_reason::none) metrics_->cancelled.fetch_add(1, std::memory_order_relaxed);
    metrics_->in_flight.fetch_sub(1, std::memory_order_relaxed);
  }
  if (!message().is_call()) {
    if (failed) {
      core_->log().warn("{}: cast of {} failed: {}: {}", core_->executor_name(), message().method,
                       reply.failure->exc_type, reply.failure->message);
    }
    return;
  }
  const std::string msg_id = message().msg_id;
  if (reason_.load() == cancel_reason::deadline) {
    // The caller stopped waiting when this deadline passed (its own timeout
    // reports it); a reply now would only race with that.
    core_->log().debug("{}: {} (message id {}) passed its deadline; no reply", core_->executor_name(),
                       message().method, msg_id);
    return;
  }
  try {
    in_->reply(std::move(reply));
  } catch (const std::exception& e) {
    core_->log().error("{}: could not send the reply of {} (message id {}): {}", core_->executor_name(),
                      message().method, msg_id, e.what());
  } catch (...) {
    core_->log().error("{}: could not send the reply of {} (message id {})", core_->executor_name(),
                      message().method, msg_id);
  }
}

// ------------------------------------------------------------------ core

core::core(service s, executor_options options, std::string executor_name,
           std::function<std::string(const endpoint&, const method&, const method_form&)> mode_of,
           bool follows_policies)
    : service_(std::move(s)),
      options_(std::move(options)),
      name_(std::move(executor_name)),
      mode_of_(std::move(mode_of)),
      follows_policies_(follows_policies) {
  if (!service_.transport) throw std::invalid_argument(name_ + ": the service has no transport");
  if (!service_.dispatcher) throw std::invalid_argument(name_ + ": the service has no dispatcher");
  if (options_.max_in_flight == 0) throw std::invalid_argument(name_ + ": max_in_flight must be > 0");
  if (service_.controls) {
    if (&service_.controls->served() != service_.dispatcher.get()) {
      throw std::invalid_argument(name_ + ": the service's migration controls were made for another dispatcher");
    }
    controls_ = service_.controls;
  } else {
    controls_ = std::make_shared<migration_controls>(service_.dispatcher);
  }
}

core::~core() {
  if (listener_) listener_->stop();
}

void core::open(asio::any_io_executor timer_ex) {
  metrics_ = std::make_unique<metrics_table>(*service_.dispatcher, name_, mode_of_);
  deadline_timer_.emplace(std::move(timer_ex));
  listener_.emplace(service_.transport->listen(service_.where));
}

void core::add_deadline(request& r, std::chrono::steady_clock::time_point when) {
  bool earlier = false;
  {
    std::lock_guard lk(deadline_mutex_);
    r.deadline_ = deadlines_.emplace(when, r.weak_from_this());
    if (when < deadline_armed_) {
      deadline_armed_ = when;
      earlier = true;
    }
  }
  if (earlier) {
    asio::post(deadline_timer_->get_executor(), [w = weak_from_this(), when] {
      if (auto self = w.lock()) self->arm_deadline_timer(when);
    });
  }
}

void core::remove_deadline(request& r) noexcept {
  std::lock_guard lk(deadline_mutex_);
  if (r.deadline_) {
    deadlines_.erase(*r.deadline_);
    r.deadline_.reset();
  }
  // The timer stays armed: firing early with nothing due only re-arms it.
}

// Timer executor.
void core::arm_deadline_timer(std::chrono::steady_clock::time_point when) {
  {
    std::lock_guard lk(deadline_mutex_);
    // A later arm request lost the race to an earlier one.
    if (when != deadline_armed_) return;
  }
  deadline_timer_->expires_at(when);
  deadline_timer_->async_wait([w = weak_from_this()](boost::system::error_code ec) {
    if (ec) return;
    if (auto self = w.lock()) self->on_deadline_timer();
  });
}

// Timer executor: cancels every request whose deadline passed, re-arms for
// the next.
void core::on_deadline_timer() {
  std::vector<std::shared_ptr<request>> due;
  auto next = std::chrono::steady_clock::time_point::max();
  {
    std::lock_guard lk(deadline_mutex_);
    const auto now = std::chrono::steady_clock::now();
    auto it = deadlines_.begin();
    for (; it != deadlines_.end() && it->first <= now; it = deadlines_.erase(it)) {
      if (auto r = it->second.lock()) {
        r->deadline_.reset();
        due.push_back(std::move(r));
      }
    }
    if (it != deadlines_.end()) next = it->first;
    if (deadline_armed_ == std::chrono::steady_clock::time_point::min()) next = std::chrono::steady_clock::time_point::max();  // stopped
    else deadline_armed_ = next;
  }
  for (auto& r : due) r->cancel(cancel_reason::deadline);
  if (next != std::chrono::steady_clock::time_point::max()) arm_deadline_timer(next);
}

std::shared_ptr<request> core::accept(std::unique_ptr<incoming_call> in, asio::any_io_executor ex) {
  auto r = std::make_shared<request>(shared_from_this(), std::move(in), std::move(ex));
  if (options_.admin && r->message().ns == admin_namespace) {
    serve_admin(*r);
    return nullptr;
  }
  try {
    auto [ep, m] = service_.dispatcher->find(r->message());
    r->endpoint_ = ep;
    r->method_ = m;
    if (follows_policies_) {
      const auto route = controls_->choose(*ep, *m);
      r->form_ = route.primary;
      if (route.shadow) {
        r->shadow_ = route.shadow;
        r->shadow_args_ = std::make_unique<boost::json::object>(r->message().args);
      }
    } else {
      r->form_ = &default_form(*m);
    }
    r->context_ = request_context::of(r->message());
  } catch (...) {
    rejected_.fetch_add(1, std::memory_order_relaxed);
    rpc_reply reply = failure_reply(std::current_exception());
    log().warn("{}: rejected {} (message id {}): {}: {}", name_, r->message().method,
               r->message().msg_id.empty() ? "-" : r->message().msg_id, reply.failure->exc_type,
               reply.failure->message);
    if (r->message().is_call()) {
      try {
        r->in_->reply(std::move(reply));
      } catch (const std::exception& e) {
        log().error("{}: could not send a rejection (message id {}): {}", name_, r->message().msg_id, e.what());
      }
    }
    return nullptr;
  }
  r->metrics_ = metrics_ ? metrics_->find(r->form_) : nullptr;
  if (r->metrics_) r->metrics_->in_flight.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard lk(mutex_);
    r->next_ = head_;
    if (head_) head_->prev_ = r.get();
    head_ = r.get();
    const std::size_t now = in_flight_.fetch_add(1, std::memory_order_relaxed) + 1;
    if (now > peak_.load(std::memory_order_relaxed)) peak_.store(now, std::memory_order_relaxed);
  }
  // A request taken after the stop began is served like the others, but a
  // stop that already cancels is not escaped.
  if (drain_over_.load(std::memory_order_acquire)) r->cancel(cancel_reason::stop);
  return r;
}

void core::release(request& r) noexcept {
  std::unique_lock lk(mutex_);
  if (r.prev_) r.prev_->next_ = r.next_;
  else if (head_ == &r) head_ = r.next_;
  if (r.next_) r.next_->prev_ = r.prev_;
  r.prev_ = r.next_ = nullptr;
  in_flight_.fetch_sub(1, std::memory_order_relaxed);
  maybe_done(lk);
}

void core::loop_started() noexcept {
  std::lock_guard lk(mutex_);
  ++loops_;
}

void core::loop_exited() noexcept {
  std::unique_lock lk(mutex_);
  --loops_;
  maybe_done(lk);
}

void core::maybe_done(std::unique_lock<std::mutex>& lk) {
  if (!stopping_.load(std::memory_order_relaxed) || loops_ > 0 || head_ || waiters_.empty()) return;
  auto waiters = std::move(waiters_);
  waiters_.clear();
  auto timer = std::move(drain_timer_);
  lk.unlock();
  if (timer) asio::post(timer->get_executor(), [timer] { timer->cancel(); });
  // Stopped: no pending timer is left behind on the user's io_context.
  if (deadline_timer_) {
    {
      std::lock_guard dl(deadline_mutex_);
      deadline_armed_ = std::chrono::steady_clock::time_point::min();  // no re-arm from now on
    }
    asio::post(deadline_timer_->get_executor(), [self = shared_from_this()] { self->deadline_timer_->cancel(); });
  }
  for (auto& w : waiters) std::move(w)();
}

void core::cancel_all(const char* why) {
  drain_over_.store(true, std::memory_order_release);
  std::vector<std::shared_ptr<request>> left;
  std::string ids;
  {
    std::lock_guard lk(mutex_);
    for (request* r = head_; r; r = r->next_) {
      if (auto sp = r->weak_from_this().lock()) {
        if (left.size() < 20) {
          ids += ids.empty() ? "" : ", ";
          ids += r->method_ ? r->method_->name() : r->message().method;
          if (!r->message().msg_id.empty()) ids += " (" + r->message().msg_id + ")";
        }
        left.push_back(std::move(sp));
      }
    }
  }
  if (left.empty()) return;
  log().warn("{}: {}: cancelling {} request(s) still in flight: {}{}", name_, why, left.size(), ids,
             left.size() > 20 ? ", ..." : "");
  for (auto& r : left) r->cancel(cancel_reason::stop);
}

void core::stop(asio::any_completion_handler<void()> done, asio::any_io_executor timer_ex) {
  std::unique_lock lk(mutex_);
  waiters_.push_back(std::move(done));
  if (stopping_.exchange(true, std::memory_order_acq_rel)) {
    // A second stop: no more waiting.
    lk.unlock();
    cancel_all("stop requested again");
    lk.lock();
    maybe_done(lk);
    return;
  }
  if (listener_) listener_->stop();
  log().info("{}: stopping: {} request(s) in flight, drain time {} ms", name_, in_flight(),
             std::chrono::duration_cast<std::chrono::milliseconds>(options_.drain_time).count());
  if (head_) {
    drain_timer_ = std::make_shared<asio::steady_timer>(timer_ex, options_.drain_time);
    drain_timer_->async_wait([w = weak_from_this()](boost::system::error_code ec) {
      if (auto self = w.lock(); self && !ec) self->cancel_all("drain time is over");
    });
  }
  maybe_done(lk);
}

std::vector<method_report> core::metrics() const {
  if (!metrics_) return {};
  auto out = metrics_->report();
  if (metrics_hook_) metrics_hook_(out);
  return out;
}

void core::serve_admin(request& r) {
  rpc_request& m = r.message();
  rpc_reply reply;
  try {
    if (options_.admin->token) {
      const boost::json::value* t = m.ctxt.if_contains(admin_token_key);
      if (!t || !t->is_string() || t->get_string() != *options_.admin->token) {
        throw admin_denied("admin call " + m.method + " refused: missing or wrong " + std::string(admin_token_key));
      }
    }
    const version requested = version::parse(m.version.value_or("1.0"));
    if (!version::compatible(version::parse("1.0"), requested)) {
      throw unsupported_version(m.version.value_or("1.0"), m.method);
    }
    auto arg = [&](const char* name) -> std::string {
      const boost::json::value* v = m.args.if_contains(name);
      if (!v) throw bad_arguments(m.method, name, "is missing");
      if (!v->is_string()) throw bad_arguments(m.method, name, "expects a string, got " + std::string(detail::describe(*v)));
      return std::string(v->get_string());
    };
    if (m.method == "migration_report") {
      if (!m.args.empty()) throw bad_arguments(m.method, m.args.begin()->key(), "is not a parameter");
      reply.result = make_report(*controls_, metrics(), name_).to_json();
    } else if (m.method == "set_policy") {
      const std::string method = arg("method");
      const policy p = policy::parse(arg("policy"));
      const policy previous = controls_->set_policy(method, p);
      log().info("{}: admin: policy of {} set to {} (was {})", name_, method, p.to_string(), previous.to_string());
      boost::json::object o;
      o["method"] = method;
      o["policy"] = p.to_string();
      o["previous"] = previous.to_string();
      reply.result = std::move(o);
    } else {
      throw no_such_method(m.method);
    }
  } catch (...) {
    reply = failure_reply(std::current_exception());
    log().warn("{}: admin call {} failed: {}: {}", name_, m.method, reply.failure->exc_type, reply.failure->message);
  }
  if (!m.is_call()) return;
  try {
    r.in_->reply(std::move(reply));
  } catch (const std::exception& e) {
    log().error("{}: could not send the reply of admin call {} (message id {}): {}", name_, m.method, m.msg_id,
                e.what());
  }
}

}  // namespace serving

}  // namespace coport::messaging
