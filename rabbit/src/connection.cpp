// The rabbit:// driver's connection to the broker (connection.hpp):
// failover through the nodes, TLS and login, the channel's set-up,
// heartbeats while waiting, backoff between rounds, and the close.

#include "connection.hpp"

#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>

#include <spdlog/spdlog.h>

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

namespace coport::messaging::rabbit_impl {

namespace {

/// `configuration`: the call only reads local settings (a CA file), so its
/// failure is permanent.
void check_status(int status, const std::string& what, bool configuration = false) {
  if (status >= 0) return;
  const bool permanent = configuration || status == AMQP_STATUS_SSL_PEER_VERIFY_FAILED ||
                         status == AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED;
  throw amqp_failure(what + ": " + amqp_error_string2(status), permanent);
}

}  // namespace

amqp_bytes_t bytes(const std::string& s) {
  return amqp_bytes_t{s.size(), const_cast<char*>(s.data())};
}

std::string to_string(amqp_bytes_t b) { return std::string(static_cast<const char*>(b.bytes), b.len); }

std::string describe(amqp_rpc_reply_t r) {
  switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return "ok";
    case AMQP_RESPONSE_NONE:
      return "no reply from the broker";
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      return amqp_error_string2(r.library_error);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        auto* m = static_cast<amqp_connection_close_t*>(r.reply.decoded);
        return "the broker closed the connection: " + std::to_string(m->reply_code) + " " + to_string(m->reply_text);
      }
      if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        auto* m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
        return "the broker closed the channel: " + std::to_string(m->reply_code) + " " + to_string(m->reply_text);
      }
      return "unexpected broker method " + std::to_string(r.reply.id);
  }
  return "unknown reply";
}

void check(amqp_connection_state_t c, const std::string& what) {
  const amqp_rpc_reply_t r = amqp_get_rpc_reply(c);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) throw amqp_failure(what + ": " + describe(r));
}

std::string precondition_failed(amqp_connection_state_t c) {
  const amqp_rpc_reply_t r = amqp_get_rpc_reply(c);
  if (r.reply_type != AMQP_RESPONSE_SERVER_EXCEPTION || r.reply.id != AMQP_CHANNEL_CLOSE_METHOD) return {};
  auto* m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
  if (m->reply_code != AMQP_PRECONDITION_FAILED) return {};
  return std::to_string(m->reply_code) + " " + to_string(m->reply_text);
}

bool refused_for_good(amqp_connection_state_t c) {
  const amqp_rpc_reply_t r = amqp_get_rpc_reply(c);
  if (r.reply_type != AMQP_RESPONSE_SERVER_EXCEPTION) return false;
  int code = 0;
  if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
    code = static_cast<amqp_channel_close_t*>(r.reply.decoded)->reply_code;
  } else if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
    code = static_cast<amqp_connection_close_t*>(r.reply.decoded)->reply_code;
  } else {
    return true;
  }
  return code == AMQP_ACCESS_REFUSED || code == AMQP_RESOURCE_LOCKED || code == AMQP_PRECONDITION_FAILED ||
         code == AMQP_NOT_ALLOWED;
}

transport_stats counters::snapshot() const {
  constexpr auto relaxed = std::memory_order_relaxed;
  transport_stats s;
  s.driver = "rabbit";
  s.connected = connected.load(relaxed);
  s.connects = connects.load(relaxed);
  s.reconnects = reconnects.load(relaxed);
  s.publishes = publishes.load(relaxed);
  s.confirms = confirms.load(relaxed);
  s.nacks = nacks.load(relaxed);
  s.returns = returns.load(relaxed);
  s.redeliveries = redeliveries.load(relaxed);
  s.received = received.load(relaxed);
  return s;
}

// ---------------------------------------------------------------- failover

std::vector<std::size_t> failover::round() {
  std::vector<std::size_t> order(nodes_);
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = (next_ + i) % order.size();
  if (shuffle_) std::shuffle(order.begin(), order.end(), random_);
  return order;
}

// ------------------------------------------------------------------ wakeup

wakeup::wakeup() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (fd_ < 0) throw transport_error(std::string("rabbit: eventfd: ") + std::strerror(errno));
}

wakeup::~wakeup() {
  if (fd_ >= 0) ::close(fd_);
}

void wakeup::signal() {
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(fd_, &one, sizeof one);
}

void wakeup::drain() {
  std::uint64_t value;
  [[maybe_unused]] auto n = ::read(fd_, &value, sizeof value);
}

// -------------------------------------------------------------- connection

connection::connection(context& ctx)
    : ctx_(ctx),
      nodes_(ctx.settings.hosts.size(), ctx.settings.failover_strategy == rabbit_settings::failover::shuffle),
      backoff_(ctx.settings.retry_interval, ctx.settings.retry_backoff, ctx.settings.interval_max) {}

connection::attempt connection::connect(const std::function<void()>& on_open) {
  const rabbit_settings& settings = ctx_.settings;
  counters& counts = ctx_.counts;
  bool all_permanent = true;
  std::string last;
  for (const std::size_t i : nodes_.round()) {
    const rabbit_host& h = settings.hosts[i];
    try {
      open(h);
      on_open();
      if (counts.connects.load(std::memory_order_relaxed) > 0) count(counts.reconnects);
      count(counts.connects);
      counts.connected.store(true, std::memory_order_relaxed);
      nodes_.connected(i);
      backoff_.reset();
      ctx_.log->info("rabbit: connected to {}:{} (vhost {}) as {}", h.host, h.port, settings.vhost, h.user);
      return {true, std::nullopt};
    } catch (const amqp_failure& e) {
      healthy_ = false;
      close();
      all_permanent = all_permanent && e.permanent;
      last = e.what();
      ctx_.log->warn("rabbit: cannot connect to {}:{} as {}: {}; retrying in {} ms", h.host, h.port, h.user,
                     e.what(), backoff_.current().count());
    }
  }
  nodes_.failed();
  // Messages waiting for such a connection fail now rather than at their
  // deadline; the thread keeps trying, for a configuration fixed later.
  if (all_permanent) return {false, std::move(last)};
  return {false, std::nullopt};
}

void connection::open(const rabbit_host& h) {
  const rabbit_settings& settings = ctx_.settings;
  conn_ = amqp_new_connection();
  if (!conn_) throw amqp_failure("out of memory");
  amqp_socket_t* sock = nullptr;
  if (settings.ssl) {
    sock = amqp_ssl_socket_new(conn_);
    if (!sock) throw amqp_failure("cannot create a TLS socket");
    amqp_ssl_socket_set_verify_peer(sock, settings.ssl_verify ? 1 : 0);
    amqp_ssl_socket_set_verify_hostname(sock, settings.ssl_verify && settings.ssl_verify_hostname ? 1 : 0);
    if (!settings.ssl_ca_file.empty()) {
      check_status(amqp_ssl_socket_set_cacert(sock, settings.ssl_ca_file.c_str()),
                   "reading the CA file " + settings.ssl_ca_file, true);
    }
    if (!settings.ssl_cert_file.empty()) {
      check_status(amqp_ssl_socket_set_key(sock, settings.ssl_cert_file.c_str(), settings.ssl_key_file.c_str()),
                   "reading the client certificate " + settings.ssl_cert_file, true);
    }
  } else {
    sock = amqp_tcp_socket_new(conn_);
    if (!sock) throw amqp_failure("cannot create a socket");
  }
  timeval tv{};
  tv.tv_sec = settings.connect_timeout.count() / 1000;
  tv.tv_usec = (settings.connect_timeout.count() % 1000) * 1000;
  check_status(amqp_set_handshake_timeout(conn_, &tv), "setting the handshake timeout");
  check_status(amqp_socket_open_noblock(sock, h.host.c_str(), h.port, &tv), settings.ssl ? "TLS connect" : "connect");
  const int heartbeat = static_cast<int>(settings.heartbeat.count());
  // consumer_cancel_notify: the broker tells a consumer whose queue was
  // deleted (basic.cancel), and the driver then reconnects and declares
  // its queues again. Without it the consumer would silently be gone.
  amqp_table_entry_t capability{};
  capability.key = amqp_cstring_bytes("consumer_cancel_notify");
  capability.value.kind = AMQP_FIELD_KIND_BOOLEAN;
  capability.value.value.boolean = 1;
  amqp_table_entry_t properties[2]{};
  properties[0].key = amqp_cstring_bytes("capabilities");
  properties[0].value.kind = AMQP_FIELD_KIND_TABLE;
  properties[0].value.value.table = amqp_table_t{1, &capability};
  properties[1].key = amqp_cstring_bytes("product");
  properties[1].value.kind = AMQP_FIELD_KIND_UTF8;
  properties[1].value.value.bytes = amqp_cstring_bytes("coport");
  const amqp_table_t client_properties{2, properties};
  const amqp_rpc_reply_t login =
      amqp_login_with_properties(conn_, settings.vhost.c_str(), 0, 131072, heartbeat, &client_properties,
                                 AMQP_SASL_METHOD_PLAIN, h.user.c_str(), h.password.c_str());
  if (login.reply_type != AMQP_RESPONSE_NORMAL) {
    // The broker refusing the credentials (403) or the vhost (530) is
    // permanent; a connection lost while logging in is not.
    bool refused = false;
    if (login.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && login.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
      const auto code = static_cast<amqp_connection_close_t*>(login.reply.decoded)->reply_code;
      refused = code == AMQP_ACCESS_REFUSED || code == AMQP_NOT_ALLOWED;
    }
    throw amqp_failure("login: " + describe(login), refused);
  }
  timeval rpc{};
  rpc.tv_sec = settings.rpc_timeout.count() / 1000;
  rpc.tv_usec = (settings.rpc_timeout.count() % 1000) * 1000;
  check_status(amqp_set_rpc_timeout(conn_, &rpc), "setting the RPC timeout");
  amqp_channel_open(conn_, channel);
  check(conn_, "opening a channel");
  amqp_confirm_select(conn_, channel);
  check(conn_, "confirm.select");
  amqp_basic_qos(conn_, channel, 0, settings.prefetch, 0);
  check(conn_, "basic.qos");
}

void connection::close() {
  if (!conn_) return;
  // A polite close when the connection still works; a dead one is just
  // torn down (amqp_connection_close would wait for its RPC timeout).
  if (healthy_) {
    amqp_channel_close(conn_, channel, AMQP_REPLY_SUCCESS);
    amqp_connection_close(conn_, AMQP_REPLY_SUCCESS);
  }
  amqp_destroy_connection(conn_);
  conn_ = nullptr;
  ctx_.counts.connected.store(false, std::memory_order_relaxed);
  healthy_ = true;
}

void connection::healthy_on(int status, const char* what) {
  if (status < 0) {
    healthy_ = false;
    throw amqp_failure(std::string(what) + ": " + amqp_error_string2(status));
  }
}

void connection::pause_if_broker_refused() {
  if (amqp_get_rpc_reply(conn_).reply_type == AMQP_RESPONSE_SERVER_EXCEPTION) pause_before_reconnect_ = true;
}

bool connection::take_pause() { return std::exchange(pause_before_reconnect_, false); }

bool connection::buffered() const {
  return conn_ && (amqp_frames_enqueued(conn_) || amqp_data_in_buffer(conn_));
}

void connection::wait_for_io(wakeup& w) {
  pollfd fds[2] = {{amqp_get_sockfd(conn_), POLLIN, 0}, {w.fd(), POLLIN, 0}};
  int timeout_ms = 1000;
  if (ctx_.settings.heartbeat.count() > 0) {
    timeout_ms = std::min<int>(timeout_ms, static_cast<int>(ctx_.settings.heartbeat.count() * 1000 / 4));
  }
  ::poll(fds, 2, timeout_ms);
  if (fds[1].revents & POLLIN) w.drain();
}

void connection::wait_before_retry(wakeup& w) {
  pollfd fd{w.fd(), POLLIN, 0};
  ::poll(&fd, 1, static_cast<int>(backoff_.current().count()));
  if (fd.revents & POLLIN) w.drain();
  backoff_.waited();
}

}  // namespace coport::messaging::rabbit_impl
