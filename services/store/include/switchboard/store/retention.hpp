#pragma once
// Per-stream retention by logical truncation. A stream's policy is the event
// `store.stream.retention_set` {max_count?, max_age_seconds?} appended to the
// stream itself (the writer applies it to the streams table in the same
// transaction), so every policy change is audited like any other change.
// While this store is active, every `interval` the job moves each stream's
// truncate_before past what the policy no longer keeps (readers hide those
// versions at once) and the scavenger deletes hidden rows that were already
// published, in batches, so a big deletion never holds long locks.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include "switchboard/shared/lifecycle.hpp"
#include "switchboard/shared/pg.hpp"

namespace sb::store {

struct RetentionOptions {
  pg::ConnectOptions database;
  std::chrono::milliseconds interval{10000};
  std::int64_t scavenge_batch = 5000;
  std::int64_t max_batches_per_run = 20;
};

class Retention : public app::Component {
 public:
  /// `active`: whether this store's writer holds the lock right now.
  Retention(RetentionOptions options, std::function<bool()> active);
  ~Retention() override;
  std::string_view name() const override { return "store-retention"; }
  void start() override;
  void stop(Deadline deadline) noexcept override;

  struct Report {
    std::int64_t streams_truncated = 0;
    std::int64_t events_scavenged = 0;
  };
  /// One pass (also what the timer runs).
  Report run_once();

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace sb::store
