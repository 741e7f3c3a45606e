#pragma once
// Publishes stored events to sb.events, in strict position order, with
// publisher confirms — at least once, never lost.
//
// Live, the writer hands each committed batch over in memory (bounded by
// handoff_capacity events); whatever is not there — after a restart or a
// failover, behind an overflow, or for a re-send after a rewind — is read
// back from PostgreSQL by position, a page at a time (optionally with the
// next page read on a second connection meanwhile). Either way one loop
// publishes in position order. (Handed-over events carry `data`/`meta` as
// appended, read-back ones as PostgreSQL's jsonb text: the same JSON, maybe
// spaced or ordered differently.) Each event is published with
// routing key = event type, message_id = event id, headers position, tenant,
// traceparent, x-correlation-id. The published checkpoint is the contiguous
// prefix of confirmed positions; it is saved in store_positions('published')
// every `checkpoint_interval` and on stop. After a nack, a lost channel or a
// restart, publishing resumes from the first unconfirmed position, so
// consumers may see an event twice (they deduplicate by id or position),
// never miss one.
//
// It also sends the transient head signal `store.head.advanced`
// {"position": N} on sb.signals after commits, which wakes checkpointed
// subscriptions.
//
// Runs only while the writer is active (on_active/on_standby).

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "switchboard/broker/options.hpp"
#include "switchboard/events/envelope.hpp"
#include "switchboard/shared/lifecycle.hpp"
#include "switchboard/shared/pg.hpp"

namespace sb::store {

struct EventPublisherOptions {
  pg::ConnectOptions database;
  broker::ConnectionOptions broker;
  std::size_t window = 2048;  // unconfirmed messages at most
  std::size_t page_size = 1000;
  /// Committed events held in memory for publishing, at most.
  std::size_t handoff_capacity = 16384;
  /// Read the next page of stored events (on a second connection) while the
  /// current one is sent. Off: measured no faster here (bench_store section
  /// 2), as the broker is the bottleneck while a full window is in flight.
  bool prefetch = false;
  std::chrono::milliseconds checkpoint_interval{250};
};

class EventPublisher : public app::Component {
 public:
  explicit EventPublisher(EventPublisherOptions options);
  ~EventPublisher() override;

  std::string_view name() const override { return "store-publisher"; }
  void start() override;
  void stop(Deadline deadline) noexcept override;
  app::Health health() const override;

  using Batch = std::shared_ptr<const std::vector<events::Event>>;

  /// From the writer's CommitListener (cheap; any thread).
  void on_active(std::int64_t head);
  void on_standby();
  /// A commit up to `head`; its events are read back from the store.
  void on_commit(std::int64_t head);
  /// A commit with its events (in position order, right after the previous
  /// commit's): kept for publishing when they fit in the hand-off.
  void on_commit(Batch committed, std::int64_t head);

  struct Stats {
    std::uint64_t sent_from_memory = 0;   // as handed over by the writer
    std::uint64_t sent_from_store = 0;    // read back (restart, overflow, rewind)
    std::uint64_t handoff_overflows = 0;  // batches not kept: the hand-off was full
  };
  Stats stats() const;

  /// The contiguous prefix of confirmed positions.
  std::int64_t published() const noexcept;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace sb::store
