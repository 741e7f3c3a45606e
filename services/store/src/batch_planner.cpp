#include "switchboard/store/batch_planner.hpp"

#include <unordered_set>

namespace sb::store {
namespace {

bool satisfied(const events::ExpectedVersion& e, std::int64_t current) {
  return e.matches(current < 0
                       ? std::nullopt
                       : std::optional<events::StreamVersion>(events::StreamVersion(current)));
}

}  // namespace

Plan plan_batch(const std::vector<PlanRequest>& requests,
                const std::unordered_map<std::string, StoredEvent>& stored,
                const std::unordered_map<std::string, std::int64_t>& stream_version,
                std::int64_t head) {
  Plan plan;
  plan.new_head = head;
  plan.outcomes.reserve(requests.size());
  // Ids accepted earlier in this batch: a retry racing its original inside
  // one batch is a duplicate of it, not a second append.
  std::unordered_map<std::string, StoredEvent> batch_ids;
  auto current_version = [&](const std::string& stream) -> std::int64_t {
    if (auto it = plan.stream_versions.find(stream); it != plan.stream_versions.end())
      return it->second;
    if (auto it = stream_version.find(stream); it != stream_version.end()) return it->second;
    return -1;
  };

  for (const auto& req : requests) {
    if (req.event_ids.empty()) {
      plan.outcomes.emplace_back(
          outcome::Rejected{"empty_append", "an append needs at least one event"});
      continue;
    }
    std::unordered_set<std::string> unique(req.event_ids.begin(), req.event_ids.end());
    if (unique.size() != req.event_ids.size()) {
      plan.outcomes.emplace_back(
          outcome::Rejected{"duplicate_event_id", "the same event id appears twice in one append"});
      continue;
    }
    // 1. Idempotency by event id.
    std::vector<const StoredEvent*> found;
    for (const auto& id : req.event_ids) {
      if (auto it = stored.find(id); it != stored.end()) {
        found.push_back(&it->second);
      } else if (auto b = batch_ids.find(id); b != batch_ids.end()) {
        found.push_back(&b->second);
      }
    }
    if (found.size() == req.event_ids.size()) {
      outcome::Duplicate dup;
      bool same_stream = true;
      for (const auto* e : found) {
        dup.positions.push_back(e->position);
        dup.last_version = std::max(dup.last_version, e->version);
        same_stream = same_stream && e->stream == req.stream;
      }
      if (same_stream) {
        plan.outcomes.emplace_back(std::move(dup));
      } else {
        plan.outcomes.emplace_back(outcome::Rejected{
            "event_id_reused", "these event ids are already stored in another stream"});
      }
      continue;
    }
    if (!found.empty()) {
      plan.outcomes.emplace_back(outcome::Rejected{
          "partial_duplicate", "some of these event ids are already stored, others are not"});
      continue;
    }
    // 2. Expected version, as earlier requests of this batch left the stream.
    std::int64_t current = current_version(req.stream);
    if (!satisfied(req.expected, current)) {
      plan.outcomes.emplace_back(outcome::Conflict{current});
      continue;
    }
    // 3. Positions and versions.
    outcome::Accepted acc{plan.new_head + 1, current + 1};
    auto n = static_cast<std::int64_t>(req.event_ids.size());
    for (std::int64_t i = 0; i < n; ++i) {
      batch_ids.emplace(req.event_ids[static_cast<std::size_t>(i)],
                        StoredEvent{acc.first_position + i, req.stream, acc.first_version + i});
    }
    plan.new_head += n;
    plan.stream_versions[req.stream] = current + n;
    plan.accepted_events += static_cast<std::size_t>(n);
    plan.outcomes.emplace_back(acc);
  }
  return plan;
}

}  // namespace sb::store
