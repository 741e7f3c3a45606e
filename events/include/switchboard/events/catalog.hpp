#pragma once
// The catalog of event and command types (DESIGN.md, the catalog paragraph).
// It is open: the platform's types are built in (platform_types.hpp) and a
// plugin brings its own with its registration. Per event type: stored or
// transient, the JSON Schema of `data` per schema version (compiled once),
// upcasters from version N to N+1, and the owner. Per command type: the
// schema the edge validates, the roles allowed and the events it may emit.
//
// Thread-safe. Entries are immutable and swapped on change, so validation
// and upcasting run outside the lock and readers never wait for each other
// or for a validation in progress.
//
// Schemas are JSON Schema draft-04 as RapidJSON 1.1 implements it: "format"
// is ignored, "$ref" resolves only inside the schema, and "pattern" supports
// RapidJSON's regex subset (no \d, \w, lookarounds); a schema using a pattern
// outside that subset is refused at registration instead of being silently
// skipped by the validator.

#include <rapidjson/document.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "switchboard/events/envelope.hpp"
#include "switchboard/events/types.hpp"

namespace sb::events {

/// Rewrites `data` of schema version N into version N+1, in place.
using Upcaster = std::function<void(rapidjson::Document& data)>;

enum class Persistence { stored, transient };

struct EventSchemaVersion {
  int version = 1;
  std::string json_schema;  // JSON Schema of `data`, as JSON text
  /// From version-1 to this version. Empty for a type's first version, and
  /// for types learnt from a remote registration (their owner upcasts).
  Upcaster from_previous;
};

struct EventTypeSpec {
  EventType type;
  std::string owner;  // "platform" or the registering service's name
  Persistence persistence = Persistence::stored;
  std::vector<EventSchemaVersion> versions;  // at least one; consecutive numbers
  std::string description;
};

struct CommandSpec {
  CommandName name;
  std::string owner;
  std::string json_schema;         // JSON Schema of the command body
  std::vector<std::string> roles;  // empty: any authenticated caller
  std::vector<EventType> emits;    // informational
  std::string description;
};

/// Read-only views returned by lookups.
struct EventSchemaInfo {
  int version = 1;
  std::string json_schema;    // compact
  bool has_upcaster = false;  // from version-1
};
struct EventTypeInfo {
  EventType type;
  std::string owner;
  Persistence persistence = Persistence::stored;
  int current_version = 1;
  std::vector<EventSchemaInfo> versions;  // ascending
  std::string description;
};
struct CommandInfo {
  CommandName name;
  std::string owner;
  std::string json_schema;  // compact
  std::vector<std::string> roles;
  std::vector<EventType> emits;
  std::string description;
};

class CatalogError : public Error {
 public:
  enum class Kind {
    invalid_spec,      // malformed spec or schema, versions not increasing
    conflict,          // another owner's type, or a changed schema for a known version
    unknown_type,      // not registered
    unknown_version,   // schema version not registered (or newer than current)
    missing_upcaster,  // an old version without an upcaster to the next
    upcast_failed,     // an upcaster threw
  };
  CatalogError(Kind kind, std::string message) : Error(std::move(message)), kind_(kind) {}
  Kind kind() const noexcept { return kind_; }

 private:
  Kind kind_;
};

struct ValidationResult {
  enum class Kind { ok, unknown_type, unknown_version, too_large, schema_violation };
  Kind kind = Kind::ok;
  std::string message;        // human-readable, names the path
  std::string instance_path;  // JSON Pointer into the validated value ("" = the root)
  std::string schema_path;    // JSON Pointer into the schema, e.g. "#/properties/name"
  std::string keyword;        // the failing schema keyword, e.g. "required"

  bool ok() const noexcept { return kind == Kind::ok; }
  explicit operator bool() const noexcept { return ok(); }
};

/// One published change to the catalog; `to_json(change)` is the data of a
/// `catalog.type.registered` event.
struct CatalogChange {
  enum class Kind {
    event_type_added,
    event_version_added,
    command_type_added,
    command_type_updated
  };
  Kind kind = Kind::event_type_added;
  std::string name;  // event type or command name
  std::string owner;
  int schema_version = 0;                         // events only
  Persistence persistence = Persistence::stored;  // events only
  std::string json_schema;                        // compact
  std::vector<std::string> roles;                 // commands only
  std::vector<std::string> emits;                 // commands only
  std::uint64_t catalog_version = 0;              // Catalog::version() right after the change
};
std::string to_json(const CatalogChange& change);

class Catalog {
 public:
  using Listener = std::function<void(const CatalogChange&)>;
  using ListenerId = std::uint64_t;

  Catalog();
  ~Catalog();
  Catalog(Catalog&&) noexcept;
  Catalog& operator=(Catalog&&) noexcept;
  Catalog(const Catalog&) = delete;
  Catalog& operator=(const Catalog&) = delete;

  /// Adds a type or new versions of it. Re-registering what is known is a
  /// no-op (also a subset of the versions: an older instance of the owner
  /// during a rolling deploy). Throws CatalogError: conflict for another
  /// owner's type with different content, a changed schema for a known
  /// version, or a changed persistence; invalid_spec for a bad schema or
  /// new versions that do not follow the current one. Upcasters given for
  /// versions that had none are attached.
  void register_event_type(EventTypeSpec spec);
  /// Adds or, from the same owner, replaces a command type; another owner's
  /// command with different content is a conflict.
  void register_command_type(CommandSpec spec);

  ValidationResult validate_event(const EventType& type, int schema_version,
                                  const rapidjson::Value& data) const;
  /// Also enforces kMaxEventDataBytes.
  ValidationResult validate_event(const EventType& type, int schema_version,
                                  const Payload& data) const;
  /// Schema, size and metadata checks of a proposed event.
  ValidationResult validate_new_event(const NewEvent& event) const;
  ValidationResult validate_command(const CommandName& name, const rapidjson::Value& body) const;

  /// Brings `event` to its type's current schema version by chaining the
  /// upcasters; returns the number of steps applied (0: already current, or
  /// a type this catalog does not know, which it cannot upcast). Throws
  /// CatalogError for an unknown or too new version, a missing upcaster or a
  /// failing one; `event` is unchanged then.
  int upcast(Event& event) const;

  bool contains(const EventType& type) const;
  bool contains(const CommandName& name) const;
  /// False for stored and for unknown types.
  bool is_transient(const EventType& type) const;
  std::optional<int> current_version(const EventType& type) const;
  std::optional<EventTypeInfo> find(const EventType& type) const;
  std::optional<CommandInfo> find(const CommandName& name) const;
  /// Sorted by name.
  std::vector<EventTypeInfo> event_types() const;
  std::vector<CommandInfo> command_types() const;

  /// Everything, for the edge's /api/v1/catalog (turned into AsyncAPI there):
  /// {"version": N, "event_types": [...], "command_types": [...]} with each
  /// entry in the shape event_type_spec_from_json() reads.
  std::string to_json() const;

  /// Bumped on every published change.
  std::uint64_t version() const noexcept;

  /// Called after each change, in order, outside the catalog's read lock (a
  /// listener may read the catalog, but must not register types: that would
  /// deadlock). A listener that throws is logged and the others still run.
  ListenerId on_change(Listener listener);
  void remove_listener(ListenerId id);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The wire form of types a service brings in its registration (the items
/// of `event_types` / `command_types` in `service.instance.registered`):
///   {"type", "transient"?, "description"?, "versions": [{"version", "schema"}]}
///   {"name", "schema", "roles"?, "emits"?, "description"?}
/// Throw sb::json::Error naming the field.
EventTypeSpec event_type_spec_from_json(const rapidjson::Value& value, std::string owner);

/// Applies one `catalog.type.registered` event's data (to_json(CatalogChange))
/// to `catalog`: how a process that did not see the registration (the store,
/// an edge) learns a plugin's types. Throws sb::json::Error for malformed
/// data and CatalogError (e.g. conflict) like the register calls.
void apply_catalog_change(Catalog& catalog, const rapidjson::Value& data);
CommandSpec command_spec_from_json(const rapidjson::Value& value, std::string owner);

}  // namespace sb::events
