#pragma once
// Publishing with publisher confirms over a connection of its own.
//
// Contract: every message handed to publish() gets exactly one outcome:
//   confirmed - the broker took responsibility for it (persisted if the
//               message is persistent and routed to durable queues);
//   returned  - it was mandatory and no queue was bound for it;
//   failed    - with a reason: the broker nacked it, its deadline passed,
//               or the publisher was closed. A message that failed after it
//               was sent may still have been delivered (its fate is unknown).
// A message that was sent but not confirmed when the connection dropped is
// sent again after reconnect (so consumers may see it twice: at-least-once),
// unless its deadline passes first.

#include "switchboard/broker/message.hpp"
#include "switchboard/broker/options.hpp"
#include "switchboard/broker/topology.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>

namespace sb::broker {

struct PublishOptions {
  std::string exchange;
  std::string routing_key;
  /// Unroutable messages come back as PublishStatus::returned.
  bool mandatory = false;
  /// No deadline: the message waits for the broker as long as the publisher
  /// lives (it is re-sent across reconnects). With one, the outcome is
  /// failed(deadline) if it is not confirmed by then; a publish() that
  /// blocks on a full window also gives up at the deadline.
  std::optional<std::chrono::steady_clock::time_point> deadline;
};

enum class PublishStatus { confirmed, returned, failed };

struct PublishOutcome {
  PublishStatus status = PublishStatus::failed;
  std::string reason;  // empty when confirmed
  bool ok() const { return status == PublishStatus::confirmed; }
};

const char* to_string(PublishStatus status);

struct PublisherOptions {
  ConnectionOptions connection;
  /// Messages accepted but without an outcome yet. publish() blocks (up to
  /// the message's deadline) while the window is full.
  std::size_t max_in_flight = 1024;
  /// The destructor waits this long for outstanding outcomes, then reports
  /// the rest as failed("publisher closed").
  std::chrono::milliseconds close_timeout{5000};
  /// Declared on every (re)connect before anything is published.
  Topology topology;
};

class Publisher {
 public:
  using Callback = std::function<void(const PublishOutcome&)>;

  explicit Publisher(PublisherOptions options);
  ~Publisher();
  Publisher(const Publisher&) = delete;
  Publisher& operator=(const Publisher&) = delete;

  /// Declares (and remembers, for redeclaration after reconnect). Blocks until
  /// the broker accepted all of it; throws RejectedError with the broker's
  /// reason (the rejected item is forgotten) or TimeoutError.
  void declare(const Topology& topology,
               std::chrono::milliseconds timeout = std::chrono::seconds(10));

  /// The callback runs on the publisher's loop thread: keep it short and do
  /// not block in it (calling publish() from it is fine: it never blocks
  /// there and fails at once when the window is full).
  void publish(Message message, PublishOptions options, Callback callback);
  std::future<PublishOutcome> publish(Message message, PublishOptions options);

  /// Waits until every accepted message has its outcome.
  bool flush(std::chrono::milliseconds timeout);

  bool connected() const;
  std::size_t in_flight() const;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace sb::broker
