#pragma once
// Runs a Projection on checkpointed subscriptions (events/subscription.hpp):
// each page's effects and its checkpoint commit in one transaction; pages are
// large when behind (batched) and small when live. Partitions by hash of
// stream id, each with its own checkpoint and one active owner across
// replicas, so per-stream order holds. A failing event is retried with
// backoff, then the projection parks with the error recorded, or skips and
// records it, by policy.
//
// Rebuild: start_rebuild() creates generation N+1's tables and fills them
// from position 0 on its own subscription while generation N keeps serving;
// once N+1 has caught up (lag <= rebuild_swap_lag), the views are switched to
// N+1 in one transaction with a lock timeout (retried until it succeeds), the
// old subscription stops and the old tables are dropped. Progress and an ETA
// are in status(). The serving generation is recorded in the
// `projection_generations` table so every replica and restart agrees.

//
// Tables: `projection_generations` (one row per projection: serving and
// building generation, their fingerprints and partition counts) and
// `projection_tables` (the physical tables of each generation), migration set
// "projections" (sb::pg::projections_migrations(), applied by start()).
// A generation's checkpoints are the subscription
// "projection.<name>.g<generation>" in subscription_checkpoints.
//
// Schema changes: when the fingerprint of the code (projection.hpp,
// fingerprint()) differs from the serving generation's, start() begins a
// rebuild by itself; the old generation keeps answering queries but is not
// fed (its handlers no longer match its tables) until the swap. A changed
// partition count also rebuilds (the old generation runs on with its own).
//
// Replicas: every replica runs every partition of the serving (and building)
// generation; one owns each partition at a time. A supervisor thread polls
// projection_generations every poll_interval, so a rebuild started or
// swapped by one replica is picked up by all. Whichever replica finds the
// rebuild caught up does the swap; the bookkeeping transactions take one
// advisory lock per projection.

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "switchboard/events/subscription.hpp"
#include "switchboard/projections/projection.hpp"
#include "switchboard/shared/lifecycle.hpp"
#include "switchboard/shared/pg_migrations.hpp"

namespace sb::pg {
/// The "projections" migration set: projection_generations, projection_tables.
MigrationSet projections_migrations();
}  // namespace sb::pg

namespace sb::projections {

struct RunnerOptions {
  std::shared_ptr<pg::Pool> store;               // the events table (read-only use)
  std::shared_ptr<pg::Pool> target;              // read models, views, checkpoints; null: store
  std::shared_ptr<events::HeadSignals> signals;  // optional wake-ups
  const events::Catalog* catalog = nullptr;      // optional upcasting
  int partitions = 1;
  std::size_t page_size = 1000;
  events::RetryBackoff retry;
  events::FailurePolicy on_failure = events::FailurePolicy::park;
  std::chrono::milliseconds poll_interval{1000};
  std::int64_t rebuild_swap_lag = 0;  // events behind the head at which to swap
  std::chrono::milliseconds swap_lock_timeout{2000};
  std::string owner;  // instance id, for status
};

struct RebuildStatus {
  int generation = 0;
  events::Position position;
  events::Position head;
  double progress = 0;  // 0..1
  std::optional<std::chrono::seconds> eta;
  double rate = 0;  // positions/s the rebuild advances (events read, matching or not)
  /// Swap attempts that hit the lock timeout (the swap is retried).
  int swap_attempts = 0;
};

struct ProjectionStatus {
  std::string name;
  int generation = 0;  // serving
  events::SubscriptionState state = events::SubscriptionState::starting;
  events::Position position;  // lowest checkpoint over the partitions
  events::Position head;
  std::int64_t lag_events = 0;
  std::chrono::milliseconds lag_ms{0};
  double rate = 0;
  std::optional<std::string> last_error;
  std::optional<RebuildStatus> rebuild;
  /// The serving generation's partitions as this replica sees them (a
  /// partition owned by another replica shows owner == false, state standby,
  /// and the position last read from the database).
  std::vector<events::SubscriptionStatus> partitions;
};

class ProjectionRunner : public app::Component {
 public:
  ProjectionRunner(std::shared_ptr<Projection> projection, RunnerOptions options);
  ~ProjectionRunner() override;
  std::string_view name() const override;
  /// Creates the serving generation's tables and views if missing, then runs.
  void start() override;
  void stop(Deadline deadline) noexcept override;
  app::Health health() const override;

  ProjectionStatus status() const;
  /// Read-your-writes: true once every partition's checkpoint is >= position.
  bool wait_for_position(events::Position position,
                         std::chrono::steady_clock::time_point deadline) const;
  /// Starts a rebuild into the next generation (no-op if one is running).
  void start_rebuild();
  /// Retries a parked projection.
  void resume();

  class Impl;

 private:
  std::string name_;
  std::shared_ptr<Impl> impl_;
};

/// "projection.<name>.g<generation>": the checkpointed subscription that
/// feeds one generation.
std::string subscription_name(std::string_view projection, int generation);

/// The serving generation recorded in projection_generations (nullopt: the
/// projection never started).
std::optional<int> serving_generation(pg::Transaction& tx, std::string_view projection);

/// Read-your-writes inside a query's own transaction: the lowest checkpoint
/// of the serving generation in tx's snapshot, so the views reflect every
/// event at or below it (nullopt: unknown projection).
std::optional<events::Position> projection_checkpoint(pg::Transaction& tx,
                                                      std::string_view projection);

}  // namespace sb::projections
