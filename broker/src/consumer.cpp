#include "switchboard/broker/consumer.hpp"

#include "consuming_session.hpp"
#include "switchboard/broker/publisher.hpp"
#include "switchboard/shared/log.hpp"

#include <algorithm>
#include <mutex>

namespace sb::broker {

class Consumer::Impl final : public detail::ConsumingSession {
 public:
  explicit Impl(ConsumerOptions options) : ConsumingSession(options.connection, options.workers) {
    preset_topology(options.topology);
    start();
  }

  ~Impl() override {
    // Running handlers finish and their settlements are sent; queued
    // deliveries stay unacked and go back to their queue when the connection
    // closes.
    close();
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
    auto sub = std::make_shared<const Subscription>(
        Subscription{queue.name, std::move(opts.retry), std::move(handler)});
    const auto left = timeout - std::chrono::duration_cast<std::chrono::milliseconds>(
                                    detail::Clock::now() - started);
    subscribe(
        queue.name, opts.prefetch,
        [this, sub](Delivery& d, detail::DeliveryRef ref) { run(*sub, d, ref); },
        std::max(left, std::chrono::milliseconds(0)));
  }

 private:
  struct Subscription {
    std::string queue;
    RetryPolicy retry;
    Handler handler;
  };

  static PublisherOptions make_publisher_options(const ConnectionOptions& c) {
    PublisherOptions p;
    p.connection = c;
    p.connection.name = c.name + ".retry";
    p.max_in_flight = 4096;
    return p;
  }

  // Worker thread.
  void run(const Subscription& sub, Delivery& d, detail::DeliveryRef ref) {
    std::string error;
    bool permanent = false;
    try {
      sub.handler(d);
      settle(ref, detail::Verdict::ack);
      return;
    } catch (const PermanentError& e) {
      error = e.what();
      permanent = true;
    } catch (const std::exception& e) {
      error = e.what();
    } catch (...) {
      error = "unknown exception";
    }
    handle_failure(sub, d, ref, error, permanent);
  }

  void handle_failure(const Subscription& sub, Delivery& d, detail::DeliveryRef ref,
                      const std::string& error, bool permanent) {
    const auto& policy = sub.retry;
    if (!policy.enabled) {
      sb::log::error("handler failed; message rejected", {{"queue", sub.queue},
                                                          {"error", error},
                                                          {"permanent", permanent},
                                                          {"message_id", d.message.message_id}});
      settle(ref, detail::Verdict::reject);
      return;
    }
    const std::uint32_t failures = d.attempt;
    Message copy = std::move(d.message);
    copy.headers[std::string(kFailuresHeader)] = static_cast<std::int64_t>(failures);
    copy.headers[std::string(kErrorHeader)] = error;
    copy.headers[std::string(kOriginQueueHeader)] = sub.queue;
    if (permanent) copy.headers[std::string(kPermanentHeader)] = true;
    // The copy goes out as this connection's user (RabbitMQ refuses any
    // other); the original publisher rides along for the redelivery.
    copy.headers[std::string(kOriginalUserIdHeader)] = std::move(copy.user_id);
    copy.user_id.clear();
    std::string history;
    if (const auto* h = copy.header_string(kFailedAtHeader)) history = *h + ",";
    history += std::to_string(detail::now_epoch_ms());
    copy.headers[std::string(kFailedAtHeader)] = history;
    const bool park = permanent || failures > policy.delays.size();
    const std::string target = park ? parked_queue_name(sub.queue)
                                    : retry_queue_name(sub.queue, policy.delays[failures - 1]);
    if (permanent) {
      sb::log::warn("handler rejected the message permanently; parking without retries",
                    {{"queue", sub.queue},
                     {"error", error},
                     {"attempt", failures},
                     {"message_id", copy.message_id},
                     {"parked_in", target}});
    } else if (park) {
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
                              [this, ref, park, target](const PublishOutcome& o) {
                                if (o.ok()) {
                                  (park ? metrics().parked : metrics().retried).inc();
                                  settle(ref, detail::Verdict::ack);
                                } else {
                                  sb::log::error("could not move a failed message; requeued",
                                                 {{"target", target}, {"reason", o.reason}});
                                  settle(ref, detail::Verdict::requeue);
                                }
                              });
  }

  std::once_flag retry_once_;
  std::unique_ptr<Publisher> retry_publisher_;  // set before any handler can need it
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
