#pragma once
// The registry's read model: four tables folded from the instance and
// weight events, plus a one-row `meta` table holding the position of the
// last event that changed anything (the route table's version).
//
//   services           name, first registration, the types it brings
//   service_instances  one row per instance ever seen: status live /
//                      deregistered / expired, transport, TTL, and where its
//                      stream stands (the sweeper's expected version)
//   service_endpoints  the endpoints of live instances
//   service_versions   (service, version): canary weight, live instances
//
// Everything here is a pure function of the events, so a replay rebuilds
// identical tables. Heartbeats are not events: last-seen times live in the
// separate `registry_heartbeats` table (registry migrations), which a
// rebuild neither needs nor touches.
//
// The fold addresses tables through TableNames, so the same code serves the
// projection engine's generations (registry_service_instances__g2) and any
// other set of physical tables (a replay check). Queries read the logical
// views: registry_services, registry_service_instances, ...

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "switchboard/events/envelope.hpp"
#include "switchboard/events/subscription.hpp"
#include "switchboard/shared/pg.hpp"

namespace sb::registry {

inline constexpr std::string_view kProjectionName = "registry";

/// The logical table names, in creation order.
const std::vector<std::string>& read_model_tables();

/// The event types the read model folds.
const std::vector<std::string>& read_model_event_types();

/// Physical name of each logical table.
struct TableNames {
  std::function<std::string(std::string_view)> physical;
  std::string operator()(std::string_view logical) const { return physical(logical); }
  /// "<prefix><logical>" for every table (e.g. prefix "registry_").
  static TableNames with_prefix(std::string prefix);
};

/// DDL creating one set of tables (and indexes).
std::vector<std::string> read_model_schema(const TableNames& t);

/// Folds one event into the tables in `tx` (one of read_model_event_types();
/// others are ignored).
events::HandleResult apply_event(pg::Transaction& tx, const TableNames& t,
                                 const events::Event& event);

}  // namespace sb::registry
