#pragma once
// Liveness without I/O: what each replica remembers of heartbeats, and the
// sweeper's decisions (which instances are past their TTL, when expiry is
// paused). Unit-tested without servers; registry.cpp wires them to the
// broker and the database.

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "switchboard/events/time.hpp"
#include "switchboard/registry/route_table.hpp"

namespace sb::registry {

/// Last-seen per instance, in memory, thread-safe. Heartbeats mark entries
/// dirty; the flusher takes the dirty ones in batches.
class HeartbeatTracker {
 public:
  struct Seen {
    std::string instance_id;
    events::Timestamp at{};
  };

  /// Records a heartbeat received at `at` (a later time only moves forward).
  void record(std::string_view instance_id, events::Timestamp at);
  /// The last heartbeat received for `instance_id`.
  std::optional<events::Timestamp> last_seen(std::string_view instance_id) const;
  /// Takes the entries changed since the last take (sorted by instance id, so
  /// concurrent flushers lock rows in one order).
  std::vector<Seen> take_dirty();
  /// Puts back entries a failed flush could not write.
  void restore_dirty(const std::vector<Seen>& entries);
  /// Forgets instances not heard of since `before` (memory stays bounded by
  /// the instances alive recently).
  std::size_t forget_older_than(events::Timestamp before);
  std::size_t size() const;
  std::uint64_t received() const;

 private:
  struct Entry {
    events::Timestamp at{};
    bool dirty = false;
  };
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;
  std::unordered_set<std::string> dirty_;
  std::uint64_t received_ = 0;
};

/// Expiry pauses for one TTL after a start or a broker reconnect (and all
/// the while the broker is away), because heartbeats cannot have arrived.
class ExpiryPause {
 public:
  using Clock = std::chrono::steady_clock;
  explicit ExpiryPause(std::chrono::milliseconds ttl) : ttl_(ttl) {}
  /// A start, a reconnect, or the broker being away right now.
  void pause_from(Clock::time_point now) {
    std::lock_guard lock(mu_);
    if (now + ttl_ > until_) until_ = now + ttl_;
  }
  bool paused(Clock::time_point now) const {
    std::lock_guard lock(mu_);
    return now < until_;
  }
  Clock::time_point until() const {
    std::lock_guard lock(mu_);
    return until_;
  }

 private:
  std::chrono::milliseconds ttl_;
  mutable std::mutex mu_;
  Clock::time_point until_{};
};

struct ExpiryCandidate {
  const LiveInstance* instance = nullptr;
  events::Timestamp last_seen{};  // the latest evidence of life
};

/// The live instances silent for longer than their TTL at `now`: the latest
/// evidence of life is the newest of the heartbeat this replica received,
/// the one `stored` holds (flushed by any replica), and the registration
/// itself. Instances in `in_flight` (an expiry already sent) are skipped.
std::vector<ExpiryCandidate> find_expired(
    const std::vector<LiveInstance>& live, events::Timestamp now,
    const std::function<std::optional<events::Timestamp>(const std::string&)>& remembered,
    const std::function<std::optional<events::Timestamp>(const std::string&)>& stored,
    const std::function<bool(const LiveInstance&)>& in_flight);

/// Decides when a heartbeat from an instance the read model does not hold
/// asks it to register again: only after it stayed unknown for `grace`
/// (its registration may still be on its way through the store), and then
/// at most once per `repeat`.
class UnknownInstances {
 public:
  UnknownInstances(std::chrono::milliseconds grace, std::chrono::milliseconds repeat)
      : grace_(grace), repeat_(repeat) {}
  /// A heartbeat from an unknown instance at `now`: true when it should be
  /// asked to register now.
  bool should_ask(const std::string& instance_id, events::Timestamp now);
  /// The instance is known now (or gone): forget it.
  void known(const std::string& instance_id);
  /// Forgets instances first heard of before `before` and not asked since
  /// (bounds the memory a stream of bogus ids can take).
  std::size_t forget_older_than(events::Timestamp before);
  std::size_t size() const;

 private:
  struct State {
    events::Timestamp first{};
    std::optional<events::Timestamp> asked;
  };
  std::chrono::milliseconds grace_;
  std::chrono::milliseconds repeat_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, State> unknown_;
};

}  // namespace sb::registry
