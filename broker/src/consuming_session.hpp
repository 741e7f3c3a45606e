#pragma once
// The consuming side shared by Consumer and RpcServer: subscriptions resumed
// on every connection, handlers on a worker pool, and settlements (acks,
// rejects, RPC replies) made from any thread and sent by the loop thread in
// batches at the end of each loop callback.
//
// Acks are cumulative where they can be: the longest run of settled
// deliveries at the front of the channel's unacked list goes out as one
// basic.ack(multiple) with the last ready tag; a delivery settled behind one
// still running is acked on its own at once (holding it back would keep its
// prefetch slot busy). A multiple ack never covers a delivery still in a
// handler.

#include "session.hpp"
#include "switchboard/broker/consumer.hpp"
#include "worker_pool.hpp"

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace sb::broker::detail {

/// Names a delivery for settlement. A tag from an earlier connection is void:
/// the broker requeued that delivery when the connection went.
struct DeliveryRef {
  std::uint64_t generation = 0;
  std::uint64_t tag = 0;
};

enum class Verdict : std::uint8_t { ack, requeue, reject };

/// A message published (without confirm) on the consuming connection, just
/// before its request is acked. Used for RPC replies.
struct Reply {
  std::string routing_key;
  Message message;
};

struct Settlement {
  DeliveryRef ref;
  Verdict verdict = Verdict::ack;
  std::optional<Reply> reply;
};

class ConsumingSession;

/// Settlements from any thread to the loop. Shared with whatever may
/// outlive the session (an RpcResponder): after close() pushes are refused.
/// A reply pushed from one of the session's own workers while the loop
/// thread is idle is sent by that worker at once (no hop to the loop).
class Outbox {
 public:
  explicit Outbox(ConsumingSession& session) : session_(&session) {}
  /// False once closed (the delivery then goes back to its queue when the
  /// connection closes).
  bool push(Settlement s);
  void close();
  void take(std::vector<Settlement>& out);

 private:
  std::mutex mu_;
  ConsumingSession* session_;  // null once closed
  std::vector<Settlement> items_;
};

/// Which deliveries of the current channel are unsettled; computes the acks.
/// Loop thread only.
class AckTracker {
 public:
  void reset();
  void delivered(std::uint64_t tag);
  /// Marks `tag` ready to ack (sent by the next flush).
  void ready(std::uint64_t tag);
  /// Marks `tag` settled otherwise (a reject already sent).
  void done(std::uint64_t tag);
  /// Sends the acks: send(tag, multiple) returns false when the connection
  /// failed (then stop: reset() has run). Returns how many were acked.
  std::size_t flush(const std::function<bool(std::uint64_t, bool)>& send);
  std::size_t unsettled() const { return states_.size(); }

 private:
  enum State : std::uint8_t { kPending, kReady, kDone };
  State* find(std::uint64_t tag);

  std::uint64_t base_ = 0;  // tag of states_.front()
  std::deque<State> states_;
  std::vector<std::uint64_t> ready_;  // marked since the last flush
  // Tags arrived out of sequence (never seen with RabbitMQ): no cumulative
  // acks on this channel, each one on its own.
  bool sequential_ = true;
};

class ConsumingSession : public Session {
 public:
  /// Runs on a worker thread; settles through settle()/reply(), now or later.
  using Job = std::function<void(Delivery&, DeliveryRef)>;

  ConsumingSession(ConnectionOptions options, std::size_t workers);
  ~ConsumingSession() override;
  ConsumingSession(const ConsumingSession&) = delete;
  ConsumingSession& operator=(const ConsumingSession&) = delete;

  /// basic.qos + basic.consume on `queue`, resumed after every reconnect.
  /// Returns once the broker confirmed; throws RejectedError/TimeoutError/
  /// ClosedError.
  void subscribe(const std::string& queue, std::uint16_t prefetch, Job job,
                 std::chrono::milliseconds timeout);

  /// Any thread.
  void settle(DeliveryRef ref, Verdict verdict) { outbox_->push(Settlement{ref, verdict, {}}); }
  /// Any thread: publishes `reply` (even if the request's connection is
  /// gone), then acks the request.
  void reply(DeliveryRef ref, Reply reply) {
    outbox_->push(Settlement{ref, Verdict::ack, std::move(reply)});
  }
  const std::shared_ptr<Outbox>& outbox() const { return outbox_; }

  /// On one of this session's workers: sends `s` (a reply) right here when
  /// the loop thread is idle. False: leave it to the loop.
  bool try_settle_here(Settlement& s);

 protected:
  /// Derived destructors call this first: running jobs finish, queued ones
  /// are dropped (their deliveries go back to the queue when the connection
  /// closes), settlements made so far are sent, the session stops.
  void close();

 private:
  struct Subscription {
    std::string tag;
    std::string queue;
    std::uint16_t prefetch = 0;
    Job job;
    std::promise<void> ready;
    bool ready_set = false;
  };
  struct PoolJob {
    std::shared_ptr<Subscription> sub;
    Delivery delivery;
    DeliveryRef ref;
  };

  void send_subscription(const std::shared_ptr<Subscription>& sub);
  void on_connected() override;
  void on_disconnected(const std::string& reason) override;
  void on_incoming(Incoming&& in) override;
  void on_consumer_cancelled(const std::string& tag) override;
  void on_flush() override;
  void on_closing() override;
  void settle_now(std::uint64_t tag, Verdict verdict);
  void apply(const Settlement& s);
  void flush_acks();
  bool publish_reply(const Reply& reply);
  bool send_ack(std::uint64_t tag, bool multiple);

  std::shared_ptr<Outbox> outbox_;
  WorkerPool<PoolJob> pool_;
  bool closed_ = false;
  // Loop thread.
  std::map<std::string, std::shared_ptr<Subscription>> subs_;
  std::uint64_t next_tag_ = 0;
  AckTracker tracker_;
  std::vector<PoolJob> to_run_;          // delivered this turn, not yet handed over
  std::vector<Settlement> settlements_;  // scratch, reused
  std::deque<Settlement> held_;          // replies waiting for a connection / unblock
  PropertiesBuilder builder_;
};

}  // namespace sb::broker::detail
