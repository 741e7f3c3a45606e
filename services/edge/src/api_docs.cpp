#include "switchboard/edge/api_docs.hpp"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <map>
#include <set>
#include <vector>

#include "switchboard/edge/http.hpp"
#include "switchboard/shared/json.hpp"

namespace sb::edge {

namespace {

using rapidjson::Document;
using rapidjson::Value;
using Alloc = Document::AllocatorType;

Value str(std::string_view s, Alloc& a) {
  return json::string_value(s, a);
}

std::string render(const Value& v) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  v.Accept(w);
  return {sb.GetString(), sb.GetSize()};
}

Document parse_or_empty(const std::string& text) {
  Document d;
  d.Parse(text.data(), text.size());
  if (d.HasParseError() || !d.IsObject()) {
    d.SetObject();
  }
  return d;
}

Value ref(std::string_view target, Alloc& a) {
  Value v(rapidjson::kObjectType);
  v.AddMember("$ref", str(target, a), a);
  return v;
}

Value response(std::string_view description, bool error, Alloc& a) {
  Value r(rapidjson::kObjectType);
  r.AddMember("description", str(description, a), a);
  Value content(rapidjson::kObjectType);
  Value media(rapidjson::kObjectType);
  media.AddMember("schema",
                  error ? ref("#/components/schemas/Error", a) : Value(rapidjson::kObjectType), a);
  content.AddMember("application/json", media, a);
  r.AddMember("content", content, a);
  return r;
}

void add_errors(Value& responses, std::initializer_list<std::pair<const char*, const char*>> codes,
                Alloc& a) {
  for (const auto& [code, text] : codes)
    responses.AddMember(str(code, a), response(text, true, a), a);
}

Value operation(std::string_view summary, Alloc& a) {
  Value op(rapidjson::kObjectType);
  op.AddMember("summary", str(summary, a), a);
  return op;
}

void put(Value& paths, const std::string& path, const std::string& method, Value op, Alloc& a) {
  auto it = paths.FindMember(path.c_str());
  if (it == paths.MemberEnd()) {
    paths.AddMember(str(path, a), Value(rapidjson::kObjectType), a);
    it = paths.FindMember(path.c_str());
  }
  if (it->value.HasMember(method.c_str())) return;
  it->value.AddMember(str(method, a), op, a);
}

std::vector<std::string> template_params(const std::string& path) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while ((i = path.find('{', i)) != std::string::npos) {
    auto j = path.find('}', i);
    if (j == std::string::npos) break;
    out.push_back(path.substr(i + 1, j - i - 1));
    i = j + 1;
  }
  return out;
}

Value path_param(const std::string& name, Alloc& a) {
  Value p(rapidjson::kObjectType);
  p.AddMember("name", str(name, a), a);
  p.AddMember("in", "path", a);
  p.AddMember("required", true, a);
  Value s(rapidjson::kObjectType);
  s.AddMember("type", "string", a);
  p.AddMember("schema", s, a);
  return p;
}

Value public_security(Alloc& a) {
  return Value(rapidjson::kArrayType);  // security: [] = no authentication
  (void)a;
}

Value query_doc(const std::string& name, const char* type, const char* description, Alloc& a) {
  Value p(rapidjson::kObjectType);
  p.AddMember("name", str(name, a), a);
  p.AddMember("in", "query", a);
  p.AddMember("required", false, a);
  p.AddMember("description", str(description, a), a);
  Value s(rapidjson::kObjectType);
  s.AddMember("type", str(type, a), a);
  p.AddMember("schema", s, a);
  return p;
}

struct QueryDoc {
  const char* name;
  const char* type;
  const char* description;
};

// One platform endpoint of the events and operator APIs.
void platform(Value& paths, const std::string& path, const std::string& method,
              std::string_view summary, std::initializer_list<QueryDoc> query,
              std::initializer_list<std::pair<const char*, const char*>> ok,
              std::initializer_list<std::pair<const char*, const char*>> errors, Alloc& a,
              const char* body_schema = nullptr, const char* roles = nullptr) {
  auto op = operation(summary, a);
  Value params(rapidjson::kArrayType);
  for (const auto& p : template_params(path)) params.PushBack(path_param(p, a), a);
  for (const auto& q : query) params.PushBack(query_doc(q.name, q.type, q.description, a), a);
  op.AddMember("parameters", params, a);
  if (body_schema) {
    Value body(rapidjson::kObjectType);
    body.AddMember("required", true, a);
    Value content(rapidjson::kObjectType);
    Value media(rapidjson::kObjectType);
    media.AddMember("schema", Value(json::parse(body_schema), a), a);
    content.AddMember("application/json", media, a);
    body.AddMember("content", content, a);
    op.AddMember("requestBody", body, a);
  }
  if (roles) {
    Value rs(rapidjson::kArrayType);
    std::string_view list = roles;
    while (!list.empty()) {
      auto comma = list.find(',');
      rs.PushBack(str(list.substr(0, comma), a), a);
      list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    }
    op.AddMember("x-roles", rs, a);
  }
  Value rs(rapidjson::kObjectType);
  for (const auto& [code, text] : ok) rs.AddMember(str(code, a), response(text, false, a), a);
  add_errors(rs, errors, a);
  op.AddMember("responses", rs, a);
  put(paths, path, method, std::move(op), a);
}

void add_events_and_admin(Value& paths, Alloc& a) {
  const std::initializer_list<QueryDoc> filters = {
      {"type", "string", "comma-separated event types or AMQP-style patterns (* and #)"},
      {"tenant", "string", "a tenant (only a super admin may name another than its own)"},
      {"stream", "string", "one stream id"},
      {"actor", "string", "events recorded with this actor, e.g. user:alice"},
      {"correlation_id", "string", "events of one flow"},
      {"from", "string", "recorded_at >= this RFC 3339 time"},
      {"to", "string", "recorded_at < this RFC 3339 time"},
      {"from_position", "integer", "first position (inclusive)"},
      {"to_position", "integer", "last position (inclusive)"},
  };
  std::vector<QueryDoc> list(filters);
  list.push_back({"after", "integer", "cursor: the `next` of the previous page (exclusive)"});
  list.push_back({"limit", "integer", "page size (default 100, at most 1000)"});
  list.push_back({"format", "string", "ndjson or csv (or Accept: application/x-ndjson, text/csv)"});
  const std::initializer_list<std::pair<const char*, const char*>> read_errors = {
      {"400", "Bad parameter (details.parameter)"},
      {"401", "Unauthenticated"},
      {"403", "Another tenant"},
      {"503", "No event database configured"}};
  // GET /api/v1/events: the filters above plus paging.
  {
    auto op = operation(
        "Events by position with filters: JSON pages {events, head, next, at_head}; the whole "
        "range as NDJSON or CSV, streamed",
        a);
    Value params(rapidjson::kArrayType);
    for (const auto& q : list) params.PushBack(query_doc(q.name, q.type, q.description, a), a);
    op.AddMember("parameters", params, a);
    Value rs(rapidjson::kObjectType);
    rs.AddMember("200", response("A page, or the NDJSON/CSV export", false, a), a);
    add_errors(rs, read_errors, a);
    op.AddMember("responses", rs, a);
    put(paths, "/api/v1/events", "get", std::move(op), a);
  }
  {
    auto op = operation(
        "Server-Sent Events live tail with the same filters; Last-Event-ID resumes from a "
        "position",
        a);
    Value params(rapidjson::kArrayType);
    for (const auto& q : filters) params.PushBack(query_doc(q.name, q.type, q.description, a), a);
    op.AddMember("parameters", params, a);
    Value rs(rapidjson::kObjectType);
    Value ok(rapidjson::kObjectType);
    ok.AddMember("description", "text/event-stream: `id: <position>` and `data: <event>` frames",
                 a);
    rs.AddMember("200", ok, a);
    add_errors(rs, read_errors, a);
    rs.AddMember("503", response("Too many live clients, or no event database", true, a), a);
    op.AddMember("responses", rs, a);
    put(paths, "/api/v1/events/stream", "get", std::move(op), a);
  }
  platform(paths, "/api/v1/streams/{id}", "get",
           "One stream, optionally as it was at a time (recorded_at) or a position",
           {{"as_of", "string", "RFC 3339 time"}, {"as_of_position", "integer", "a position"}},
           {{"200", "{stream, events, version, position, tenant}"}},
           {{"400", "Bad parameter"},
            {"401", "Unauthenticated"},
            {"404", "No such stream (for this tenant, at that time)"},
            {"413", "More events than one answer holds"},
            {"503", "No event database configured"}},
           a);
  platform(paths, "/api/v1/correlations/{id}", "get",
           "Every event of one flow, in order, with causation links", {},
           {{"200", "{correlation_id, events, causation: [{event_id, caused_by}]}"}},
           {{"401", "Unauthenticated"},
            {"404", "No events with this correlation id (for this tenant)"},
            {"413", "More events than one answer holds"},
            {"503", "No event database configured"}},
           a);

  // Operator endpoints.
  const char* ops = "super_admin,tenant_admin";
  const std::initializer_list<std::pair<const char*, const char*>> op_errors = {
      {"401", "Unauthenticated"},
      {"403", "Not super_admin or tenant_admin"},
      {"503", "No event database configured"}};
  platform(paths, "/api/v1/subscriptions", "get",
           "Checkpointed subscriptions: per partition position, state (running/parked), "
           "last_error, last_error_at, failed_position, owner, updated_at, lag (events and ms) "
           "and rate; the push groups the database knows",
           {}, {{"200", "{head, subscriptions: [...], push_groups: [...], notes}"}}, op_errors, a,
           nullptr, ops);
  platform(paths, "/api/v1/projections", "get",
           "Projections: serving generation (position, lag, rate, state) and the generation "
           "being rebuilt (progress, ETA)",
           {}, {{"200", "{projections: [...]}"}}, op_errors, a, nullptr, ops);
  const std::initializer_list<std::pair<const char*, const char*>> parked_errors = {
      {"400", "Invalid group name or parameter"},
      {"401", "Unauthenticated"},
      {"403", "Not an operator; or a tenant-scoped operator without ?message_id="},
      {"404", "Unknown group, or no such parked message"},
      {"503", "Broker unavailable, or no event database configured"}};
  platform(paths, "/api/v1/subscriptions/{group}/parked", "get",
           "Parked messages of a push group (queue sub.<group>.parked), oldest first; a "
           "tenant-scoped caller sees its tenant's only",
           {{"limit", "integer", "at most this many (default 50, at most 500)"},
            {"message_id", "string", "only this message"}},
           {{"200", "{group, queue, messages: [...], count, limit, truncated}"}}, parked_errors, a,
           nullptr, ops);
  platform(paths, "/api/v1/subscriptions/{group}/parked", "delete",
           "Drops parked messages (all, or ?message_id=)",
           {{"message_id", "string", "only this message (required for a tenant-scoped caller)"}},
           {{"200", "{group, dropped, message_id}"}}, parked_errors, a, nullptr, ops);
  platform(paths, "/api/v1/subscriptions/{group}/parked/retry", "post",
           "Puts parked messages back on sub.<group> with a fresh attempt count (all, or "
           "?message_id=)",
           {{"message_id", "string", "only this message (required for a tenant-scoped caller)"}},
           {{"200", "{group, requeued, message_id}"}}, parked_errors, a, nullptr, ops);
  platform(paths, "/api/v1/replays", "post",
           "Re-delivers stored events in [from_position, to_position] matching `types` to ONE push "
           "group's queue (header x-sb-replay: true), in the background. A tenant-scoped caller "
           "replays its tenant's events only. A body {\"subscription\", \"position\"} instead "
           "sets a checkpointed subscription's checkpoint (every partition; super admin only); "
           "its owner resumes from there within its poll interval.",
           {}, {{"202", "{replay_id, status_url}"}},
           {{"400", "Malformed body, unknown field, invalid group/type/tenant or range"},
            {"401", "Unauthenticated"},
            {"403", "Not an operator, or another tenant"},
            {"404", "Unknown push group"},
            {"200", "Checkpoint reset (subscription bodies)"},
            {"503", "Too many replays running (Retry-After), broker unavailable, or no database"}},
           a,
           R"({"type":"object","required":["group","from_position"],"additionalProperties":false,)"
           R"("properties":{"group":{"type":"string","pattern":"^[a-z0-9][a-z0-9_.-]{0,99}$"},)"
           R"("from_position":{"type":"integer","minimum":1},)"
           R"("to_position":{"type":"integer","minimum":1},)"
           R"("types":{"type":"array","items":{"type":"string"},"maxItems":64},)"
           R"("tenant":{"type":"string"}}})",
           ops);
  platform(paths, "/api/v1/replays/{id}", "get",
           "A replay's status (running/done/failed), progress {published, total, fraction} and "
           "ETA",
           {}, {{"200", "{replay_id, status, group, progress, eta_s, error, ...}"}},
           {{"401", "Unauthenticated"},
            {"403", "Not an operator"},
            {"404", "No such replay on this edge (or another tenant's)"}},
           a, nullptr, ops);
}

}  // namespace

std::string openapi_json(const registry::RouteTable& table, const std::string& catalog_json) {
  Document doc;
  doc.SetObject();
  auto& a = doc.GetAllocator();
  doc.AddMember("openapi", "3.0.3", a);
  Value info(rapidjson::kObjectType);
  info.AddMember("title", "Switchboard edge", a);
  info.AddMember("version", str(std::to_string(table.version), a), a);
  info.AddMember("description",
                 "Generated from the registry's route table (version = info.version) and the "
                 "catalog. Errors are {\"error\":{\"code\",\"message\",\"details\"}}.",
                 a);
  doc.AddMember("info", info, a);

  Value components(rapidjson::kObjectType);
  Value schemes(rapidjson::kObjectType);
  Value bearer(rapidjson::kObjectType);
  bearer.AddMember("type", "http", a);
  bearer.AddMember("scheme", "bearer", a);
  bearer.AddMember("bearerFormat", "JWT", a);
  schemes.AddMember("bearer", bearer, a);
  components.AddMember("securitySchemes", schemes, a);
  Value schemas(rapidjson::kObjectType);
  auto error_schema = json::parse(
      R"({"type":"object","required":["error"],"properties":{"error":{"type":"object",)"
      R"("required":["code","message","details"],"properties":{"code":{"type":"string"},)"
      R"("message":{"type":"string"},"details":{"type":"object"}}}}})");
  schemas.AddMember("Error", Value(error_schema, a), a);
  components.AddMember("schemas", schemas, a);
  doc.AddMember("components", components, a);
  Value security(rapidjson::kArrayType);
  Value req(rapidjson::kObjectType);
  req.AddMember("bearer", Value(rapidjson::kArrayType), a);
  security.PushBack(req, a);
  doc.AddMember("security", security, a);

  Value paths(rapidjson::kObjectType);
  // Platform endpoints.
  for (const auto* p : {"/health", "/ready"}) {
    auto op = operation(
        std::string_view(p) == "/health" ? "Liveness" : "Readiness with dependency status", a);
    op.AddMember("security", public_security(a), a);
    Value rs(rapidjson::kObjectType);
    rs.AddMember("200", response("OK", false, a), a);
    op.AddMember("responses", rs, a);
    put(paths, p, "get", std::move(op), a);
  }
  for (const auto& [p, summary] : std::vector<std::pair<std::string, std::string>>{
           {"/metrics", "Prometheus metrics"},
           {"/openapi.json", "This document"},
           {"/api/v1/services", "Services, versions, weights and live instances"},
           {"/api/v1/catalog", "AsyncAPI document of the catalog"}}) {
    auto op = operation(summary, a);
    Value rs(rapidjson::kObjectType);
    rs.AddMember("200", response("OK", false, a), a);
    add_errors(rs, {{"401", "Unauthenticated"}}, a);
    op.AddMember("responses", rs, a);
    put(paths, p, "get", std::move(op), a);
  }
  {
    auto op = operation("A command's status", a);
    Value params(rapidjson::kArrayType);
    params.PushBack(path_param("id", a), a);
    op.AddMember("parameters", params, a);
    Value rs(rapidjson::kObjectType);
    rs.AddMember("200", response("The command's last known status", false, a), a);
    add_errors(rs, {{"401", "Unauthenticated"}, {"404", "Unknown command id"}}, a);
    op.AddMember("responses", rs, a);
    put(paths, "/api/v1/commands/{id}", "get", std::move(op), a);
  }

  add_events_and_admin(paths, a);

  // Commands.
  auto catalog = parse_or_empty(catalog_json);
  if (catalog.HasMember("command_types") && catalog["command_types"].IsArray()) {
    for (const auto& c : catalog["command_types"].GetArray()) {
      if (!c.IsObject() || !c.HasMember("name") || !c.HasMember("owner")) continue;
      std::string name = c["name"].GetString();
      std::string owner = c["owner"].GetString();
      std::string short_name =
          name.rfind(owner + ".", 0) == 0 ? name.substr(owner.size() + 1) : name;
      auto op = operation("Command " + name, a);
      if (c.HasMember("description") && c["description"].IsString()) {
        op.AddMember("description", str(c["description"].GetString(), a), a);
      }
      Value parameters(rapidjson::kArrayType);
      for (const auto* h :
           {"Idempotency-Key", "X-Request-Timeout", "X-Service-Version", "Prefer"}) {
        Value p(rapidjson::kObjectType);
        p.AddMember("name", str(h, a), a);
        p.AddMember("in", "header", a);
        p.AddMember("required", false, a);
        Value s(rapidjson::kObjectType);
        s.AddMember("type", "string", a);
        p.AddMember("schema", s, a);
        parameters.PushBack(p, a);
      }
      op.AddMember("parameters", parameters, a);
      Value body(rapidjson::kObjectType);
      body.AddMember("required", true, a);
      Value content(rapidjson::kObjectType);
      Value media(rapidjson::kObjectType);
      media.AddMember("schema",
                      c.HasMember("schema") ? Value(c["schema"], a) : Value(rapidjson::kObjectType),
                      a);
      content.AddMember("application/json", media, a);
      body.AddMember("content", content, a);
      op.AddMember("requestBody", body, a);
      if (c.HasMember("roles") && c["roles"].IsArray())
        op.AddMember("x-roles", Value(c["roles"], a), a);
      Value rs(rapidjson::kObjectType);
      rs.AddMember("200", response("Applied: command_id, position, event_ids", false, a), a);
      rs.AddMember("201", response("Applied, stream created", false, a), a);
      rs.AddMember("202", response("Accepted: command_id and status_url", false, a), a);
      add_errors(rs,
                 {{"400", "Bad JSON or schema violation (details.path)"},
                  {"401", "Unauthenticated"},
                  {"403", "Forbidden"},
                  {"404", "Unknown service or command"},
                  {"409", "Expected-version conflict (details.current_version)"},
                  {"413", "Body too large"},
                  {"422", "Domain rule, or Idempotency-Key reused"},
                  {"503", "No live instance"},
                  {"504", "Deadline exceeded (the command did not apply)"}},
                 a);
      op.AddMember("responses", rs, a);
      put(paths, "/api/v1/commands/" + owner + "/" + short_name, "post", std::move(op), a);
    }
  }

  // Routed endpoints of live versions.
  for (const auto& s : table.services) {
    std::map<std::pair<std::string, std::string>,
             std::pair<registry::Endpoint, std::set<std::string>>>
        eps;
    for (const auto& v : s.versions) {
      for (const auto& e : v.endpoints) {
        auto& slot = eps[{e.path, e.method}];
        slot.first = e;
        slot.second.insert(v.version);
      }
    }
    for (const auto& [key, value] : eps) {
      const auto& e = value.first;
      auto op = operation(e.method + " " + e.path + " of " + s.name, a);
      Value params(rapidjson::kArrayType);
      for (const auto& p : template_params(e.path)) params.PushBack(path_param(p, a), a);
      op.AddMember("parameters", params, a);
      if (e.is_public) op.AddMember("security", public_security(a), a);
      Value roles(rapidjson::kArrayType);
      for (const auto& r : e.roles) roles.PushBack(str(r, a), a);
      op.AddMember("x-roles", roles, a);
      Value versions(rapidjson::kArrayType);
      for (const auto& v : value.second) versions.PushBack(str(v, a), a);
      op.AddMember("x-service-versions", versions, a);
      Value rs(rapidjson::kObjectType);
      rs.AddMember("default", response("The service's answer", false, a), a);
      add_errors(rs,
                 {{"401", "Unauthenticated"},
                  {"403", "Forbidden"},
                  {"404", "Unknown route"},
                  {"503", "No live instance"},
                  {"504", "Deadline exceeded"}},
                 a);
      op.AddMember("responses", rs, a);
      put(paths, "/api/" + s.name + e.path, lower(e.method), std::move(op), a);
    }
  }
  doc.AddMember("paths", paths, a);
  return render(doc);
}

std::string asyncapi_json(const std::string& catalog_json) {
  auto catalog = parse_or_empty(catalog_json);
  Document doc;
  doc.SetObject();
  auto& a = doc.GetAllocator();
  doc.AddMember("asyncapi", "2.6.0", a);
  Value info(rapidjson::kObjectType);
  info.AddMember("title", "Switchboard events and commands", a);
  std::int64_t version = 0;
  if (catalog.HasMember("version") && catalog["version"].IsInt64())
    version = catalog["version"].GetInt64();
  info.AddMember("version", str(std::to_string(version), a), a);
  info.AddMember("description",
                 "Generated from the catalog: stored events on the topic exchange sb.events "
                 "(routing key = type), transient ones on sb.signals; commands over sb.rpc "
                 "(docs/protocol.md).",
                 a);
  doc.AddMember("info", info, a);
  doc.AddMember("defaultContentType", "application/json", a);
  Value channels(rapidjson::kObjectType);
  if (catalog.HasMember("event_types") && catalog["event_types"].IsArray()) {
    for (const auto& e : catalog["event_types"].GetArray()) {
      if (!e.IsObject() || !e.HasMember("type")) continue;
      Value ch(rapidjson::kObjectType);
      const bool transient =
          e.HasMember("transient") && e["transient"].IsBool() && e["transient"].GetBool();
      ch.AddMember("description",
                   str(transient ? "sb.signals (transient)" : "sb.events (stored)", a), a);
      Value sub(rapidjson::kObjectType);
      Value msg(rapidjson::kObjectType);
      msg.AddMember("name", Value(e["type"], a), a);
      if (e.HasMember("owner")) msg.AddMember("x-owner", Value(e["owner"], a), a);
      if (e.HasMember("current_version"))
        msg.AddMember("x-schema-version", Value(e["current_version"], a), a);
      if (e.HasMember("description")) msg.AddMember("summary", Value(e["description"], a), a);
      if (e.HasMember("versions") && e["versions"].IsArray()) {
        const auto& vs = e["versions"].GetArray();
        if (!vs.Empty() && vs[vs.Size() - 1].HasMember("schema")) {
          msg.AddMember("payload", Value(vs[vs.Size() - 1]["schema"], a), a);
        }
        msg.AddMember("x-versions", Value(e["versions"], a), a);
      }
      sub.AddMember("message", msg, a);
      ch.AddMember("subscribe", sub, a);
      channels.AddMember(Value(e["type"], a), ch, a);
    }
  }
  if (catalog.HasMember("command_types") && catalog["command_types"].IsArray()) {
    for (const auto& c : catalog["command_types"].GetArray()) {
      if (!c.IsObject() || !c.HasMember("name") || !c["name"].IsString()) continue;
      Value ch(rapidjson::kObjectType);
      ch.AddMember("description", "command over sb.rpc (docs/protocol.md 9.2)", a);
      Value pub(rapidjson::kObjectType);
      Value msg(rapidjson::kObjectType);
      msg.AddMember("name", Value(c["name"], a), a);
      if (c.HasMember("owner")) msg.AddMember("x-owner", Value(c["owner"], a), a);
      if (c.HasMember("schema")) msg.AddMember("payload", Value(c["schema"], a), a);
      if (c.HasMember("roles")) msg.AddMember("x-roles", Value(c["roles"], a), a);
      if (c.HasMember("emits")) msg.AddMember("x-emits", Value(c["emits"], a), a);
      pub.AddMember("message", msg, a);
      ch.AddMember("publish", pub, a);
      channels.AddMember(str("command/" + std::string(c["name"].GetString()), a), ch, a);
    }
  }
  doc.AddMember("channels", channels, a);
  return render(doc);
}

}  // namespace sb::edge
