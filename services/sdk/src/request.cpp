// Request/Response helpers, the Plugin's declaration helpers and the
// command context's append (section 9.2).
#include <algorithm>
#include <thread>

#include "switchboard/events/time.hpp"
#include "switchboard/events/uuid.hpp"
#include "switchboard/sdk/routing.hpp"
#include "switchboard/sdk/sdk.hpp"
#include "switchboard/sdk/wire.hpp"
#include "switchboard/shared/json.hpp"
#include "switchboard/shared/log.hpp"

namespace sb::sdk {
using text::lower;

std::string Request::header(std::string_view name) const {
  auto it = headers.find(lower(name));
  return it == headers.end() ? std::string() : it->second;
}

std::optional<std::string> Request::query_param(std::string_view name) const {
  std::string_view q = query;
  while (!q.empty()) {
    const auto amp = q.find('&');
    const auto item = q.substr(0, amp);
    const auto eq = item.find('=');
    const auto key = percent_decode(item.substr(0, eq), true);
    if (key == name) {
      return eq == std::string_view::npos ? std::string()
                                          : percent_decode(item.substr(eq + 1), true);
    }
    if (amp == std::string_view::npos) break;
    q.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

bool Request::has_role(std::string_view role) const {
  return std::find(roles.begin(), roles.end(), role) != roles.end();
}

std::chrono::milliseconds Request::remaining() const {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::system_clock::now());
  return std::max(left, std::chrono::milliseconds(0));
}

Response Response::json(std::string body, int status) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

Response Response::error(int status, std::string_view code, std::string_view message,
                         std::string details_json) {
  Response r;
  r.status = status;
  r.body = error_body(code, message, details_json);
  return r;
}

Plugin& Plugin::get(std::string path, RequestHandler handler, std::vector<std::string> roles) {
  Endpoint e;
  e.method = "GET";
  e.path = std::move(path);
  e.handler = std::move(handler);
  e.roles = std::move(roles);
  return endpoint(std::move(e));
}

Plugin& Plugin::post(std::string path, RequestHandler handler, std::vector<std::string> roles) {
  Endpoint e;
  e.method = "POST";
  e.path = std::move(path);
  e.handler = std::move(handler);
  e.roles = std::move(roles);
  return endpoint(std::move(e));
}

Plugin& Plugin::endpoint(Endpoint e) {
  endpoints.push_back(std::move(e));
  return *this;
}

Plugin& Plugin::command(std::string command_name, std::string schema, CommandHandler handler,
                        std::vector<std::string> roles) {
  Command c;
  c.name = std::move(command_name);
  c.schema = std::move(schema);
  c.handler = std::move(handler);
  c.roles = std::move(roles);
  commands.push_back(std::move(c));
  return *this;
}

Plugin& Plugin::event_type(std::string type, std::string schema) {
  EventTypeDecl d;
  d.type = std::move(type);
  d.schema = std::move(schema);
  event_types.push_back(std::move(d));
  return *this;
}

Plugin& Plugin::react(std::string reaction_name, std::vector<std::string> types,
                      std::shared_ptr<pg::Pool> store, ReactionHandler handler, int partitions) {
  Reaction r;
  r.name = std::move(reaction_name);
  r.event_types = std::move(types);
  r.store = std::move(store);
  r.handler = std::move(handler);
  r.partitions = partitions;
  reactions.push_back(std::move(r));
  return *this;
}

CommandContext::CommandContext(const Request& request, StoreClient& store)
    : request_(request), store_(store) {}

std::optional<events::EventId> CommandContext::event_id(std::uint32_t index) const {
  auto tenant = events::TenantId::try_make(request_.tenant);
  auto command_id = events::CommandId::try_make(request_.command_id);
  if (!tenant || !command_id) return std::nullopt;
  return events::derive_event_id(*tenant, *command_id, index);
}

namespace {
Request reaction_request(const events::Event& event, std::string_view plugin,
                         std::string_view reaction, SystemTime deadline) {
  Request r;
  r.kind = Request::Kind::command;
  r.method = "POST";
  r.tenant = event.tenant.value();
  r.actor = "service:" + std::string(plugin);
  r.command = std::string(plugin) + "." + std::string(reaction);
  r.command_id = "react:" + std::string(reaction) + ":" + event.id.value();
  r.causation_id = event.id.value();
  r.correlation_id = event.correlation_id.value();
  r.request_id = r.command_id;
  r.deadline = deadline;
  return r;
}
}  // namespace

ReactionContext::ReactionContext(const events::Event& event, std::string_view plugin,
                                 std::string_view reaction, StoreClient& store,
                                 pg::Transaction* transaction, SystemTime deadline)
    : event_(event),
      transaction_(transaction),
      request_(reaction_request(event, plugin, reaction, deadline)),
      context_(request_, store) {}

AppendOutcome CommandContext::append(std::string_view stream, events::ExpectedVersion expected,
                                     const std::vector<NewEvent>& evs) {
  const std::string stream_id(stream);
  if (evs.empty()) return failed_outcome(500, "invalid_request", "append of no events");
  auto tenant = events::TenantId::try_make(request_.tenant);
  if (!tenant) return failed_outcome(400, "invalid_request", "the command has no valid tenant");
  auto command_id = events::CommandId::try_make(request_.command_id);
  if (!command_id) return failed_outcome(400, "invalid_request", "the command has no valid id");

  const std::string causation = events::CausationId::is_valid(request_.causation_id)
                                    ? request_.causation_id
                                    : command_id->value();

  // The body: ids derived from the command, so a retry appends nothing twice.
  std::vector<std::string> ids;
  std::string body = "{\"stream\":";
  json::append_quoted(body, stream_id);
  body += ",\"expected_version\":";
  if (expected.kind() == events::ExpectedVersion::Kind::exact) {
    body += expected.to_string();
  } else {
    json::append_quoted(body, expected.to_string());
  }
  body += ",\"tenant\":";
  json::append_quoted(body, tenant->value());
  body += ",\"events\":[";
  const auto occurred = events::format_rfc3339_ms(events::now_ms());
  const bool actor_ok = events::ActorId::is_valid(request_.actor);
  const bool correlation_ok = events::CorrelationId::is_valid(request_.correlation_id);
  for (std::size_t i = 0; i < evs.size(); ++i) {
    const auto& e = evs[i];
    try {
      if (!json::parse(e.data).IsObject() || !json::parse(e.meta).IsObject()) {
        throw json::Error("not an object", "/data");
      }
    } catch (const std::exception& ex) {
      return failed_outcome(
          500, "invalid_request",
          "event " + std::to_string(i) + " data/meta is not a JSON object: " + ex.what());
    }
    const auto id =
        events::derive_event_id(*tenant, *command_id, next_index_ + static_cast<std::uint32_t>(i));
    ids.push_back(id.value());
    if (i > 0) body += ',';
    body += "{\"id\":";
    json::append_quoted(body, id.value());
    body += ",\"type\":";
    json::append_quoted(body, e.type);
    body += ",\"schema\":" + std::to_string(e.schema) + ",\"occurred_at\":";
    json::append_quoted(body, occurred);
    if (correlation_ok) {
      body += ",\"correlation_id\":";
      json::append_quoted(body, request_.correlation_id);
    }
    body += ",\"causation_id\":";
    json::append_quoted(body, causation);
    if (actor_ok) {
      body += ",\"actor\":";
      json::append_quoted(body, request_.actor);
    }
    body += ",\"data\":" + e.data + ",\"meta\":" + e.meta + "}";
  }
  body += "]}";
  next_index_ += static_cast<std::uint32_t>(evs.size());

  StoreClient::Call call;
  call.body = std::move(body);
  call.deadline = request_.deadline;
  call.correlation_id = correlation_ok ? request_.correlation_id : std::string();
  call.causation_id = causation;
  call.traceparent = request_.traceparent;
  call.actor = request_.actor;

  // An unknown outcome is retried with the same ids until the deadline: the
  // store answers a repeat as `duplicate` with the original positions.
  auto backoff = std::chrono::milliseconds(20);
  std::string last = "the deadline passed before the append was sent";
  bool sent = false;
  while (std::chrono::system_clock::now() < request_.deadline) {
    auto reply = store_.append(call);
    switch (reply.kind) {
      case StoreClient::Reply::Kind::reply:
        return outcome_from_store_reply(reply.body, stream_id, std::move(ids));
      case StoreClient::Reply::Kind::closed:
        return failed_outcome(503, "unavailable", "shutting down: " + reply.message);
      case StoreClient::Reply::Kind::unknown:
        sent = true;
        [[fallthrough]];
      case StoreClient::Reply::Kind::no_route:
        last = reply.message;
        break;
    }
    log::debug("store.append retried", {{"stream", stream_id}, {"reason", last}});
    const auto left = request_.deadline - std::chrono::system_clock::now();
    if (left <= std::chrono::milliseconds(0)) break;
    std::this_thread::sleep_for(std::min<std::chrono::system_clock::duration>(backoff, left));
    backoff = std::min(backoff * 2, std::chrono::milliseconds(500));
  }
  auto o = failed_outcome(
      504, "deadline_exceeded",
      std::string(sent ? "the outcome of the append is unknown: " : "not appended: ") + last);
  o.stream = stream_id;
  return o;
}

}  // namespace sb::sdk
