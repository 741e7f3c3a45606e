#pragma once
// Push subscriptions (DESIGN.md "Subscriptions and projections"):
// at-least-once, unordered, for reactions and side effects.
//
// A group has a durable queue `sub.<group>` bound to sb.events with topic
// patterns; every instance of the group consumes from it (competing
// consumers). A handler that throws is retried through the broker's TTL
// retry queues, then parked in `sub.<group>.parked` (sb::broker::Consumer).
//
// Bounded, and never silently lossy:
//   * `sub.<group>` has x-max-length with x-overflow=drop-head and
//     dead-letters to sb.dlx with routing key `sub.<group>.overflow`, and
//     x-expires so a group gone for long disappears instead of filling the
//     broker;
//   * `sub.<group>.overflow` (bounded and expiring too) receives what was
//     dropped; the library records each dropped event (push_overflow: group,
//     position, event id) and catches up by re-reading those events from the
//     store (EventReader) and handling them like any delivery. Without a
//     database pool the dropped copy itself is handled instead.
//   Why drop-head and not reject-publish: sb.events is published by the
//   store alone, and a full queue must never push back on it (reject-publish
//   would nack the store's publishes and stall every other group). Dropping
//   the oldest and recording it keeps the broker bounded and the group whole.
//
// Deduplication: with a transactional handler (tx_handler), the event id is
// inserted into processed_events(group_name, event_id) in the handler's
// transaction; a duplicate delivery is acked without running the handler.
// A delivery with header `x-sb-replay: true` bypasses deduplication (that is
// what a targeted replay is for). A plain handler is not deduplicated: it
// must be idempotent.
//
// Trusted publishers (protocol §10.1, §11.6): every broker user may write to
// `amq.default`, so anyone can publish into `sub.<group>` (or its overflow
// queue) by name. With `trusted_publishers` set, a delivery is handled only
// when its broker-validated publisher (Message::user_id; for a message this
// consumer moved to its own retry queue, the original publisher the broker
// library restores from x-sb-user-id) is in the list: the store's user (it
// alone writes sb.events), the edge's (replays and requeued parked messages)
// and the consumer's own. Anything else is parked at once (PermanentError,
// x-sb-error says why), counted (PushStatus::untrusted and
// sb_push_untrusted_total{group}), and never reaches the handler.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "switchboard/broker/consumer.hpp"
#include "switchboard/broker/options.hpp"
#include "switchboard/broker/publisher.hpp"
#include "switchboard/broker/topology.hpp"
#include "switchboard/events/catalog.hpp"
#include "switchboard/events/envelope.hpp"
#include "switchboard/events/reader.hpp"
#include "switchboard/shared/lifecycle.hpp"
#include "switchboard/shared/pg.hpp"

namespace sb::events {

inline constexpr std::string_view kReplayHeader = "x-sb-replay";
inline constexpr std::string_view kPositionHeader = "position";
inline constexpr std::string_view kTenantHeader = "tenant";

/// Why a delivery whose validated publisher is `user_id` must not be handled,
/// or nullopt when it may: `trusted` is empty (the check is off) or holds
/// `user_id`. A missing user_id (empty) is never trusted by a non-empty list.
std::optional<std::string> untrusted_publisher(std::string_view user_id,
                                               const std::vector<std::string>& trusted);

/// "sub.<group>" and "sub.<group>.overflow".
std::string push_queue_name(std::string_view group);
std::string push_overflow_queue_name(std::string_view group);

/// Runs in the transaction that records the event id (deduplicated).
using PushTxHandler = std::function<void(pg::Transaction&, const Event&)>;
/// Runs without a transaction (not deduplicated: be idempotent).
using PushHandler = std::function<void(const Event&)>;

struct PushSubscriptionOptions {
  std::string group;                // see is_valid_subscription_name
  std::vector<std::string> topics;  // type patterns (AMQP topic syntax)
  broker::ConnectionOptions connection;
  std::size_t workers = 4;
  std::uint16_t prefetch = 32;
  broker::RetryPolicy retry;
  std::int64_t max_length = 100000;
  std::int64_t overflow_max_length = 1000000;
  /// x-expires of the group's queues: deleted after this long unused.
  std::chrono::milliseconds expires = std::chrono::hours(24 * 7);
  /// The store's database, which also holds processed_events and
  /// push_overflow. Required for tx_handler; optional otherwise.
  std::shared_ptr<pg::Pool> pool;
  const Catalog* catalog = nullptr;
  /// How often recorded overflow is looked for (also woken when recorded).
  std::chrono::milliseconds overflow_poll{1000};
  bool migrate = true;
  /// Broker users whose deliveries are handled (see the header comment).
  /// Empty: the check is off, any publisher is handled (the SDK always sets
  /// it: the store's and the edge's users plus its own).
  std::vector<std::string> trusted_publishers;
  /// Exactly one of these.
  PushTxHandler tx_handler;
  PushHandler handler;
};

struct PushStatus {
  std::string group;
  std::uint64_t handled = 0;
  std::uint64_t duplicates = 0;  // deliveries skipped by deduplication
  std::uint64_t replayed = 0;    // deliveries with the replay header
  std::uint64_t overflowed = 0;  // dropped from the full queue, recorded
  std::uint64_t caught_up = 0;   // overflowed events handled from the store
  std::uint64_t failures = 0;
  std::uint64_t untrusted = 0;  // parked: publisher not in trusted_publishers
  std::int64_t overflow_pending = 0;
  Position last_position;  // the highest position handled
  Position head;           // the store's head, as last read (needs a pool)
  std::int64_t lag_events = 0;
  double rate = 0;
  std::optional<std::string> last_error;
  bool connected = false;
};

class PushSubscription : public app::Component {
 public:
  explicit PushSubscription(PushSubscriptionOptions options);
  ~PushSubscription() override;
  PushSubscription(const PushSubscription&) = delete;
  PushSubscription& operator=(const PushSubscription&) = delete;

  /// The queues and bindings of a group (what start() declares).
  static broker::Topology topology(const PushSubscriptionOptions& options);

  std::string_view name() const override { return component_name_; }
  void start() override;
  void stop(Deadline deadline) noexcept override;
  app::Health health() const override;
  PushStatus status() const;

  class Impl;

 private:
  std::string component_name_;
  std::shared_ptr<Impl> impl_;
};

/// A targeted replay: re-deliver stored events in (after, up_to] matching
/// `filter` to ONE group's queue only (default exchange, routing key
/// sub.<group>, header x-sb-replay: true), in position order.
struct ReplayRequest {
  std::string group;
  Position after;
  std::optional<Position> up_to;  // nullopt: the head when the replay starts
  Filter filter;
  std::size_t page_size = 500;
};

struct ReplayResult {
  std::size_t published = 0;
  Position last_position;
};

/// Waits for every publish to be confirmed before `timeout`. Throws
/// broker::BrokerError when a message was not confirmed (e.g. the group's
/// queue does not exist: it is published mandatory).
ReplayResult replay_to_group(const EventReader& reader, broker::Publisher& publisher,
                             const ReplayRequest& request,
                             std::chrono::milliseconds timeout = std::chrono::seconds(60));

/// The message the store publishes for an event (body = envelope JSON,
/// message_id = event id, headers position and tenant); replay adds the
/// replay header.
broker::Message event_message(const Event& event, bool replay = false);

}  // namespace sb::events
