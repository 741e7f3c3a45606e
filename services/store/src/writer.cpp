#include "switchboard/store/writer.hpp"

#include <algorithm>
#include <deque>
#include <mutex>
#include <unordered_map>

#include "event_sql.hpp"
#include "switchboard/events/platform_types.hpp"
#include "switchboard/shared/log.hpp"
#include "switchboard/shared/loop_thread.hpp"
#include "switchboard/shared/metrics.hpp"
#include "switchboard/store/batch_planner.hpp"

namespace sb::store {

const char* to_string(AppendResult::Kind kind) {
  switch (kind) {
    case AppendResult::Kind::appended:
      return "appended";
    case AppendResult::Kind::duplicate:
      return "duplicate";
    case AppendResult::Kind::conflict:
      return "conflict";
    case AppendResult::Kind::rejected:
      return "rejected";
    case AppendResult::Kind::unavailable:
      return "unavailable";
  }
  return "unknown";
}

namespace {

struct Pending {
  AppendRequest request;
  Writer::Callback done;
};

AppendResult unavailable(std::string message) {
  AppendResult r;
  r.kind = AppendResult::Kind::unavailable;
  r.code = "unavailable";
  r.message = std::move(message);
  return r;
}

AppendResult rejected(std::string code, std::string message) {
  AppendResult r;
  r.kind = AppendResult::Kind::rejected;
  r.code = std::move(code);
  r.message = std::move(message);
  return r;
}

struct Metrics {
  metrics::Counter& batches = metrics::Registry::global().counter(
      "sb_store_batches_total", "Group-commit transactions committed");
  metrics::Counter& events =
      metrics::Registry::global().counter("sb_store_appended_events_total", "Events stored");
  metrics::Counter& conflicts = metrics::Registry::global().counter(
      "sb_store_conflicts_total", "Appends refused for an expected-version conflict");
  metrics::Counter& duplicates = metrics::Registry::global().counter(
      "sb_store_duplicates_total", "Appends whose events were already stored");
  metrics::Counter& late = metrics::Registry::global().counter(
      "sb_store_late_appends_total", "Appends refused because their caller's deadline had passed");
  metrics::Counter& lost = metrics::Registry::global().counter(
      "sb_store_writer_lost_total", "Times the writer lost its connection and lock");
  metrics::Histogram& commit = metrics::Registry::global().histogram(
      "sb_store_commit_seconds", "Time to plan, write and commit one batch");
  metrics::Gauge& head =
      metrics::Registry::global().gauge("sb_store_head_position", "Last committed position");
};

Metrics& m() {
  static Metrics instance;
  return instance;
}

}  // namespace

class Writer::Impl {
 public:
  Impl(WriterOptions options, CommitListener listener)
      : options_(std::move(options)), listener_(std::move(listener)) {}

  void start() {
    loop_.start([this] { run(); });
  }

  void stop() {
    if (!loop_.stop()) return;
    // Whatever is still queued was never written: say so.
    std::deque<Pending> left;
    {
      std::lock_guard lock(loop_.mutex());
      left.swap(queue_);
    }
    for (auto& p : left) p.done(unavailable("the store is shutting down"));
  }

  void append(AppendRequest request, Callback done) {
    {
      std::lock_guard lock(loop_.mutex());
      if (!loop_.stopping_locked() && queue_.size() < options_.max_queued_requests) {
        queue_.push_back(Pending{std::move(request), std::move(done)});
        loop_.notify();
        return;
      }
    }
    done(unavailable("the store's queue is full"));
  }

  bool active() const noexcept { return active_.load(); }
  std::int64_t head() const noexcept { return head_.load(); }
  Stats stats() const {
    std::lock_guard lock(stats_mutex_);
    return stats_;
  }
  app::Health health() const {
    if (active_) return {};
    return {app::HealthState::degraded, "standby: waiting for the writer lock"};
  }

 private:
  struct StreamInfo {
    std::int64_t version = -1;  // -1: no such stream
    std::string tenant;
  };

  void run() {
    while (!stopping()) {
      if (!conn_ || !conn_->is_open()) {
        if (!become_active()) continue;
      }
      auto batch = take_batch();
      if (batch.empty()) {
        // Idle: notice a lost session (and so a lost lock) without waiting
        // for the next append.
        if (!conn_->check_alive()) lose("connection lost while idle");
        continue;
      }
      process(std::move(batch));
    }
    if (active_) {
      active_ = false;
      if (listener_.on_standby) listener_.on_standby();
    }
    conn_.reset();
  }

  bool stopping() const { return loop_.stopping(); }
  void wait_for(std::chrono::milliseconds d) { loop_.wait_for(d); }

  // Standby until the lock is ours; then load the head. False: try again.
  bool become_active() {
    try {
      conn_ = std::make_unique<pg::Connection>(options_.connection);
    } catch (const pg::Error& e) {
      log::warn("store writer cannot connect", {{"error", e.what()}});
      conn_.reset();
      wait_for(options_.standby_poll);
      return false;
    }
    bool announced = false;
    try {
      while (!conn_->try_advisory_lock(options_.lock_key)) {
        if (!announced) {
          log::info("store writer on standby: another store holds the lock");
          announced = true;
        }
        wait_for(options_.standby_poll);
        if (stopping()) return false;
      }
      head_ = sql::load_head(*conn_);
      last_recorded_ = sql::load_recorded_at(*conn_, head_);
    } catch (const pg::Error& e) {
      log::warn("store writer lost its connection while taking the lock", {{"error", e.what()}});
      conn_.reset();
      return false;
    }
    streams_.clear();
    // The listener prepares (e.g. catches the catalog up) before anyone can
    // see this writer active and start serving through it.
    if (listener_.on_active) listener_.on_active(head_);
    active_ = true;
    m().head.set(static_cast<double>(head_.load()));
    log::info("store writer active", {{"head", head_.load()}});
    return true;
  }

  void lose(const std::string& why) {
    log::error("store writer stepped down", {{"reason", why}});
    m().lost.inc();
    conn_.reset();
    streams_.clear();
    if (active_.exchange(false) && listener_.on_standby) listener_.on_standby();
  }

  std::vector<Pending> take_batch() {
    std::vector<Pending> batch;
    std::vector<Pending> late;
    {
      std::unique_lock lock(loop_.mutex());
      loop_.wait_for(lock, std::chrono::milliseconds(100), [this] { return !queue_.empty(); });
      const auto now = std::chrono::system_clock::now();
      std::size_t events = 0;
      while (!queue_.empty() && (batch.empty() || events + queue_.front().request.events.size() <=
                                                      options_.max_batch_events)) {
        auto& front = queue_.front();
        if (front.request.deadline && *front.request.deadline <= now) {
          late.push_back(std::move(front));
        } else {
          events += front.request.events.size();
          batch.push_back(std::move(front));
        }
        queue_.pop_front();
      }
    }
    for (auto& p : late) {
      m().late.inc();
      p.done(rejected("deadline_exceeded", "the caller's deadline passed before the append ran"));
    }
    return batch;
  }

  // Puts appends whose outcome is not decided back at the front, in order.
  void requeue(std::vector<Pending>& batch) {
    std::lock_guard lock(loop_.mutex());
    for (auto it = batch.rbegin(); it != batch.rend(); ++it) {
      it->request.deadline.reset();  // it entered a commit: decide it, late or not
      queue_.push_front(std::move(*it));
    }
    batch.clear();
  }

  void process(std::vector<Pending> batch) {
    auto started = std::chrono::steady_clock::now();
    try {
      bool done = false;
      try {
        // Optimistic: most appends are new, and UNIQUE(id) catches the rest.
        done = commit_batch(batch, false);
      } catch (const pg::UniqueViolation&) {
        done = false;
      }
      // A retried append may be in the batch (a unique violation, or what
      // looks like a conflict may be a retry of an append that advanced the
      // stream): plan again knowing the stored ids, so it gets its original
      // positions back — idempotency by id comes before expected versions.
      if (!done) commit_batch(batch, true);
    } catch (const pg::InDoubtError& e) {
      // The commit may or may not have happened. Never retry blindly: put the
      // appends back; once active again the planner re-reads their event ids
      // and answers "duplicate" for what did commit.
      requeue(batch);
      lose(std::string("commit in doubt: ") + e.what());
      return;
    } catch (const pg::ConnectionError& e) {
      requeue(batch);  // lost before commit: nothing was written
      lose(e.what());
      return;
    } catch (const pg::Error& e) {
      if (batch.size() > 1) {
        // One bad append must not fail the others: write them one by one.
        log::warn("batch failed; retrying appends one by one", {{"error", e.what()}});
        for (std::size_t i = 0; i < batch.size(); ++i) {
          if (!conn_) {
            // Lost meanwhile: the rest were not written; they go back to the
            // front of the queue (concurrent appends, so order is free).
            std::vector<Pending> rest(
                std::make_move_iterator(batch.begin() + static_cast<std::ptrdiff_t>(i)),
                std::make_move_iterator(batch.end()));
            requeue(rest);
            return;
          }
          std::vector<Pending> one;
          one.push_back(std::move(batch[i]));
          process(std::move(one));
        }
        return;
      }
      log::error("append failed", {{"error", e.what()}, {"sqlstate", e.sqlstate()}});
      batch.front().done(rejected("store_error", e.what()));
      return;
    }
    m().commit.observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  }

  // False (nothing written, nobody answered) when planning without the stored
  // ids found an append that was not accepted: the caller plans again with them.
  bool commit_batch(std::vector<Pending>& batch, bool lookup_ids) {
    // Streams' current versions and owners: from the cache, else the table.
    std::vector<std::string> missing;
    std::unordered_map<std::string, std::string> claimed;  // new streams claimed in this batch
    for (const auto& p : batch) {
      const auto& s = p.request.stream.value();
      if (!streams_.contains(s)) missing.push_back(s);
    }
    if (!missing.empty()) {
      std::sort(missing.begin(), missing.end());
      missing.erase(std::unique(missing.begin(), missing.end()), missing.end());
      auto found = sql::load_streams(*conn_, missing);
      for (const auto& s : missing) {
        auto it = found.find(s);
        streams_[s] =
            it == found.end() ? StreamInfo{} : StreamInfo{it->second.first, it->second.second};
      }
    }

    // A stream belongs to one tenant: an append from another is refused
    // before planning (and says nothing about the stream).
    std::vector<std::size_t> planned;  // indexes into batch
    std::vector<std::optional<AppendResult>> early(batch.size());
    std::vector<PlanRequest> requests;
    std::vector<std::string> ids;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      const auto& r = batch[i].request;
      const auto& info = streams_[r.stream.value()];
      std::string owner = info.version >= 0 ? info.tenant : claimed[r.stream.value()];
      if (!owner.empty() && owner != r.tenant.value()) {
        early[i] = rejected("stream_not_found", "no such stream for this tenant");
        continue;
      }
      if (info.version < 0) claimed[r.stream.value()] = r.tenant.value();
      PlanRequest pr{r.stream.value(), r.expected, {}};
      for (const auto& e : r.events) {
        pr.event_ids.push_back(e.id.value());
        ids.push_back(e.id.value());
      }
      requests.push_back(std::move(pr));
      planned.push_back(i);
    }

    std::unordered_map<std::string, StoredEvent> stored;
    if (lookup_ids) stored = sql::load_events_by_id(*conn_, ids);
    std::unordered_map<std::string, std::int64_t> versions;
    for (const auto& r : requests) versions[r.stream] = streams_[r.stream].version;
    std::int64_t head = head_;
    Plan plan = plan_batch(requests, stored, versions, head);
    if (!lookup_ids) {
      for (const auto& o : plan.outcomes) {
        if (!std::holds_alternative<outcome::Accepted>(o)) return false;
      }
    }

    // The rows of the accepted appends.
    auto recorded_at = std::max(events::now_ms(), last_recorded_);
    std::vector<events::Event> rows;
    rows.reserve(plan.accepted_events);
    for (std::size_t k = 0; k < planned.size(); ++k) {
      auto* acc = std::get_if<outcome::Accepted>(&plan.outcomes[k]);
      if (acc == nullptr) continue;
      const auto& r = batch[planned[k]].request;
      for (std::size_t j = 0; j < r.events.size(); ++j) {
        auto offset = static_cast<std::int64_t>(j);
        rows.push_back(events::record(
            r.events[j], r.stream, events::StreamVersion(acc->first_version + offset),
            events::Position(acc->first_position + offset), r.tenant, recorded_at));
      }
    }
    std::size_t committed_events = 0;
    if (!rows.empty()) {
      auto tx = conn_->begin();
      sql::insert_events(tx, rows);
      std::vector<sql::StreamRow> changed;
      for (const auto& [stream, version] : plan.stream_versions) {
        changed.push_back({stream,
                           claimed.contains(stream) ? claimed[stream] : streams_[stream].tenant,
                           version, 0});
      }
      for (auto& c : changed) {
        // last_position: the highest position written to the stream in this batch.
        for (auto it = rows.rbegin(); it != rows.rend(); ++it) {
          if (it->stream.value() == c.stream) {
            c.last_position = it->position.value();
            break;
          }
        }
      }
      sql::upsert_streams(tx, changed);
      // A retention policy is an event on its stream, applied with it.
      for (const auto& row : rows) {
        if (row.type.value() == events::kStreamRetentionSet) sql::apply_retention(tx, row);
      }
      tx.commit();
      // Committed: only now may memory, listeners and callers learn of it.
      head_ = plan.new_head;
      last_recorded_ = recorded_at;
      for (const auto& c : changed) streams_[c.stream] = StreamInfo{c.version, c.tenant};
      if (streams_.size() > options_.max_cached_streams) streams_.clear();
      m().head.set(static_cast<double>(plan.new_head));
      m().batches.inc();
      m().events.inc(rows.size());
      committed_events = rows.size();
      auto committed = std::make_shared<const std::vector<events::Event>>(std::move(rows));
      if (listener_.on_commit) listener_.on_commit(*committed, plan.new_head);
      if (listener_.on_commit_batch) listener_.on_commit_batch(std::move(committed), plan.new_head);
    }

    // Answers, in request order.
    std::size_t conflicts = 0;
    std::size_t duplicates = 0;
    std::size_t k = 0;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (early[i]) {
        batch[i].done(std::move(*early[i]));
        continue;
      }
      const auto& o = plan.outcomes[k++];
      AppendResult res;
      if (const auto* acc = std::get_if<outcome::Accepted>(&o)) {
        res.kind = AppendResult::Kind::appended;
        auto n = static_cast<std::int64_t>(batch[i].request.events.size());
        for (std::int64_t j = 0; j < n; ++j) res.positions.push_back(acc->first_position + j);
        res.last_version = acc->first_version + n - 1;
      } else if (const auto* dup = std::get_if<outcome::Duplicate>(&o)) {
        res.kind = AppendResult::Kind::duplicate;
        res.positions = dup->positions;
        res.last_version = dup->last_version;
        ++duplicates;
      } else if (const auto* c = std::get_if<outcome::Conflict>(&o)) {
        res.kind = AppendResult::Kind::conflict;
        res.current_version = c->current_version;
        res.code = "wrong_expected_version";
        res.message = "expected version " + batch[i].request.expected.to_string() +
                      ", stream is at " + std::to_string(c->current_version);
        ++conflicts;
      } else {
        const auto& rej = std::get<outcome::Rejected>(o);
        res = rejected(rej.code, rej.message);
      }
      batch[i].done(std::move(res));
    }
    m().conflicts.inc(conflicts);
    m().duplicates.inc(duplicates);
    std::lock_guard lock(stats_mutex_);
    stats_.batches += committed_events == 0 ? 0U : 1U;
    stats_.requests += batch.size();
    stats_.events += committed_events;
    stats_.conflicts += conflicts;
    stats_.duplicates += duplicates;
    return true;
  }

  WriterOptions options_;
  CommitListener listener_;
  std::deque<Pending> queue_;  // guarded by loop_.mutex()
  std::atomic<bool> active_{false};
  std::atomic<std::int64_t> head_{0};
  events::Timestamp last_recorded_{};
  std::unique_ptr<pg::Connection> conn_;
  std::unordered_map<std::string, StreamInfo> streams_;
  mutable std::mutex stats_mutex_;
  Stats stats_;
  app::LoopThread loop_;  // last: joined before the members above go
};

Writer::Writer(WriterOptions options, CommitListener listener)
    : impl_(std::make_shared<Impl>(std::move(options), std::move(listener))) {}

Writer::~Writer() {
  impl_->stop();
}

void Writer::start() {
  impl_->start();
}
void Writer::stop(Deadline) noexcept {
  impl_->stop();
}
app::Health Writer::health() const {
  return impl_->health();
}
void Writer::append(AppendRequest request, Callback done) {
  impl_->append(std::move(request), std::move(done));
}
bool Writer::active() const noexcept {
  return impl_->active();
}
std::int64_t Writer::head() const noexcept {
  return impl_->head();
}
Writer::Stats Writer::stats() const {
  return impl_->stats();
}

}  // namespace sb::store
