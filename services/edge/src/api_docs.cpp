#include "switchboard/edge/api_docs.hpp"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <map>
#include <set>

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
