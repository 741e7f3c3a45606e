#pragma once
// Reading the event store straight from PostgreSQL (read-only): the whole
// log by position with filters, one stream by version, the head. The store
// and every subscription decode rows the same way (event_from_row).
//
// Positions are committed strictly in order by one writer, so in any snapshot
// every position <= max(position) is visible: a page read in the same
// REPEATABLE READ snapshot as the head can tell "nothing matches up to the
// head" apart from "not written yet", which is what lets checkpointed
// subscriptions advance over positions their filter leaves out.
//
// Type patterns follow AMQP topic semantics over the dot-separated segments
// of an event type: `*` matches exactly one segment, `#` zero or more; any
// other segment matches itself. They become an anchored regular expression
// built only from validated segments and passed as a query parameter.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "switchboard/events/catalog.hpp"
#include "switchboard/events/envelope.hpp"
#include "switchboard/events/time.hpp"
#include "switchboard/events/types.hpp"
#include "switchboard/shared/pg.hpp"

namespace sb::events {

// ---------------------------------------------------------------------------
// Type patterns.

/// Segments of [a-z0-9_-]+, `*` or `#`, separated by single dots.
bool is_valid_type_pattern(std::string_view pattern);
/// Throws InvalidValue saying what is wrong.
void validate_type_pattern(std::string_view pattern);
/// Whether the pattern holds `*` or `#` (otherwise it is an exact type).
bool is_wildcard_pattern(std::string_view pattern);
/// AMQP topic matching, computed directly (the reference for the SQL form).
bool type_matches(std::string_view pattern, std::string_view type);
/// An anchored regular expression (POSIX ERE syntax, understood by
/// PostgreSQL's `~` and std::regex::extended) that matches exactly the types
/// the pattern matches. Throws InvalidValue for an invalid pattern.
std::string type_pattern_regex(std::string_view pattern);

// ---------------------------------------------------------------------------
// Partitions: stream -> partition, the same in C++ and in SQL.

/// The first 32 bits (big-endian) of MD5(stream id) modulo `count`. MD5 is
/// used because PostgreSQL computes the very same value (partition_sql), so
/// a page can be filtered by partition in the database.
int partition_of(std::string_view stream, int count);
/// The SQL expression of partition_of over the `stream` column; `count_param`
/// is the placeholder number holding the partition count (e.g. 5 for "$5").
std::string partition_sql(int count_param);

struct Partition {
  int index = 0;
  int count = 1;  // 1: unpartitioned
  friend bool operator==(const Partition&, const Partition&) = default;
};

// ---------------------------------------------------------------------------
// Filters and results.

struct Filter {
  /// Exact types or patterns (`identity.user.*`, `service.#`); empty: every type.
  std::vector<std::string> types;
  std::optional<TenantId> tenant;
  /// recorded_at in [from, to).
  std::optional<Timestamp> recorded_from;
  std::optional<Timestamp> recorded_to;
  std::optional<CorrelationId> correlation_id;
  /// One stream only.
  std::optional<StreamId> stream;
  /// Events recorded with this actor (e.g. "user:alice").
  std::optional<std::string> actor;
  /// Only the streams of this partition (checkpointed subscriptions).
  std::optional<Partition> partition;

  /// Throws InvalidValue for a bad pattern or partition.
  void validate() const;
};

/// A PostgreSQL text[] literal, quoted and escaped (passed as one parameter).
std::string pg_text_array(const std::vector<std::string>& values);

/// The SQL conditions of `filter` (" AND ..." clauses, or empty) with their
/// values appended to `params`; placeholders continue from params.size()+1.
/// Throws InvalidValue for an invalid filter.
std::string filter_sql(const Filter& filter, pg::Params& params);

/// The columns event_from_row expects, in order.
inline constexpr const char* kEventColumns =
    "position, id::text, stream, version, type, schema_version, tenant, "
    "to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
    "to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
    "correlation_id, causation_id, actor, data::text, meta::text";

/// Decodes one row selected with kEventColumns.
Event event_from_row(const pg::Row& row);

struct Page {
  std::vector<Event> events;
  /// Every position in (after, scanned_to] was considered: the events above
  /// are all of them that match. Resume the next read after scanned_to.
  Position scanned_to;
  /// The head in the same snapshot.
  Position head;
  /// scanned_to == head: nothing more is committed yet.
  bool at_head() const noexcept { return scanned_to >= head; }
};

enum class Direction { forward, backward };

struct StreamSlice {
  std::vector<Event> events;
  /// The stream's last version; nullopt when the stream has no events.
  std::optional<StreamVersion> last_version;
};

struct ReadOptions {
  /// At most this many positions are examined per page (so a rare type does
  /// not make one page scan the whole log); 0: no bound.
  std::int64_t scan_window = 100000;
};

/// Read-only access to the events table. Thread-safe (uses the pool).
/// The pool (and catalog) must outlive the reader.
class EventReader {
 public:
  /// With a catalog, every event read is upcast to its current schema.
  explicit EventReader(pg::Pool& pool, const Catalog* catalog = nullptr, ReadOptions options = {});

  /// Events after `after` (exclusive) that match, in position order, up to
  /// `limit`; read with the head in one REPEATABLE READ snapshot.
  Page read_all(Position after, const Filter& filter, std::size_t limit) const;
  /// The same inside a caller's transaction (which should be REPEATABLE READ
  /// for scanned_to to be meaningful).
  Page read_all(pg::Transaction& tx, Position after, const Filter& filter, std::size_t limit) const;

  /// Forward: versions >= from; backward: versions <= from, newest first.
  /// Versions below the stream's truncate_before are hidden.
  StreamSlice read_stream(const StreamId& stream, StreamVersion from, Direction direction,
                          std::size_t limit) const;

  /// The events at these positions (missing ones are left out), in position order.
  std::vector<Event> read_positions(const std::vector<Position>& positions) const;

  /// The highest committed position (0: empty store).
  Position head() const;
  static Position head(pg::Transaction& tx);

  const Catalog* catalog() const noexcept { return catalog_; }

 private:
  void upcast(Event& event) const;

  pg::Pool& pool_;
  const Catalog* catalog_;
  ReadOptions options_;
};

}  // namespace sb::events
