#pragma once
// Exchanges, queues and bindings declared from code. Declaring is idempotent:
// a connection remembers what it declared and declares it again after every
// reconnect, so a broker that lost its state is rebuilt.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sb::broker {

inline constexpr const char* kEventsExchange = "sb.events";    // topic, stored events
inline constexpr const char* kIngestExchange = "sb.ingest";    // direct, offered events
inline constexpr const char* kSignalsExchange = "sb.signals";  // topic, transient
inline constexpr const char* kRpcExchange = "sb.rpc";          // direct, request/reply
inline constexpr const char* kDeadLetterExchange = "sb.dlx";   // topic

enum class ExchangeType { direct, topic, fanout, headers };

struct ExchangeSpec {
  std::string name;
  ExchangeType type = ExchangeType::topic;
  bool durable = true;
  bool auto_delete = false;
  bool internal = false;
};

enum class Overflow { drop_head, reject_publish, reject_publish_dlx };

struct QueueSpec {
  std::string name;
  bool durable = true;
  bool exclusive = false;
  bool auto_delete = false;
  bool single_active_consumer = false;
  bool quorum = false;  // x-queue-type=quorum (must be durable, not exclusive)
  std::optional<std::int64_t> max_length;
  std::optional<Overflow> overflow;
  std::optional<std::chrono::milliseconds> expires;      // x-expires
  std::optional<std::chrono::milliseconds> message_ttl;  // x-message-ttl
  std::optional<std::string> dead_letter_exchange;
  std::optional<std::string> dead_letter_routing_key;
};

struct BindingSpec {
  std::string queue;
  std::string exchange;
  std::string routing_key;
};

struct Topology {
  std::vector<ExchangeSpec> exchanges;
  std::vector<QueueSpec> queues;
  std::vector<BindingSpec> bindings;

  /// Appends other's items that this one does not already hold (by name,
  /// or by queue+exchange+key for bindings).
  Topology& merge(const Topology& other);
  bool empty() const { return exchanges.empty() && queues.empty() && bindings.empty(); }
};

/// The five platform exchanges: sb.events (topic), sb.ingest (direct),
/// sb.signals (topic), sb.rpc (direct), sb.dlx (topic); all durable.
Topology platform_topology();

/// The queues a consumer with retries uses besides `queue`: one
/// `<queue>.retry.<ms>` per delay step (x-message-ttl, dead-lettered back to
/// `queue` through the default exchange) and `<queue>.parked`.
std::string retry_queue_name(const std::string& queue, std::chrono::milliseconds delay);
std::string parked_queue_name(const std::string& queue);

}  // namespace sb::broker
