#include "event_sql.hpp"

#include "switchboard/events/reader.hpp"

namespace sb::store::sql {

std::int64_t load_head(pg::Connection& c) {
  return c.exec("SELECT coalesce(max(position), 0) FROM events").one()[0].get<std::int64_t>();
}

events::Timestamp load_recorded_at(pg::Connection& c, std::int64_t position) {
  auto r = c.exec(
      "SELECT to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') "
      "FROM events WHERE position = $1",
      {position});
  if (r.empty()) return {};
  return events::parse_rfc3339(r[0][0].get<std::string>());
}

std::unordered_map<std::string, std::pair<std::int64_t, std::string>> load_streams(
    pg::Connection& c, const std::vector<std::string>& streams) {
  std::unordered_map<std::string, std::pair<std::int64_t, std::string>> out;
  if (streams.empty()) return out;
  auto r = c.exec("SELECT stream, last_version, tenant FROM streams WHERE stream = ANY($1::text[])",
                  {events::pg_text_array(streams)});
  for (const auto& row : r) {
    out.emplace(row[0].get<std::string>(),
                std::make_pair(row[1].get<std::int64_t>(), row[2].get<std::string>()));
  }
  return out;
}

std::unordered_map<std::string, StoredEvent> load_events_by_id(
    pg::Connection& c, const std::vector<std::string>& ids) {
  std::unordered_map<std::string, StoredEvent> out;
  if (ids.empty()) return out;
  auto r =
      c.exec("SELECT id::text, position, stream, version FROM events WHERE id = ANY($1::uuid[])",
             {events::pg_text_array(ids)});
  for (const auto& row : r) {
    out.emplace(row[0].get<std::string>(),
                StoredEvent{row[1].get<std::int64_t>(), row[2].get<std::string>(),
                            row[3].get<std::int64_t>()});
  }
  return out;
}

void insert_events(pg::Transaction& tx, const std::vector<events::Event>& rows) {
  static const std::vector<std::string> kColumnNames = {
      "position",       "id",     "stream",      "version",     "type",
      "schema_version", "tenant", "occurred_at", "recorded_at", "correlation_id",
      "causation_id",   "actor",  "data",        "meta"};
  if (rows.empty()) return;
  auto copy = tx.copy_in("events", kColumnNames);
  // One batch shares its recorded_at: format it once.
  events::Timestamp recorded_for{};
  std::string recorded_text;
  for (const auto& e : rows) {
    if (recorded_text.empty() || e.recorded_at != recorded_for) {
      recorded_for = e.recorded_at;
      recorded_text = events::format_rfc3339_ms(e.recorded_at);
    }
    copy.integer(e.position.value())
        .text(e.id.value())
        .text(e.stream.value())
        .integer(e.version.value())
        .text(e.type.value())
        .integer(e.schema_version)
        .text(e.tenant.value())
        .text(events::format_rfc3339_ms(e.occurred_at))
        .text(recorded_text)
        .text(e.correlation_id.value());
    if (e.causation_id) {
      copy.text(e.causation_id->value());
    } else {
      copy.null();
    }
    if (e.actor) {
      copy.text(e.actor->value());
    } else {
      copy.null();
    }
    copy.text(e.data.text()).text(e.meta.text()).end_row();
  }
  copy.finish();
}

void upsert_streams(pg::Transaction& tx, const std::vector<StreamRow>& rows) {
  if (rows.empty()) return;
  std::string sql = "INSERT INTO streams (stream, tenant, last_version, last_position) VALUES ";
  pg::Params params;
  std::size_t p = 1;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (i > 0) sql += ',';
    sql += "($" + std::to_string(p) + ",$" + std::to_string(p + 1) + ",$" + std::to_string(p + 2) +
           ",$" + std::to_string(p + 3) + ")";
    p += 4;
    params.add(rows[i].stream).add(rows[i].tenant).add(rows[i].version).add(rows[i].last_position);
  }
  sql +=
      " ON CONFLICT (stream) DO UPDATE SET last_version = EXCLUDED.last_version, "
      "last_position = EXCLUDED.last_position, updated_at = now()";
  tx.exec(pg::Sql::trusted(sql), params);
}

void apply_retention(pg::Transaction& tx, const events::Event& policy) {
  const auto& data = policy.data.value();
  auto field = [&](const char* name) -> pg::Param {
    auto it = data.FindMember(name);
    if (it == data.MemberEnd() || !it->value.IsInt64()) return pg::Param(std::nullopt);
    return pg::Param(it->value.GetInt64());
  };
  tx.exec("UPDATE streams SET max_count = $2, max_age_seconds = $3 WHERE stream = $1",
          {policy.stream.value(), field("max_count"), field("max_age_seconds")});
}

std::int64_t truncate_streams(pg::Connection& c) {
  auto by_count = c.exec(
      "UPDATE streams SET truncate_before = last_version + 1 - max_count, updated_at = now() "
      "WHERE max_count IS NOT NULL AND truncate_before < last_version + 1 - max_count");
  // By age: the first version recorded after the cut-off (all of the stream
  // when none is that young).
  auto by_age = c.exec(
      "UPDATE streams s SET truncate_before = keep.first_kept, updated_at = now() FROM ("
      "  SELECT s2.stream, COALESCE((SELECT min(e.version) FROM events e WHERE e.stream = s2.stream"
      "    AND e.recorded_at >= now() - make_interval(secs => s2.max_age_seconds)),"
      "    s2.last_version + 1) AS first_kept"
      "  FROM streams s2 WHERE s2.max_age_seconds IS NOT NULL) keep "
      "WHERE s.stream = keep.stream AND s.truncate_before < keep.first_kept");
  return static_cast<std::int64_t>(by_count.affected_rows() + by_age.affected_rows());
}

std::int64_t scavenge(pg::Connection& c, std::int64_t limit) {
  // Only what the broker already has: the publisher never finds a hole in
  // the range it still has to send.
  auto r = c.exec(
      "DELETE FROM events WHERE position IN ("
      "  SELECT e.position FROM events e JOIN streams s ON s.stream = e.stream"
      "  WHERE e.version < s.truncate_before"
      "    AND e.position <= (SELECT position FROM store_positions WHERE name = 'published')"
      "  LIMIT $1)",
      {limit});
  return static_cast<std::int64_t>(r.affected_rows());
}

}  // namespace sb::store::sql
