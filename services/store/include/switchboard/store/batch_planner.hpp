#pragma once
// The single writer's decision for one group-commit batch, with no I/O: given
// the requests taken from the queue (in arrival order), what the database
// already knows about their event ids and streams, and the current head,
// decide per request — already stored (idempotent replay), version conflict,
// rejected, or accepted with positions — and the rows to insert.
//
// Rules (DESIGN.md "Write path"):
//  1. idempotency by event id first: a request whose ids are all stored gets
//     the original positions back, whatever its expected version says; one
//     whose ids are partly stored is rejected (it is not the same append);
//  2. then the expected version, checked against the stream's version as
//     earlier requests of the same batch leave it, so one conflict fails only
//     its own request;
//  3. positions are head+1, head+2, ... in acceptance order: gap-free,
//     because the whole batch commits in one transaction or not at all.

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "switchboard/events/types.hpp"

namespace sb::store {

/// What the planner needs of one request. Versions are 0-based indexes in
/// the stream; a stream's "version" is the index of its last event (-1: none).
struct PlanRequest {
  std::string stream;
  events::ExpectedVersion expected = events::ExpectedVersion::any();
  std::vector<std::string> event_ids;  // canonical text, unique within the request
};

/// What the database (or the writer's cache) says about one stored event.
struct StoredEvent {
  std::int64_t position = 0;
  std::string stream;
  std::int64_t version = 0;
};

namespace outcome {
struct Accepted {
  std::int64_t first_position = 0;  // events get first_position .. + n - 1
  std::int64_t first_version = 0;   // ... and first_version .. + n - 1
};
struct Duplicate {
  std::vector<std::int64_t> positions;  // the original ones, per event
  std::int64_t last_version = 0;
};
struct Conflict {
  std::int64_t current_version = -1;  // -1: the stream does not exist
};
struct Rejected {
  std::string code;
  std::string message;
};
}  // namespace outcome
using Outcome =
    std::variant<outcome::Accepted, outcome::Duplicate, outcome::Conflict, outcome::Rejected>;

struct Plan {
  std::vector<Outcome> outcomes;  // one per request, same order
  std::int64_t new_head = 0;
  /// Streams' last versions after the batch (only streams it changed).
  std::unordered_map<std::string, std::int64_t> stream_versions;
  std::size_t accepted_events = 0;
};

/// `stored`: every event id of the batch that is already in the store.
/// `stream_version`: the current last version of each stream the batch
/// touches (-1 or absent: the stream does not exist).
Plan plan_batch(const std::vector<PlanRequest>& requests,
                const std::unordered_map<std::string, StoredEvent>& stored,
                const std::unordered_map<std::string, std::int64_t>& stream_version,
                std::int64_t head);

}  // namespace sb::store
