#include "switchboard/registry/liveness.hpp"

#include <algorithm>

namespace sb::registry {

void HeartbeatTracker::record(std::string_view instance_id, events::Timestamp at) {
  std::lock_guard lock(mu_);
  ++received_;
  auto [it, inserted] = entries_.try_emplace(std::string(instance_id));
  if (inserted || at > it->second.at) it->second.at = at;
  if (!it->second.dirty) {
    it->second.dirty = true;
    dirty_.insert(it->first);
  }
}

std::optional<events::Timestamp> HeartbeatTracker::last_seen(std::string_view instance_id) const {
  std::lock_guard lock(mu_);
  auto it = entries_.find(std::string(instance_id));
  if (it == entries_.end()) return std::nullopt;
  return it->second.at;
}

std::vector<HeartbeatTracker::Seen> HeartbeatTracker::take_dirty() {
  std::vector<Seen> out;
  {
    std::lock_guard lock(mu_);
    out.reserve(dirty_.size());
    for (const auto& id : dirty_) {
      auto& e = entries_[id];
      e.dirty = false;
      out.push_back({id, e.at});
    }
    dirty_.clear();
  }
  std::sort(out.begin(), out.end(),
            [](const Seen& a, const Seen& b) { return a.instance_id < b.instance_id; });
  return out;
}

void HeartbeatTracker::restore_dirty(const std::vector<Seen>& entries) {
  std::lock_guard lock(mu_);
  for (const auto& s : entries) {
    auto [it, inserted] = entries_.try_emplace(s.instance_id);
    if (inserted || s.at > it->second.at) it->second.at = s.at;
    if (!it->second.dirty) {
      it->second.dirty = true;
      dirty_.insert(it->first);
    }
  }
}

std::size_t HeartbeatTracker::forget_older_than(events::Timestamp before) {
  std::lock_guard lock(mu_);
  std::size_t n = 0;
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (it->second.at < before && !it->second.dirty) {
      it = entries_.erase(it);
      ++n;
    } else {
      ++it;
    }
  }
  return n;
}

std::size_t HeartbeatTracker::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

std::uint64_t HeartbeatTracker::received() const {
  std::lock_guard lock(mu_);
  return received_;
}

std::vector<ExpiryCandidate> find_expired(
    const std::vector<LiveInstance>& live, events::Timestamp now,
    const std::function<std::optional<events::Timestamp>(const std::string&)>& remembered,
    const std::function<std::optional<events::Timestamp>(const std::string&)>& stored,
    const std::function<bool(const LiveInstance&)>& in_flight) {
  std::vector<ExpiryCandidate> out;
  for (const auto& i : live) {
    if (in_flight && in_flight(i)) continue;
    events::Timestamp seen = i.registered_at;
    if (auto m = remembered ? remembered(i.instance_id) : std::nullopt; m && *m > seen) seen = *m;
    if (now - seen <= i.ttl) continue;
    // Only a candidate by this replica's memory: ask the shared table, which
    // another replica may have fed with heartbeats this one missed.
    if (auto s = stored ? stored(i.instance_id) : std::nullopt; s && *s > seen) seen = *s;
    if (now - seen <= i.ttl) continue;
    out.push_back({&i, seen});
  }
  return out;
}

bool UnknownInstances::should_ask(const std::string& instance_id, events::Timestamp now) {
  std::lock_guard lock(mu_);
  auto [it, inserted] = unknown_.try_emplace(instance_id);
  if (inserted) {
    it->second.first = now;
    return false;
  }
  auto& s = it->second;
  if (now - s.first < grace_) return false;
  if (s.asked && now - *s.asked < repeat_) return false;
  s.asked = now;
  return true;
}

void UnknownInstances::known(const std::string& instance_id) {
  std::lock_guard lock(mu_);
  unknown_.erase(instance_id);
}

std::size_t UnknownInstances::forget_older_than(events::Timestamp before) {
  std::lock_guard lock(mu_);
  std::size_t n = 0;
  for (auto it = unknown_.begin(); it != unknown_.end();) {
    const auto last = it->second.asked.value_or(it->second.first);
    if (last < before) {
      it = unknown_.erase(it);
      ++n;
    } else {
      ++it;
    }
  }
  return n;
}

std::size_t UnknownInstances::size() const {
  std::lock_guard lock(mu_);
  return unknown_.size();
}

}  // namespace sb::registry
