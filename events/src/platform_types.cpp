#include "switchboard/events/platform_types.hpp"

namespace sb::events {
namespace {

// Shared pieces, kept as text so each schema stays a self-contained document.
#define SB_NAME_SCHEMA R"({"type":"string","pattern":"^[a-z0-9][a-z0-9_-]*$","maxLength":63})"
#define SB_ID_SCHEMA R"({"type":"string","minLength":1,"maxLength":255})"
#define SB_TIME_SCHEMA \
  R"({"type":"string","pattern":"^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9][Tt ][0-9][0-9]:[0-9][0-9]:[0-9][0-9]"})"
#define SB_EVENT_TYPE_PATTERN R"(^[a-z0-9_-]+(\\.[a-z0-9_-]+)+$)"

constexpr const char* kRegisteredSchema = R"({
  "type": "object",
  "additionalProperties": false,
  "required": ["name", "version", "instance_id", "transport", "endpoints", "event_types",
               "command_types", "subscriptions", "metadata"],
  "properties": {
    "name": )" SB_NAME_SCHEMA R"(,
    "version": {"type": "string", "minLength": 1, "maxLength": 64},
    "instance_id": )" SB_ID_SCHEMA R"(,
    "transport": {
      "type": "object",
      "additionalProperties": false,
      "required": ["kind"],
      "properties": {
        "kind": {"enum": ["amqp", "http"]},
        "base_url": {"type": "string", "pattern": "^https?://[^/]"}
      },
      "oneOf": [
        {"properties": {"kind": {"enum": ["amqp"]}}, "not": {"required": ["base_url"]}},
        {"properties": {"kind": {"enum": ["http"]}}, "required": ["base_url"]}
      ]
    },
    "endpoints": {"type": "array", "items": {"$ref": "#/definitions/endpoint"}},
    "event_types": {"type": "array", "items": {"$ref": "#/definitions/event_type"}},
    "command_types": {"type": "array", "items": {"$ref": "#/definitions/command_type"}},
    "subscriptions": {"type": "array", "items": {"$ref": "#/definitions/subscription"}},
    "metadata": {"type": "object"}
  },
  "definitions": {
    "endpoint": {
      "type": "object",
      "additionalProperties": false,
      "required": ["method", "path", "roles", "public"],
      "properties": {
        "method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE"]},
        "path": {"type": "string", "pattern": "^/", "maxLength": 1024},
        "roles": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "public": {"type": "boolean"},
        "rate_limit": {
          "type": "object",
          "additionalProperties": false,
          "required": ["per_second"],
          "properties": {
            "per_second": {"type": "number", "minimum": 0, "exclusiveMinimum": true},
            "burst": {"type": "integer", "minimum": 1}
          }
        }
      }
    },
    "event_type": {
      "type": "object",
      "additionalProperties": false,
      "required": ["type", "versions"],
      "properties": {
        "type": {"type": "string", "maxLength": 255, "pattern": ")" SB_EVENT_TYPE_PATTERN R"("},
        "transient": {"type": "boolean"},
        "description": {"type": "string"},
        "versions": {
          "type": "array",
          "minItems": 1,
          "items": {
            "type": "object",
            "additionalProperties": false,
            "required": ["version", "schema"],
            "properties": {
              "version": {"type": "integer", "minimum": 1},
              "schema": {"type": "object"}
            }
          }
        }
      }
    },
    "command_type": {
      "type": "object",
      "additionalProperties": false,
      "required": ["name", "schema"],
      "properties": {
        "name": {"type": "string", "maxLength": 255, "pattern": "^[a-z0-9_-]+\\.[a-z0-9_-]+$"},
        "schema": {"type": "object"},
        "roles": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "emits": {"type": "array", "items": {"type": "string", "pattern": ")" SB_EVENT_TYPE_PATTERN
                                          R"("}},
        "description": {"type": "string"}
      }
    },
    "subscription": {
      "type": "object",
      "additionalProperties": false,
      "required": ["group", "kind", "event_types"],
      "properties": {
        "group": {"type": "string", "minLength": 1, "maxLength": 200},
        "kind": {"enum": ["checkpointed", "push"]},
        "event_types": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}}
      }
    }
  }
})";

constexpr const char* kDeregisteredSchema = R"({
  "type": "object",
  "additionalProperties": false,
  "required": ["name", "instance_id"],
  "properties": {
    "name": )" SB_NAME_SCHEMA R"(,
    "instance_id": )" SB_ID_SCHEMA R"(,
    "reason": {"type": "string", "maxLength": 1024}
  }
})";

constexpr const char* kExpiredSchema = R"({
  "type": "object",
  "additionalProperties": false,
  "required": ["name", "instance_id", "last_seen"],
  "properties": {
    "name": )" SB_NAME_SCHEMA R"(,
    "instance_id": )" SB_ID_SCHEMA R"(,
    "last_seen": )" SB_TIME_SCHEMA R"(
  }
})";

constexpr const char* kHeartbeatSchema = R"({
  "type": "object",
  "additionalProperties": false,
  "required": ["name", "instance_id", "version"],
  "properties": {
    "name": )" SB_NAME_SCHEMA R"(,
    "instance_id": )" SB_ID_SCHEMA R"(,
    "version": {"type": "string", "minLength": 1, "maxLength": 64},
    "load": {
      "type": "object",
      "properties": {
        "in_flight": {"type": "integer", "minimum": 0},
        "cpu": {"type": "number", "minimum": 0}
      }
    }
  }
})";

constexpr const char* kWeightsSetSchema = R"({
  "type": "object",
  "additionalProperties": false,
  "required": ["service", "weights"],
  "properties": {
    "service": )" SB_NAME_SCHEMA R"(,
    "weights": {
      "type": "object",
      "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 1000000}
    }
  }
})";

constexpr const char* kHeadAdvancedSchema = R"({
  "type": "object",
  "additionalProperties": false,
  "required": ["position"],
  "properties": {"position": {"type": "integer", "minimum": 0}}
})";

constexpr const char* kCatalogTypeRegisteredSchema = R"({
  "type": "object",
  "additionalProperties": false,
  "required": ["kind", "name", "owner", "catalog_version", "schema"],
  "properties": {
    "kind": {"enum": ["event_type_added", "event_version_added", "command_type_added",
                      "command_type_updated"]},
    "name": {"type": "string", "maxLength": 255, "pattern": ")" SB_EVENT_TYPE_PATTERN R"("},
    "owner": {"type": "string", "minLength": 1},
    "catalog_version": {"type": "integer", "minimum": 1},
    "schema": {"type": "object"},
    "schema_version": {"type": "integer", "minimum": 1},
    "transient": {"type": "boolean"},
    "roles": {"type": "array", "items": {"type": "string"}},
    "emits": {"type": "array", "items": {"type": "string"}}
  }
})";

#undef SB_NAME_SCHEMA
#undef SB_ID_SCHEMA
#undef SB_TIME_SCHEMA
#undef SB_EVENT_TYPE_PATTERN

void add(Catalog& catalog, std::string_view type, Persistence persistence, const char* schema,
         const char* description) {
  catalog.register_event_type(EventTypeSpec{
      EventType(type), std::string(kPlatformOwner), persistence, {{1, schema, {}}}, description});
}

}  // namespace

constexpr const char* kStreamRetentionSetSchema = R"({
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "max_count": {"type": ["integer", "null"], "minimum": 1},
    "max_age_seconds": {"type": ["integer", "null"], "minimum": 1}
  }
})";

void register_platform_types(Catalog& catalog) {
  using enum Persistence;
  add(catalog, kServiceInstanceRegistered, stored, kRegisteredSchema,
      "A service instance plugged in: its transport, endpoints, the types it brings and its "
      "subscriptions.");
  add(catalog, kServiceInstanceDeregistered, stored, kDeregisteredSchema,
      "A service instance unplugged itself.");
  add(catalog, kServiceInstanceExpired, stored, kExpiredSchema,
      "The registry's sweeper found an instance silent past its TTL.");
  add(catalog, kServiceHeartbeat, transient, kHeartbeatSchema,
      "An instance is alive; sent every 2 s on sb.signals.");
  add(catalog, kServiceVersionWeightsSet, stored, kWeightsSetSchema,
      "Relative traffic weights per version of a service (canary routing).");
  add(catalog, kStoreHeadAdvanced, transient, kHeadAdvancedSchema,
      "The store committed up to this position; wakes checkpointed subscriptions.");
  add(catalog, kCatalogTypeRegistered, stored, kCatalogTypeRegisteredSchema,
      "An event or command type, or a new schema version of one, joined the catalog.");
  add(catalog, kStreamRetentionSet, stored, kStreamRetentionSetSchema,
      "The stream's retention changed: keep at most max_count events and/or events younger than "
      "max_age_seconds (null: no limit). Older events are hidden, then scavenged.");
}

Catalog builtin_catalog() {
  Catalog catalog;
  register_platform_types(catalog);
  return catalog;
}

}  // namespace sb::events
