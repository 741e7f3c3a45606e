#pragma once
// The message as this library carries it: body, AMQP properties we use, and a
// small header map of our own. No rabbitmq-c type appears here.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace sb::broker {

/// A header value. Integers of every AMQP width decode to int64, timestamps
/// too; nested tables and arrays (e.g. RabbitMQ's x-death) are not carried.
using HeaderValue = std::variant<std::string, std::int64_t, double, bool>;
using Headers = std::map<std::string, HeaderValue, std::less<>>;

struct Message {
  std::string body;
  std::string content_type = "application/json";
  std::string message_id;
  /// AMQP correlation-id property. The RPC layer uses it to match replies;
  /// a business correlation id travels in the x-correlation-id header.
  std::string correlation_id;
  std::string reply_to;
  std::string type;
  /// AMQP user-id property. On a delivery: the user the publisher logged in
  /// as, validated by RabbitMQ (empty when the publisher set none). On
  /// publish: empty means the connection's own login user, which every
  /// publisher of this library sends; any other value is refused by the
  /// broker (406 PRECONDITION_FAILED) and the publish fails.
  std::string user_id;
  Headers headers;
  bool persistent = true;
  /// Per-message TTL (AMQP expiration). Expires only at the head of a queue.
  std::optional<std::chrono::milliseconds> expiration;
  /// Seconds resolution on the wire.
  std::optional<std::chrono::system_clock::time_point> timestamp;

  const std::string* header_string(std::string_view key) const;
  std::optional<std::int64_t> header_int(std::string_view key) const;
};

inline constexpr std::string_view kTraceparentHeader = "traceparent";
inline constexpr std::string_view kCorrelationIdHeader = "x-correlation-id";
inline constexpr std::string_view kCausationIdHeader = "x-causation-id";

/// W3C trace context plus the correlation and causation ids that tie a flow
/// of messages together. Carried in message headers.
struct TraceContext {
  std::string traceparent;  // "00-<32 hex trace id>-<16 hex span id>-<2 hex flags>"
  std::string correlation_id;
  std::string causation_id;
};

void set_trace(Message& message, const TraceContext& trace);
TraceContext trace_of(const Message& message);

/// A fresh traceparent: same trace id as `parent` and a new span id, or a new
/// trace when `parent` is empty or malformed.
std::string child_traceparent(std::string_view parent);

/// The trace context for a message caused by `cause`: same trace, new span,
/// the cause's correlation id (or its message id when it has none), and the
/// cause's message id as causation id.
TraceContext caused_by(const Message& cause);

/// 32 random hex digits; good for message ids and correlation ids.
std::string new_id();

}  // namespace sb::broker
