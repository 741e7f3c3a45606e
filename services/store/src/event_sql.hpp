#pragma once
// The store's SQL, in one place. Parameterised statements only; arrays are
// passed as one array-literal parameter, never spliced into the text.

#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "switchboard/events/envelope.hpp"
#include "switchboard/shared/pg.hpp"
#include "switchboard/store/batch_planner.hpp"

namespace sb::store::sql {

std::int64_t load_head(pg::Connection& c);
events::Timestamp load_recorded_at(pg::Connection& c, std::int64_t position);

/// stream → (last version, tenant) for the streams that exist.
std::unordered_map<std::string, std::pair<std::int64_t, std::string>> load_streams(
    pg::Connection& c, const std::vector<std::string>& streams);

/// Stored events among `ids`.
std::unordered_map<std::string, StoredEvent> load_events_by_id(pg::Connection& c,
                                                               const std::vector<std::string>& ids);

void insert_events(pg::Transaction& tx, const std::vector<events::Event>& rows);

struct StreamRow {
  std::string stream;
  std::string tenant;
  std::int64_t version = 0;
  std::int64_t last_position = 0;
};
void upsert_streams(pg::Transaction& tx, const std::vector<StreamRow>& rows);

/// Sets the stream's retention from a store.stream.retention_set event.
void apply_retention(pg::Transaction& tx, const events::Event& policy);

/// Hides (truncate_before) what retention policies no longer keep; returns
/// the streams changed.
std::int64_t truncate_streams(pg::Connection& c);
/// Deletes up to `limit` hidden events that were already published; returns
/// how many.
std::int64_t scavenge(pg::Connection& c, std::int64_t limit);

}  // namespace sb::store::sql
