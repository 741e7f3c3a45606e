#include "switchboard/store/append_codec.hpp"

#include "switchboard/broker/permissions.hpp"
#include "switchboard/events/limits.hpp"
#include "switchboard/shared/json.hpp"

namespace sb::store {
namespace {

DecodeError error(std::string code, std::string message, std::string path = "") {
  return DecodeError{std::move(code), std::move(message), std::move(path)};
}

events::ExpectedVersion decode_expected(const rapidjson::Value& body) {
  const auto* v = json::find(body, "expected_version");
  if (v == nullptr || v->IsNull()) return events::ExpectedVersion::any();
  if (v->IsInt64()) {
    if (v->GetInt64() < 0) return events::ExpectedVersion::no_stream();
    return events::ExpectedVersion::exact(events::StreamVersion(v->GetInt64()));
  }
  if (v->IsString()) return events::ExpectedVersion::parse(v->GetString());
  throw json::Error(
      "field 'expected_version' must be \"any\", \"no_stream\", \"stream_exists\" or "
      "a version number",
      "/expected_version");
}

constexpr std::string_view kPublisherKey = "publisher";

// `quoted`: `user` as a JSON string.
events::Payload with_publisher(const events::Payload& meta, std::string_view user,
                               const std::string& quoted) {
  const rapidjson::Value& value = meta.value();
  if (value.IsObject() && !value.HasMember(kPublisherKey.data())) {
    // The compact text of an object: splice the member in after the brace.
    const std::string& text = meta.text();
    std::string out;
    out.reserve(text.size() + quoted.size() + kPublisherKey.size() + 4);
    out += "{\"";
    out += kPublisherKey;
    out += "\":";
    out += quoted;
    if (text.size() > 2) out += ',';
    out.append(text, 1, std::string::npos);
    return events::Payload::from_trusted_text(std::move(out));
  }
  rapidjson::Document doc = meta.to_document();
  if (!doc.IsObject()) doc.SetObject();
  rapidjson::Value v;
  v.SetString(user.data(), static_cast<rapidjson::SizeType>(user.size()), doc.GetAllocator());
  if (auto it = doc.FindMember(kPublisherKey.data()); it != doc.MemberEnd()) {
    it->value = v;
  } else {
    doc.AddMember(rapidjson::StringRef(kPublisherKey.data()), v, doc.GetAllocator());
  }
  return events::Payload::from_document(std::move(doc));
}

}  // namespace

void stamp_publisher(AppendRequest& request, std::string_view user, bool ingest) {
  if (user.empty()) {
    // Only a broker-validated user may stand there.
    for (auto& e : request.events) {
      const rapidjson::Value& value = e.meta.value();
      if (!value.IsObject() || !value.HasMember(kPublisherKey.data())) continue;
      rapidjson::Document doc = e.meta.to_document();
      doc.RemoveMember(kPublisherKey.data());
      e.meta = events::Payload::from_document(std::move(doc));
    }
    return;
  }
  std::string quoted;
  json::append_quoted(quoted, user);
  std::optional<events::ActorId> actor;
  if (ingest) {
    if (auto plugin = broker::plugin_of_user(user)) {
      try {
        actor = events::ActorId("service:" + std::string(*plugin));
      } catch (const events::Error&) {
        // Not a printable id: meta.publisher still names the user.
      }
    }
  }
  for (auto& e : request.events) {
    e.meta = with_publisher(e.meta, user, quoted);
    if (actor) e.actor = actor;
  }
}

std::variant<AppendRequest, DecodeError> decode_append(std::string_view body,
                                                       const events::Catalog& catalog,
                                                       std::string_view default_tenant) {
  if (body.size() > events::kMaxAppendBytes) {
    return error("too_large", "the append is " + std::to_string(body.size()) +
                                  " bytes; the limit is " +
                                  std::to_string(events::kMaxAppendBytes));
  }
  rapidjson::Document doc;
  try {
    doc = json::parse(body);
  } catch (const json::Error& e) {
    return error("malformed_json",
                 std::string(e.what()) + " at offset " + std::to_string(e.offset()));
  }
  if (!doc.IsObject()) return error("invalid_request", "the body must be a JSON object");
  AppendRequest req{
      events::StreamId("x"), events::ExpectedVersion::any(), events::TenantId("x"), {}, {}};
  try {
    req.stream = events::StreamId(json::require_string(doc, "stream"));
  } catch (const json::Error& e) {
    return error("invalid_request", e.what(), e.path());
  } catch (const events::Error& e) {
    return error("invalid_request", e.what(), "/stream");
  }
  try {
    req.expected = decode_expected(doc);
  } catch (const json::Error& e) {
    return error("invalid_request", e.what(), e.path());
  } catch (const events::Error& e) {
    return error("invalid_request", e.what(), "/expected_version");
  }
  try {
    auto tenant = json::optional_string(doc, "tenant");
    if (!tenant && default_tenant.empty()) {
      return error("invalid_request", "missing required field 'tenant'", "/tenant");
    }
    req.tenant = events::TenantId(tenant ? *tenant : std::string(default_tenant));
  } catch (const json::Error& e) {
    return error("invalid_request", e.what(), e.path());
  } catch (const events::Error& e) {
    return error("invalid_request", e.what(), "/tenant");
  }
  const auto* list = json::find(doc, "events");
  if (list == nullptr || !list->IsArray()) {
    return error("invalid_request", "field 'events' must be an array of events", "/events");
  }
  if (list->Empty())
    return error("invalid_request", "an append needs at least one event", "/events");
  if (list->Size() > events::kMaxEventsPerAppend) {
    return error(
        "too_large",
        "an append takes at most " + std::to_string(events::kMaxEventsPerAppend) + " events",
        "/events");
  }
  for (rapidjson::SizeType i = 0; i < list->Size(); ++i) {
    std::string at = "/events/" + std::to_string(i);
    try {
      req.events.push_back(events::new_event_from_json((*list)[i]));
    } catch (const json::Error& e) {
      return error("invalid_request", e.what(), at + e.path());
    } catch (const events::Error& e) {
      return error("invalid_request", e.what(), at);
    }
    const auto& ev = req.events.back();
    if (catalog.is_transient(ev.type)) {
      return error("transient_event_type",
                   "'" + ev.type.value() + "' is a transient type: it is signalled, never stored",
                   at + "/type");
    }
    auto v = catalog.validate_new_event(ev);
    switch (v.kind) {
      case events::ValidationResult::Kind::ok:
        break;
      case events::ValidationResult::Kind::unknown_type:
        return error("unknown_event_type", v.message, at + "/type");
      case events::ValidationResult::Kind::unknown_version:
        return error("unknown_event_type", v.message, at + "/schema");
      case events::ValidationResult::Kind::too_large:
        return error("too_large", v.message, at);
      case events::ValidationResult::Kind::schema_violation:
        return error("schema_violation", v.message, at + "/data" + v.instance_path);
    }
  }
  if (auto violation = events::check_append_limits(req.events)) {
    return error("too_large", violation->message(), "/events");
  }
  return req;
}

std::string encode_result(const AppendResult& r) {
  using Kind = AppendResult::Kind;
  if (r.kind == Kind::appended || r.kind == Kind::duplicate) {
    std::string out = "{\"result\":\"";
    out += to_string(r.kind);
    out += "\",\"positions\":[";
    for (std::size_t i = 0; i < r.positions.size(); ++i) {
      if (i > 0) out += ',';
      out += std::to_string(r.positions[i]);
    }
    out += "],\"last_version\":" + std::to_string(r.last_version) + "}";
    return out;
  }
  std::string out = "{\"error\":{\"code\":";
  json::append_quoted(out, r.code.empty() ? to_string(r.kind) : r.code);
  out += ",\"message\":";
  json::append_quoted(out, r.message);
  out += ",\"details\":{";
  if (r.kind == Kind::conflict) out += "\"current_version\":" + std::to_string(r.current_version);
  if (r.kind == Kind::unavailable) out += "\"retry\":true";
  out += "}}}";
  return out;
}

std::string encode_error(const DecodeError& e) {
  std::string out = "{\"error\":{\"code\":";
  json::append_quoted(out, e.code);
  out += ",\"message\":";
  json::append_quoted(out, e.message);
  out += ",\"details\":{\"path\":";
  json::append_quoted(out, e.path);
  out += "}}}";
  return out;
}

}  // namespace sb::store
