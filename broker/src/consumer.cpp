#include "switchboard/broker/consumer.hpp"

#include "session.hpp"
#include "switchboard/broker/publisher.hpp"
#include "switchboard/shared/log.hpp"
#include "worker_pool.hpp"

#include <map>

namespace sb::broker {

namespace {
// Deliveries are already bounded by the sum of prefetch counts; the pool's
// queue limit is a backstop (an overflowing delivery is requeued).
constexpr std::size_t kPoolCapacity = 65536;
}  // namespace

class Consumer::Impl final : public detail::Session {
 public:
  explicit Impl(ConsumerOptions options)
      : Session(options.connection, false), pool_(options.workers, kPoolCapacity) {
    preset_topology(options.topology);
    start();
  }

  ~Impl() override {
    // Running handlers finish; queued deliveries stay unacked and go back to
    // their queue when the connection closes.
    pool_.stop();
    stop();
    retry_publisher_.reset();
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  void consume(const QueueSpec& queue, ConsumeOptions opts, Handler handler,
               std::chrono::milliseconds timeout) {
    if (!handler) throw BrokerError("broker: consume() needs a handler");
    if (opts.prefetch == 0) throw BrokerError("broker: prefetch must be > 0");
    const auto started = detail::Clock::now();
    Topology t;
    t.queues.push_back(queue);
    if (opts.retry.enabled) {
      for (auto delay : opts.retry.delays) {
        QueueSpec r;
        r.name = retry_queue_name(queue.name, delay);
        r.durable = queue.durable;
        r.message_ttl = delay;
        r.dead_letter_exchange = "";
        r.dead_letter_routing_key = queue.name;
        t.queues.push_back(r);
      }
      QueueSpec parked;
      parked.name = parked_queue_name(queue.name);
      t.queues.push_back(parked);
    }
    declare(t, timeout);
    if (opts.retry.enabled) {
      // Its own connection, opened only when some subscription can fail over
      // to retry queues.
      std::call_once(retry_once_, [this] {
        retry_publisher_ = std::make_unique<Publisher>(make_publisher_options(options()));
      });
    }

    auto sub = std::make_shared<Subscription>();
    sub->queue = queue.name;
    sub->options = std::move(opts);
    sub->handler = std::move(handler);
    auto ready = sub->ready.get_future();
    if (!post([this, sub] {
          sub->tag = "sb." + options().name + "." + std::to_string(++next_tag_);
          subs_[sub->tag] = sub;
          if (conn() != nullptr) subscribe(sub);
        })) {
      throw ClosedError("broker: consumer closed");
    }
    const auto left = timeout - std::chrono::duration_cast<std::chrono::milliseconds>(
                                    detail::Clock::now() - started);
    if (ready.wait_for(left) != std::future_status::ready) {
      throw TimeoutError("broker: consume on '" + queue.name + "' not confirmed within " +
                         std::to_string(timeout.count()) +
                         " ms (it stays registered and starts when the broker answers)");
    }
    ready.get();
  }

 private:
  struct Subscription {
    std::string tag;
    std::string queue;
    ConsumeOptions options;
    Handler handler;
    std::promise<void> ready;
    bool ready_set = false;
  };

  enum class Verdict { ack, requeue, reject };
  struct AckCommand {
    std::uint64_t generation;
    std::uint64_t tag;
    Verdict verdict;
  };

  static PublisherOptions make_publisher_options(const ConnectionOptions& c) {
    PublisherOptions p;
    p.connection = c;
    p.connection.name = c.name + ".retry";
    p.max_in_flight = 4096;
    return p;
  }

  void subscribe(const std::shared_ptr<Subscription>& sub) {
    amqp_basic_qos_t qos{};
    qos.prefetch_count = sub->options.prefetch;
    qos.global = 0;
    send_op(AMQP_BASIC_QOS_METHOD, &qos, AMQP_BASIC_QOS_OK_METHOD, [](const detail::OpResult&) {});
    amqp_basic_consume_t m{};
    m.queue = detail::bytes_of(sub->queue);
    m.consumer_tag = detail::bytes_of(sub->tag);
    m.no_ack = 0;
    m.arguments = amqp_empty_table;
    send_op(AMQP_BASIC_CONSUME_METHOD, &m, AMQP_BASIC_CONSUME_OK_METHOD,
            [this, sub](const detail::OpResult& r) {
              if (r.ok) {
                if (!sub->ready_set) {
                  sub->ready_set = true;
                  sub->ready.set_value();
                }
                return;
              }
              if (r.connection_lost) return;  // subscribed again after reconnect
              sb::log::error(
                  "broker refused a consumer",
                  {{"connection", options().name}, {"queue", sub->queue}, {"error", r.error}});
              subs_.erase(sub->tag);
              if (!sub->ready_set) {
                sub->ready_set = true;
                sub->ready.set_exception(
                    std::make_exception_ptr(RejectedError("broker: consume: " + r.error)));
              }
            });
  }

  void on_connected() override {
    for (auto& [tag, sub] : subs_) {
      if (conn() == nullptr) return;
      subscribe(sub);
    }
  }

  void on_incoming(detail::Incoming&& in) override {
    if (in.kind != detail::Incoming::Kind::deliver) return;
    auto it = subs_.find(in.consumer_tag);
    if (it == subs_.end()) {
      sb::log::warn("delivery for an unknown consumer; requeued",
                    {{"connection", options().name}, {"consumer_tag", in.consumer_tag}});
      send_verdict(in.delivery_tag, Verdict::requeue);
      return;
    }
    metrics().consumed.inc();
    auto sub = it->second;
    Delivery d;
    d.queue = sub->queue;
    d.exchange = std::move(in.exchange);
    d.routing_key = std::move(in.routing_key);
    d.redelivered = in.redelivered;
    d.message = std::move(in.message);
    const auto failures = d.message.header_int(kFailuresHeader).value_or(0);
    d.attempt = static_cast<std::uint32_t>(failures < 0 ? 1 : failures + 1);
    const std::uint64_t gen = generation();
    const std::uint64_t tag = in.delivery_tag;
    if (!pool_.submit([this, sub, d = std::move(d), gen, tag]() mutable {
          run(*sub, std::move(d), gen, tag);
        })) {
      sb::log::error("handler queue full; delivery requeued", {{"connection", options().name}});
      send_verdict(tag, Verdict::requeue);
    }
  }

  // Worker thread.
  void run(const Subscription& sub, Delivery d, std::uint64_t gen, std::uint64_t tag) {
    std::string error;
    try {
      sub.handler(d);
      push(AckCommand{gen, tag, Verdict::ack});
      return;
    } catch (const std::exception& e) {
      error = e.what();
    } catch (...) {
      error = "unknown exception";
    }
    handle_failure(sub, std::move(d), gen, tag, error);
  }

  void handle_failure(const Subscription& sub, Delivery d, std::uint64_t gen, std::uint64_t tag,
                      const std::string& error) {
    const auto& policy = sub.options.retry;
    if (!policy.enabled) {
      sb::log::error(
          "handler failed; message rejected",
          {{"queue", sub.queue}, {"error", error}, {"message_id", d.message.message_id}});
      push(AckCommand{gen, tag, Verdict::reject});
      return;
    }
    const std::uint32_t failures = d.attempt;
    Message copy = std::move(d.message);
    copy.headers[std::string(kFailuresHeader)] = static_cast<std::int64_t>(failures);
    copy.headers[std::string(kErrorHeader)] = error;
    copy.headers[std::string(kOriginQueueHeader)] = sub.queue;
    std::string history;
    if (const auto* h = copy.header_string(kFailedAtHeader)) history = *h + ",";
    history += std::to_string(detail::now_epoch_ms());
    copy.headers[std::string(kFailedAtHeader)] = history;
    const bool park = failures > policy.delays.size();
    const std::string target = park ? parked_queue_name(sub.queue)
                                    : retry_queue_name(sub.queue, policy.delays[failures - 1]);
    if (park) {
      sb::log::warn(
          "handler failed for the last time; parking",
          {{"queue", sub.queue}, {"error", error}, {"failures", failures}, {"parked_in", target}});
    }
    PublishOptions po;
    po.routing_key = target;
    po.mandatory = true;
    // Publish with confirm, then ack: a crash in between duplicates the
    // message, never loses it.
    retry_publisher_->publish(std::move(copy), po,
                              [this, gen, tag, park, target](const PublishOutcome& o) {
                                if (o.ok()) {
                                  (park ? metrics().parked : metrics().retried).inc();
                                  push(AckCommand{gen, tag, Verdict::ack});
                                } else {
                                  sb::log::error("could not move a failed message; requeued",
                                                 {{"target", target}, {"reason", o.reason}});
                                  push(AckCommand{gen, tag, Verdict::requeue});
                                }
                              });
  }

  void push(const AckCommand& c) {
    {
      std::lock_guard lk(ack_mu_);
      acks_.push_back(c);
    }
    wake();
  }

  void send_verdict(std::uint64_t tag, Verdict v) {
    if (conn() == nullptr) return;
    int rc;
    {
      Blocking b(*this);
      if (v == Verdict::ack) {
        rc = amqp_basic_ack(conn(), 1, tag, 0);
      } else {
        rc = amqp_basic_reject(conn(), 1, tag, v == Verdict::requeue ? 1 : 0);
      }
    }
    if (rc != AMQP_STATUS_OK) {
      fail_connection("ack: " + detail::describe_status(rc));
      return;
    }
    if (v == Verdict::ack) metrics().acked.inc();
  }

  void on_wake() override {
    std::vector<AckCommand> batch;
    {
      std::lock_guard lk(ack_mu_);
      batch.swap(acks_);
    }
    for (const auto& c : batch) {
      // A tag from an earlier connection is void: the broker has already
      // requeued that delivery, and it will come again.
      if (c.generation != generation() || conn() == nullptr) continue;
      send_verdict(c.tag, c.verdict);
    }
  }

  void on_consumer_cancelled(const std::string& tag) override {
    auto it = subs_.find(tag);
    const std::string queue = it == subs_.end() ? std::string("?") : it->second->queue;
    // The queue was deleted or failed over. Reconnecting re-declares it and
    // subscribes again.
    fail_connection("broker cancelled consumer on queue '" + queue + "'");
  }

  detail::WorkerPool pool_;
  std::once_flag retry_once_;
  std::unique_ptr<Publisher> retry_publisher_;  // set before any handler can need it
  std::mutex ack_mu_;
  std::vector<AckCommand> acks_;
  // Loop thread.
  std::map<std::string, std::shared_ptr<Subscription>> subs_;
  std::uint64_t next_tag_ = 0;
};

Consumer::Consumer(ConsumerOptions options) : impl_(std::make_shared<Impl>(std::move(options))) {}
Consumer::~Consumer() = default;

void Consumer::declare(const Topology& topology, std::chrono::milliseconds timeout) {
  impl_->declare(topology, timeout);
}

void Consumer::consume(const QueueSpec& queue, ConsumeOptions options, Handler handler,
                       std::chrono::milliseconds timeout) {
  impl_->consume(queue, std::move(options), std::move(handler), timeout);
}

bool Consumer::connected() const {
  return impl_->connected();
}

}  // namespace sb::broker
