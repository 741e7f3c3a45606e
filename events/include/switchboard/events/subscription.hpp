#pragma once
// Checkpointed subscriptions (DESIGN.md "Subscriptions and projections"):
// ordered, exactly-once effect.
//
// The loop, the same for catch-up and live:
//   1. read the next page after the checkpoint (filter + partition) together
//      with the head, in one REPEATABLE READ read-only snapshot of the store;
//   2. in ONE transaction on the target database: lock the checkpoint row,
//      check it did not move (a reset, or another owner), run the handler
//      for each event, write the new checkpoint, commit. A page shorter than
//      the page size moves the checkpoint to the head of its snapshot, so
//      filtered-out positions are stepped over too;
//   3. when caught up, wait for the store's head signal (HeadSignals) or the
//      poll interval, whichever comes first.
// RabbitMQ only wakes the loop: nothing it needs can be lost or reordered by
// the broker.
//
// A handler that throws fails the page: it is retried in-process with
// exponential backoff (RetryBackoff), then the policy applies: `park` stops
// the subscription with state `parked` and the error visible (in status()
// and in subscription_checkpoints) until resume() or reset(); `skip_and_record`
// records the failing event in subscription_skipped (same transaction as the
// checkpoint) and goes on. Nothing is ever skipped silently. Database
// outages (lost connections) are not handler failures: they are retried
// until the database is back, without parking.
//
// Scale-out: partition p of N takes the streams with partition_of(stream, N)
// == p, has its own checkpoint row and exactly one active owner across
// replicas (a session advisory lock on a dedicated connection that never
// reconnects). Every replica may run every partition: the others stand by.
// Per-stream order therefore holds across replicas.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "switchboard/events/catalog.hpp"
#include "switchboard/events/envelope.hpp"
#include "switchboard/events/head_signals.hpp"
#include "switchboard/events/reader.hpp"
#include "switchboard/events/subscription_logic.hpp"
#include "switchboard/shared/lifecycle.hpp"
#include "switchboard/shared/pg.hpp"
#include "switchboard/shared/pg_migrations.hpp"

namespace sb::pg {
/// The "subscriptions" migration set: subscription_checkpoints,
/// subscription_skipped, processed_events, push_overflow.
MigrationSet subscriptions_migrations();
}  // namespace sb::pg

namespace sb::events {

enum class HandleResult { handled, ignored };
enum class FailurePolicy { park, skip_and_record };

enum class SubscriptionState {
  starting,     // not yet owning its partition or not yet read
  standby,      // another replica owns the partition
  catching_up,  // behind the head
  running,      // caught up, live
  parked,       // stopped on a failure (see last_error) until resume() or reset()
  stopped,
};
std::string_view to_string(SubscriptionState state);

/// What a page handler is told about the page it is in.
struct PageContext {
  std::string_view subscription;
  Partition partition;
  Position from;  // the checkpoint before the page (exclusive)
  Position to;    // the checkpoint after it
  Position head;  // the head in the page's snapshot
  std::size_t events = 0;
};

/// The base the projections engine builds on. All calls of one page run in
/// one transaction, which also writes the checkpoint; throwing fails the page.
class SubscriptionHandler {
 public:
  virtual ~SubscriptionHandler() = default;
  /// Called before the first event of a page that has events.
  virtual void begin_page(pg::Transaction& tx, const PageContext& page) {
    (void)tx;
    (void)page;
  }
  virtual HandleResult handle(pg::Transaction& tx, const Event& event) = 0;
  /// Called after the last event of a page that has events, before the
  /// checkpoint is written (flush batched writes here).
  virtual void end_page(pg::Transaction& tx, const PageContext& page) {
    (void)tx;
    (void)page;
  }
};

using EventHandlerFn = std::function<HandleResult(pg::Transaction&, const Event&)>;
std::shared_ptr<SubscriptionHandler> make_handler(EventHandlerFn fn);

struct CheckpointedSubscriptionOptions {
  std::string name;  // see is_valid_subscription_name
  Partition partition{};
  /// Types/patterns, tenant, time, correlation. Its `partition` is ignored
  /// (the one above is used).
  Filter filter;
  std::size_t page_size = 500;
  /// Fallback when no head signal arrives (a transient signal may be lost).
  std::chrono::milliseconds poll_interval{1000};
  /// How often a standby tries to take the partition's lock.
  std::chrono::milliseconds standby_poll{1000};
  RetryBackoff retry;
  FailurePolicy on_failure = FailurePolicy::park;
  /// Where the events table is (read-only use).
  std::shared_ptr<pg::Pool> store;
  /// Where the checkpoint and the handler's effects go; null: the store's database.
  std::shared_ptr<pg::Pool> target;
  /// Upcasts every event before the handler sees it.
  const Catalog* catalog = nullptr;
  /// Optional wake-ups (one HeadSignals per process is enough for all
  /// subscriptions); without it the loop polls.
  std::shared_ptr<HeadSignals> signals;
  ReadOptions read;
  /// Apply the "subscriptions" migrations to the target at start().
  bool migrate = true;
  /// Written to subscription_checkpoints.owner while this instance owns it.
  std::string owner;
};

struct SubscriptionStatus {
  std::string name;
  Partition partition;
  SubscriptionState state = SubscriptionState::starting;
  bool owner = false;
  Position position;  // the checkpoint
  Position head;      // as last seen
  std::int64_t lag_events = 0;
  /// recorded_at of the head event minus that of the checkpoint's event.
  std::chrono::milliseconds lag_ms{0};
  double rate = 0;  // events handed to the handler per second (10 s window)
  std::optional<std::string> last_error;
  std::optional<Position> failed_position;
  std::uint64_t handled = 0;
  std::uint64_t ignored = 0;
  std::uint64_t skipped = 0;
  std::uint64_t pages = 0;
  std::uint64_t failures = 0;  // failed attempts (handler or database)
};

class CheckpointedSubscription : public app::Component {
 public:
  CheckpointedSubscription(CheckpointedSubscriptionOptions options,
                           std::shared_ptr<SubscriptionHandler> handler);
  ~CheckpointedSubscription() override;
  CheckpointedSubscription(const CheckpointedSubscription&) = delete;
  CheckpointedSubscription& operator=(const CheckpointedSubscription&) = delete;

  /// "subscription:<name>/<partition>".
  std::string_view name() const override { return component_name_; }
  /// Migrates, creates the checkpoint row, starts the loop. Throws InvalidValue
  /// for bad options and Error when the row's partition count differs.
  void start() override;
  void stop(Deadline deadline) noexcept override;
  /// ok when running/catching up/standby, degraded when parked, failed when stopped.
  app::Health health() const override;

  SubscriptionStatus status() const;

  /// Whether the checkpoint reached `position` before `deadline` (returns at
  /// once when it already has; false when stopped).
  bool wait_for_position(Position position, std::chrono::steady_clock::time_point deadline) const;

  /// Replay: sets the checkpoint back (or forward) to `position` and clears a
  /// parked state; the loop goes on from there. The handler's effects are not
  /// undone (a rebuild clears its own tables first).
  void reset(Position position);
  /// Retries a parked subscription from its checkpoint.
  void resume();
  /// Look for new events now (the head signal does this).
  void wake();

  class Impl;

 private:
  std::string component_name_;
  std::shared_ptr<Impl> impl_;
};

/// One row of subscription_checkpoints.
struct CheckpointRow {
  std::string name;
  Partition partition;
  Position position;
  std::string state;
  std::optional<std::string> last_error;
  std::optional<Position> failed_position;
  std::optional<std::string> owner;
};

/// The rows of a subscription (all partitions), by partition.
std::vector<CheckpointRow> read_checkpoints(pg::Transaction& tx, std::string_view name);
/// The lowest checkpoint over all partitions of `name` in tx's snapshot
/// (nullopt: unknown subscription). Read-your-writes: the read model in the
/// same database reflects every position <= this.
std::optional<Position> min_checkpoint(pg::Transaction& tx, std::string_view name);
/// Sets a checkpoint from outside the owning process (admin); the owner
/// notices within its poll interval. Returns false when the row does not exist.
bool reset_checkpoint(pg::Pool& target, std::string_view name, int partition, Position position);

}  // namespace sb::events
