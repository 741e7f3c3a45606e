#pragma once
// The event envelope (DESIGN.md, "The event envelope"): what a writer
// proposes (NewEvent) and what the store recorded (Event), with their JSON
// forms. Field names and order in JSON:
//   id, type, schema, stream, version, position, tenant, occurred_at,
//   recorded_at, correlation_id, causation_id, actor, data, meta
// causation_id and actor are omitted when absent. Unknown fields are ignored
// when reading so older readers survive newer writers.

#include <rapidjson/document.h>

#include <optional>
#include <string>
#include <string_view>

#include "switchboard/events/payload.hpp"
#include "switchboard/events/time.hpp"
#include "switchboard/events/types.hpp"

namespace sb::events {

/// An event as a writer proposes it for appending; the store adds the stream
/// position, version, tenant and recorded_at.
struct NewEvent {
  EventId id;
  EventType type;
  int schema_version = 1;
  Payload data{};  // a JSON object
  Payload meta{};  // a JSON object
  Timestamp occurred_at;
  std::optional<CorrelationId> correlation_id{};  // the store uses the event id when absent
  std::optional<CausationId> causation_id{};
  std::optional<ActorId> actor{};

  friend bool operator==(const NewEvent&, const NewEvent&) = default;
};

/// A recorded event.
struct Event {
  EventId id;
  EventType type;
  int schema_version = 1;
  StreamId stream;
  StreamVersion version;
  Position position;
  TenantId tenant;
  Timestamp occurred_at;
  Timestamp recorded_at;
  CorrelationId correlation_id;
  std::optional<CausationId> causation_id{};
  std::optional<ActorId> actor{};
  Payload data;
  Payload meta;

  friend bool operator==(const Event&, const Event&) = default;
};

/// What the single writer makes of a proposed event.
Event record(NewEvent proposed, StreamId stream, StreamVersion version, Position position,
             TenantId tenant, Timestamp recorded_at);

/// Compact JSON; data and meta are spliced in as stored, never re-parsed.
std::string to_json(const Event& event);
std::string to_json(const NewEvent& event);

/// Throw sb::json::Error whose path names the offending field (e.g. "/occurred_at").
Event event_from_json(std::string_view text);
Event event_from_json(const rapidjson::Value& value);
NewEvent new_event_from_json(std::string_view text);
NewEvent new_event_from_json(const rapidjson::Value& value);

}  // namespace sb::events
