#include "switchboard/sdk/wire.hpp"

#include <rapidjson/document.h>

#include <algorithm>
#include <charconv>

#include "switchboard/sdk/routing.hpp"
#include "switchboard/shared/json.hpp"

namespace sb::sdk {
namespace {

using text::lower;
using text::parse_int;
using text::upper;

// A JSON object of strings -> map; anything else is ignored.
std::map<std::string, std::string> string_map(std::string_view text, bool lower_keys) {
  std::map<std::string, std::string> out;
  if (text.empty()) return out;
  try {
    auto doc = json::parse(text);
    if (!doc.IsObject()) return out;
    for (const auto& m : doc.GetObject()) {
      std::string key(m.name.GetString(), m.name.GetStringLength());
      if (lower_keys) key = lower(key);
      if (m.value.IsString()) {
        out[key] = std::string(m.value.GetString(), m.value.GetStringLength());
      } else {
        out[key] = json::to_string(m.value);
      }
    }
  } catch (const std::exception&) {
    out.clear();
  }
  return out;
}

std::string string_of(const broker::Message& m, std::string_view key) {
  if (const auto* s = m.header_string(key)) return *s;
  if (auto i = m.header_int(key)) return std::to_string(*i);
  return {};
}

std::string map_json(const std::map<std::string, std::string>& map) {
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : map) {
    if (!first) out += ',';
    first = false;
    json::append_quoted(out, k);
    out += ':';
    json::append_quoted(out, v);
  }
  out += '}';
  return out;
}

bool is_json_object(std::string_view text) {
  try {
    return json::parse(text).IsObject();
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace

std::string rpc_service_key(std::string_view name, std::string_view version) {
  std::string out(name);
  out += '.';
  out += version;
  return out;
}

std::string error_body(std::string_view code, std::string_view message,
                       std::string_view details_json) {
  std::string out = "{\"error\":{\"code\":";
  json::append_quoted(out, code);
  out += ",\"message\":";
  json::append_quoted(out, message);
  out += ",\"details\":";
  out += is_json_object(details_json) ? std::string(details_json) : std::string("{}");
  out += "}}";
  return out;
}

std::vector<std::string> split_roles(std::string_view text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    auto comma = text.find(',', start);
    if (comma == std::string_view::npos) comma = text.size();
    auto item = text.substr(start, comma - start);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (!item.empty()) out.emplace_back(item);
    start = comma + 1;
  }
  return out;
}

SystemTime from_epoch_ms(std::int64_t ms) {
  return SystemTime(
      std::chrono::duration_cast<SystemTime::duration>(std::chrono::milliseconds(ms)));
}

std::int64_t to_epoch_ms(SystemTime t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

Request request_from_amqp(const broker::Message& m, std::chrono::milliseconds default_deadline) {
  Request r;
  r.kind = string_of(m, kKindHeader) == "command" ? Request::Kind::command : Request::Kind::request;
  r.body = m.body;
  r.content_type = m.content_type;
  if (auto d = m.header_int(kDeadlineHeader)) {
    r.deadline = from_epoch_ms(*d);
  } else if (auto t = parse_int(string_of(m, kDeadlineHeader))) {
    r.deadline = from_epoch_ms(*t);
  } else {
    r.deadline = std::chrono::system_clock::now() + default_deadline;
  }
  r.request_id = string_of(m, kRequestIdHeader);
  r.correlation_id = string_of(m, kCorrelationHeader);
  r.traceparent = string_of(m, kTraceparentHeader);
  r.tenant = string_of(m, kTenantHeader);
  r.actor = string_of(m, kActorHeader);
  r.client_address = string_of(m, kClientAddressHeader);
  r.roles = split_roles(string_of(m, kRolesHeader));
  if (auto p = m.header_int(kMinPositionHeader)) {
    r.min_position = *p;
  } else if (auto t = parse_int(string_of(m, kMinPositionHeader))) {
    r.min_position = *t;
  }
  if (r.kind == Request::Kind::command) {
    r.method = "POST";
    r.command = string_of(m, kCommandHeader);
    r.command_id = string_of(m, kCommandIdHeader);
    r.path = std::string(kHttpCommandPrefix) + r.command;
  } else {
    r.method = upper(string_of(m, kMethodHeader));
    r.path = string_of(m, kPathHeader);
    r.route = string_of(m, kRouteHeader);
    r.params = string_map(string_of(m, kParamsHeader), false);
    r.query = string_of(m, kQueryHeader);
  }
  r.headers = string_map(string_of(m, kHttpHeadersHeader), true);
  if (r.correlation_id.empty()) r.correlation_id = r.request_id;
  return r;
}

broker::Message amqp_reply(const Response& response) {
  broker::Message m;
  m.body = response.body;
  m.content_type = response.content_type;
  m.persistent = false;
  m.headers[std::string(kStatusHeader)] = static_cast<std::int64_t>(response.status);
  if (!response.headers.empty()) {
    m.headers[std::string(kHttpHeadersHeader)] = map_json(response.headers);
  }
  return m;
}

Request request_from_http(std::string_view method, std::string_view target,
                          const std::vector<std::pair<std::string, std::string>>& headers,
                          std::string body, std::chrono::milliseconds default_deadline) {
  Request r;
  r.method = upper(method);
  const auto q = target.find('?');
  r.path = std::string(target.substr(0, q));
  if (q != std::string_view::npos) r.query = std::string(target.substr(q + 1));
  r.body = std::move(body);
  std::map<std::string, std::string> all;
  for (const auto& [k, v] : headers) {
    auto key = lower(k);
    auto it = all.find(key);
    if (it == all.end()) {
      all.emplace(std::move(key), v);
    } else {
      it->second += ", " + v;
    }
  }
  auto take = [&all](std::string_view key) -> std::string {
    auto it = all.find(std::string(key));
    if (it == all.end()) return {};
    return it->second;
  };
  r.content_type = take("content-type");
  if (auto d = parse_int(take(kDeadlineHeader))) {
    r.deadline = from_epoch_ms(*d);
  } else {
    r.deadline = std::chrono::system_clock::now() + default_deadline;
  }
  r.request_id = take(kRequestIdHeader);
  r.correlation_id = take(kCorrelationHeader);
  r.traceparent = take(kTraceparentHeader);
  r.tenant = take(kTenantHeader);
  r.actor = take(kActorHeader);
  r.client_address = take(kClientAddressHeader);
  r.roles = split_roles(take(kRolesHeader));
  r.route = take(kRouteHeader);
  if (auto p = parse_int(take(kHttpMinPositionHeader))) {
    r.min_position = *p;
  } else if (auto p2 = parse_int(take(kMinPositionHeader))) {
    r.min_position = *p2;
  }
  const std::string command_header = take(kCommandHeader);
  if (r.method == "POST" && r.path.rfind(kHttpCommandPrefix, 0) == 0) {
    r.kind = Request::Kind::command;
    r.command = command_header.empty()
                    ? percent_decode(std::string_view(r.path).substr(kHttpCommandPrefix.size()))
                    : command_header;
    r.command_id = take(kCommandIdHeader);
  }
  r.headers = std::move(all);
  if (r.correlation_id.empty()) r.correlation_id = r.request_id;
  return r;
}

int status_for_store_error(std::string_view code) {
  if (code == "wrong_expected_version" || code == "partial_duplicate" ||
      code == "event_id_reused") {
    return 409;
  }
  if (code == "deadline_exceeded") return 504;
  if (code == "unavailable") return 503;
  if (code == "stream_not_found") return 404;
  if (code == "too_large") return 413;
  return 500;
}

AppendOutcome failed_outcome(int status, std::string code, std::string message,
                             std::string details_json) {
  AppendOutcome o;
  o.ok = false;
  o.status = status;
  o.code = std::move(code);
  o.message = std::move(message);
  o.details = is_json_object(details_json) ? std::move(details_json) : std::string("{}");
  return o;
}

namespace {
AppendOutcome outcome_from_reply_document(const rapidjson::Document& doc, std::string stream,
                                          std::vector<std::string> event_ids);
}  // namespace

AppendOutcome outcome_from_store_reply(std::string_view body, std::string stream,
                                       std::vector<std::string> event_ids) {
  rapidjson::Document doc;
  try {
    doc = json::parse(body);
  } catch (const std::exception& e) {
    return failed_outcome(502, "store_error", std::string("unreadable store reply: ") + e.what());
  }
  if (!doc.IsObject()) return failed_outcome(502, "store_error", "store reply is not an object");
  try {
    return outcome_from_reply_document(doc, std::move(stream), std::move(event_ids));
  } catch (const json::Error& e) {
    return failed_outcome(502, "store_error", std::string("unreadable store reply: ") + e.what());
  }
}

namespace {
AppendOutcome outcome_from_reply_document(const rapidjson::Document& doc, std::string stream,
                                          std::vector<std::string> event_ids) {
  if (const auto* err = json::find(doc, "error"); err != nullptr && err->IsObject()) {
    const auto code = json::optional_string(*err, "code").value_or("store_error");
    const auto message = json::optional_string(*err, "message").value_or("");
    std::string details = "{}";
    if (const auto* d = json::find(*err, "details"); d != nullptr && d->IsObject()) {
      details = json::to_string(*d);
    }
    auto o = failed_outcome(status_for_store_error(code), code, message, details);
    o.stream = std::move(stream);
    return o;
  }
  AppendOutcome o;
  const auto result = json::optional_string(doc, "result").value_or("");
  if (result != "appended" && result != "duplicate") {
    return failed_outcome(502, "store_error", "store reply without a result");
  }
  o.ok = true;
  o.status = 200;
  o.duplicate = result == "duplicate";
  if (const auto* p = json::find(doc, "positions"); p != nullptr && p->IsArray()) {
    for (const auto& v : p->GetArray()) {
      if (v.IsInt64()) o.positions.push_back(v.GetInt64());
    }
  }
  if (!o.positions.empty()) o.position = o.positions.back();
  if (auto v = json::optional_int64(doc, "last_version")) o.version = *v;
  const auto n = static_cast<std::int64_t>(event_ids.size());
  o.created = n > 0 && o.version - (n - 1) == 0;
  if (o.created) o.status = 201;
  o.stream = std::move(stream);
  o.event_ids = std::move(event_ids);
  return o;
}
}  // namespace

Response AppendOutcome::response() const {
  if (!ok) return Response::error(status == 0 ? 500 : status, code, message, details);
  std::string body = "{\"position\":" + std::to_string(position) + ",\"event_ids\":[";
  for (std::size_t i = 0; i < event_ids.size(); ++i) {
    if (i > 0) body += ',';
    json::append_quoted(body, event_ids[i]);
  }
  body += "],\"stream\":";
  json::append_quoted(body, stream);
  body += ",\"version\":" + std::to_string(version) + "}";
  return Response::json(std::move(body), created ? 201 : 200);
}

}  // namespace sb::sdk
