#pragma once
// Size limits shared by everything that accepts events or commands (edge,
// store, SDK), so "too large" means the same thing everywhere and maps to 413.

#include <cstddef>
#include <optional>
#include <span>
#include <string>

namespace sb::events {

inline constexpr std::size_t kMaxEventDataBytes = 1024 * 1024;
inline constexpr std::size_t kMaxEventMetaBytes = 64 * 1024;
inline constexpr std::size_t kMaxEventsPerAppend = 1000;
// A whole append (data + meta of every event) travels as one AMQP message and
// one transaction; keep it well below RabbitMQ's frame/message limits.
inline constexpr std::size_t kMaxAppendBytes = 16 * 1024 * 1024;
inline constexpr std::size_t kMaxCommandBodyBytes = 1024 * 1024;
inline constexpr std::size_t kMaxSchemaBytes = 256 * 1024;
inline constexpr std::size_t kMaxStreamIdBytes = 200;
// The event type is the AMQP routing key, a short string of at most 255 bytes.
inline constexpr std::size_t kMaxEventTypeBytes = 255;
inline constexpr std::size_t kMaxCommandNameBytes = 255;
inline constexpr std::size_t kMaxTenantIdBytes = 63;
// Command, correlation, causation and actor ids; 255 matches common
// Idempotency-Key limits.
inline constexpr std::size_t kMaxIdBytes = 255;

struct NewEvent;

/// Which limit was exceeded, by how much; `message()` is ready for an API error.
struct LimitViolation {
  std::string what;  // e.g. "event data", "events per append"
  std::size_t actual = 0;
  std::size_t limit = 0;
  std::string message() const;
};

std::optional<LimitViolation> check_limits(const NewEvent& event);
/// Per-event limits, the event count and the total size of one append.
std::optional<LimitViolation> check_append_limits(std::span<const NewEvent> events);
std::optional<LimitViolation> check_command_body_limit(std::size_t body_bytes);

}  // namespace sb::events
