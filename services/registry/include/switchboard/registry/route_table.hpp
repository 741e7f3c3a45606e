#pragma once
// The route table: what the edge needs to route a call to a live instance —
// per service, per live version: the canary weight, the live instances with
// their transports, and the endpoints. Versioned by the position of the last
// event that changed the read model, so every registry replica that has
// folded the same events serves the same version, and a rebuilt read model
// serves the same version again.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "switchboard/events/time.hpp"
#include "switchboard/registry/protocol.hpp"
#include "switchboard/shared/pg.hpp"

namespace sb::registry {

/// A live instance as the sweeper and the heartbeat path see it.
struct LiveInstance {
  std::string instance_id;
  std::string service;
  std::string version;
  std::string tenant;
  std::string stream;
  std::int64_t stream_version = 0;  // expected version of an expiry
  std::int64_t registered_position = 0;
  events::Timestamp registered_at{};
  std::chrono::milliseconds ttl{kDefaultHeartbeatInterval * kMissedHeartbeats};
  Transport transport;
  std::vector<Endpoint> endpoints;
};

struct RouteInstance {
  std::string instance_id;
  Transport transport;
  friend bool operator==(const RouteInstance&, const RouteInstance&) = default;
};

struct RouteVersion {
  std::string version;
  int weight = 0;
  std::vector<RouteInstance> instances;  // by instance id
  std::vector<Endpoint> endpoints;       // by (path, method)
  friend bool operator==(const RouteVersion&, const RouteVersion&) = default;
};

struct RouteService {
  std::string name;
  std::vector<RouteVersion> versions;  // by version
  friend bool operator==(const RouteService&, const RouteService&) = default;
};

/// Default weight of every live version while a service has no weights set.
inline constexpr int kDefaultWeight = 100;

struct RouteTable {
  std::int64_t version = 0;
  std::vector<RouteService> services;  // by name
  friend bool operator==(const RouteTable&, const RouteTable&) = default;
};

/// Weights as the read model holds them: (service, version) -> weight, only
/// for services whose weights were set (unset versions of such a service
/// route nothing).
using WeightMap = std::map<std::pair<std::string, std::string>, std::optional<int>>;

/// Assembles the table from live instances (pure; unit-tested). Versions of
/// a service with weights set take their weight (0 when not listed); with
/// none set every live version weighs kDefaultWeight. The endpoints of a
/// version are the union over its instances; for a (method, path) declared
/// differently, the most recent registration wins. Services of
/// `known_services` with no live instance appear with no versions, so an
/// edge tells "stopped" (503) from "never heard of" (404).
RouteTable assemble_route_table(std::int64_t version, const std::vector<LiveInstance>& live,
                                const WeightMap& weights,
                                const std::vector<std::string>& known_services = {});

std::string to_json(const RouteTable& table);
RouteTable route_table_from_json(std::string_view json);

/// What the registry loads from its read model in one snapshot.
struct ReadModelSnapshot {
  std::int64_t version = 0;  // meta.last_position; 0: nothing folded yet
  std::vector<LiveInstance> live;
  WeightMap weights;
  /// (service name, event_types JSON array, command_types JSON array) of
  /// every service, for reloading the catalog.
  std::vector<std::tuple<std::string, std::string, std::string>> service_types;
};

/// The last_position of registry_meta (0 when empty); throws when the views
/// do not exist yet.
std::int64_t read_model_version(pg::Transaction& tx);
/// Reads the views in tx (use a REPEATABLE READ transaction).
ReadModelSnapshot load_snapshot(pg::Transaction& tx);

}  // namespace sb::registry
