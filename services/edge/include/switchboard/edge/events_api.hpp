#pragma once
// Events over HTTP (issue 7), read straight from the events table with the
// edge's read-only connection pool:
//
//   GET /api/v1/events            filters + cursor pages (JSON), the whole
//                                 range as NDJSON (Accept:
//                                 application/x-ndjson) or CSV (Accept:
//                                 text/csv), streamed page by page;
//   GET /api/v1/streams/{id}      one stream, optionally as of a time
//                                 (recorded_at) or a position;
//   GET /api/v1/correlations/{id} every event of one flow, in order, with
//                                 causation links.
//
// Every query is scoped to the caller's tenant; only a super admin without
// X-Tenant reads across tenants.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "switchboard/edge/http.hpp"
#include "switchboard/events/reader.hpp"

namespace sb::pg {
class Pool;
}

namespace sb::edge {

struct Scope {
  /// nullopt: every tenant (a super admin not acting for one).
  std::optional<std::string> tenant;
};

struct EventsApiOptions {
  std::size_t default_page = 100;
  std::size_t max_page = 1000;
  /// Rows per database read while streaming NDJSON/CSV.
  std::size_t stream_chunk = 1000;
  /// Events of one stream or correlation answered at most (413 beyond:
  /// page with /api/v1/events instead).
  std::size_t max_stream_events = 10000;
};

/// The filter a query string asks for, within the caller's scope. Throws
/// HttpError 400 naming the parameter, 403 for another tenant.
struct EventQuery {
  events::Filter filter;
  std::int64_t after = 0;                   // exclusive cursor
  std::optional<std::int64_t> to_position;  // inclusive
  std::size_t limit = 100;
};
EventQuery parse_event_query(std::string_view query, const Scope& scope,
                             const EventsApiOptions& options);

/// One event as a CSV line (RFC 4180 quoting) and the header line.
std::string csv_header();
std::string csv_line(const events::Event& event);

class EventsApi {
 public:
  EventsApi(std::shared_ptr<pg::Pool> pool, EventsApiOptions options = {});
  ~EventsApi();

  HttpResponse list(const HttpRequest& request, const Scope& scope) const;
  HttpResponse stream(const HttpRequest& request, const Scope& scope,
                      const std::string& stream_id) const;
  HttpResponse correlation(const HttpRequest& request, const Scope& scope,
                           const std::string& correlation_id) const;

 private:
  std::shared_ptr<pg::Pool> pool_;
  EventsApiOptions options_;
  std::unique_ptr<events::EventReader> reader_;
};

}  // namespace sb::edge
