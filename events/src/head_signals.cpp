#include "switchboard/events/head_signals.hpp"

#include <rapidjson/document.h>

#include "switchboard/broker/consumer.hpp"
#include "switchboard/broker/topology.hpp"
#include "switchboard/shared/log.hpp"

namespace sb::events {

broker::Message head_signal_message(Position head) {
  broker::Message m;
  m.body = "{\"position\":" + std::to_string(head.value()) + "}";
  m.message_id = broker::new_id();
  m.persistent = false;
  m.type = std::string(kHeadSignalKey);
  return m;
}

void publish_head_signal(broker::Publisher& publisher, Position head,
                         std::chrono::milliseconds deadline) {
  broker::PublishOptions po;
  po.deadline = std::chrono::steady_clock::now() + deadline;
  po.exchange = broker::kSignalsExchange;
  po.routing_key = std::string(kHeadSignalKey);
  publisher.publish(head_signal_message(head), po, [](const broker::PublishOutcome&) {});
}

std::optional<Position> parse_head_signal(std::string_view body) {
  rapidjson::Document d;
  d.Parse(body.data(), body.size());
  if (d.HasParseError() || !d.IsObject()) return std::nullopt;
  auto it = d.FindMember("position");
  if (it == d.MemberEnd() || !it->value.IsInt64() || it->value.GetInt64() < 0) return std::nullopt;
  return Position(it->value.GetInt64());
}

HeadSignals::HeadSignals(broker::ConnectionOptions connection, std::string instance)
    : connection_(std::move(connection)),
      queue_("sb.head." + instance + "." + broker::new_id().substr(0, 12)) {}

HeadSignals::~HeadSignals() {
  stop(Deadline::clock::now());
}

void HeadSignals::start() {
  broker::ConsumerOptions co;
  co.connection = connection_;
  co.connection.name = connection_.name + ".head";
  co.workers = 1;
  broker::QueueSpec q;
  q.name = queue_;
  q.durable = false;
  q.exclusive = true;
  q.auto_delete = true;
  // Signals are "look now": the newest ones are all that matter.
  q.max_length = 1000;
  q.overflow = broker::Overflow::drop_head;
  co.topology = broker::platform_topology();
  co.topology.queues.push_back(q);
  co.topology.bindings.push_back({queue_, broker::kSignalsExchange, std::string(kHeadSignalKey)});
  consumer_ = std::make_unique<broker::Consumer>(co);
  broker::ConsumeOptions opts;
  opts.prefetch = 64;
  opts.retry.enabled = false;
  try {
    consumer_->consume(
        q, opts, [this](const broker::Delivery& d) { on_signal(d.message.body); },
        connection_.connect_timeout * 2);
  } catch (const broker::TimeoutError& e) {
    // The consumer stays registered and starts when the broker answers;
    // until then subscriptions poll.
    sb::log::warn("head signals not consuming yet; polling meanwhile", {{"error", e.what()}});
  }
}

void HeadSignals::stop(Deadline) noexcept {
  consumer_.reset();
}

app::Health HeadSignals::health() const {
  if (!consumer_) return {app::HealthState::starting, "not started"};
  if (!consumer_->connected()) {
    return {app::HealthState::degraded, "broker disconnected; subscriptions fall back to polling"};
  }
  return {};
}

HeadSignals::ListenerId HeadSignals::subscribe(Listener listener) {
  std::lock_guard lk(mu_);
  const auto id = ++next_id_;
  listeners_.emplace(id, std::move(listener));
  return id;
}

void HeadSignals::unsubscribe(ListenerId id) {
  std::lock_guard lk(mu_);
  listeners_.erase(id);
}

Position HeadSignals::last_signalled() const {
  std::lock_guard lk(mu_);
  return Position(last_);
}

std::uint64_t HeadSignals::received() const {
  std::lock_guard lk(mu_);
  return received_;
}

void HeadSignals::on_signal(std::string_view body) {
  auto pos = parse_head_signal(body);
  if (!pos) {
    sb::log::warn("ignoring a malformed head signal", {{"queue", queue_}});
    return;
  }
  // Listeners run under the lock so unsubscribe() can promise they are done.
  std::lock_guard lk(mu_);
  ++received_;
  if (pos->value() > last_) last_ = pos->value();
  for (auto& [id, l] : listeners_) {
    try {
      l(*pos);
    } catch (const std::exception& e) {
      sb::log::error("head signal listener threw", {{"error", e.what()}});
    }
  }
}

}  // namespace sb::events
