#pragma once
// The registry (DESIGN.md "Registry and hot-plug"), as one component that
// a process or a test starts:
//
//   read model   service.instance.* and service.version.weights_set folded
//                into PostgreSQL by the projection engine (read_model.hpp);
//   route table  reloaded from the read model whenever its version (the
//                position of the last change) moves; served by RPC
//                `registry.routes` and announced on sb.signals as
//                `registry.routes.changed` {version}, so edges update by push;
//   heartbeats   every replica consumes every `service.heartbeat` on an
//                exclusive queue of its own, keeps last-seen in memory and
//                flushes it in batches (one multi-row upsert) to
//                registry_heartbeats;
//   sweeper      the replica holding an advisory lock expires instances
//                silent past their TTL with `service.instance.expired`,
//                appended with a derived id and the instance stream's
//                expected version (two sweepers or a retry can never expire a
//                registration twice); paused for one TTL after start and
//                after a broker reconnect; it also asks instances it hears
//                from but does not know to register again;
//   weights      RPC `registry.set_weights` appends service.version.weights_set;
//   catalog      the event and command types registrations bring join this
//                registry's catalog (RPC `registry.catalog`), and each change
//                is appended once as `catalog.type.registered`.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "switchboard/broker/options.hpp"
#include "switchboard/events/catalog.hpp"
#include "switchboard/registry/route_table.hpp"
#include "switchboard/shared/lifecycle.hpp"
#include "switchboard/shared/pg.hpp"

namespace sb::registry {

struct RegistryOptions {
  broker::ConnectionOptions broker;
  /// Read models, registry_heartbeats, checkpoints, the sweeper's lock.
  pg::ConnectOptions database;
  /// The events table; empty url: the same database.
  pg::ConnectOptions store_database;
  std::string replica = "registry";  // names queues and connections
  /// TTL of instances that do not state their own heartbeat interval.
  std::chrono::milliseconds default_ttl{kDefaultHeartbeatInterval * kMissedHeartbeats};
  std::chrono::milliseconds flush_interval{500};
  std::chrono::milliseconds sweep_interval{250};
  /// How often the route table checks the read model's version (a head
  /// signal checks at once).
  std::chrono::milliseconds route_poll{100};
  std::chrono::milliseconds store_timeout{2000};
  /// Expiry appends in flight at most (a mass expiry must not flood the
  /// store's queue).
  std::size_t expiry_window = 16;
  std::int64_t sweeper_lock_key = 96301183;
  std::size_t heartbeat_workers = 2;
  std::uint16_t heartbeat_prefetch = 2000;
  std::int64_t heartbeat_queue_max = 200000;
  std::size_t rpc_workers = 4;
  /// Unknown instances are asked to register after this long, then at most
  /// once per repeat.
  std::chrono::milliseconds unknown_grace{1500};
  std::chrono::milliseconds unknown_repeat{5000};
  /// Run the read model (off: only another replica folds events; this one
  /// serves routes and heartbeats from the shared tables).
  bool run_read_model = true;
  /// Run the sweeper and the heartbeat path (off for read-only replicas).
  bool run_liveness = true;
};

struct RegistryStats {
  std::uint64_t heartbeats = 0;
  std::uint64_t flushed_rows = 0;
  std::uint64_t flushes = 0;
  std::uint64_t expiries_sent = 0;
  std::uint64_t expiries_appended = 0;  // appended or duplicate
  std::uint64_t expiry_conflicts = 0;   // the instance moved on first
  std::uint64_t register_requests = 0;
  std::uint64_t route_changes = 0;
  std::uint64_t catalog_appends = 0;
  bool sweeper = false;  // holds the sweeper lock
  bool paused = false;
  std::int64_t route_version = 0;
  std::size_t live_instances = 0;
};

class Registry : public app::Component {
 public:
  explicit Registry(RegistryOptions options);
  ~Registry() override;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  std::string_view name() const override { return "registry"; }
  void start() override;
  void stop(Deadline deadline) noexcept override;
  app::Health health() const override;

  /// The current route table (version 0 before the first load).
  std::shared_ptr<const RouteTable> routes() const;
  /// Waits until the route table's version is >= `version`.
  bool wait_for_routes(std::int64_t version, std::chrono::milliseconds timeout) const;
  RegistryStats stats() const;
  const events::Catalog& catalog() const;

  /// Rebuilds the read model from the store into a new generation, which
  /// replaces the serving one once caught up (no-op without a read model).
  void rebuild_read_model();
  /// The serving generation of the read model (0 without one).
  int read_model_generation() const;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace sb::registry
