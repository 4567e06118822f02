// The rabbit:// driver's channel operations (channel.hpp): declarations
// and the broker's refusals of them, publishes, confirms and returns.

#include "channel.hpp"

#include <boost/asio/error.hpp>
#include <spdlog/spdlog.h>

namespace asio = boost::asio;

namespace coport::messaging::rabbit_impl {

namespace {

// The broker's words after "current is" / "received" (RabbitMQ:
// "inequivalent arg 'x-queue-type' for queue 'q' in vhost '/': received
// none but current is the value 'quorum' of type 'longstr'").
std::string between(std::string_view text, std::string_view from, std::string_view to) {
  const auto a = text.find(from);
  if (a == std::string_view::npos) return {};
  const auto b = to.empty() ? std::string_view::npos : text.find(to, a + from.size());
  return std::string(text.substr(a + from.size(), b == std::string_view::npos ? text.npos : b - a - from.size()));
}

/// What channels closed by PRECONDITION_FAILED on a declare of `kind`
/// `name` mean: `broker_texts` are the broker's refusals (the declare's,
/// then a probe's that learnt the next argument that differs), and
/// `requested(argument)` says what coport sent for an argument the broker
/// names. The error's argument is x-queue-type when the broker named it
/// (the difference that decides the others), else the first one named.
template <class Requested>
declare_refused refusal(std::string_view kind, const std::string& name, const std::vector<std::string>& broker_texts,
                        Requested requested) {
  struct named {
    std::string argument, has, asked;
  };
  std::vector<named> args;
  for (const auto& text : broker_texts) {
    std::string argument = between(text, "inequivalent arg '", "'");
    if (argument.empty()) continue;
    std::string has = between(text, "but current is ", "");
    if (has.empty()) has = "(not said)";
    std::string asked = requested(argument);
    args.push_back({std::move(argument), std::move(has), std::move(asked)});
  }
  std::string what = std::string(kind) + " '" + name + "' cannot be declared: ";
  named primary;
  if (!args.empty()) {
    primary = args.front();
    for (const auto& n : args) {
      if (n.argument == "x-queue-type") primary = n;
    }
    std::string has;
    std::string asked;
    for (const auto& n : args) {
      has += (has.empty() ? "" : " and ") + n.argument + " = " + n.has;
      asked += (asked.empty() ? "" : " and ") + n.argument + " = " + n.asked;
    }
    what += "it exists on the broker with " + has + ", and coport declared " + asked + " (inequivalent arguments";
    if (primary.argument == "x-queue-type") {
      what += "; rabbit_quorum_queue must be the same for every service on the queue";
    } else if (primary.argument == "durable") {
      what += "; amqp_durable_queues and rabbit_quorum_queue decide durability, and must agree between services";
    } else if (primary.argument == "x-expires") {
      what += "; rabbit_transient_queues_ttl must agree between services";
    } else if (primary.argument == "auto_delete") {
      what += "; amqp_auto_delete must agree between services";
    }
    what += ")";
  } else {
    what += "the broker refused it";
  }
  std::string said;
  for (const auto& text : broker_texts) said += (said.empty() ? "" : "; ") + text;
  what += ". Broker: " + said;
  return declare_refused(std::string(kind), name, std::move(primary.argument), std::move(primary.has),
                         std::move(primary.asked), what);
}

std::string describe(const queue_arg& a) {
  if (const auto* n = std::get_if<std::int64_t>(&a.value)) return std::to_string(*n);
  return "'" + std::get<std::string>(a.value) + "'";
}

}  // namespace

std::vector<queue_arg> queue_arguments(const rabbit_settings& s, bool may_be_quorum, std::chrono::seconds ttl) {
  std::vector<queue_arg> args;
  if (s.ha_queues) args.push_back({"x-ha-policy", std::string("all")});
  if (may_be_quorum && s.quorum_queue) {
    args.push_back({"x-queue-type", std::string("quorum")});
    if (s.quorum_delivery_limit > 0) args.push_back({"x-delivery-limit", s.quorum_delivery_limit});
    if (s.quorum_max_memory_length > 0) args.push_back({"x-max-in-memory-length", s.quorum_max_memory_length});
    if (s.quorum_max_memory_bytes > 0) args.push_back({"x-max-in-memory-bytes", s.quorum_max_memory_bytes});
  }
  if (ttl.count() > 0) {
    args.push_back({"x-expires", std::chrono::duration_cast<std::chrono::milliseconds>(ttl).count()});
  }
  return args;
}

std::string message_id_note(std::string_view body, const decode_limits& limits) {
  const std::string id = message_id_of(body, limits);
  return id.empty() ? std::string() : " (message id " + id + ")";
}

void complete(std::unique_ptr<send_handler>& h, boost::system::error_code ec) {
  if (!h) return;
  auto handler = std::move(h);
  std::move (*handler)(ec);
}

// --------------------------------------------------------- confirm_tracker

void confirm_tracker::published(std::unique_ptr<send_handler> done) { unconfirmed_.emplace(next_++, std::move(done)); }

std::uint64_t confirm_tracker::settled(std::uint64_t tag, bool multiple, boost::system::error_code ec) {
  std::uint64_t n = 0;
  if (multiple) {
    auto end = unconfirmed_.upper_bound(tag);
    for (auto it = unconfirmed_.begin(); it != end; ++it, ++n) complete(it->second, ec);
    unconfirmed_.erase(unconfirmed_.begin(), end);
  } else if (auto it = unconfirmed_.find(tag); it != unconfirmed_.end()) {
    complete(it->second, ec);
    unconfirmed_.erase(it);
    n = 1;
  }
  return n;
}

void confirm_tracker::fail_all(boost::system::error_code ec) {
  for (auto& [seq, h] : unconfirmed_) complete(h, ec);
  unconfirmed_.clear();
}

// ------------------------------------------------------------- channel_ops

void channel_ops::opened() {
  confirms_.restart();
  declared_exchanges_.clear();
  declared_queues_.clear();
}

void channel_ops::declare_exchange(const binding& b) {
  if (b.exchange.empty() || declared_exchanges_.count(b.exchange)) return;
  amqp_connection_state_t c = conn_.get();
  amqp_exchange_declare(c, channel, bytes(b.exchange), bytes(b.type), 0, b.durable, b.auto_delete, 0,
                        amqp_empty_table);
  if (std::string text = precondition_failed(c); !text.empty()) {
    throw amqp_failure(refusal("exchange", b.exchange, {std::move(text)}, [&](const std::string& arg) -> std::string {
      if (arg == "type") return "'" + b.type + "'";
      if (arg == "durable") return b.durable ? "'true'" : "'false'";
      if (arg == "auto_delete") return b.auto_delete ? "'true'" : "'false'";
      return "none";
    }));
  }
  check(c, "declaring exchange " + b.exchange);
  declared_exchanges_.insert(b.exchange);
}

void channel_ops::declare_queue(const queue_spec& q) {
  if (declared_queues_.count(q.name)) return;
  amqp_connection_state_t c = conn_.get();
  std::vector<amqp_table_entry_t> entries(q.arguments.size());
  for (std::size_t i = 0; i < q.arguments.size(); ++i) {
    entries[i].key = bytes(q.arguments[i].key);
    if (const auto* n = std::get_if<std::int64_t>(&q.arguments[i].value)) {
      entries[i].value.kind = AMQP_FIELD_KIND_I64;
      entries[i].value.value.i64 = *n;
    } else {
      entries[i].value.kind = AMQP_FIELD_KIND_UTF8;
      entries[i].value.value.bytes = bytes(std::get<std::string>(q.arguments[i].value));
    }
  }
  const amqp_table_t args{static_cast<int>(entries.size()), entries.data()};
  amqp_queue_declare(c, channel, bytes(q.name), 0, q.durable, 0, q.auto_delete, args);
  if (std::string text = precondition_failed(c); !text.empty()) {
    std::vector<std::string> texts{std::move(text)};
    // RabbitMQ names the first difference only, and compares durability
    // first: a classic, transient declare of a quorum queue is refused
    // for 'durable', which hides the queue type. A second declare with
    // the broker's durability, on a channel of its own, names the next
    // difference (the queue exists: a declare that matches changes
    // nothing).
    if (between(texts.front(), "inequivalent arg '", "'") == "durable") {
      if (std::string next = probe_declare(q, !q.durable, args); !next.empty()) texts.push_back(std::move(next));
    }
    throw amqp_failure(refusal("queue", q.name, texts, [&](const std::string& arg) -> std::string {
      if (arg == "durable") return q.durable ? "'true'" : "'false'";
      if (arg == "auto_delete") return q.auto_delete ? "'true'" : "'false'";
      for (const auto& a : q.arguments) {
        if (a.key == arg) return describe(a);
      }
      return arg == "x-queue-type" ? "none (a classic queue)" : "none";
    }));
  }
  check(c, "declaring queue " + q.name);
  for (const auto& b : q.bindings) {
    if (b.exchange.empty()) continue;
    declare_exchange(b);
    amqp_queue_bind(c, channel, bytes(q.name), bytes(b.exchange), bytes(b.routing_key), amqp_empty_table);
    check(c, "binding queue " + q.name + " to " + b.exchange);
  }
  declared_queues_.insert(q.name);
}

// The broker's PRECONDITION_FAILED text for declaring `q` with `durable`,
// on a channel opened for it and closed after; empty when the declare
// passes or the channel cannot be opened.
std::string channel_ops::probe_declare(const queue_spec& q, bool durable, const amqp_table_t& args) {
  constexpr amqp_channel_t probe_channel = channel + 1;
  amqp_connection_state_t c = conn_.get();
  amqp_channel_open(c, probe_channel);
  if (amqp_get_rpc_reply(c).reply_type != AMQP_RESPONSE_NORMAL) return {};
  amqp_queue_declare(c, probe_channel, bytes(q.name), 0, durable, 0, q.auto_delete, args);
  std::string text = precondition_failed(c);
  if (amqp_get_rpc_reply(c).reply_type == AMQP_RESPONSE_NORMAL) {
    amqp_channel_close(c, probe_channel, AMQP_REPLY_SUCCESS);
  }
  return text;
}

void channel_ops::publish(publish_op& p) {
  retry_ = false;
  if (p.deadline <= clock::now()) {
    ctx_.log->error("rabbit {}: {} dropped: it waited {} ms for the broker", ctx_.described, p.what,
                    ctx_.settings.send_timeout.count());
    complete(p.done, asio::error::timed_out);
    return;
  }
  try {
    if (p.declare_queue) declare_queue(*p.declare_queue);
    declare_exchange(p.to);
  } catch (const amqp_failure& e) {
    if (e.refused || refused_for_good(conn_.get())) {
      // Refused by the broker (e.g. an exchange of another type or
      // durability): this message fails, the connection is reopened.
      ctx_.log->error("rabbit: {} refused: {}", p.what, e.what());
      complete(p.done, e.refused ? make_error_code(errc::declare_refused)
                                 : boost::system::error_code(asio::error::access_denied));
    } else {
      // The connection failed, or the broker cannot do it now (a queue's
      // cluster node just went down): sent after reconnecting, until its
      // deadline.
      retry_ = true;
      conn_.pause_if_broker_refused();
    }
    throw;
  }
  amqp_basic_properties_t props{};
  props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_CONTENT_ENCODING_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
  props.content_type = amqp_cstring_bytes("application/json");
  props.content_encoding = amqp_cstring_bytes("utf-8");
  props.delivery_mode = 2;  // persistent, as oslo.messaging sends everything
  if (!p.expiration.empty()) {
    props._flags |= AMQP_BASIC_EXPIRATION_FLAG;
    props.expiration = bytes(p.expiration);
  }
  // Counted before the write: whatever the message leads to (a delivery,
  // a reply) never shows before its publish. A write that fails counts
  // too: part of it may have gone out.
  count(ctx_.counts.publishes);
  const int st = amqp_basic_publish(conn_.get(), channel, bytes(p.to.exchange), bytes(p.to.routing_key),
                                    p.mandatory ? 1 : 0, 0, &props, bytes(p.body));
  // Replies too (no handler): confirms are counted per message, and a
  // confirm with `multiple` covers those not confirmed yet up to its tag.
  confirms_.published(std::move(p.done));
  conn_.healthy_on(st, "publish");
}

void channel_ops::confirmed(std::uint64_t tag, bool multiple, boost::system::error_code ec) {
  count(ec ? ctx_.counts.nacks : ctx_.counts.confirms, confirms_.settled(tag, multiple, ec));
}

void channel_ops::returned(const amqp_basic_return_t& r, amqp_channel_t ch) {
  const std::string key = to_string(r.routing_key);
  const std::string text = to_string(r.reply_text);
  amqp_message_t m;
  const amqp_rpc_reply_t rr = amqp_read_message(conn_.get(), ch, &m, 0);
  if (rr.reply_type != AMQP_RESPONSE_NORMAL) throw amqp_failure("reading a returned message: " + describe(rr));
  const std::string body = to_string(m.body);
  amqp_destroy_message(&m);
  count(ctx_.counts.returns);
  // Undeliverable, as oslo.messaging 14 treats a returned reply: said once
  // and dropped, never published again.
  ctx_.log->warn("rabbit: the reply{} to queue {} was returned by the broker ({}): the caller's reply queue is "
                 "gone; the reply is dropped",
                 message_id_note(body, ctx_.options.limits), key, text);
}

}  // namespace coport::messaging::rabbit_impl
