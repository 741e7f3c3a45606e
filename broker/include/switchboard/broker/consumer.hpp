#pragma once
// Consuming with manual acknowledgement over a connection of its own.
//
// Delivery is at-least-once: handlers must be idempotent. A handler that
// returns normally acks the message. One that throws is retried: the message
// is re-published (with confirm) to `<queue>.retry.<delay>` for each delay
// of the RetryPolicy in turn, whence it dead-letters back to `<queue>` when
// its delay is up; after the last delay it is parked in `<queue>.parked`.
// A handler that throws PermanentError (input that can never succeed:
// malformed JSON, a schema violation) skips the retries: the message is
// parked at once. The original is acked only after the broker confirmed the
// copy, so a crash in between duplicates, never loses.
//
// Acks are sent by the connection's loop thread in batches (one cumulative
// basic.ack for the settled deliveries at the front of the channel), so a
// handler returning does not cost a round trip of its own.

#include "switchboard/broker/message.hpp"
#include "switchboard/broker/options.hpp"
#include "switchboard/broker/topology.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sb::broker {

/// Header names the retry machinery writes (visible to handlers and admins).
inline constexpr std::string_view kFailuresHeader = "x-sb-failures";   // int: failed attempts
inline constexpr std::string_view kErrorHeader = "x-sb-error";         // last error text
inline constexpr std::string_view kFailedAtHeader = "x-sb-failed-at";  // "ms,ms,..." epoch ms
inline constexpr std::string_view kOriginQueueHeader = "x-sb-origin-queue";
inline constexpr std::string_view kPermanentHeader = "x-sb-permanent";  // bool: PermanentError
/// How kErrorHeader starts when a consumer refused a message for its
/// publisher (events/push: not a trusted user_id). ParkedQueue::requeue never
/// puts such a message back: republished by the operator's connection it
/// would look trusted. Drop it instead.
inline constexpr std::string_view kUntrustedPublisherError = "untrusted publisher";
/// The original publisher's user_id, kept when a consumer moves a message to
/// a retry or parked queue (that publish carries the consumer's own user).
/// On delivery it is honoured only when the message's user_id is the
/// consuming connection's own user (only that user's retries could have
/// written it), and removed in any case: Delivery::message.user_id is then
/// the original publisher again.
inline constexpr std::string_view kOriginalUserIdHeader = "x-sb-user-id";

/// Thrown by a handler for a message that can never be processed (malformed,
/// schema violation): it is parked at once, without the retry delays, with
/// what() in kErrorHeader and kPermanentHeader = true. Without a RetryPolicy
/// (enabled = false) it is rejected like any failure. An RpcServer handler
/// throwing it sends an error reply like any other exception.
class PermanentError : public BrokerError {
 public:
  using BrokerError::BrokerError;
};

struct Delivery {
  Message message;
  std::string queue;
  std::string exchange;
  std::string routing_key;
  bool redelivered = false;
  /// 1 on the first attempt, 2 after one failure, ...
  std::uint32_t attempt = 1;
};

using Handler = std::function<void(const Delivery&)>;

struct RetryPolicy {
  /// One retry per delay; parked after the last one fails. Empty: park at
  /// the first failure.
  std::vector<std::chrono::milliseconds> delays{std::chrono::seconds(1), std::chrono::seconds(10),
                                                std::chrono::seconds(60)};
  /// false: no retry or parked queues are declared, `delays` is ignored and
  /// a failed message is rejected without requeue (dead-lettered when its
  /// queue has a dead-letter exchange), with an error logged.
  bool enabled = true;
};

struct ConsumeOptions {
  std::uint16_t prefetch = 32;
  RetryPolicy retry;
};

struct ConsumerOptions {
  ConnectionOptions connection;
  /// Threads that run handlers. Never the loop thread, so a handler may
  /// itself publish or make an RPC.
  std::size_t workers = 4;
  /// Declared on every (re)connect before consuming.
  Topology topology;
};

class Consumer {
 public:
  explicit Consumer(ConsumerOptions options);
  ~Consumer();  // stops consuming; unacked messages go back to their queues
  Consumer(const Consumer&) = delete;
  Consumer& operator=(const Consumer&) = delete;

  void declare(const Topology& topology,
               std::chrono::milliseconds timeout = std::chrono::seconds(10));

  /// Declares `queue` (with its retry and parked queues) and consumes from
  /// it; returns once the broker confirmed the subscription. Resumed
  /// automatically after every reconnect. Throws RejectedError/TimeoutError.
  void consume(const QueueSpec& queue, ConsumeOptions options, Handler handler,
               std::chrono::milliseconds timeout = std::chrono::seconds(10));

  bool connected() const;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

/// A parked message as listed by ParkedQueue.
struct ParkedMessage {
  Message message;
  std::uint32_t failures = 0;
  std::string error;
};

/// Administration of `<queue>.parked`: list, put back, drop. Synchronous; a
/// short-lived connection per call, every step with the connect timeout.
class ParkedQueue {
 public:
  ParkedQueue(ConnectionOptions options, std::string queue);

  /// Up to `max` parked messages, oldest first, without removing them.
  std::vector<ParkedMessage> list(std::size_t max = 100) const;
  /// Re-publishes (with confirm) to the original queue with a fresh attempt
  /// count, then removes from the parked queue. Only `message_id` when given.
  std::size_t requeue(const std::optional<std::string>& message_id = std::nullopt) const;
  /// Whether a parked message was refused for its publisher (kErrorHeader
  /// starts with kUntrustedPublisherError); requeue() leaves those parked.
  static bool untrusted(const Message& m);
  /// Removes parked messages. Only `message_id` when given.
  std::size_t drop(const std::optional<std::string>& message_id = std::nullopt) const;

 private:
  ConnectionOptions options_;
  std::string queue_;
};

}  // namespace sb::broker
