#include "switchboard/events/catalog.hpp"

#include <rapidjson/schema.h>
#include <rapidjson/stringbuffer.h>

#include <algorithm>
#include <atomic>
#include <limits>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

#include "json_fields.hpp"
#include "switchboard/events/limits.hpp"
#include "switchboard/shared/json.hpp"
#include "switchboard/shared/log.hpp"
#include "switchboard/shared/rwlock.hpp"

namespace sb::events {
namespace {

namespace json = sb::json;

struct CompiledSchema {
  rapidjson::Document doc;
  std::string text;  // compact
  // Built from `doc`, which it may point into, so it is declared after it.
  std::unique_ptr<rapidjson::SchemaDocument> schema;
  // RapidJSON 1.1 keeps a compiled regex's match state inside the regex, so
  // two threads validating against a schema with `pattern` or
  // `patternProperties` corrupt each other (crashes seen under load). Such
  // schemas are validated one thread at a time; the others need no lock.
  bool has_patterns = false;
  mutable std::mutex regex_mutex;
};
using SchemaPtr = std::shared_ptr<const CompiledSchema>;

[[noreturn]] void invalid_spec(const std::string& message) {
  throw CatalogError(CatalogError::Kind::invalid_spec, message);
}

[[noreturn]] void conflict(const std::string& message) {
  throw CatalogError(CatalogError::Kind::conflict, message);
}

// The validator silently ignores a pattern its regex engine cannot compile,
// which would accept anything; refuse such schemas up front instead.
void check_patterns(const rapidjson::Value& schema, const std::string& where,
                    const std::string& pointer) {
  if (schema.IsArray()) {
    for (rapidjson::SizeType i = 0; i < schema.Size(); ++i) {
      check_patterns(schema[i], where, pointer + "/" + std::to_string(i));
    }
    return;
  }
  if (!schema.IsObject()) return;
  for (const auto& m : schema.GetObject()) {
    const std::string key(m.name.GetString(), m.name.GetStringLength());
    // Literal values, not sub-schemas.
    if (key == "enum" || key == "default" || key == "examples" || key == "const") continue;
    if (key == "pattern" && m.value.IsString()) {
      if (!rapidjson::internal::Regex(m.value.GetString()).IsValid()) {
        invalid_spec(where + ": pattern '" + m.value.GetString() + "' at " + pointer +
                     " is not supported (the validator's regex subset has no \\d, \\w, "
                     "lookarounds or backreferences)");
      }
    } else if (key == "patternProperties" && m.value.IsObject()) {
      for (const auto& p : m.value.GetObject()) {
        if (!rapidjson::internal::Regex(p.name.GetString()).IsValid()) {
          invalid_spec(where + ": patternProperties key '" + p.name.GetString() + "' at " +
                       pointer + " is not supported by the validator's regex subset");
        }
      }
    }
    check_patterns(m.value, where, pointer + "/" + key);
  }
}

SchemaPtr compile_schema(std::string_view text, const std::string& where) {
  if (text.size() > kMaxSchemaBytes) {
    invalid_spec(where + ": schema of " + std::to_string(text.size()) + " bytes, at most " +
                 std::to_string(kMaxSchemaBytes) + " allowed");
  }
  auto compiled = std::make_shared<CompiledSchema>();
  try {
    compiled->doc = json::parse(text);
  } catch (const json::Error& e) {
    invalid_spec(where + ": schema is not JSON: " + e.what() + " at offset " +
                 std::to_string(e.offset()));
  }
  // RapidJSON asserts on a schema whose root is not an object.
  if (!compiled->doc.IsObject()) invalid_spec(where + ": a schema must be a JSON object");
  check_patterns(compiled->doc, where, "#");
  compiled->text = json::to_string(compiled->doc);
  compiled->has_patterns = compiled->text.find("\"pattern") != std::string::npos;
  compiled->schema = std::make_unique<rapidjson::SchemaDocument>(compiled->doc);
  return compiled;
}

std::string pointer_text(const rapidjson::Pointer& pointer) {
  rapidjson::StringBuffer buf;
  pointer.Stringify(buf);
  return std::string(buf.GetString(), buf.GetSize());
}

std::string escape_pointer_token(std::string_view token) {
  std::string out;
  for (char c : token) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

std::string where_in(const std::string& instance_path) {
  return instance_path.empty() ? "the root" : instance_path;
}

std::string shortened(std::string text) {
  constexpr std::size_t kMax = 200;
  if (text.size() > kMax) {
    text.resize(kMax);
    text += "...";
  }
  return text;
}

ValidationResult run_validation(const CompiledSchema& compiled, const rapidjson::Value& value,
                                const std::string& what) {
  std::unique_lock<std::mutex> regex_lock;
  if (compiled.has_patterns) regex_lock = std::unique_lock(compiled.regex_mutex);
  rapidjson::SchemaValidator validator(*compiled.schema);
  if (value.Accept(validator)) return {};

  ValidationResult r;
  r.kind = ValidationResult::Kind::schema_violation;
  r.keyword = validator.GetInvalidSchemaKeyword();
  r.schema_path = "#" + pointer_text(validator.GetInvalidSchemaPointer());
  r.instance_path = pointer_text(validator.GetInvalidDocumentPointer());

  // The validator names the failing keyword and places; spell out what that
  // means so an API client can fix its request from the message alone.
  const auto* schema = validator.GetInvalidSchemaPointer().Get(compiled.doc);
  const auto* instance = validator.GetInvalidDocumentPointer().Get(value);
  const rapidjson::Value* rule = nullptr;
  if (schema != nullptr && schema->IsObject()) {
    auto it = schema->FindMember(r.keyword.c_str());
    if (it != schema->MemberEnd()) rule = &it->value;
  }

  std::string detail;
  if (r.keyword == "required" && rule != nullptr && rule->IsArray() && instance != nullptr &&
      instance->IsObject()) {
    for (const auto& name : rule->GetArray()) {
      if (name.IsString() && !instance->HasMember(name)) {
        const std::string missing(name.GetString(), name.GetStringLength());
        detail = "missing required property '" + missing + "' in " + where_in(r.instance_path);
        r.instance_path += "/" + escape_pointer_token(missing);
        break;
      }
    }
  } else if (r.keyword == "additionalProperties") {
    detail = "unexpected property at " + where_in(r.instance_path);
  } else if (r.keyword == "type" && rule != nullptr && instance != nullptr) {
    detail = "expected " + json::to_string(*rule) + " at " + where_in(r.instance_path) + ", got " +
             json::type_name(*instance);
  } else if (r.keyword == "enum" && rule != nullptr) {
    detail = "value at " + where_in(r.instance_path) + " is not one of " +
             shortened(json::to_string(*rule));
  }
  if (detail.empty()) {
    detail = "value at " + where_in(r.instance_path) + " violates '" + r.keyword + "'";
    if (rule != nullptr && !rule->IsObject() && !rule->IsArray()) {
      detail += " (" + r.keyword + ": " + shortened(json::to_string(*rule)) + ")";
    }
  }
  r.message = what + ": " + detail;
  return r;
}

ValidationResult failure(ValidationResult::Kind kind, std::string message) {
  ValidationResult r;
  r.kind = kind;
  r.message = std::move(message);
  return r;
}

struct VersionEntry {
  int version = 1;
  SchemaPtr schema;
  Upcaster from_previous;
};

struct EventEntry {
  EventType type;
  std::string owner;
  Persistence persistence;
  std::string description;
  std::map<int, VersionEntry> versions;  // non-empty, consecutive
  int current() const { return versions.rbegin()->first; }
};

struct CommandEntry {
  CommandName name;
  std::string owner;
  SchemaPtr schema;
  std::vector<std::string> roles;
  std::vector<EventType> emits;
  std::string description;

  bool same_content(const CommandEntry& other) const {
    return schema->text == other.schema->text && roles == other.roles && emits == other.emits;
  }
};

std::size_t segment_count(std::string_view name) {
  return static_cast<std::size_t>(std::count(name.begin(), name.end(), '.')) + 1;
}

EventTypeInfo info_of(const EventEntry& e) {
  EventTypeInfo info{e.type, e.owner, e.persistence, e.current(), {}, e.description};
  for (const auto& [n, v] : e.versions) {
    info.versions.push_back({n, v.schema->text, static_cast<bool>(v.from_previous)});
  }
  return info;
}

CommandInfo info_of(const CommandEntry& c) {
  return CommandInfo{c.name, c.owner, c.schema->text, c.roles, c.emits, c.description};
}

std::string describe_json(const EventTypeInfo& info) {
  detail::ObjectWriter w;
  w.string("type", info.type.value());
  w.string("owner", info.owner);
  w.boolean("transient", info.persistence == Persistence::transient);
  w.integer("current_version", info.current_version);
  if (!info.description.empty()) w.string("description", info.description);
  std::string versions = "[";
  for (const auto& v : info.versions) {
    if (versions.size() > 1) versions += ',';
    detail::ObjectWriter vw;
    vw.integer("version", v.version);
    vw.raw("schema", v.json_schema);
    vw.boolean("upcaster", v.has_upcaster);
    versions += std::move(vw).finish();
  }
  versions += ']';
  w.raw("versions", versions);
  return std::move(w).finish();
}

std::string describe_json(const CommandInfo& info) {
  detail::ObjectWriter w;
  w.string("name", info.name.value());
  w.string("owner", info.owner);
  w.raw("schema", info.json_schema);
  w.string_array("roles", info.roles, [](const std::string& r) -> std::string_view { return r; });
  w.string_array("emits", info.emits,
                 [](const EventType& t) -> std::string_view { return t.value(); });
  if (!info.description.empty()) w.string("description", info.description);
  return std::move(w).finish();
}

}  // namespace

struct Catalog::Impl {
  // Guards the maps. Entries are immutable and replaced whole, so readers
  // hold it only to copy a pointer.
  mutable WriterPreferringMutex mutex;
  // Serialises writers, and with them the notifications, so listeners see
  // changes in catalog_version order.
  std::mutex write_mutex;
  std::unordered_map<std::string, std::shared_ptr<const EventEntry>> events;
  std::unordered_map<std::string, std::shared_ptr<const CommandEntry>> commands;
  std::atomic<std::uint64_t> version{0};

  std::mutex listeners_mutex;
  std::vector<std::pair<ListenerId, Listener>> listeners;
  ListenerId next_listener = 1;

  std::shared_ptr<const EventEntry> find_event(const std::string& name) const {
    std::shared_lock lock(mutex);
    auto it = events.find(name);
    return it == events.end() ? nullptr : it->second;
  }
  std::shared_ptr<const CommandEntry> find_command(const std::string& name) const {
    std::shared_lock lock(mutex);
    auto it = commands.find(name);
    return it == commands.end() ? nullptr : it->second;
  }

  void notify(const std::vector<CatalogChange>& changes);
};

namespace {
// Set while this thread runs the listeners of a catalog: registering from a
// listener would wait for itself.
thread_local const void* notifying_catalog = nullptr;
}  // namespace

void Catalog::Impl::notify(const std::vector<CatalogChange>& changes) {
  if (changes.empty()) return;
  std::vector<std::pair<ListenerId, Listener>> copy;
  {
    std::lock_guard lock(listeners_mutex);
    copy = listeners;
  }
  struct Notifying {
    const void* previous = notifying_catalog;
    explicit Notifying(const void* catalog) { notifying_catalog = catalog; }
    ~Notifying() { notifying_catalog = previous; }
  } guard(this);
  for (const auto& change : changes) {
    for (const auto& [id, listener] : copy) {
      // The change is made; a failing listener must not hide it from the
      // others or from the caller that registered the type.
      try {
        listener(change);
      } catch (const std::exception& e) {
        sb::log::error("catalog change listener failed",
                       {{"listener", id}, {"type", change.name}, {"error", e.what()}});
      } catch (...) {
        sb::log::error("catalog change listener failed",
                       {{"listener", id}, {"type", change.name}, {"error", "unknown exception"}});
      }
    }
  }
}

Catalog::Catalog() : impl_(std::make_unique<Impl>()) {}
Catalog::~Catalog() = default;
Catalog::Catalog(Catalog&&) noexcept = default;
Catalog& Catalog::operator=(Catalog&&) noexcept = default;

void Catalog::register_event_type(EventTypeSpec spec) {
  Impl& s = *impl_;
  const std::string& name = spec.type.value();
  if (spec.owner.empty()) invalid_spec("event type " + name + ": the owner is empty");
  if (spec.versions.empty()) invalid_spec("event type " + name + ": no schema versions");
  if (spec.persistence == Persistence::stored && segment_count(name) < 3) {
    invalid_spec("event type " + name + ": a stored event type must be <context>.<entity>.<verb>");
  }
  std::sort(spec.versions.begin(), spec.versions.end(),
            [](const auto& a, const auto& b) { return a.version < b.version; });
  for (std::size_t i = 0; i < spec.versions.size(); ++i) {
    const int v = spec.versions[i].version;
    if (v < 1) invalid_spec("event type " + name + ": schema versions start at 1");
    if (i > 0 && v != spec.versions[i - 1].version + 1) {
      invalid_spec("event type " + name + ": schema versions must be consecutive, got " +
                   std::to_string(spec.versions[i - 1].version) + " then " + std::to_string(v));
    }
  }
  std::vector<VersionEntry> incoming;
  for (auto& v : spec.versions) {
    incoming.push_back(VersionEntry{
        v.version,
        compile_schema(v.json_schema, "event type " + name + " v" + std::to_string(v.version)),
        std::move(v.from_previous)});
  }

  if (notifying_catalog == impl_.get()) {
    invalid_spec("event type " + name + ": cannot register from a catalog change listener");
  }
  std::lock_guard write(s.write_mutex);
  const auto existing = s.find_event(name);
  std::shared_ptr<EventEntry> updated;
  std::vector<CatalogChange> changes;
  auto change_for = [&](const VersionEntry& v, CatalogChange::Kind kind) {
    CatalogChange c;
    c.kind = kind;
    c.name = name;
    c.owner = spec.owner;
    c.schema_version = v.version;
    c.persistence = spec.persistence;
    c.json_schema = v.schema->text;
    changes.push_back(std::move(c));
  };

  if (!existing) {
    updated = std::make_shared<EventEntry>(
        EventEntry{spec.type, spec.owner, spec.persistence, spec.description, {}});
    for (auto& v : incoming) {
      change_for(v, updated->versions.empty() ? CatalogChange::Kind::event_type_added
                                              : CatalogChange::Kind::event_version_added);
      updated->versions.emplace(v.version, std::move(v));
    }
  } else {
    const EventEntry& cur = *existing;
    const bool same_owner = cur.owner == spec.owner;
    const std::string owned_by = " (owned by '" + cur.owner + "')";
    if (cur.persistence != spec.persistence) {
      conflict("event type " + name + " is already registered as " +
               (cur.persistence == Persistence::stored ? "stored" : "transient") + owned_by);
    }
    std::vector<VersionEntry*> added;
    std::vector<VersionEntry*> upcasters;
    for (auto& v : incoming) {
      auto it = cur.versions.find(v.version);
      if (it == cur.versions.end()) {
        added.push_back(&v);
      } else if (it->second.schema->text != v.schema->text) {
        conflict("event type " + name + " v" + std::to_string(v.version) +
                 " is already registered with a different schema" + owned_by +
                 "; a changed schema needs a new version");
      } else if (same_owner && !it->second.from_previous && v.from_previous) {
        upcasters.push_back(&v);
      }
    }
    if (!same_owner && !added.empty()) {
      conflict("event type " + name + " belongs to '" + cur.owner + "', not '" + spec.owner + "'");
    }
    if (!added.empty() && added.front()->version != cur.current() + 1) {
      invalid_spec("event type " + name + ": new schema versions must follow the current one (" +
                   std::to_string(cur.current()) + "), got " +
                   std::to_string(added.front()->version));
    }
    if (added.empty() && upcasters.empty()) return;
    updated = std::make_shared<EventEntry>(cur);
    for (auto* v : upcasters) updated->versions[v->version].from_previous = v->from_previous;
    for (auto* v : added) {
      change_for(*v, CatalogChange::Kind::event_version_added);
      updated->versions.emplace(v->version, std::move(*v));
    }
    if (same_owner && !spec.description.empty()) updated->description = spec.description;
  }

  {
    std::unique_lock lock(s.mutex);
    s.events[name] = std::move(updated);
    for (auto& c : changes) c.catalog_version = ++s.version;
  }
  s.notify(changes);
}

void Catalog::register_command_type(CommandSpec spec) {
  Impl& s = *impl_;
  const std::string& name = spec.name.value();
  if (spec.owner.empty()) invalid_spec("command type " + name + ": the owner is empty");
  for (const auto& role : spec.roles) {
    if (role.empty()) invalid_spec("command type " + name + ": a role is empty");
  }
  // Role order carries no meaning; normalise it so re-registrations compare equal.
  std::sort(spec.roles.begin(), spec.roles.end());
  spec.roles.erase(std::unique(spec.roles.begin(), spec.roles.end()), spec.roles.end());
  auto entry = std::make_shared<CommandEntry>(
      CommandEntry{spec.name, spec.owner, compile_schema(spec.json_schema, "command type " + name),
                   std::move(spec.roles), std::move(spec.emits), std::move(spec.description)});

  if (notifying_catalog == impl_.get()) {
    invalid_spec("command type " + name + ": cannot register from a catalog change listener");
  }
  std::lock_guard write(s.write_mutex);
  const auto existing = s.find_command(name);
  auto kind = CatalogChange::Kind::command_type_added;
  if (existing) {
    if (existing->same_content(*entry)) return;
    if (existing->owner != entry->owner) {
      conflict("command type " + name + " belongs to '" + existing->owner + "', not '" +
               entry->owner + "'");
    }
    kind = CatalogChange::Kind::command_type_updated;
  }
  CatalogChange change;
  change.kind = kind;
  change.name = name;
  change.owner = entry->owner;
  change.json_schema = entry->schema->text;
  change.roles = entry->roles;
  for (const auto& t : entry->emits) change.emits.push_back(t.value());
  {
    std::unique_lock lock(s.mutex);
    s.commands[name] = std::move(entry);
    change.catalog_version = ++s.version;
  }
  s.notify({change});
}

ValidationResult Catalog::validate_event(const EventType& type, int schema_version,
                                         const rapidjson::Value& data) const {
  const auto entry = impl_->find_event(type.value());
  if (!entry) {
    return failure(ValidationResult::Kind::unknown_type, "unknown event type " + type.value());
  }
  auto it = entry->versions.find(schema_version);
  if (it == entry->versions.end()) {
    return failure(ValidationResult::Kind::unknown_version,
                   "event type " + type.value() + " has no schema version " +
                       std::to_string(schema_version) +
                       " (known: " + std::to_string(entry->versions.begin()->first) + ".." +
                       std::to_string(entry->current()) + ")");
  }
  return run_validation(*it->second.schema, data,
                        "data of " + type.value() + " v" + std::to_string(schema_version));
}

ValidationResult Catalog::validate_event(const EventType& type, int schema_version,
                                         const Payload& data) const {
  if (data.size_bytes() > kMaxEventDataBytes) {
    return failure(
        ValidationResult::Kind::too_large,
        LimitViolation{"event data (bytes)", data.size_bytes(), kMaxEventDataBytes}.message());
  }
  return validate_event(type, schema_version, data.value());
}

ValidationResult Catalog::validate_new_event(const NewEvent& event) const {
  if (auto v = check_limits(event)) {
    return failure(ValidationResult::Kind::too_large, v->message());
  }
  if (!event.meta.is_object()) {
    auto r = failure(ValidationResult::Kind::schema_violation, "meta must be a JSON object");
    r.instance_path = "/meta";
    return r;
  }
  return validate_event(event.type, event.schema_version, event.data.value());
}

ValidationResult Catalog::validate_command(const CommandName& name,
                                           const rapidjson::Value& body) const {
  const auto entry = impl_->find_command(name.value());
  if (!entry) {
    return failure(ValidationResult::Kind::unknown_type, "unknown command " + name.value());
  }
  return run_validation(*entry->schema, body, "body of command " + name.value());
}

int Catalog::upcast(Event& event) const {
  const auto entry = impl_->find_event(event.type.value());
  if (!entry) return 0;
  const int from = event.schema_version;
  const int to = entry->current();
  if (from == to) return 0;
  const std::string name = event.type.value();
  if (from > to || !entry->versions.contains(from)) {
    throw CatalogError(CatalogError::Kind::unknown_version,
                       "event " + event.id.value() + " of type " + name + " has schema version " +
                           std::to_string(from) + ", this catalog knows " +
                           std::to_string(entry->versions.begin()->first) + ".." +
                           std::to_string(to));
  }
  // Check the whole chain before running any of it.
  for (int v = from + 1; v <= to; ++v) {
    if (!entry->versions.at(v).from_previous) {
      throw CatalogError(CatalogError::Kind::missing_upcaster,
                         "event type " + name + " has no upcaster from v" + std::to_string(v - 1) +
                             " to v" + std::to_string(v));
    }
  }
  auto doc = event.data.to_document();
  for (int v = from + 1; v <= to; ++v) {
    try {
      entry->versions.at(v).from_previous(doc);
    } catch (const std::exception& e) {
      throw CatalogError(CatalogError::Kind::upcast_failed,
                         "upcasting event " + event.id.value() + " of type " + name + " from v" +
                             std::to_string(v - 1) + " to v" + std::to_string(v) +
                             " failed: " + e.what());
    }
  }
  event.data = Payload::from_document(std::move(doc));
  event.schema_version = to;
  return to - from;
}

bool Catalog::contains(const EventType& type) const {
  return impl_->find_event(type.value()) != nullptr;
}

bool Catalog::contains(const CommandName& name) const {
  return impl_->find_command(name.value()) != nullptr;
}

bool Catalog::is_transient(const EventType& type) const {
  const auto entry = impl_->find_event(type.value());
  return entry && entry->persistence == Persistence::transient;
}

std::optional<int> Catalog::current_version(const EventType& type) const {
  const auto entry = impl_->find_event(type.value());
  if (!entry) return std::nullopt;
  return entry->current();
}

std::optional<EventTypeInfo> Catalog::find(const EventType& type) const {
  const auto entry = impl_->find_event(type.value());
  if (!entry) return std::nullopt;
  return info_of(*entry);
}

std::optional<CommandInfo> Catalog::find(const CommandName& name) const {
  const auto entry = impl_->find_command(name.value());
  if (!entry) return std::nullopt;
  return info_of(*entry);
}

std::vector<EventTypeInfo> Catalog::event_types() const {
  std::vector<std::shared_ptr<const EventEntry>> entries;
  {
    std::shared_lock lock(impl_->mutex);
    for (const auto& [name, e] : impl_->events) entries.push_back(e);
  }
  std::vector<EventTypeInfo> out;
  for (const auto& e : entries) out.push_back(info_of(*e));
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.type < b.type; });
  return out;
}

std::vector<CommandInfo> Catalog::command_types() const {
  std::vector<std::shared_ptr<const CommandEntry>> entries;
  {
    std::shared_lock lock(impl_->mutex);
    for (const auto& [name, c] : impl_->commands) entries.push_back(c);
  }
  std::vector<CommandInfo> out;
  for (const auto& c : entries) out.push_back(info_of(*c));
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

std::string Catalog::to_json() const {
  // One consistent snapshot: the version must describe these very lists.
  std::uint64_t version = 0;
  std::vector<std::shared_ptr<const EventEntry>> events;
  std::vector<std::shared_ptr<const CommandEntry>> commands;
  {
    std::shared_lock lock(impl_->mutex);
    version = impl_->version.load();
    for (const auto& [name, e] : impl_->events) events.push_back(e);
    for (const auto& [name, c] : impl_->commands) commands.push_back(c);
  }
  std::sort(events.begin(), events.end(),
            [](const auto& a, const auto& b) { return a->type < b->type; });
  std::sort(commands.begin(), commands.end(),
            [](const auto& a, const auto& b) { return a->name < b->name; });
  std::string event_list = "[";
  for (const auto& e : events) {
    if (event_list.size() > 1) event_list += ',';
    event_list += describe_json(info_of(*e));
  }
  event_list += ']';
  std::string command_list = "[";
  for (const auto& c : commands) {
    if (command_list.size() > 1) command_list += ',';
    command_list += describe_json(info_of(*c));
  }
  command_list += ']';
  detail::ObjectWriter w;
  w.integer("version", static_cast<std::int64_t>(version));
  w.raw("event_types", event_list);
  w.raw("command_types", command_list);
  return std::move(w).finish();
}

std::uint64_t Catalog::version() const noexcept {
  return impl_->version.load();
}

Catalog::ListenerId Catalog::on_change(Listener listener) {
  std::lock_guard lock(impl_->listeners_mutex);
  const auto id = impl_->next_listener++;
  impl_->listeners.emplace_back(id, std::move(listener));
  return id;
}

void Catalog::remove_listener(ListenerId id) {
  std::lock_guard lock(impl_->listeners_mutex);
  std::erase_if(impl_->listeners, [id](const auto& l) { return l.first == id; });
}

std::string to_json(const CatalogChange& change) {
  static constexpr const char* kKinds[] = {"event_type_added", "event_version_added",
                                           "command_type_added", "command_type_updated"};
  detail::ObjectWriter w;
  w.string("kind", kKinds[static_cast<std::size_t>(change.kind)]);
  w.string("name", change.name);
  w.string("owner", change.owner);
  w.integer("catalog_version", static_cast<std::int64_t>(change.catalog_version));
  w.raw("schema", change.json_schema);
  const bool is_event = change.kind == CatalogChange::Kind::event_type_added ||
                        change.kind == CatalogChange::Kind::event_version_added;
  if (is_event) {
    w.integer("schema_version", change.schema_version);
    w.boolean("transient", change.persistence == Persistence::transient);
  } else {
    w.string_array("roles", change.roles,
                   [](const std::string& r) -> std::string_view { return r; });
    w.string_array("emits", change.emits,
                   [](const std::string& r) -> std::string_view { return r; });
  }
  return std::move(w).finish();
}

void apply_catalog_change(Catalog& catalog, const rapidjson::Value& data) {
  const auto kind = json::require_string(data, "kind");
  const auto owner = json::require_string(data, "owner");
  const auto schema =
      json::to_string(detail::require_kind(data, "schema", rapidjson::kObjectType, "an object"));
  if (kind == "event_type_added" || kind == "event_version_added") {
    const auto version = json::require_int64(data, "schema_version");
    if (version < 1 || version > std::numeric_limits<int>::max()) {
      throw json::Error("field 'schema_version' must be >= 1", "/schema_version");
    }
    catalog.register_event_type({detail::require_as<EventType>(data, "name"),
                                 owner,
                                 detail::optional_bool(data, "transient", false)
                                     ? Persistence::transient
                                     : Persistence::stored,
                                 {{static_cast<int>(version), schema, {}}},
                                 ""});
    return;
  }
  if (kind == "command_type_added" || kind == "command_type_updated") {
    CommandSpec spec{detail::require_as<CommandName>(data, "name"), owner, schema, {}, {}, ""};
    if (const auto* roles = json::find(data, "roles"); roles != nullptr && roles->IsArray()) {
      for (const auto& r : roles->GetArray()) {
        if (r.IsString()) spec.roles.emplace_back(r.GetString(), r.GetStringLength());
      }
    }
    if (const auto* emits = json::find(data, "emits"); emits != nullptr && emits->IsArray()) {
      for (const auto& e : emits->GetArray()) {
        if (e.IsString())
          spec.emits.emplace_back(std::string_view(e.GetString(), e.GetStringLength()));
      }
    }
    catalog.register_command_type(std::move(spec));
    return;
  }
  throw json::Error("unknown catalog change kind '" + kind + "'", "/kind");
}

EventTypeSpec event_type_spec_from_json(const rapidjson::Value& value, std::string owner) {
  if (!value.IsObject()) throw json::Error("an event type must be a JSON object", "");
  EventTypeSpec spec{detail::require_as<EventType>(value, "type"),
                     std::move(owner),
                     detail::optional_bool(value, "transient", false) ? Persistence::transient
                                                                      : Persistence::stored,
                     {},
                     json::optional_string(value, "description").value_or("")};
  const auto& versions = detail::require_kind(value, "versions", rapidjson::kArrayType, "an array");
  if (versions.Empty()) throw json::Error("field 'versions' must not be empty", "/versions");
  for (rapidjson::SizeType i = 0; i < versions.Size(); ++i) {
    const std::string prefix = "/versions/" + std::to_string(i);
    try {
      const auto& item = versions[i];
      if (!item.IsObject()) throw json::Error("a schema version must be a JSON object", "");
      const auto n = json::require_int64(item, "version");
      if (n < 1 || n > std::numeric_limits<int>::max()) {
        throw json::Error("field 'version' must be a version number >= 1", "/version");
      }
      const auto& schema =
          detail::require_kind(item, "schema", rapidjson::kObjectType, "an object");
      spec.versions.push_back({static_cast<int>(n), json::to_string(schema), {}});
    } catch (const json::Error& e) {
      detail::rethrow_under(prefix, e);
    }
  }
  return spec;
}

CommandSpec command_spec_from_json(const rapidjson::Value& value, std::string owner) {
  if (!value.IsObject()) throw json::Error("a command type must be a JSON object", "");
  CommandSpec spec{
      detail::require_as<CommandName>(value, "name"),
      std::move(owner),
      json::to_string(detail::require_kind(value, "schema", rapidjson::kObjectType, "an object")),
      {},
      {},
      json::optional_string(value, "description").value_or("")};
  auto strings = [&](const char* key, auto add) {
    const auto* list = json::find(value, key);
    if (list == nullptr || list->IsNull()) return;
    if (!list->IsArray()) {
      throw json::Error(std::string("field '") + key + "' must be an array", detail::path_of(key));
    }
    for (rapidjson::SizeType i = 0; i < list->Size(); ++i) {
      const auto& item = (*list)[i];
      const std::string path = detail::path_of(key) + "/" + std::to_string(i);
      if (!item.IsString()) throw json::Error("expected a string", path);
      try {
        add(std::string(item.GetString(), item.GetStringLength()));
      } catch (const InvalidValue& e) {
        throw json::Error(e.what(), path);
      }
    }
  };
  strings("roles", [&](std::string s) { spec.roles.push_back(std::move(s)); });
  strings("emits", [&](std::string s) { spec.emits.emplace_back(std::move(s)); });
  return spec;
}

}  // namespace sb::events
