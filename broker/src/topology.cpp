#include "switchboard/broker/topology.hpp"

#include <algorithm>

namespace sb::broker {

Topology& Topology::merge(const Topology& other) {
  for (const auto& e : other.exchanges) {
    if (std::none_of(exchanges.begin(), exchanges.end(),
                     [&](const ExchangeSpec& x) { return x.name == e.name; })) {
      exchanges.push_back(e);
    }
  }
  for (const auto& q : other.queues) {
    if (std::none_of(queues.begin(), queues.end(),
                     [&](const QueueSpec& x) { return x.name == q.name; })) {
      queues.push_back(q);
    }
  }
  for (const auto& b : other.bindings) {
    if (std::none_of(bindings.begin(), bindings.end(), [&](const BindingSpec& x) {
          return x.queue == b.queue && x.exchange == b.exchange && x.routing_key == b.routing_key;
        })) {
      bindings.push_back(b);
    }
  }
  return *this;
}

Topology platform_topology() {
  Topology t;
  t.exchanges = {
      {kEventsExchange, ExchangeType::topic, true, false, false},
      {kIngestExchange, ExchangeType::direct, true, false, false},
      {kSignalsExchange, ExchangeType::topic, true, false, false},
      {kRpcExchange, ExchangeType::direct, true, false, false},
      {kDeadLetterExchange, ExchangeType::topic, true, false, false},
  };
  return t;
}

std::string retry_queue_name(const std::string& queue, std::chrono::milliseconds delay) {
  return queue + ".retry." + std::to_string(delay.count());
}

std::string parked_queue_name(const std::string& queue) {
  return queue + ".parked";
}

}  // namespace sb::broker
