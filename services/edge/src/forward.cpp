#include "switchboard/edge/forward.hpp"

#include <rapidjson/document.h>

#include "switchboard/broker/rpc.hpp"
#include "switchboard/edge/filters.hpp"
#include "switchboard/shared/json.hpp"

namespace sb::edge {

namespace {

std::int64_t epoch_ms(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out += ',';
    out += s;
  }
  return out;
}

std::string headers_json(const std::vector<Header>& headers) {
  std::string out = "{";
  for (const auto& h : headers) {
    if (out.size() > 1) out += ',';
    json::append_quoted(out, h.name);
    out += ':';
    json::append_quoted(out, h.value);
  }
  out += '}';
  return out;
}

void common_headers(broker::Message& m, const CallContext& c) {
  m.headers[std::string(broker::kDeadlineHeader)] = epoch_ms(c.service_deadline);
  m.headers["x-sb-request-id"] = c.request_id;
  m.headers[std::string(broker::kCorrelationIdHeader)] = c.correlation_id;
  if (!c.traceparent.empty()) m.headers[std::string(broker::kTraceparentHeader)] = c.traceparent;
  m.headers["x-sb-tenant"] = c.tenant;
  m.headers["x-sb-actor"] = c.actor;
  m.headers["x-sb-roles"] = join(c.roles);
  m.headers["x-sb-client-address"] = c.client_address;
  m.message_id = c.request_id;
  m.persistent = false;
}

void common_http_headers(HttpRequest& out, const CallContext& c) {
  out.headers.push_back({"x-sb-tenant", c.tenant});
  out.headers.push_back({"x-sb-actor", c.actor});
  out.headers.push_back({"x-sb-roles", join(c.roles)});
  out.headers.push_back({"x-sb-client-address", c.client_address});
  out.headers.push_back({"x-sb-request-id", c.request_id});
  out.headers.push_back({"x-sb-deadline", std::to_string(epoch_ms(c.service_deadline))});
  out.headers.push_back({"x-correlation-id", c.correlation_id});
  if (!c.traceparent.empty()) out.headers.push_back({"traceparent", c.traceparent});
}

}  // namespace

broker::Message rpc_request(const HttpRequest& request, const std::string& path,
                            const Target& target, const CallContext& context) {
  broker::Message m;
  m.body = request.body;
  const auto* ct = request.header("content-type");
  m.content_type = ct ? *ct : "";
  common_headers(m, context);
  m.headers["x-sb-kind"] = std::string("request");
  m.headers["x-sb-method"] = request.method;
  m.headers["x-sb-path"] = path;
  m.headers["x-sb-route"] = target.endpoint.path;
  std::string params = "{";
  for (const auto& [k, v] : target.params) {
    if (params.size() > 1) params += ',';
    json::append_quoted(params, k);
    params += ':';
    json::append_quoted(params, v);
  }
  params += '}';
  m.headers["x-sb-params"] = params;
  m.headers["x-sb-query"] = request.query;
  m.headers["x-sb-http-headers"] = headers_json(passthrough_headers(request));
  if (context.min_position) m.headers["x-sb-min-position"] = *context.min_position;
  return m;
}

broker::Message rpc_command(const std::string& command, const std::string& command_id,
                            const std::string& body, const CallContext& context) {
  broker::Message m;
  m.body = body;
  m.content_type = "application/json";
  common_headers(m, context);
  m.headers["x-sb-kind"] = std::string("command");
  m.headers["x-sb-command"] = command;
  m.headers["x-sb-command-id"] = command_id;
  return m;
}

HttpResponse response_from_reply(const broker::Message& reply) {
  if (const auto* err = reply.header_string(broker::kRpcErrorHeader)) {
    return error_response(502, "upstream_error", "the service failed to handle the request",
                          "{\"error\":" + json::quoted(*err) + "}");
  }
  HttpResponse r;
  auto status = reply.header_int("x-sb-status");
  r.status = status ? static_cast<int>(*status) : 200;
  if (r.status < 200 || r.status > 599) {  // a 1xx is never a final answer
    return error_response(502, "upstream_error", "the service answered an invalid status");
  }
  r.content_type = reply.content_type;
  r.body = reply.body;
  if (const auto* hs = reply.header_string("x-sb-http-headers")) {
    rapidjson::Document d;
    d.Parse(hs->data(), hs->size());
    if (!d.HasParseError() && d.IsObject()) {
      for (const auto& m : d.GetObject()) {
        if (!m.value.IsString()) continue;
        auto name = lower(std::string_view(m.name.GetString(), m.name.GetStringLength()));
        if (hop_by_hop(name) || name == "content-type") continue;
        r.headers.push_back({std::move(name), m.value.GetString()});
      }
    }
  }
  return r;
}

HttpRequest upstream_request(const HttpRequest& request, const std::string& path,
                             const Target& target, const CallContext& context) {
  HttpRequest out;
  out.method = request.method;
  out.path = path;
  out.query = request.query;
  out.body = request.body;
  out.headers = passthrough_headers(request);
  common_http_headers(out, context);
  out.headers.push_back({"x-sb-route", target.endpoint.path});
  if (context.min_position) {
    out.headers.push_back({"x-min-position", std::to_string(*context.min_position)});
  }
  return out;
}

HttpRequest upstream_command(const HttpRequest& request, const std::string& command,
                             const std::string& command_id, const CallContext& context) {
  HttpRequest out;
  out.method = "POST";
  out.path = "/_sb/commands/" + command;
  out.body = request.body;
  out.headers = passthrough_headers(request);
  out.headers.push_back({"content-type", "application/json"});
  common_http_headers(out, context);
  out.headers.push_back({"x-sb-command", command});
  out.headers.push_back({"x-sb-command-id", command_id});
  return out;
}

HttpResponse command_response(const HttpResponse& from_service, const std::string& command_id) {
  rapidjson::Document d;
  d.Parse(from_service.body.data(), from_service.body.size());
  const bool object = !d.HasParseError() && d.IsObject();
  if (from_service.status >= 200 && from_service.status < 300) {
    if (!object) {
      return error_response(502, "upstream_error", "the service's answer is not a JSON object",
                            "{\"command_id\":" + json::quoted(command_id) + "}");
    }
    HttpResponse r = from_service;
    r.content_type = "application/json";
    std::string body = "{\"command_id\":" + json::quoted(command_id);
    for (const auto& m : d.GetObject()) {
      std::string_view name(m.name.GetString(), m.name.GetStringLength());
      if (name == "command_id") continue;
      body += ',';
      json::append_quoted(body, name);
      body += ':';
      body += json::to_string(m.value);
    }
    body += '}';
    r.body = std::move(body);
    return r;
  }
  if (object && d.HasMember("error") && d["error"].IsObject() && d["error"].HasMember("code") &&
      d["error"]["code"].IsString()) {
    HttpResponse r = from_service;
    r.content_type = "application/json";
    return r;
  }
  if (from_service.status >= 400 && from_service.status < 600) {
    return error_response(from_service.status >= 500 ? 502 : from_service.status,
                          from_service.status >= 500 ? "upstream_error" : "rejected",
                          "the service refused the command without an error body",
                          "{\"status\":" + std::to_string(from_service.status) + "}");
  }
  return error_response(502, "upstream_error", "the service answered an unexpected status",
                        "{\"status\":" + std::to_string(from_service.status) + "}");
}

}  // namespace sb::edge
