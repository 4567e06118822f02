#include <coport/messaging/wire/errors.hpp>
#include <coport/messaging/wire/message.hpp>
#include <coport/messaging/wire/target.hpp>

#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value_stack.hpp>
#include <boost/json/serialize.hpp>

#include <cxxabi.h>

#include <array>
#include <charconv>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <memory>
#include <random>
#include <typeinfo>

namespace json = boost::json;

namespace coport::messaging {

namespace {

constexpr std::string_view version_key = "oslo.version";
constexpr std::string_view message_key = "oslo.message";
constexpr std::string_view envelope_version = "2.0";
constexpr std::string_view context_prefix = "_context_";

constexpr std::array<std::string_view, 7> priority_names = {"audit", "debug", "info", "warn",
                                                            "error", "critical", "sample"};

std::string_view kind_name(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null: return "null";
    case json::kind::bool_: return "a boolean";
    case json::kind::int64:
    case json::kind::uint64: return "an integer";
    case json::kind::double_: return "a number";
    case json::kind::string: return "a string";
    case json::kind::array: return "an array";
    case json::kind::object: return "an object";
  }
  return "unknown";
}

// Builds a json::value like boost::json::parser, except that floating-point
// numbers are converted from their text exactly (std::from_chars): Boost 1.81's
// own conversion is fast but may differ from the sender's value in the last
// bits, and numbers must survive a trip through Python unchanged.
class exact_value_builder {
 public:
  static constexpr std::size_t max_array_size = std::size_t(-1);
  static constexpr std::size_t max_object_size = std::size_t(-1);
  static constexpr std::size_t max_string_size = std::size_t(-1);
  static constexpr std::size_t max_key_size = std::size_t(-1);

  json::value_stack stack;

  bool on_document_begin(json::error_code&) { return true; }
  bool on_document_end(json::error_code&) { return true; }
  bool on_array_begin(json::error_code&) { return true; }
  bool on_array_end(std::size_t n, json::error_code&) {
    stack.push_array(n);
    return true;
  }
  bool on_object_begin(json::error_code&) { return true; }
  bool on_object_end(std::size_t n, json::error_code&) {
    stack.push_object(n);
    return true;
  }
  bool on_string_part(json::string_view s, std::size_t, json::error_code&) {
    stack.push_chars(s);
    return true;
  }
  bool on_string(json::string_view s, std::size_t, json::error_code&) {
    stack.push_string(s);
    return true;
  }
  bool on_key_part(json::string_view s, std::size_t, json::error_code&) {
    stack.push_chars(s);
    return true;
  }
  bool on_key(json::string_view s, std::size_t, json::error_code&) {
    stack.push_key(s);
    return true;
  }
  bool on_number_part(json::string_view s, json::error_code&) {
    number_.append(s.data(), s.size());
    return true;
  }
  bool on_int64(std::int64_t i, json::string_view, json::error_code&) {
    number_.clear();
    stack.push_int64(i);
    return true;
  }
  bool on_uint64(std::uint64_t u, json::string_view, json::error_code&) {
    number_.clear();
    stack.push_uint64(u);
    return true;
  }
  bool on_double(double d, json::string_view s, json::error_code&) {
    number_.append(s.data(), s.size());
    double exact = d;
    const auto [end, err] = std::from_chars(number_.data(), number_.data() + number_.size(), exact);
    number_.clear();
    stack.push_double(err == std::errc() ? exact : d);
    return true;
  }
  bool on_bool(bool b, json::error_code&) {
    stack.push_bool(b);
    return true;
  }
  bool on_null(json::error_code&) {
    stack.push_null();
    return true;
  }
  bool on_comment_part(json::string_view, json::error_code&) { return true; }
  bool on_comment(json::string_view, json::error_code&) { return true; }

 private:
  std::string number_;
};

json::value parse_limited(std::string_view text, const decode_limits& limits, const char* what) {
  if (text.size() > limits.max_bytes) {
    throw decode_error(std::string(what) + " is " + std::to_string(text.size()) +
                       " bytes, more than the limit of " + std::to_string(limits.max_bytes));
  }
  json::parse_options opt;
  opt.max_depth = limits.max_depth;
  json::basic_parser<exact_value_builder> parser(opt);
  parser.handler().stack.reset();
  boost::system::error_code ec;
  const std::size_t used = parser.write_some(false, text.data(), text.size(), ec);
  if (!ec && used != text.size()) ec = json::error::extra_data;
  if (ec) throw decode_error(std::string(what) + " is not valid JSON: " + ec.message());
  return parser.handler().stack.release();
}

// JSON has no NaN or infinity; a message holding one is refused at the
// sender rather than sent as text no decoder accepts.
void check_finite(const json::value& v, std::string_view where) {
  switch (v.kind()) {
    case json::kind::double_:
      if (!std::isfinite(v.get_double())) {
        throw encode_error(std::string(where) + " holds " + (std::isnan(v.get_double()) ? "NaN" : "an infinity") +
                           ", which JSON cannot carry");
      }
      break;
    case json::kind::array:
      for (const auto& e : v.get_array()) check_finite(e, where);
      break;
    case json::kind::object:
      for (const auto& kv : v.get_object()) check_finite(kv.value(), where);
      break;
    default:
      break;
  }
}

// Opens the envelope and returns the message dictionary inside it.
json::object open_envelope(std::string_view body, const decode_limits& limits) {
  json::value outer = parse_limited(body, limits, "message body");
  json::object* env = outer.if_object();
  if (!env) throw decode_error("message body is " + std::string(kind_name(outer)) + ", not an object");
  const json::value* ver = env->if_contains(version_key);
  const json::value* msg = env->if_contains(message_key);
  // Without both envelope keys the body is the message itself: the
  // version 1 format, which oslo.messaging still accepts (and its
  // "messaging" notification driver still sends).
  if (!ver || !msg) return std::move(*env);
  if (!ver->is_string()) throw decode_error("'oslo.version' is not a string");
  version got;
  try {
    got = version::parse(ver->get_string());
  } catch (const invalid_target&) {
    throw decode_error("'oslo.version' '" + std::string(ver->get_string()) + "' is not a version");
  }
  if (!version::compatible(version::parse(envelope_version), got)) {
    throw decode_error("unsupported envelope version '" + std::string(ver->get_string()) +
                       "' (this side speaks " + std::string(envelope_version) + ")");
  }
  if (!msg->is_string()) throw decode_error("'oslo.message' is not a string");
  json::value inner = parse_limited(msg->get_string(), limits, "'oslo.message'");
  json::object* m = inner.if_object();
  if (!m) throw decode_error("'oslo.message' holds " + std::string(kind_name(inner)) + ", not an object");
  return std::move(*m);
}

std::string seal_envelope(const json::object& inner) {
  check_finite(inner, "the message");
  json::object env;
  env[version_key] = envelope_version;
  env[message_key] = json::serialize(inner);
  return json::serialize(env);
}

[[noreturn]] void wrong_type(std::string_view key, const json::value& v, std::string_view expected) {
  throw decode_error("'" + std::string(key) + "' must be " + std::string(expected) + ", not " +
                     std::string(kind_name(v)));
}

std::string required_string(const json::object& m, std::string_view key) {
  const json::value* v = m.if_contains(key);
  if (!v) throw decode_error("'" + std::string(key) + "' is missing");
  if (!v->is_string()) wrong_type(key, *v, "a string");
  return std::string(v->get_string());
}

// Absent or null: nullopt.
std::optional<std::string> optional_string(const json::object& m, std::string_view key) {
  const json::value* v = m.if_contains(key);
  if (!v || v->is_null()) return std::nullopt;
  if (!v->is_string()) wrong_type(key, *v, "a string or null");
  return std::string(v->get_string());
}

context take_context(json::object& m) {
  context ctxt;
  for (auto it = m.begin(); it != m.end(); ++it) {
    const std::string_view key = it->key();
    if (key.size() >= context_prefix.size() && key.substr(0, context_prefix.size()) == context_prefix) {
      ctxt[key.substr(context_prefix.size())] = std::move(it->value());
    }
  }
  return ctxt;
}

void put_context(json::object& m, const context& ctxt) {
  for (const auto& kv : ctxt) {
    std::string key(context_prefix);
    key += kv.key();
    m[key] = kv.value();
  }
}

json::value encode_failure(const failure_info& f) {
  json::object o;
  o["class"] = f.exc_type;
  o["module"] = f.module;
  o["message"] = f.message;
  json::array tb;
  for (const auto& line : f.traceback) tb.emplace_back(line);
  o["tb"] = std::move(tb);
  o["args"] = f.args;
  o["kwargs"] = f.kwargs;
  // oslo.messaging sends the failure as a JSON string inside the reply.
  return json::value(json::serialize(o));
}

failure_info decode_failure(const json::value& v, const decode_limits& limits) {
  if (!v.is_string()) wrong_type("failure", v, "a string holding JSON");
  json::value parsed = parse_limited(v.get_string(), limits, "'failure'");
  const json::object* o = parsed.if_object();
  if (!o) throw decode_error("'failure' holds " + std::string(kind_name(parsed)) + ", not an object");
  failure_info f;
  f.exc_type = optional_string(*o, "class").value_or("");
  f.module = optional_string(*o, "module").value_or("");
  f.message = optional_string(*o, "message").value_or("");
  if (const json::value* tb = o->if_contains("tb"); tb && !tb->is_null()) {
    if (!tb->is_array()) wrong_type("failure.tb", *tb, "an array");
    for (const auto& line : tb->get_array()) {
      if (!line.is_string()) wrong_type("failure.tb[]", line, "a string");
      f.traceback.emplace_back(line.get_string());
    }
  }
  if (const json::value* a = o->if_contains("args"); a && a->is_array()) f.args = a->get_array();
  if (const json::value* k = o->if_contains("kwargs"); k && k->is_object()) f.kwargs = k->get_object();
  return f;
}

std::string demangle(const char* name) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> out(abi::__cxa_demangle(name, nullptr, nullptr, &status),
                                            std::free);
  return status == 0 && out ? std::string(out.get()) : std::string(name);
}

}  // namespace

std::string message_id_of(std::string_view body, const decode_limits& limits) noexcept {
  try {
    json::value outer = parse_limited(body, limits, "message body");
    const json::object* m = outer.if_object();
    if (!m) return {};
    json::value inner;
    if (const json::value* sealed = m->if_contains(message_key); sealed && sealed->is_string()) {
      inner = parse_limited(sealed->get_string(), limits, "'oslo.message'");
      m = inner.if_object();
      if (!m) return {};
    }
    for (const char* key : {"_msg_id", "message_id"}) {
      if (const json::value* id = m->if_contains(key); id && id->is_string()) return std::string(id->get_string());
    }
  } catch (...) {
    // not even that much can be read
  }
  return {};
}

std::string_view to_string(priority p) noexcept { return priority_names[static_cast<int>(p)]; }

std::optional<priority> parse_priority(std::string_view name) noexcept {
  for (std::size_t i = 0; i < priority_names.size(); ++i) {
    const auto& n = priority_names[i];
    if (n.size() != name.size()) continue;
    bool same = true;
    for (std::size_t j = 0; j < n.size() && same; ++j) {
      char c = name[j];
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      same = c == n[j];
    }
    if (same) return static_cast<priority>(i);
  }
  return std::nullopt;
}

std::string make_unique_id() {
  // 128 random bits from a generator seeded once per thread by the OS
  // (asking the OS for every id costs a system call per message).
  thread_local std::mt19937_64 generator = [] {
    std::random_device rd;
    std::seed_seq seed{rd(), rd(), rd(), rd(), rd(), rd(), rd(), rd()};
    return std::mt19937_64(seed);
  }();
  static constexpr char hex[] = "0123456789abcdef";
  std::string out(32, '0');
  for (int half = 0; half < 2; ++half) {
    std::uint64_t bits = generator();
    for (int i = 0; i < 16; ++i, bits >>= 4) out[half * 16 + i] = hex[bits & 0xf];
  }
  // The version and variant digits of a random (version 4) UUID.
  out[12] = '4';
  out[16] = hex[8 | (std::uint64_t(generator()) & 0x3)];
  return out;
}

std::string utc_timestamp() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t secs = std::chrono::system_clock::to_time_t(now);
  const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(
                          now.time_since_epoch()).count() % 1000000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[80];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d %02d:%02d:%02d.%06lld", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long long>(micros));
  return buf;
}

std::string encode(const rpc_request& m) {
  json::object inner;
  inner["method"] = m.method;
  inner["args"] = m.args;
  if (m.ns) inner["namespace"] = *m.ns;
  if (m.version) inner["version"] = *m.version;
  if (m.is_call()) {
    inner["_msg_id"] = m.msg_id;
    inner["_reply_q"] = m.reply_q;
    inner["_timeout"] = m.timeout ? json::value(*m.timeout) : json::value(nullptr);
  }
  inner["_unique_id"] = m.unique_id.empty() ? make_unique_id() : m.unique_id;
  put_context(inner, m.ctxt);
  return seal_envelope(inner);
}

std::string encode(const rpc_reply& m) {
  json::object inner;
  inner["result"] = m.failure ? json::value(nullptr) : m.result;
  inner["failure"] = m.failure ? encode_failure(*m.failure) : json::value(nullptr);
  inner["ending"] = m.ending;
  inner["_msg_id"] = m.msg_id;
  inner["_unique_id"] = m.unique_id.empty() ? make_unique_id() : m.unique_id;
  return seal_envelope(inner);
}

std::string encode(const notification& m) {
  json::object inner;
  inner["message_id"] = m.message_id;
  inner["publisher_id"] = m.publisher_id;
  inner["event_type"] = m.event_type;
  std::string prio(to_string(m.prio));
  for (char& c : prio) c = static_cast<char>(c - 'a' + 'A');
  inner["priority"] = prio;
  inner["payload"] = m.payload;
  inner["timestamp"] = m.timestamp;
  inner["_unique_id"] = m.unique_id.empty() ? make_unique_id() : m.unique_id;
  put_context(inner, m.ctxt);
  return seal_envelope(inner);
}

rpc_request decode_request(std::string_view body, const decode_limits& limits) {
  json::object m = open_envelope(body, limits);
  rpc_request r;
  r.method = required_string(m, "method");
  if (r.method.empty()) throw decode_error("'method' is empty");
  if (const json::value* a = m.if_contains("args"); a && !a->is_null()) {
    if (!a->is_object()) wrong_type("args", *a, "an object");
    r.args = std::move(a->get_object());
  }
  r.ns = optional_string(m, "namespace");
  r.version = optional_string(m, "version");
  if (r.version) {
    try {
      (void)version::parse(*r.version);
    } catch (const invalid_target&) {
      throw decode_error("'version' '" + *r.version + "' is not \"major.minor\" with numbers");
    }
  }
  r.msg_id = optional_string(m, "_msg_id").value_or("");
  r.reply_q = optional_string(m, "_reply_q").value_or("");
  if (r.msg_id.empty() != r.reply_q.empty()) {
    throw decode_error("a call needs both '_msg_id' and '_reply_q'");
  }
  // The caller's timeout means something for a call only: nobody waits
  // for a cast, so a cast's stray "_timeout" is checked but gives it no
  // deadline (and encode() writes none).
  if (const json::value* t = m.if_contains("_timeout"); t && !t->is_null()) {
    if (!t->is_number()) wrong_type("_timeout", *t, "a number or null");
    if (r.is_call()) r.timeout = t->to_number<double>();
  }
  r.unique_id = optional_string(m, "_unique_id").value_or("");
  r.ctxt = take_context(m);
  return r;
}

rpc_reply decode_reply(std::string_view body, const decode_limits& limits) {
  json::object m = open_envelope(body, limits);
  rpc_reply r;
  r.msg_id = required_string(m, "_msg_id");
  if (const json::value* f = m.if_contains("failure"); f && !f->is_null()) {
    r.failure = decode_failure(*f, limits);
  }
  // A reply with a failure is that failure, whatever "result" says (the
  // caller raises it, as oslo.messaging does; encode() writes null there).
  if (const json::value* res = m.if_contains("result"); res && !r.failure) r.result = *res;
  if (const json::value* e = m.if_contains("ending"); e && !e->is_null()) {
    if (!e->is_bool()) wrong_type("ending", *e, "a boolean");
    r.ending = e->get_bool();
  } else {
    r.ending = false;
  }
  r.unique_id = optional_string(m, "_unique_id").value_or("");
  return r;
}

notification decode_notification(std::string_view body, const decode_limits& limits) {
  json::object m = open_envelope(body, limits);
  notification n;
  n.message_id = optional_string(m, "message_id").value_or("");
  n.publisher_id = optional_string(m, "publisher_id").value_or("");
  n.event_type = required_string(m, "event_type");
  const std::string prio = required_string(m, "priority");
  auto p = parse_priority(prio);
  if (!p) throw decode_error("'priority' '" + prio + "' is not a notification priority");
  n.prio = *p;
  if (const json::value* pl = m.if_contains("payload")) n.payload = *pl;
  n.timestamp = optional_string(m, "timestamp").value_or("");
  n.unique_id = optional_string(m, "_unique_id").value_or("");
  n.ctxt = take_context(m);
  return n;
}

failure_info failure_from(std::exception_ptr e) {
  if (!e) e = std::current_exception();
  failure_info f;
  auto from_type = [&f](const std::type_info& type) {
    std::string full = demangle(type.name());
    // ABI tags are not part of the name a reader knows
    // ("std::ios_base::failure[abi:cxx11]").
    for (auto tag = full.find("[abi:"); tag != std::string::npos; tag = full.find("[abi:", tag)) {
      const auto close = full.find(']', tag);
      if (close == std::string::npos) break;
      full.erase(tag, close - tag + 1);
    }
    // The last "::" outside template arguments separates namespace and class
    // ("boost::wrapexcept<std::runtime_error>").
    std::size_t sep = std::string::npos;
    int depth = 0;
    for (std::size_t i = 0; i + 1 < full.size(); ++i) {
      if (full[i] == '<') ++depth;
      else if (full[i] == '>') --depth;
      else if (depth == 0 && full[i] == ':' && full[i + 1] == ':') sep = i;
    }
    if (sep == std::string::npos) {
      f.exc_type = full;
      f.module = "coport";
    } else {
      f.exc_type = full.substr(sep + 2);
      f.module = full.substr(0, sep);
    }
  };
  try {
    std::rethrow_exception(e);
  } catch (const endpoint_exception& x) {
    f.exc_type = x.exc_type();
    f.module = x.module();
    f.message = x.what();
  } catch (const no_such_method& x) {
    f.exc_type = "NoSuchMethod";
    f.module = "oslo_messaging.rpc.dispatcher";
    f.message = x.what();
  } catch (const unsupported_version& x) {
    f.exc_type = "UnsupportedVersion";
    f.module = "oslo_messaging.rpc.dispatcher";
    f.message = x.what();
  } catch (const std::exception& x) {
    from_type(typeid(x));
    f.message = x.what();
  } catch (...) {
    f.exc_type = "unknown_exception";
    f.module = "coport";
    f.message = "an exception of unknown type";
  }
  f.traceback.push_back(f.module + "." + f.exc_type + ": " + f.message);
  f.args.emplace_back(f.message);
  return f;
}

std::exception_ptr exception_from(const failure_info& f) {
  return std::make_exception_ptr(remote_error(f.exc_type, f.module, f.message, f.traceback));
}

}  // namespace coport::messaging
