// coport-bench-amqp: the floor of RPC over RabbitMQ, rabbitmq-c driven
// directly, which coport's rabbit:// figures are judged against.
//
//   coport-bench-amqp server --url URL --topic T
//   coport-bench-amqp client --url URL --topic T [--concurrency N] [--seconds S]
//
// The server declares the topic exchange "openstack" and a queue named
// after the topic bound to it, prints "ready", and answers every request
// until SIGTERM or SIGINT. The client declares a reply queue of its own,
// keeps N requests in flight for S seconds (a new one goes out as a reply
// comes in) and prints one JSON line in the shape coport-example-client's
// bench prints: {"impl": "amqp", "concurrency", "calls", "seconds",
// "calls_per_s", "p50_ms", "p99_ms"}, the calls being those that ended
// after the first half second. bench/rabbit_bench.py runs both.
//
// Per call the broker does what it does for a coport call
// (rabbit/src/, channel.cpp and consumers.cpp):
//   - both connections are in confirm mode (confirm.select): the broker
//     confirms every publish;
//   - a request goes to the topic exchange, persistent (delivery mode 2),
//     with an expiration (a call's timeout) and content type
//     application/json;
//   - the server consumes with manual acks and a prefetch of 64, and acks a
//     request as it takes it;
//   - a reply goes through the default exchange to the caller's reply queue
//     ("reply_<id>", x-expires), mandatory and persistent;
//   - the client consumes its reply queue without acks;
//   - the bodies are shaped and sized like oslo.messaging 2.0 envelopes of
//     an echo call and its reply.
// What it leaves out is everything above the wire: one thread per side, no
// JSON built or parsed (the call's id sits at a fixed offset of the body),
// no executor, no coroutine. The reply queue is named in the request's
// reply_to property rather than in its body.
//
// Exit status: 0; 1 when the broker fails or refuses something; 64 for a
// bad command line.

#include <CLI/CLI.hpp>

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include <signal.h>
#include <sys/time.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;
constexpr amqp_channel_t channel = 1;
constexpr std::uint16_t prefetch = 64;                // coport's default (rabbit_qos_prefetch_count)
constexpr std::int64_t reply_queue_ttl_ms = 1800000;  // coport's transient_queues_ttl
constexpr const char* exchange = "openstack";         // oslo.messaging's control_exchange

/// The broker failed or refused something: the program ends with status 1.
struct amqp_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

amqp_bytes_t bytes(std::string_view s) { return amqp_bytes_t{s.size(), const_cast<char*>(s.data())}; }

std::string_view view(amqp_bytes_t b) { return {static_cast<const char*>(b.bytes), b.len}; }

std::string describe(const amqp_rpc_reply_t& r) {
  switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return "ok";
    case AMQP_RESPONSE_NONE:
      return "no reply from the broker";
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      return amqp_error_string2(r.library_error);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        const auto* m = static_cast<const amqp_connection_close_t*>(r.reply.decoded);
        return "connection closed by the broker: " + std::to_string(m->reply_code) + " " +
               std::string(view(m->reply_text));
      }
      if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        const auto* m = static_cast<const amqp_channel_close_t*>(r.reply.decoded);
        return "channel closed by the broker: " + std::to_string(m->reply_code) + " " +
               std::string(view(m->reply_text));
      }
      return "unexpected broker method " + std::to_string(r.reply.id);
  }
  return "unknown reply";
}

/// Throws unless the last synchronous call on `conn` succeeded.
void check_reply(amqp_connection_state_t conn, const char* what) {
  const amqp_rpc_reply_t r = amqp_get_rpc_reply(conn);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) throw amqp_error(std::string(what) + ": " + describe(r));
}

/// Throws if `status` (a rabbitmq-c status code) is an error.
void check_status(int status, const char* what) {
  if (status < 0) throw amqp_error(std::string(what) + ": " + amqp_error_string2(status));
}

/// 32 random hex digits, as oslo.messaging's ids.
std::string random_id() {
  static std::mt19937_64 rng(std::random_device{}());
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(rng()),
                static_cast<unsigned long long>(rng()));
  return buf;
}

// --------------------------------------------------------------- bodies

// Both bodies start with the same prefix and then the call's id, 32 hex
// digits, so that the server copies it from request to reply and the client
// finds it, without parsing.
constexpr std::string_view body_prefix = R"({"oslo.version": "2.0", "oslo.message": "{\"_msg_id\": \")";
constexpr std::size_t id_digits = 32;

std::string call_id(std::uint64_t n) {
  char buf[id_digits + 1];
  std::snprintf(buf, sizeof buf, "%032llx", static_cast<unsigned long long>(n));
  return buf;
}

/// An echo call's envelope, as coport and oslo.messaging encode it.
std::string request_body(std::uint64_t n, const std::string& reply_queue) {
  return std::string(body_prefix) + call_id(n) + R"(\", \"_reply_q\": \")" + reply_queue +
         R"(\", \"method\": \"echo\", \"args\": {\"value\": \"x\"}, \"version\": \"1.3\", \"_timeout\": 60, )"
         R"(\"_unique_id\": \")" +
         random_id() + R"(\"}"})";
}

/// The reply to `request`: its id, an echo's result.
std::string reply_body(std::string_view request) {
  std::string id(id_digits, '0');
  if (request.size() >= body_prefix.size() + id_digits) id = request.substr(body_prefix.size(), id_digits);
  return std::string(body_prefix) + id +
         R"(\", \"result\": \"x\", \"failure\": null, \"ending\": true, \"_unique_id\": \")" + random_id() +
         R"(\"}"})";
}

/// The call number of a reply; false if the body is not one of ours.
bool id_of(std::string_view body, std::uint64_t& n) {
  if (body.size() < body_prefix.size() + id_digits || !body.starts_with(body_prefix)) return false;
  const std::string digits(body.substr(body_prefix.size(), id_digits));
  char* end = nullptr;
  n = std::strtoull(digits.c_str(), &end, 16);
  return end == digits.c_str() + id_digits;
}

// ----------------------------------------------------------- connection

/// One connection with channel 1 open and in confirm mode; closed politely
/// on destruction.
class connection {
 public:
  explicit connection(const std::string& url) {
    // rabbit:// (coport's scheme) and amqp:// name the same broker.
    std::string u = url;
    if (u.starts_with("rabbit://")) u.replace(0, 6, "amqp");
    std::vector<char> buf(u.begin(), u.end());
    buf.push_back('\0');
    amqp_connection_info info{};
    amqp_default_connection_info(&info);
    if (amqp_parse_url(buf.data(), &info) != AMQP_STATUS_OK || info.ssl) {
      throw std::invalid_argument("--url wants rabbit://USER:PASSWORD@HOST:PORT/ (no TLS)");
    }
    const std::string vhost = info.vhost[0] == '\0' ? "/" : info.vhost;
    conn_ = amqp_new_connection();
    amqp_socket_t* socket = amqp_tcp_socket_new(conn_);
    if (socket == nullptr) throw amqp_error("cannot create a socket");
    check_status(amqp_socket_open(socket, info.host, info.port), "connecting");
    const amqp_rpc_reply_t login =
        amqp_login(conn_, vhost.c_str(), 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, info.user, info.password);
    if (login.reply_type != AMQP_RESPONSE_NORMAL) throw amqp_error("login: " + describe(login));
    amqp_channel_open(conn_, channel);
    check_reply(conn_, "opening the channel");
    amqp_confirm_select(conn_, channel);
    check_reply(conn_, "confirm.select");
  }
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
  ~connection() {
    amqp_channel_close(conn_, channel, AMQP_REPLY_SUCCESS);
    amqp_connection_close(conn_, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn_);
  }

  amqp_connection_state_t get() const { return conn_; }

  /// Publishes `body` with the properties every coport message has
  /// (application/json, utf-8, persistent), plus `reply_to` and an
  /// expiration when given; confirmed later (see next).
  void publish(std::string_view to_exchange, std::string_view key, bool mandatory, std::string_view body,
               std::string_view reply_to = {}, std::string_view expiration = {}) {
    amqp_basic_properties_t props{};
    props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_CONTENT_ENCODING_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
    props.content_type = amqp_cstring_bytes("application/json");
    props.content_encoding = amqp_cstring_bytes("utf-8");
    props.delivery_mode = 2;
    if (!reply_to.empty()) {
      props._flags |= AMQP_BASIC_REPLY_TO_FLAG;
      props.reply_to = bytes(reply_to);
    }
    if (!expiration.empty()) {
      props._flags |= AMQP_BASIC_EXPIRATION_FLAG;
      props.expiration = bytes(expiration);
    }
    check_status(amqp_basic_publish(conn_, channel, bytes(to_exchange), bytes(key), mandatory ? 1 : 0, 0, &props,
                                    bytes(body)),
                 "publishing");
    ++published_;
  }

  /// What next() read.
  enum class event { delivery, confirm, nothing };

  /// Waits up to `timeout` for the next delivery (into `env`, to be
  /// destroyed by the caller) or publisher confirm (counted in confirmed());
  /// throws on a nack, a returned message or a closed channel.
  event next(amqp_envelope_t& env, std::chrono::milliseconds timeout) {
    amqp_maybe_release_buffers(conn_);
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>(timeout.count() % 1000 * 1000);
    const amqp_rpc_reply_t r = amqp_consume_message(conn_, &env, &tv, 0);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) return event::delivery;
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT) {
      return event::nothing;
    }
    if (r.reply_type != AMQP_RESPONSE_LIBRARY_EXCEPTION || r.library_error != AMQP_STATUS_UNEXPECTED_STATE) {
      throw amqp_error("reading: " + describe(r));
    }
    // Not a delivery: a method frame waits, a confirm most of the time.
    amqp_frame_t f;
    check_status(amqp_simple_wait_frame(conn_, &f), "reading a frame");
    if (f.frame_type != AMQP_FRAME_METHOD) return event::nothing;
    switch (f.payload.method.id) {
      case AMQP_BASIC_ACK_METHOD: {
        const auto* a = static_cast<const amqp_basic_ack_t*>(f.payload.method.decoded);
        confirm(a->delivery_tag, a->multiple != 0);
        return event::confirm;
      }
      case AMQP_BASIC_NACK_METHOD:
        throw amqp_error("the broker refused a publish (basic.nack)");
      case AMQP_BASIC_RETURN_METHOD: {
        amqp_message_t m;
        const amqp_rpc_reply_t rr = amqp_read_message(conn_, f.channel, &m, 0);
        if (rr.reply_type == AMQP_RESPONSE_NORMAL) amqp_destroy_message(&m);
        throw amqp_error("the broker returned a reply: its reply queue is gone");
      }
      case AMQP_CHANNEL_CLOSE_METHOD:
      case AMQP_CONNECTION_CLOSE_METHOD:
        throw amqp_error("the broker closed the channel or the connection");
      default:
        return event::nothing;
    }
  }

  /// Publishes so far, and how many of them the broker has confirmed.
  std::uint64_t published() const { return published_; }
  std::uint64_t confirmed() const { return confirmed_through_ + confirmed_above_.size(); }

 private:
  // Confirm tags number the channel's publishes from 1; `multiple` confirms
  // every one up to the tag. They mostly come in order.
  void confirm(std::uint64_t tag, bool multiple) {
    if (multiple) {
      confirmed_through_ = std::max(confirmed_through_, tag);
    } else if (tag > confirmed_through_) {
      confirmed_above_.insert(tag);
    }
    while (!confirmed_above_.empty() && *confirmed_above_.begin() <= confirmed_through_ + 1) {
      confirmed_through_ = std::max(confirmed_through_, *confirmed_above_.begin());
      confirmed_above_.erase(confirmed_above_.begin());
    }
  }

  amqp_connection_state_t conn_ = nullptr;
  std::uint64_t published_ = 0;
  std::uint64_t confirmed_through_ = 0;     // every tag up to this one is confirmed
  std::set<std::uint64_t> confirmed_above_;  // and these, above it
};

void declare_exchange(amqp_connection_state_t conn) {
  amqp_exchange_declare(conn, channel, amqp_cstring_bytes(exchange), amqp_cstring_bytes("topic"), 0, 0, 0, 0,
                        amqp_empty_table);
  check_reply(conn, "declaring the exchange");
}

// ---------------------------------------------------------------- server

volatile std::sig_atomic_t stop_requested = 0;

extern "C" void request_stop(int) { stop_requested = 1; }

int serve(const std::string& url, const std::string& topic) {
  struct sigaction sa {};
  sa.sa_handler = request_stop;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);

  connection c(url);
  amqp_connection_state_t conn = c.get();
  amqp_basic_qos(conn, channel, 0, prefetch, 0);
  check_reply(conn, "basic.qos");
  declare_exchange(conn);
  amqp_queue_declare(conn, channel, bytes(topic), 0, 0, 0, 0, amqp_empty_table);
  check_reply(conn, "declaring the request queue");
  amqp_queue_bind(conn, channel, bytes(topic), amqp_cstring_bytes(exchange), bytes(topic), amqp_empty_table);
  check_reply(conn, "binding the request queue");
  amqp_basic_consume(conn, channel, bytes(topic), amqp_empty_bytes, 0, 0 /* manual acks */, 0, amqp_empty_table);
  check_reply(conn, "consuming the request queue");
  std::printf("ready\n");
  std::fflush(stdout);

  std::uint64_t served = 0;
  while (!stop_requested) {
    amqp_envelope_t env;
    if (c.next(env, std::chrono::milliseconds(200)) != connection::event::delivery) continue;
    check_status(amqp_basic_ack(conn, channel, env.delivery_tag, 0), "acking a request");
    const amqp_basic_properties_t& p = env.message.properties;
    if ((p._flags & AMQP_BASIC_REPLY_TO_FLAG) != 0) {
      c.publish("", view(p.reply_to), true, reply_body(view(env.message.body)));
    }
    amqp_destroy_envelope(&env);
    ++served;
  }
  std::fprintf(stderr, "coport-bench-amqp server: %llu requests served, %llu replies confirmed of %llu\n",
               static_cast<unsigned long long>(served), static_cast<unsigned long long>(c.confirmed()),
               static_cast<unsigned long long>(c.published()));
  return 0;
}

// ---------------------------------------------------------------- client

double percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  const auto k = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

int call(const std::string& url, const std::string& topic, unsigned concurrency, double seconds) {
  connection c(url);
  amqp_connection_state_t conn = c.get();
  declare_exchange(conn);
  const std::string reply_queue = "reply_" + random_id();
  amqp_table_entry_t expires{};
  expires.key = amqp_cstring_bytes("x-expires");
  expires.value.kind = AMQP_FIELD_KIND_I64;
  expires.value.value.i64 = reply_queue_ttl_ms;
  amqp_queue_declare(conn, channel, bytes(reply_queue), 0, 0, 0, 0, amqp_table_t{1, &expires});
  check_reply(conn, "declaring the reply queue");
  amqp_basic_consume(conn, channel, bytes(reply_queue), amqp_empty_bytes, 0, 1 /* no acks */, 0, amqp_empty_table);
  check_reply(conn, "consuming the reply queue");

  const auto start = clock_type::now();
  const auto measure_from = start + std::chrono::milliseconds(500);
  const auto until = start + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(seconds));
  std::unordered_map<std::uint64_t, clock_type::time_point> in_flight;
  std::vector<double> latencies_ms;
  std::uint64_t next = 0;
  auto send = [&] {
    const std::uint64_t n = next++;
    in_flight.emplace(n, clock_type::now());
    c.publish(exchange, topic, false, request_body(n, reply_queue), reply_queue, "60000");
  };
  for (unsigned i = 0; i < concurrency; ++i) send();

  // Until the time is up and every call has its reply and its confirm.
  auto quiet_since = clock_type::now();
  while (!in_flight.empty() || c.confirmed() < c.published()) {
    amqp_envelope_t env;
    const connection::event e = c.next(env, std::chrono::milliseconds(1000));
    if (e == connection::event::nothing) {
      if (clock_type::now() - quiet_since > std::chrono::seconds(30)) {
        throw amqp_error(std::to_string(in_flight.size()) + " calls without a reply for 30 s");
      }
      continue;
    }
    quiet_since = clock_type::now();
    if (e != connection::event::delivery) continue;
    std::uint64_t n = 0;
    const bool ours = id_of(view(env.message.body), n);
    amqp_destroy_envelope(&env);
    const auto it = ours ? in_flight.find(n) : in_flight.end();
    if (it == in_flight.end()) continue;
    const auto done = clock_type::now();
    if (done >= measure_from && done <= until) {
      latencies_ms.push_back(std::chrono::duration<double, std::milli>(done - it->second).count());
    }
    in_flight.erase(it);
    if (done < until) send();
  }

  const double measured_s = std::chrono::duration<double>(until - measure_from).count();
  std::printf(
      "{\"impl\": \"amqp\", \"concurrency\": %u, \"calls\": %zu, \"seconds\": %g, \"calls_per_s\": %.3f, "
      "\"p50_ms\": %.4f, \"p99_ms\": %.4f}\n",
      concurrency, latencies_ms.size(), seconds, static_cast<double>(latencies_ms.size()) / measured_s,
      percentile(latencies_ms, 0.50), percentile(latencies_ms, 0.99));
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("coport-bench-amqp: RPC over RabbitMQ with rabbitmq-c alone, the floor of coport's rabbit:// figures.",
               "coport-bench-amqp");
  app.require_subcommand(1);
  std::string url;
  std::string topic;
  unsigned concurrency = 1;
  double seconds = 5;
  CLI::App* server = app.add_subcommand("server", "answer the requests of the topic's queue until SIGTERM");
  CLI::App* client = app.add_subcommand("client", "call for --seconds with --concurrency calls in flight");
  for (CLI::App* sub : {server, client}) {
    sub->add_option("--url", url, "the broker: rabbit://USER:PASSWORD@HOST:PORT/")->required();
    sub->add_option("--topic", topic, "the request queue and routing key")->required();
  }
  client->add_option("--concurrency", concurrency, "calls in flight")->check(CLI::Range(1u, 10000u));
  client->add_option("--seconds", seconds, "how long to call; the first 0.5 s are not counted")
      ->check(CLI::Range(1.0, 3600.0));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);
    std::fprintf(stderr, "coport-bench-amqp: %s\nRun 'coport-bench-amqp --help' for the options.\n", e.what());
    return 64;
  }
  try {
    return server->parsed() ? serve(url, topic) : call(url, topic, concurrency, seconds);
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "coport-bench-amqp: %s\n", e.what());
    return 64;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "coport-bench-amqp: %s\n", e.what());
    return 1;
  }
}
