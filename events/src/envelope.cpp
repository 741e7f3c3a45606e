#include "switchboard/events/envelope.hpp"

#include <limits>

#include "json_fields.hpp"
#include "switchboard/shared/json.hpp"

namespace sb::events {
namespace {

namespace json = sb::json;
using detail::optional_as;
using detail::path_of;
using detail::require_as;

std::int64_t require_non_negative(const rapidjson::Value& object, std::string_view key) {
  const auto n = json::require_int64(object, key);
  if (n < 0) {
    throw json::Error("field '" + std::string(key) + "' must not be negative", path_of(key));
  }
  return n;
}

int schema_version_of(const rapidjson::Value& object, bool required) {
  if (!required && json::find(object, "schema") == nullptr) return 1;
  const auto n = json::require_int64(object, "schema");
  if (n < 1 || n > std::numeric_limits<int>::max()) {
    throw json::Error("field 'schema' must be a version number >= 1", "/schema");
  }
  return static_cast<int>(n);
}

Timestamp require_time(const rapidjson::Value& object, std::string_view key) {
  const auto text = json::require_string(object, key);
  try {
    return parse_rfc3339(text);
  } catch (const InvalidValue& e) {
    throw json::Error(std::string("field '") + std::string(key) + "': " + e.what(), path_of(key));
  }
}

Payload require_object(const rapidjson::Value& object, std::string_view key) {
  const auto& v = json::require(object, key);
  if (!v.IsObject()) {
    throw json::Error("field '" + std::string(key) + "' must be a JSON object", path_of(key));
  }
  return Payload::from_value(v);
}

Payload optional_object(const rapidjson::Value& object, std::string_view key) {
  const auto* v = json::find(object, key);
  if (v == nullptr || v->IsNull()) return Payload();
  return require_object(object, key);
}

void require_envelope_object(const rapidjson::Value& value) {
  if (!value.IsObject()) throw json::Error("an event must be a JSON object", "");
}

}  // namespace

Event record(NewEvent proposed, StreamId stream, StreamVersion version, Position position,
             TenantId tenant, Timestamp recorded_at) {
  auto correlation = proposed.correlation_id ? std::move(*proposed.correlation_id)
                                             : CorrelationId(proposed.id.value());
  return Event{
      .id = std::move(proposed.id),
      .type = std::move(proposed.type),
      .schema_version = proposed.schema_version,
      .stream = std::move(stream),
      .version = version,
      .position = position,
      .tenant = std::move(tenant),
      .occurred_at = proposed.occurred_at,
      .recorded_at = recorded_at,
      .correlation_id = std::move(correlation),
      .causation_id = std::move(proposed.causation_id),
      .actor = std::move(proposed.actor),
      .data = std::move(proposed.data),
      .meta = std::move(proposed.meta),
  };
}

std::string to_json(const Event& e) {
  detail::ObjectWriter w;
  w.string("id", e.id.value());
  w.string("type", e.type.value());
  w.integer("schema", e.schema_version);
  w.string("stream", e.stream.value());
  w.integer("version", e.version.value());
  w.integer("position", e.position.value());
  w.string("tenant", e.tenant.value());
  w.string("occurred_at", format_rfc3339_ms(e.occurred_at));
  w.string("recorded_at", format_rfc3339_ms(e.recorded_at));
  w.string("correlation_id", e.correlation_id.value());
  w.optional("causation_id", e.causation_id);
  w.optional("actor", e.actor);
  w.raw("data", e.data.text());
  w.raw("meta", e.meta.text());
  return std::move(w).finish();
}

std::string to_json(const NewEvent& e) {
  detail::ObjectWriter w;
  w.string("id", e.id.value());
  w.string("type", e.type.value());
  w.integer("schema", e.schema_version);
  w.string("occurred_at", format_rfc3339_ms(e.occurred_at));
  w.optional("correlation_id", e.correlation_id);
  w.optional("causation_id", e.causation_id);
  w.optional("actor", e.actor);
  w.raw("data", e.data.text());
  w.raw("meta", e.meta.text());
  return std::move(w).finish();
}

Event event_from_json(const rapidjson::Value& v) {
  require_envelope_object(v);
  return Event{
      .id = require_as<EventId>(v, "id"),
      .type = require_as<EventType>(v, "type"),
      .schema_version = schema_version_of(v, true),
      .stream = require_as<StreamId>(v, "stream"),
      .version = StreamVersion(require_non_negative(v, "version")),
      .position = Position(require_non_negative(v, "position")),
      .tenant = require_as<TenantId>(v, "tenant"),
      .occurred_at = require_time(v, "occurred_at"),
      .recorded_at = require_time(v, "recorded_at"),
      .correlation_id = require_as<CorrelationId>(v, "correlation_id"),
      .causation_id = optional_as<CausationId>(v, "causation_id"),
      .actor = optional_as<ActorId>(v, "actor"),
      .data = require_object(v, "data"),
      .meta = optional_object(v, "meta"),
  };
}

Event event_from_json(std::string_view text) {
  return event_from_json(json::parse(text));
}

NewEvent new_event_from_json(const rapidjson::Value& v) {
  require_envelope_object(v);
  return NewEvent{
      .id = require_as<EventId>(v, "id"),
      .type = require_as<EventType>(v, "type"),
      .schema_version = schema_version_of(v, false),
      .data = require_object(v, "data"),
      .meta = optional_object(v, "meta"),
      .occurred_at = require_time(v, "occurred_at"),
      .correlation_id = optional_as<CorrelationId>(v, "correlation_id"),
      .causation_id = optional_as<CausationId>(v, "causation_id"),
      .actor = optional_as<ActorId>(v, "actor"),
  };
}

NewEvent new_event_from_json(std::string_view text) {
  return new_event_from_json(json::parse(text));
}

}  // namespace sb::events
