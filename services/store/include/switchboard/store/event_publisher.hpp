#pragma once
// Publishes stored events to sb.events, in strict position order, with
// publisher confirms — at least once, never lost.
//
// It reads committed events back from PostgreSQL by position (so a restart,
// a failover and a live stream are one loop) and publishes each with
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

#include "switchboard/broker/options.hpp"
#include "switchboard/shared/lifecycle.hpp"
#include "switchboard/shared/pg.hpp"

namespace sb::store {

struct EventPublisherOptions {
  pg::ConnectOptions database;
  broker::ConnectionOptions broker;
  std::size_t window = 2048;  // unconfirmed messages at most
  std::size_t page_size = 1000;
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

  /// From the writer's CommitListener (cheap; any thread).
  void on_active(std::int64_t head);
  void on_standby();
  void on_commit(std::int64_t head);

  /// The contiguous prefix of confirmed positions.
  std::int64_t published() const noexcept;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace sb::store
