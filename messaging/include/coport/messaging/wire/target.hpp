#ifndef COPORT_MESSAGING_TARGET_HPP
#define COPORT_MESSAGING_TARGET_HPP

// Where a message goes: the target (exchange, topic, server, fanout,
// namespace, version), API versions and their compatibility rule, and the
// check of the names a transport accepts.

#include <optional>
#include <string>
#include <string_view>

namespace coport::messaging {

/// A "major.minor[.revision]" RPC API version.
struct version {
  int major = 1;
  int minor = 0;
  int revision = 0;

  /// Parses "1.3" or "1.3.2"; throws invalid_target for anything else
  /// ("1", "x.y", "1.-2", "1.2.3.4", " 1.2").
  static version parse(std::string_view text);
  std::string to_string() const;

  /// oslo.messaging's rule: an endpoint at `served` can take a call for
  /// `requested` when the majors are equal and requested.minor <=
  /// served.minor (and, at equal minors, requested.revision <=
  /// served.revision).
  static bool compatible(const version& served, const version& requested) noexcept;

  friend bool operator==(const version&, const version&) = default;
};

/// Where a message goes, or what a server listens on (oslo.messaging's
/// Target). Unset optional fields are absent on the wire.
struct target {
  /// Exchange; empty means the transport's control exchange ("openstack").
  std::string exchange = {};
  std::string topic = {};
  /// A specific server of the topic (topic.server queue).
  std::string server = {};
  /// Endpoint namespace; absent means the default (null) namespace.
  std::optional<std::string> ns = {};
  /// Requested (client) or served (endpoint) API version.
  std::optional<std::string> version = {};
  /// Deliver to every server of the topic.
  bool fanout = false;

  /// Checks the fields a client needs to send to this target: a topic of
  /// letters, digits and ._- without spaces; a valid version; no server
  /// with fanout. Throws invalid_target naming the field.
  void validate_for_send() const;
  /// Checks the fields a server needs to listen on this target (a topic
  /// and a server name).
  void validate_for_listen() const;

  friend bool operator==(const target&, const target&) = default;
};

/// Throws invalid_target if `name` is not a usable topic, server, exchange
/// or namespace name (`field` names it in the message).
void validate_name(std::string_view field, std::string_view name);

}  // namespace coport::messaging

#endif
