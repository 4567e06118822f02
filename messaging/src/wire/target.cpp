#include <coport/messaging/wire/errors.hpp>
#include <coport/messaging/wire/target.hpp>

#include <charconv>

namespace coport::messaging {

namespace {

bool parse_part(std::string_view text, int& out) {
  if (text.empty() || text.size() > 9) return false;
  for (char c : text)
    if (c < '0' || c > '9') return false;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && ptr == text.data() + text.size();
}

}  // namespace

version version::parse(std::string_view text) {
  version v;
  int* parts[] = {&v.major, &v.minor, &v.revision};
  std::size_t count = 0;
  std::size_t start = 0;
  for (;;) {
    const std::size_t dot = text.find('.', start);
    const std::string_view part =
        text.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (count == 3 || !parse_part(part, *parts[count])) {
      throw invalid_target("version '" + std::string(text) +
                           "' is not \"major.minor\" or \"major.minor.revision\" with numbers");
    }
    ++count;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  if (count < 2) {
    throw invalid_target("version '" + std::string(text) + "' has no minor part (\"1.0\", not \"1\")");
  }
  return v;
}

std::string version::to_string() const {
  std::string s = std::to_string(major) + "." + std::to_string(minor);
  if (revision != 0) s += "." + std::to_string(revision);
  return s;
}

bool version::compatible(const version& served, const version& requested) noexcept {
  if (requested.major != served.major) return false;
  if (requested.minor > served.minor) return false;
  if (requested.minor == served.minor && requested.revision > served.revision) return false;
  return true;
}

void validate_name(std::string_view field, std::string_view name) {
  if (name.size() > 255) {
    throw invalid_target(std::string(field) + " is longer than 255 characters");
  }
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-' || c == ':';
    if (!ok) {
      throw invalid_target(std::string(field) + " '" + std::string(name) +
                           "' may hold only letters, digits and . _ - :");
    }
  }
}

void target::validate_for_send() const {
  if (topic.empty()) throw invalid_target("target has an empty topic");
  validate_name("topic", topic);
  if (!exchange.empty()) validate_name("exchange", exchange);
  if (!server.empty()) validate_name("server", server);
  if (ns) validate_name("namespace", *ns);
  if (version) (void)messaging::version::parse(*version);
  if (fanout && !server.empty()) {
    throw invalid_target("a fanout target cannot name a server ('" + server + "')");
  }
}

void target::validate_for_listen() const {
  if (topic.empty()) throw invalid_target("target has an empty topic");
  validate_name("topic", topic);
  if (server.empty()) throw invalid_target("a server must listen with a server name");
  validate_name("server", server);
  if (!exchange.empty()) validate_name("exchange", exchange);
  if (ns) validate_name("namespace", *ns);
  if (version) (void)messaging::version::parse(*version);
}

}  // namespace coport::messaging
