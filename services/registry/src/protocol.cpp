#include "switchboard/registry/protocol.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "switchboard/events/uuid.hpp"
#include "switchboard/shared/json.hpp"

namespace sb::registry {
namespace {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

void put(Writer& w, std::string_view key, std::string_view value) {
  w.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
  w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
}

void key(Writer& w, std::string_view k) {
  w.Key(k.data(), static_cast<rapidjson::SizeType>(k.size()));
}

void raw(Writer& w, std::string_view json) {
  w.RawValue(json.data(), json.size(), rapidjson::kObjectType);
}

std::vector<std::string> string_array(const rapidjson::Value& object, std::string_view name) {
  std::vector<std::string> out;
  const auto& a = json::require(object, name);
  if (!a.IsArray()) throw json::Error("must be an array", "/" + std::string(name));
  for (const auto& v : a.GetArray()) {
    if (!v.IsString()) throw json::Error("must hold strings", "/" + std::string(name));
    out.emplace_back(v.GetString(), v.GetStringLength());
  }
  return out;
}

std::vector<std::string> object_texts(const rapidjson::Value& object, std::string_view name) {
  std::vector<std::string> out;
  const auto& a = json::require(object, name);
  if (!a.IsArray()) throw json::Error("must be an array", "/" + std::string(name));
  for (const auto& v : a.GetArray()) out.push_back(json::to_string(v));
  return out;
}

}  // namespace

std::string instance_stream(std::string_view instance_id) {
  return "service-instance-" + std::string(instance_id);
}
std::string service_stream(std::string_view service) {
  return "service-" + std::string(service);
}
std::string register_requested_key(std::string_view service) {
  return std::string(kRegisterRequestedPrefix) + std::string(service);
}

std::string_view to_string(Transport::Kind kind) {
  return kind == Transport::Kind::http ? "http" : "amqp";
}

std::chrono::milliseconds Registration::heartbeat_interval() const {
  try {
    auto doc = json::parse(metadata);
    if (const auto* v = json::find(doc, kHeartbeatIntervalMetadata); v && v->IsInt64()) {
      const auto ms = v->GetInt64();
      if (ms >= 100 && ms <= 3600000) return std::chrono::milliseconds(ms);
    }
  } catch (const json::Error&) {
  }
  return kDefaultHeartbeatInterval;
}

std::chrono::milliseconds Registration::ttl() const {
  return heartbeat_interval() * kMissedHeartbeats;
}

Endpoint parse_endpoint(const rapidjson::Value& e) {
  if (!e.IsObject()) throw json::Error("endpoint must be an object", "");
  Endpoint ep;
  ep.method = json::require_string(e, "method");
  ep.path = json::require_string(e, "path");
  ep.roles = string_array(e, "roles");
  ep.is_public = json::require_bool(e, "public");
  if (const auto* rl = json::find(e, "rate_limit"); rl && rl->IsObject()) {
    RateLimit limit;
    const auto& ps = json::require(*rl, "per_second");
    if (!ps.IsNumber()) throw json::Error("must be a number", "/rate_limit/per_second");
    limit.per_second = ps.GetDouble();
    limit.burst = json::optional_int64(*rl, "burst");
    ep.rate_limit = limit;
  }
  return ep;
}

Registration parse_registration(const rapidjson::Value& data) {
  if (!data.IsObject()) throw json::Error("registration must be an object", "");
  Registration r;
  r.name = json::require_string(data, "name");
  r.version = json::require_string(data, "version");
  r.instance_id = json::require_string(data, "instance_id");
  const auto& t = json::require(data, "transport");
  if (!t.IsObject()) throw json::Error("must be an object", "/transport");
  const auto kind = json::require_string(t, "kind");
  if (kind == "http") {
    r.transport.kind = Transport::Kind::http;
    r.transport.base_url = json::require_string(t, "base_url");
  } else if (kind != "amqp") {
    throw json::Error("must be amqp or http", "/transport/kind");
  }
  const auto& eps = json::require(data, "endpoints");
  if (!eps.IsArray()) throw json::Error("must be an array", "/endpoints");
  for (const auto& e : eps.GetArray()) r.endpoints.push_back(parse_endpoint(e));
  r.event_types = object_texts(data, "event_types");
  r.command_types = object_texts(data, "command_types");
  const auto& subs = json::require(data, "subscriptions");
  if (!subs.IsArray()) throw json::Error("must be an array", "/subscriptions");
  for (const auto& s : subs.GetArray()) {
    Subscription sub;
    sub.group = json::require_string(s, "group");
    sub.kind = json::require_string(s, "kind");
    sub.event_types = string_array(s, "event_types");
    r.subscriptions.push_back(std::move(sub));
  }
  const auto& meta = json::require(data, "metadata");
  if (!meta.IsObject()) throw json::Error("must be an object", "/metadata");
  r.metadata = json::to_string(meta);
  return r;
}

namespace {
void write_endpoint(Writer& w, const Endpoint& e) {
  w.StartObject();
  put(w, "method", e.method);
  put(w, "path", e.path);
  key(w, "roles");
  w.StartArray();
  for (const auto& role : e.roles) w.String(role.c_str());
  w.EndArray();
  key(w, "public");
  w.Bool(e.is_public);
  if (e.rate_limit) {
    key(w, "rate_limit");
    w.StartObject();
    key(w, "per_second");
    w.Double(e.rate_limit->per_second);
    if (e.rate_limit->burst) {
      key(w, "burst");
      w.Int64(*e.rate_limit->burst);
    }
    w.EndObject();
  }
  w.EndObject();
}
}  // namespace

std::string endpoint_json(const Endpoint& e) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  write_endpoint(w, e);
  return sb.GetString();
}

std::string to_json(const Registration& r) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  put(w, "name", r.name);
  put(w, "version", r.version);
  put(w, "instance_id", r.instance_id);
  key(w, "transport");
  w.StartObject();
  put(w, "kind", to_string(r.transport.kind));
  if (r.transport.kind == Transport::Kind::http) put(w, "base_url", r.transport.base_url);
  w.EndObject();
  key(w, "endpoints");
  w.StartArray();
  for (const auto& e : r.endpoints) write_endpoint(w, e);
  w.EndArray();
  key(w, "event_types");
  w.StartArray();
  for (const auto& t : r.event_types) raw(w, t);
  w.EndArray();
  key(w, "command_types");
  w.StartArray();
  for (const auto& t : r.command_types) raw(w, t);
  w.EndArray();
  key(w, "subscriptions");
  w.StartArray();
  for (const auto& s : r.subscriptions) {
    w.StartObject();
    put(w, "group", s.group);
    put(w, "kind", s.kind);
    key(w, "event_types");
    w.StartArray();
    for (const auto& t : s.event_types) w.String(t.c_str());
    w.EndArray();
    w.EndObject();
  }
  w.EndArray();
  key(w, "metadata");
  raw(w, r.metadata);
  w.EndObject();
  return sb.GetString();
}

Heartbeat parse_heartbeat(std::string_view body) {
  auto doc = json::parse(body);
  if (!doc.IsObject()) throw json::Error("heartbeat must be an object", "");
  Heartbeat h;
  h.name = json::require_string(doc, "name");
  h.instance_id = json::require_string(doc, "instance_id");
  h.version = json::require_string(doc, "version");
  if (h.instance_id.empty()) throw json::Error("must not be empty", "/instance_id");
  if (const auto* load = json::find(doc, "load"); load && load->IsObject()) {
    h.in_flight = json::optional_int64(*load, "in_flight");
    if (const auto* cpu = json::find(*load, "cpu"); cpu && cpu->IsNumber())
      h.cpu = cpu->GetDouble();
  }
  return h;
}

std::string to_json(const Heartbeat& h) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  put(w, "name", h.name);
  put(w, "instance_id", h.instance_id);
  put(w, "version", h.version);
  if (h.in_flight || h.cpu) {
    key(w, "load");
    w.StartObject();
    if (h.in_flight) {
      key(w, "in_flight");
      w.Int64(*h.in_flight);
    }
    if (h.cpu) {
      key(w, "cpu");
      w.Double(*h.cpu);
    }
    w.EndObject();
  }
  w.EndObject();
  return sb.GetString();
}

Deregistration parse_deregistration(const rapidjson::Value& data) {
  if (!data.IsObject()) throw json::Error("deregistration must be an object", "");
  Deregistration d;
  d.name = json::require_string(data, "name");
  d.instance_id = json::require_string(data, "instance_id");
  d.reason = json::optional_string(data, "reason").value_or("");
  return d;
}

std::string to_json(const Deregistration& d) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  put(w, "name", d.name);
  put(w, "instance_id", d.instance_id);
  if (!d.reason.empty()) put(w, "reason", d.reason);
  w.EndObject();
  return sb.GetString();
}

std::string register_requested_json(std::string_view name, std::string_view instance_id) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  put(w, "name", name);
  put(w, "instance_id", instance_id);
  w.EndObject();
  return sb.GetString();
}

std::string routes_changed_json(std::int64_t version) {
  return "{\"version\":" + std::to_string(version) + "}";
}

std::string expiry_command_id(std::string_view instance_id, std::int64_t registration_position) {
  return "expire:" + std::string(instance_id) + ":" + std::to_string(registration_position);
}

std::string append_request_json(const AppendOne& a) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  put(w, "stream", a.stream);
  key(w, "expected_version");
  if (!a.expected_version.empty() &&
      a.expected_version.find_first_not_of("0123456789") == std::string::npos) {
    w.Int64(std::stoll(a.expected_version));
  } else {
    w.String(a.expected_version.c_str());
  }
  put(w, "tenant", a.tenant);
  key(w, "events");
  w.StartArray();
  w.StartObject();
  put(w, "id", a.event_id);
  put(w, "type", a.type);
  key(w, "schema");
  w.Int(1);
  put(w, "occurred_at", events::format_rfc3339_ms(events::now_ms()));
  key(w, "data");
  raw(w, a.data);
  w.EndObject();
  w.EndArray();
  w.EndObject();
  return sb.GetString();
}

}  // namespace sb::registry
