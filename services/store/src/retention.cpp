#include "switchboard/store/retention.hpp"

#include <mutex>

#include "event_sql.hpp"
#include "switchboard/shared/log.hpp"
#include "switchboard/shared/loop_thread.hpp"
#include "switchboard/shared/metrics.hpp"

namespace sb::store {

class Retention::Impl {
 public:
  Impl(RetentionOptions options, std::function<bool()> active)
      : options_(std::move(options)), active_(std::move(active)) {}

  void start() {
    loop_.start([this] { run(); });
  }

  void stop() { loop_.stop(); }

  Report run_once() {
    std::lock_guard pass(pass_mutex_);
    if (!db_ || !db_->is_open()) db_ = std::make_unique<pg::Connection>(options_.database);
    Report r;
    r.streams_truncated = sql::truncate_streams(*db_);
    for (std::int64_t i = 0; i < options_.max_batches_per_run; ++i) {
      auto n = sql::scavenge(*db_, options_.scavenge_batch);
      r.events_scavenged += n;
      if (n < options_.scavenge_batch) break;
    }
    static auto& scavenged = metrics::Registry::global().counter(
        "sb_store_scavenged_events_total", "Events deleted by retention after truncation");
    scavenged.inc(static_cast<std::uint64_t>(r.events_scavenged));
    if (r.streams_truncated > 0 || r.events_scavenged > 0) {
      log::info("retention pass", {{"streams_truncated", r.streams_truncated},
                                   {"events_scavenged", r.events_scavenged}});
    }
    return r;
  }

 private:
  void run() {
    while (loop_.wait_for(options_.interval)) {
      if (!active_()) continue;
      try {
        run_once();
      } catch (const std::exception& e) {
        log::warn("retention pass failed", {{"error", e.what()}});
        db_.reset();
      }
    }
  }

  RetentionOptions options_;
  std::function<bool()> active_;
  std::unique_ptr<pg::Connection> db_;
  std::mutex pass_mutex_;
  app::LoopThread loop_;  // last: joined before the members above go
};

Retention::Retention(RetentionOptions options, std::function<bool()> active)
    : impl_(std::make_shared<Impl>(std::move(options), std::move(active))) {}
Retention::~Retention() {
  impl_->stop();
}
void Retention::start() {
  impl_->start();
}
void Retention::stop(Deadline) noexcept {
  impl_->stop();
}
Retention::Report Retention::run_once() {
  return impl_->run_once();
}

}  // namespace sb::store
