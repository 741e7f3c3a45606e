#pragma once
// The registry's wire contract (docs/registry-protocol.md): routing keys,
// RPC names, stream naming, and the payloads of registration, heartbeat and
// deregistration, parsed into plain structs and built back into JSON (the
// plugin SDK and the tests build them with the same functions).
//
// The payload schemas themselves are the platform's (events/platform_types):
// what is parsed here has already been validated by the store, so parsing
// only maps it; it still throws sb::json::Error naming a field that is wrong.

#include <rapidjson/document.h>
#include "switchboard/events/platform_types.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sb::registry {

/// The tenant of the platform's own streams (instances, services, catalog).
inline constexpr std::string_view kPlatformTenant = "_platform";

// Signals on sb.signals (transient).
inline constexpr std::string_view kHeartbeatKey = events::kServiceHeartbeat;
/// Prefix; the routing key is `service.register_requested.<service name>`.
inline constexpr std::string_view kRegisterRequestedPrefix = "service.register_requested.";
inline constexpr std::string_view kRoutesChangedKey = "registry.routes.changed";

// RPC services on sb.rpc.
inline constexpr std::string_view kRoutesRpc = "registry.routes";
inline constexpr std::string_view kSetWeightsRpc = "registry.set_weights";
inline constexpr std::string_view kCatalogRpc = "registry.catalog";

/// The default heartbeat interval, and how many missed intervals expire an
/// instance (TTL = 3 x 2 s).
inline constexpr std::chrono::milliseconds kDefaultHeartbeatInterval{2000};
inline constexpr int kMissedHeartbeats = 3;
/// Registration metadata key that overrides the heartbeat interval (ms) of
/// one instance; its TTL is kMissedHeartbeats times that.
inline constexpr std::string_view kHeartbeatIntervalMetadata = "heartbeat_interval_ms";

/// "service-instance-<instance id>": the stream of one instance's
/// registered / deregistered / expired events.
std::string instance_stream(std::string_view instance_id);
/// "service-<name>": the stream of a service's weights.
std::string service_stream(std::string_view service);
/// `service.register_requested.<name>`.
std::string register_requested_key(std::string_view service);

struct Transport {
  enum class Kind { amqp, http };
  Kind kind = Kind::amqp;
  std::string base_url;  // http only
  friend bool operator==(const Transport&, const Transport&) = default;
};
std::string_view to_string(Transport::Kind kind);

struct RateLimit {
  double per_second = 0;
  std::optional<std::int64_t> burst;
  friend bool operator==(const RateLimit&, const RateLimit&) = default;
};

struct Endpoint {
  std::string method;  // GET POST PUT PATCH DELETE
  std::string path;    // template, e.g. /orders/{id}
  std::vector<std::string> roles;
  bool is_public = false;
  std::optional<RateLimit> rate_limit;
  friend bool operator==(const Endpoint&, const Endpoint&) = default;
};

/// One endpoint as JSON, and back (the registration's endpoint items).
std::string endpoint_json(const Endpoint& endpoint);
Endpoint parse_endpoint(const rapidjson::Value& value);

struct Subscription {
  std::string group;
  std::string kind;  // checkpointed | push
  std::vector<std::string> event_types;
  friend bool operator==(const Subscription&, const Subscription&) = default;
};

/// The data of `service.instance.registered`. Event and command types are
/// kept as their JSON text (the catalog reads them with
/// event_type_spec_from_json / command_spec_from_json).
struct Registration {
  std::string name;
  std::string version;
  std::string instance_id;
  Transport transport;
  std::vector<Endpoint> endpoints;
  std::vector<std::string> event_types;    // each a JSON object, compact
  std::vector<std::string> command_types;  // each a JSON object, compact
  std::vector<Subscription> subscriptions;
  std::string metadata = "{}";  // JSON object, compact

  /// kMissedHeartbeats x the interval from metadata, or the default.
  std::chrono::milliseconds ttl() const;
  std::chrono::milliseconds heartbeat_interval() const;
};

Registration parse_registration(const rapidjson::Value& data);
std::string to_json(const Registration& registration);

struct Heartbeat {
  std::string name;
  std::string instance_id;
  std::string version;
  std::optional<std::int64_t> in_flight;
  std::optional<double> cpu;
};
/// Parses a heartbeat body; throws sb::json::Error.
Heartbeat parse_heartbeat(std::string_view body);
std::string to_json(const Heartbeat& heartbeat);

struct Deregistration {
  std::string name;
  std::string instance_id;
  std::string reason;
};
Deregistration parse_deregistration(const rapidjson::Value& data);
std::string to_json(const Deregistration& deregistration);

/// The body of `service.register_requested.<name>`.
std::string register_requested_json(std::string_view name, std::string_view instance_id);
/// The body of `registry.routes.changed`.
std::string routes_changed_json(std::int64_t version);

/// The command id whose derived event id expires one registration: the same
/// for every sweeper and every retry, so an instance is expired at most once
/// per registration.
std::string expiry_command_id(std::string_view instance_id, std::int64_t registration_position);

/// A `store.append` request body (docs/protocol.md 7.1) of one event.
struct AppendOne {
  std::string stream;
  std::string tenant;
  /// "any", "no_stream", "stream_exists" or a version number.
  std::string expected_version = "any";
  std::string event_id;
  std::string type;
  std::string data;  // JSON object
};
std::string append_request_json(const AppendOne& append);

}  // namespace sb::registry
