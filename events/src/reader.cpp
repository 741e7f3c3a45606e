#include "switchboard/events/reader.hpp"

#include "switchboard/events/subscription_logic.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <array>

namespace sb::events {
namespace {

constexpr std::string_view kSegmentClass = "[a-z0-9_-]+";

bool is_segment_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

std::vector<std::string_view> split(std::string_view text) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (true) {
    auto dot = text.find('.', start);
    if (dot == std::string_view::npos) {
      out.push_back(text.substr(start));
      return out;
    }
    out.push_back(text.substr(start, dot - start));
    start = dot + 1;
  }
}

std::optional<std::string> pattern_problem(std::string_view pattern) {
  if (pattern.empty()) return "empty pattern";
  if (pattern.size() > 255) return "pattern longer than 255 bytes";
  for (auto seg : split(pattern)) {
    if (seg.empty()) return "empty segment in '" + std::string(pattern) + "'";
    if (seg == "*" || seg == "#") continue;
    for (char c : seg) {
      if (!is_segment_char(c)) {
        return "segment '" + std::string(seg) + "' of '" + std::string(pattern) +
               "' must be *, # or [a-z0-9_-]+";
      }
    }
  }
  return std::nullopt;
}

bool match_segments(const std::vector<std::string_view>& p, std::size_t i,
                    const std::vector<std::string_view>& t, std::size_t j) {
  if (i == p.size()) return j == t.size();
  if (p[i] == "#") {
    for (std::size_t k = j; k <= t.size(); ++k) {
      if (match_segments(p, i + 1, t, k)) return true;
    }
    return false;
  }
  if (j == t.size()) return false;
  if (p[i] != "*" && p[i] != t[j]) return false;
  return match_segments(p, i + 1, t, j + 1);
}

std::string ts_param(Timestamp t) {
  return format_rfc3339_ms(t);
}

std::string placeholder(const pg::Params& params) {
  return "$" + std::to_string(params.size());
}

}  // namespace

bool is_valid_type_pattern(std::string_view pattern) {
  return !pattern_problem(pattern).has_value();
}

void validate_type_pattern(std::string_view pattern) {
  if (auto why = pattern_problem(pattern)) throw InvalidValue("invalid type pattern: " + *why);
}

bool is_wildcard_pattern(std::string_view pattern) {
  for (auto seg : split(pattern)) {
    if (seg == "*" || seg == "#") return true;
  }
  return false;
}

bool type_matches(std::string_view pattern, std::string_view type) {
  if (!is_valid_type_pattern(pattern)) return false;
  return match_segments(split(pattern), 0, split(type), 0);
}

std::string type_pattern_regex(std::string_view pattern) {
  validate_type_pattern(pattern);
  // Consecutive `#` mean the same as one.
  std::vector<std::string_view> segs;
  for (auto s : split(pattern)) {
    if (s == "#" && !segs.empty() && segs.back() == "#") continue;
    segs.push_back(s);
  }
  const std::string seg_re(kSegmentClass);
  if (segs.size() == 1 && segs[0] == "#") return "^.*$";
  std::string re = "^";
  // A leading `#` takes the dot after each segment it absorbs; a later one
  // takes the dot before. Either way "zero segments" leaves no stray dot.
  bool need_dot = false;
  for (std::size_t i = 0; i < segs.size(); ++i) {
    const auto s = segs[i];
    if (s == "#") {
      if (i == 0) {
        re += "(" + seg_re + "\\.)*";
        need_dot = false;
      } else {
        re += "(\\." + seg_re + ")*";
        need_dot = true;
      }
      continue;
    }
    if (need_dot) re += "\\.";
    re += s == "*" ? seg_re : std::string(s);  // literal segments hold no regex metacharacter
    need_dot = true;
  }
  re += "$";
  return re;
}

int partition_of(std::string_view stream, int count) {
  if (count <= 1) return 0;
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  if (EVP_Digest(stream.data(), stream.size(), md.data(), &len, EVP_md5(), nullptr) != 1 ||
      len < 4) {
    throw Error("partition_of: MD5 unavailable");
  }
  const std::uint32_t h = (std::uint32_t{md[0]} << 24) | (std::uint32_t{md[1]} << 16) |
                          (std::uint32_t{md[2]} << 8) | std::uint32_t{md[3]};
  return static_cast<int>(h % static_cast<std::uint32_t>(count));
}

std::string partition_sql(int count_param) {
  return "((('x' || lpad(substr(md5(stream), 1, 8), 16, '0'))::bit(64)::bigint) % $" +
         std::to_string(count_param) + ")";
}

void Filter::validate() const {
  for (const auto& t : types) validate_type_pattern(t);
  if (partition) {
    if (partition->count < 1 || partition->index < 0 || partition->index >= partition->count) {
      throw InvalidValue("invalid partition " + std::to_string(partition->index) + "/" +
                         std::to_string(partition->count));
    }
  }
  if (recorded_from && recorded_to && *recorded_to < *recorded_from) {
    throw InvalidValue("invalid time range: to is before from");
  }
}

std::string pg_text_array(const std::vector<std::string>& values) {
  std::string out = "{";
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ',';
    out += '"';
    for (char ch : values[i]) {
      if (ch == '"' || ch == '\\') out += '\\';
      out += ch;
    }
    out += '"';
  }
  out += '}';
  return out;
}

std::string filter_sql(const Filter& filter, pg::Params& params) {
  filter.validate();
  std::string sql;
  if (!filter.types.empty()) {
    std::vector<std::string> exact;
    std::string regex;
    for (const auto& t : filter.types) {
      if (is_wildcard_pattern(t)) {
        if (!regex.empty()) regex += '|';
        regex += "(" + type_pattern_regex(t) + ")";
      } else {
        exact.push_back(t);
      }
    }
    std::string cond;
    if (!exact.empty()) {
      params.add(pg_text_array(exact));
      cond = "type = ANY(" + placeholder(params) + "::text[])";
    }
    if (!regex.empty()) {
      params.add(regex);
      if (!cond.empty()) cond += " OR ";
      cond += "type ~ " + placeholder(params);
    }
    sql += " AND (" + cond + ")";
  }
  if (filter.tenant) {
    params.add(filter.tenant->value());
    sql += " AND tenant = " + placeholder(params);
  }
  if (filter.recorded_from) {
    params.add(ts_param(*filter.recorded_from));
    sql += " AND recorded_at >= " + placeholder(params) + "::timestamptz";
  }
  if (filter.recorded_to) {
    params.add(ts_param(*filter.recorded_to));
    sql += " AND recorded_at < " + placeholder(params) + "::timestamptz";
  }
  if (filter.correlation_id) {
    params.add(filter.correlation_id->value());
    sql += " AND correlation_id = " + placeholder(params);
  }
  if (filter.stream) {
    params.add(filter.stream->value());
    sql += " AND stream = " + placeholder(params);
  }
  if (filter.actor) {
    params.add(*filter.actor);
    sql += " AND actor = " + placeholder(params);
  }
  if (filter.partition && filter.partition->count > 1) {
    params.add(filter.partition->count);
    const auto count_param = static_cast<int>(params.size());
    params.add(filter.partition->index);
    sql += " AND " + partition_sql(count_param) + " = " + placeholder(params);
  }
  return sql;
}

Event event_from_row(const pg::Row& row) {
  Event e{
      .id = EventId(row[1].get<std::string>()),
      .type = EventType(row[4].get<std::string>()),
      .schema_version = row[5].get<int>(),
      .stream = StreamId(row[2].get<std::string>()),
      .version = StreamVersion(row[3].get<std::int64_t>()),
      .position = Position(row[0].get<std::int64_t>()),
      .tenant = TenantId(row[6].get<std::string>()),
      .occurred_at = parse_rfc3339(row[7].get<std::string>()),
      .recorded_at = parse_rfc3339(row[8].get<std::string>()),
      .correlation_id = CorrelationId(row[9].get<std::string>()),
      .causation_id = std::nullopt,
      .actor = std::nullopt,
      .data = Payload::from_trusted_text(row[12].get<std::string>()),
      .meta = Payload::from_trusted_text(row[13].get<std::string>()),
  };
  if (!row[10].is_null()) e.causation_id = CausationId(row[10].get<std::string>());
  if (!row[11].is_null()) e.actor = ActorId(row[11].get<std::string>());
  return e;
}

EventReader::EventReader(pg::Pool& pool, const Catalog* catalog, ReadOptions options)
    : pool_(pool), catalog_(catalog), options_(options) {}

void EventReader::upcast(Event& event) const {
  if (catalog_ != nullptr) catalog_->upcast(event);
}

Page EventReader::read_all(Position after, const Filter& filter, std::size_t limit) const {
  return pg::with_transaction(
      pool_,
      [&](pg::Transaction& tx) {
        // The newest positions lie beyond the table's statistics, so the
        // planner underestimates `position > $1 AND position <= $2` there and
        // picks a bitmap scan plus a sort of the whole window (measured ~80x
        // slower per page than the ordered index scan until the next
        // ANALYZE). This transaction only reads a page: forbid that plan.
        tx.exec("SET LOCAL enable_bitmapscan = off");
        return read_all(tx, after, filter, limit);
      },
      {}, pg::TransactionOptions{pg::Isolation::repeatable_read, true});
}

Page EventReader::read_all(pg::Transaction& tx, Position after, const Filter& filter,
                           std::size_t limit) const {
  if (limit == 0) throw InvalidValue("read_all: limit must be > 0");
  Page page;
  page.head = head(tx);
  const std::int64_t upper = scan_upper_bound(after, page.head, options_.scan_window);
  if (upper <= after.value()) {
    page.scanned_to = after;
    return page;
  }
  pg::Params params{after.value(), upper};
  std::string sql = std::string("SELECT ") + kEventColumns +
                    " FROM events WHERE position > $1 AND position <= $2" +
                    filter_sql(filter, params);
  params.add(static_cast<std::int64_t>(limit));
  sql += " ORDER BY position LIMIT " + placeholder(params);
  auto rows = tx.exec(pg::Sql::trusted(sql), params);
  page.events.reserve(rows.size());
  for (const auto& row : rows) {
    page.events.push_back(event_from_row(row));
    upcast(page.events.back());
  }
  page.scanned_to = page_scanned_to(
      after, upper, page.events.size(), limit,
      page.events.empty() ? std::nullopt : std::optional<Position>(page.events.back().position));
  return page;
}

StreamSlice EventReader::read_stream(const StreamId& stream, StreamVersion from,
                                     Direction direction, std::size_t limit) const {
  if (limit == 0) throw InvalidValue("read_stream: limit must be > 0");
  return pg::with_transaction(
      pool_,
      [&](pg::Transaction& tx) {
        StreamSlice slice;
        auto last =
            tx.exec("SELECT max(version) FROM events WHERE stream = $1", {stream.value()}).one()[0];
        if (!last.is_null()) slice.last_version = StreamVersion(last.get<std::int64_t>());
        const bool fwd = direction == Direction::forward;
        const std::string sql =
            std::string("SELECT ") + kEventColumns + " FROM events WHERE stream = $1 AND version " +
            (fwd ? ">=" : "<=") +
            " $2 AND version >= coalesce((SELECT truncate_before FROM streams WHERE stream = $1), "
            "0) ORDER BY version " +
            (fwd ? "ASC" : "DESC") + " LIMIT $3";
        auto rows = tx.exec(pg::Sql::trusted(sql),
                            {stream.value(), from.value(), static_cast<std::int64_t>(limit)});
        for (const auto& row : rows) {
          slice.events.push_back(event_from_row(row));
          upcast(slice.events.back());
        }
        return slice;
      },
      {}, pg::TransactionOptions{pg::Isolation::repeatable_read, true});
}

std::vector<Event> EventReader::read_positions(const std::vector<Position>& positions) const {
  std::vector<Event> out;
  if (positions.empty()) return out;
  std::string arr = "{";
  for (std::size_t i = 0; i < positions.size(); ++i) {
    if (i > 0) arr += ',';
    arr += std::to_string(positions[i].value());
  }
  arr += '}';
  auto lease = pool_.acquire();
  auto rows = lease->exec(
      pg::Sql::trusted(std::string("SELECT ") + kEventColumns +
                       " FROM events WHERE position = ANY($1::bigint[]) ORDER BY position"),
      {arr});
  for (const auto& row : rows) {
    out.push_back(event_from_row(row));
    upcast(out.back());
  }
  return out;
}

Position EventReader::head() const {
  auto lease = pool_.acquire();
  return Position(
      lease->exec("SELECT coalesce(max(position), 0) FROM events").one()[0].get<std::int64_t>());
}

Position EventReader::head(pg::Transaction& tx) {
  return Position(
      tx.exec("SELECT coalesce(max(position), 0) FROM events").one()[0].get<std::int64_t>());
}

}  // namespace sb::events
