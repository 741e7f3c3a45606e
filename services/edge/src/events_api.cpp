#include "switchboard/edge/events_api.hpp"

#include "switchboard/edge/redaction.hpp"
#include "switchboard/events/time.hpp"
#include "switchboard/shared/json.hpp"
#include "switchboard/shared/pg.hpp"

namespace sb::edge {

namespace {

std::int64_t parse_int_param(std::string_view query, std::string_view name, std::int64_t min) {
  auto v = query_param(query, name);
  if (!v) return min - 1;
  const auto n = text::parse_int(*v);
  if (!n || *n < min) {
    throw HttpError(
        400, "invalid_request",
        "query parameter `" + std::string(name) + "` must be an integer >= " + std::to_string(min),
        "{\"parameter\":" + json::quoted(name) + "}");
  }
  return *n;
}

events::Timestamp parse_time_param(const std::string& value, std::string_view name) {
  auto t = events::try_parse_rfc3339(value);
  if (!t) {
    throw HttpError(400, "invalid_request",
                    "query parameter `" + std::string(name) + "` must be an RFC 3339 time",
                    "{\"parameter\":" + json::quoted(name) + "}");
  }
  return *t;
}

std::string csv_field(std::string_view v) {
  if (v.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(v);
  std::string out = "\"";
  for (char c : v) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

bool wants(const HttpRequest& req, std::string_view type) {
  const auto* accept = req.header("accept");
  if (accept && accept->find(type) != std::string::npos) return true;
  auto format = query_param(req.query, "format");
  if (!format) return false;
  return (type == "application/x-ndjson" && *format == "ndjson") ||
         (type == "text/csv" && *format == "csv");
}

HttpResponse json_page(const events::Page& page, const EventQuery& q) {
  std::string body = "{\"events\":[";
  bool first = true;
  std::int64_t last = q.after;
  bool ended = false;
  for (const auto& e : page.events) {
    if (q.to_position && e.position.value() > *q.to_position) {
      ended = true;
      break;
    }
    if (!first) body += ',';
    first = false;
    body += events::to_json(redacted(e));
    last = e.position.value();
  }
  std::int64_t scanned = page.scanned_to.value();
  if (q.to_position && scanned >= *q.to_position) ended = true;
  if (!ended && page.events.size() < q.limit) last = scanned;
  body += "],\"head\":" + std::to_string(page.head.value());
  // The cursor: pass it as `after` to get the next page. null at the end of
  // the requested range; at the head it is where new events will follow.
  if (ended) {
    body += ",\"next\":null";
  } else {
    body += ",\"next\":\"" + std::to_string(last) + "\"";
  }
  body += ",\"at_head\":";
  body += page.at_head() ? "true" : "false";
  body += '}';
  HttpResponse r;
  r.body = std::move(body);
  return r;
}

}  // namespace

EventQuery parse_event_query(std::string_view query, const Scope& scope,
                             const EventsApiOptions& options) {
  EventQuery q;
  try {
    if (auto t = query_param(query, "type")) {
      std::size_t start = 0;
      while (start <= t->size()) {
        auto comma = t->find(',', start);
        auto one = t->substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        if (!one.empty()) {
          events::validate_type_pattern(one);
          q.filter.types.push_back(one);
        }
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
    }
  } catch (const std::exception& e) {
    throw HttpError(400, "invalid_request", e.what(), "{\"parameter\":\"type\"}");
  }
  auto tenant = query_param(query, "tenant");
  if (scope.tenant) {
    if (tenant && *tenant != *scope.tenant) {
      throw HttpError(403, "forbidden", "events of another tenant are not visible to this caller");
    }
    q.filter.tenant = events::TenantId(*scope.tenant);
  } else if (tenant) {
    try {
      q.filter.tenant = events::TenantId(*tenant);
    } catch (const std::exception& e) {
      throw HttpError(400, "invalid_request", e.what(), "{\"parameter\":\"tenant\"}");
    }
  }
  try {
    if (auto s = query_param(query, "stream")) q.filter.stream = events::StreamId(*s);
  } catch (const std::exception& e) {
    throw HttpError(400, "invalid_request", e.what(), "{\"parameter\":\"stream\"}");
  }
  if (auto a = query_param(query, "actor")) q.filter.actor = *a;
  try {
    if (auto c = query_param(query, "correlation_id"))
      q.filter.correlation_id = events::CorrelationId(*c);
  } catch (const std::exception& e) {
    throw HttpError(400, "invalid_request", e.what(), "{\"parameter\":\"correlation_id\"}");
  }
  if (auto f = query_param(query, "from")) q.filter.recorded_from = parse_time_param(*f, "from");
  if (auto t = query_param(query, "to")) q.filter.recorded_to = parse_time_param(*t, "to");
  if (q.filter.recorded_from && q.filter.recorded_to &&
      *q.filter.recorded_to < *q.filter.recorded_from) {
    throw HttpError(400, "invalid_request", "`to` is before `from`", "{\"parameter\":\"to\"}");
  }
  auto after = parse_int_param(query, "after", 0);
  auto from_position = parse_int_param(query, "from_position", 1);
  if (after >= 0) q.after = after;
  if (from_position >= 1) q.after = std::max(q.after, from_position - 1);
  auto to_position = parse_int_param(query, "to_position", 0);
  if (to_position >= 0) q.to_position = to_position;
  auto limit = parse_int_param(query, "limit", 1);
  q.limit = limit >= 1 ? std::min<std::size_t>(static_cast<std::size_t>(limit), options.max_page)
                       : options.default_page;
  return q;
}

std::string csv_header() {
  return "position,id,stream,version,type,schema_version,tenant,occurred_at,recorded_at,"
         "correlation_id,causation_id,actor,data,meta\r\n";
}

std::string csv_line(const events::Event& e) {
  std::string out;
  out += std::to_string(e.position.value()) + ',';
  out += e.id.value() + ',';
  out += csv_field(e.stream.value()) + ',';
  out += std::to_string(e.version.value()) + ',';
  out += csv_field(e.type.value()) + ',';
  out += std::to_string(e.schema_version) + ',';
  out += csv_field(e.tenant.value()) + ',';
  out += events::format_rfc3339_ms(e.occurred_at) + ',';
  out += events::format_rfc3339_ms(e.recorded_at) + ',';
  out += csv_field(e.correlation_id.value()) + ',';
  out += (e.causation_id ? csv_field(e.causation_id->value()) : std::string()) + ',';
  out += (e.actor ? csv_field(e.actor->value()) : std::string()) + ',';
  out += csv_field(e.data.text()) + ',';
  out += csv_field(e.meta.text());
  out += "\r\n";
  return out;
}

EventsApi::EventsApi(std::shared_ptr<pg::Pool> pool, EventsApiOptions options)
    : pool_(std::move(pool)),
      options_(options),
      reader_(std::make_unique<events::EventReader>(*pool_)) {}

EventsApi::~EventsApi() = default;

HttpResponse EventsApi::list(const HttpRequest& req, const Scope& scope) const {
  auto q = parse_event_query(req.query, scope, options_);
  const bool ndjson = wants(req, "application/x-ndjson");
  const bool csv = !ndjson && wants(req, "text/csv");
  if (!ndjson && !csv)
    return json_page(reader_->read_all(events::Position(q.after), q.filter, q.limit), q);

  // The whole range (up to to_position, or the head when the export
  // started), page by page: at most one chunk is held at once.
  HttpResponse r;
  r.content_type = ndjson ? "application/x-ndjson" : "text/csv; charset=utf-8";
  const auto head = reader_->head().value();
  const auto upper = q.to_position ? std::min(*q.to_position, head) : head;
  auto reader = reader_.get();
  const auto chunk = options_.stream_chunk;
  r.stream = [reader, q, upper, chunk, ndjson](const std::function<bool(std::string_view)>& write) {
    if (!ndjson && !write(csv_header())) return;
    std::int64_t after = q.after;
    std::string buf;
    while (after < upper) {
      auto page = reader->read_all(events::Position(after), q.filter, chunk);
      buf.clear();
      for (const auto& e : page.events) {
        if (e.position.value() > upper) break;
        if (ndjson) {
          buf += events::to_json(redacted(e));
          buf += '\n';
        } else {
          buf += csv_line(redacted(e));
        }
      }
      if (!buf.empty() && !write(buf)) return;
      const auto next = page.scanned_to.value();
      if (next <= after) return;  // nothing more visible
      after = next;
    }
  };
  return r;
}

HttpResponse EventsApi::stream(const HttpRequest& req, const Scope& scope,
                               const std::string& stream_id) const {
  events::Filter f;
  try {
    f.stream = events::StreamId(stream_id);
  } catch (const std::exception& e) {
    throw HttpError(400, "invalid_request", e.what(), "{\"parameter\":\"id\"}");
  }
  if (scope.tenant) f.tenant = events::TenantId(*scope.tenant);
  std::optional<events::Timestamp> as_of;
  if (auto t = query_param(req.query, "as_of")) as_of = parse_time_param(*t, "as_of");
  auto as_of_position = parse_int_param(req.query, "as_of_position", 0);
  std::string body = "{\"stream\":" + json::quoted(stream_id) + ",\"events\":[";
  std::size_t n = 0;
  std::int64_t after = 0;
  std::int64_t version = -1;
  std::int64_t last_position = 0;
  std::string tenant;
  while (true) {
    auto page = reader_->read_all(events::Position(after), f, options_.stream_chunk);
    bool done = page.at_head();
    for (const auto& e : page.events) {
      if (as_of && e.recorded_at > *as_of) {
        done = true;
        break;
      }
      if (as_of_position >= 0 && e.position.value() > as_of_position) {
        done = true;
        break;
      }
      if (++n > options_.max_stream_events) {
        throw HttpError(413, "too_many_events",
                        "the stream has more events than one answer holds; page through "
                        "/api/v1/events?stream=...",
                        "{\"max\":" + std::to_string(options_.max_stream_events) + "}");
      }
      if (n > 1) body += ',';
      body += events::to_json(redacted(e));
      version = e.version.value();
      last_position = e.position.value();
      tenant = e.tenant.value();
    }
    if (done || page.scanned_to.value() <= after) break;
    after = page.scanned_to.value();
  }
  if (n == 0) {
    // Absent, another tenant's, or nothing yet at that time: the same answer,
    // so nothing leaks across tenants.
    throw HttpError(404, "stream_not_found", "no such stream (at that time)",
                    "{\"stream\":" + json::quoted(stream_id) + "}");
  }
  body += "],\"version\":" + std::to_string(version) +
          ",\"position\":" + std::to_string(last_position) + ",\"tenant\":" + json::quoted(tenant);
  if (as_of) body += ",\"as_of\":" + json::quoted(events::format_rfc3339_ms(*as_of));
  if (as_of_position >= 0) body += ",\"as_of_position\":" + std::to_string(as_of_position);
  body += '}';
  HttpResponse r;
  r.body = std::move(body);
  return r;
}

HttpResponse EventsApi::correlation(const HttpRequest&, const Scope& scope,
                                    const std::string& correlation_id) const {
  events::Filter f;
  try {
    f.correlation_id = events::CorrelationId(correlation_id);
  } catch (const std::exception& e) {
    throw HttpError(400, "invalid_request", e.what(), "{\"parameter\":\"id\"}");
  }
  if (scope.tenant) f.tenant = events::TenantId(*scope.tenant);
  std::string body = "{\"correlation_id\":" + json::quoted(correlation_id) + ",\"events\":[";
  std::string links = "[";
  std::size_t n = 0;
  std::int64_t after = 0;
  while (true) {
    auto page = reader_->read_all(events::Position(after), f, options_.stream_chunk);
    for (const auto& e : page.events) {
      if (++n > options_.max_stream_events) {
        throw HttpError(413, "too_many_events", "the flow has more events than one answer holds",
                        "{\"max\":" + std::to_string(options_.max_stream_events) + "}");
      }
      if (n > 1) {
        body += ',';
        links += ',';
      }
      body += events::to_json(redacted(e));
      links += "{\"event_id\":" + json::quoted(e.id.value()) + ",\"caused_by\":" +
               (e.causation_id ? json::quoted(e.causation_id->value()) : std::string("null")) + "}";
    }
    if (page.at_head() || page.scanned_to.value() <= after) break;
    after = page.scanned_to.value();
  }
  if (n == 0) {
    throw HttpError(404, "correlation_not_found", "no events with this correlation id",
                    "{\"correlation_id\":" + json::quoted(correlation_id) + "}");
  }
  body += "],\"causation\":" + links + "]}";
  HttpResponse r;
  r.body = std::move(body);
  return r;
}

}  // namespace sb::edge
