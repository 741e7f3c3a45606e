#include "switchboard/store/event_publisher.hpp"

#include <deque>
#include <mutex>
#include <optional>
#include <set>

#include "event_sql.hpp"
#include "switchboard/broker/publisher.hpp"
#include "switchboard/events/head_signals.hpp"
#include "switchboard/events/reader.hpp"
#include "switchboard/shared/log.hpp"
#include "switchboard/shared/loop_thread.hpp"
#include "switchboard/shared/metrics.hpp"

namespace sb::store {
namespace {

constexpr std::chrono::seconds kPublishDeadline{10};

struct Metrics {
  metrics::Gauge& published = metrics::Registry::global().gauge(
      "sb_store_published_position", "Contiguous prefix of positions confirmed on sb.events");
  metrics::Counter& sent = metrics::Registry::global().counter(
      "sb_store_published_events_total", "Events sent to sb.events (re-sends included)");
  metrics::Counter& rewinds = metrics::Registry::global().counter(
      "sb_store_publish_rewinds_total", "Times publishing restarted from the first unconfirmed");
  metrics::Counter& from_memory = metrics::Registry::global().counter(
      "sb_store_publish_handoff_events_total",
      "Events sent as the writer handed them over, without reading them back");
  metrics::Counter& from_store = metrics::Registry::global().counter(
      "sb_store_publish_read_events_total", "Events sent after reading them back from the store");
  metrics::Counter& overflows = metrics::Registry::global().counter(
      "sb_store_publish_handoff_overflows_total",
      "Committed batches not kept in memory because the hand-off was full (read back instead)");
};
Metrics& m() {
  static Metrics instance;
  return instance;
}

broker::Message to_message(const events::Event& e) {
  broker::Message msg;
  msg.body = events::to_json(e);
  msg.message_id = e.id.value();
  msg.type = e.type.value();
  msg.persistent = true;
  msg.headers["position"] = e.position.value();
  msg.headers["tenant"] = e.tenant.value();
  if (e.meta.is_object()) {
    const auto& meta = e.meta.value();
    auto it = meta.FindMember("traceparent");
    if (it != meta.MemberEnd() && it->value.IsString()) {
      msg.headers[std::string(broker::kTraceparentHeader)] = std::string(it->value.GetString());
    }
  }
  return msg;
}

// Stored events in [from, to], in position order (gaps are the caller's to find).
std::vector<events::Event> read_page(pg::Connection& db, std::int64_t from, std::int64_t to) {
  auto rows =
      db.exec(pg::Sql::trusted(std::string("SELECT ") + events::kEventColumns +
                               " FROM events WHERE position BETWEEN $1 AND $2 ORDER BY position"),
              {from, to});
  std::vector<events::Event> out;
  out.reserve(rows.size());
  for (const auto& row : rows) out.push_back(events::event_from_row(row));
  return out;
}

// Reads the next page of stored events on its own thread and connection
// while the publisher sends the current one. Holds one request and one page
// at most. Committed rows never change, so a page is good for as long as it
// starts where the publisher is; any other page is dropped.
class Prefetcher {
 public:
  explicit Prefetcher(pg::ConnectOptions db) : db_options_(std::move(db)) {}
  ~Prefetcher() { stop(); }

  void start() {
    loop_.start([this] { run(); });
  }
  void stop() {
    if (!loop_.stop()) return;
    db_.reset();
  }

  /// Asks for [from, to]; drops an older request and page.
  void request(std::int64_t from, std::int64_t to) {
    std::lock_guard lock(loop_.mutex());
    wanted_ = std::make_pair(from, to);
    ready_.reset();
    loop_.notify();
  }

  /// Drops whatever is asked for or ready.
  void reset() {
    std::lock_guard lock(loop_.mutex());
    wanted_.reset();
    ready_.reset();
  }

  /// The page starting at `from`: ready, or waited for when it is being read
  /// now. Nothing (read it yourself) otherwise, or when reading it failed.
  std::optional<std::vector<events::Event>> take(std::int64_t from) {
    std::unique_lock lock(loop_.mutex());
    loop_.wait_for(lock, std::chrono::seconds(30),
                   [&] { return !(reading_ && reading_from_ == from); });
    if (ready_ && ready_->first == from) {
      auto page = std::move(ready_->second);
      ready_.reset();
      return page;
    }
    return std::nullopt;
  }

 private:
  void run() {
    while (true) {
      std::pair<std::int64_t, std::int64_t> range;
      {
        std::unique_lock lock(loop_.mutex());
        if (!loop_.wait_for(lock, std::chrono::milliseconds(500),
                            [&] { return wanted_.has_value(); })) {
          break;
        }
        if (!wanted_) continue;
        range = *wanted_;
        wanted_.reset();
        reading_ = true;
        reading_from_ = range.first;
      }
      std::optional<std::vector<events::Event>> page;
      try {
        if (!db_ || !db_->is_open()) db_ = std::make_unique<pg::Connection>(db_options_);
        page = read_page(*db_, range.first, range.second);
      } catch (const std::exception& e) {
        // The publisher reads the page itself and reports what goes wrong.
        log::debug("store publisher prefetch failed", {{"error", e.what()}});
        db_.reset();
      }
      {
        std::lock_guard lock(loop_.mutex());
        reading_ = false;
        // Kept only if nothing newer was asked for meanwhile.
        if (page && !wanted_) ready_.emplace(range.first, std::move(*page));
      }
      loop_.notify();
    }
  }

  pg::ConnectOptions db_options_;
  std::unique_ptr<pg::Connection> db_;  // the prefetch thread's own
  // Guarded by loop_.mutex().
  std::optional<std::pair<std::int64_t, std::int64_t>> wanted_;
  bool reading_ = false;
  std::int64_t reading_from_ = 0;
  std::optional<std::pair<std::int64_t, std::vector<events::Event>>> ready_;
  app::LoopThread loop_;  // last: joined before the members above go
};

// One page to send: events in position order, handed over by the writer
// (kept alive by `held`) or read back from the store (owned by `read`).
struct Page {
  std::vector<EventPublisher::Batch> held;
  std::vector<events::Event> read;
  std::vector<const events::Event*> events;
  bool from_memory = false;
};

}  // namespace

class EventPublisher::Impl : public std::enable_shared_from_this<Impl> {
 public:
  explicit Impl(EventPublisherOptions options) : options_(std::move(options)) {}

  void start() {
    if (options_.prefetch) prefetcher_.start();
    broker::PublisherOptions po;
    po.connection = options_.broker;
    po.connection.name = "store-publisher";
    po.max_in_flight = options_.window;
    po.topology = broker::platform_topology();
    publisher_ = std::make_unique<broker::Publisher>(std::move(po));
    loop_.start([this] { run(); });
  }

  void stop() {
    if (!loop_.stop()) return;
    prefetcher_.stop();
    publisher_.reset();
  }

  void on_active(std::int64_t head) {
    std::lock_guard lock(loop_.mutex());
    active_ = true;
    head_ = head;
    ++epoch_;
    clear_handoff_locked();
    loop_.notify();
  }
  void on_standby() {
    std::lock_guard lock(loop_.mutex());
    active_ = false;
    clear_handoff_locked();
    loop_.notify();
  }
  void on_commit(std::int64_t head) {
    std::lock_guard lock(loop_.mutex());
    head_ = std::max(head_, head);
    loop_.notify();
  }
  // Keeps the committed events for publishing when they fit: the hand-off
  // holds contiguous positions, at most handoff_capacity events. What does
  // not fit is read back from the store later; after an overflow nothing is
  // kept until the publisher has sent everything kept, so the hand-off never
  // has a hole.
  void on_commit(Batch committed, std::int64_t head) {
    std::lock_guard lock(loop_.mutex());
    head_ = std::max(head_, head);
    if (active_ && committed && !committed->empty()) {
      const auto first = committed->front().position.value();
      if (!handoff_.empty() && first != handoff_last_ + 1) clear_handoff_locked();
      if (handoff_.empty()) overflowed_ = false;
      if (!overflowed_ && handoff_events_ + committed->size() <= options_.handoff_capacity) {
        handoff_events_ += committed->size();
        handoff_last_ = committed->back().position.value();
        handoff_.push_back(std::move(committed));
      } else {
        overflowed_ = true;
        ++stats_overflows_;
        m().overflows.inc();
      }
    }
    loop_.notify();
  }
  std::int64_t published() const noexcept { return published_.load(); }
  Stats stats() const {
    std::lock_guard lock(loop_.mutex());
    return Stats{stats_from_memory_, stats_from_store_, stats_overflows_};
  }
  app::Health health() const {
    if (publisher_ && !publisher_->connected()) return {app::HealthState::degraded, "broker down"};
    return {};
  }

 private:
  void run() {
    std::uint64_t epoch_seen = 0;
    std::int64_t next = 1;
    std::int64_t signalled = 0;
    std::int64_t saved = -1;
    auto last_save = std::chrono::steady_clock::now();
    while (true) {
      std::int64_t head = 0;
      std::uint64_t epoch = 0;
      {
        std::unique_lock lock(loop_.mutex());
        if (!loop_.wait_for(lock, std::chrono::milliseconds(200), [&] {
              return rewind_ || (active_ && (epoch_ != epoch_seen || next <= head_));
            })) {
          break;
        }
        if (!active_) continue;
        head = head_;
        epoch = epoch_;
      }
      try {
        ensure_db();
        if (epoch_seen != epoch) {
          // (Re)activated: resume after the saved checkpoint.
          epoch_seen = epoch;
          prefetcher_.reset();
          publisher_->flush(std::chrono::seconds(30));
          std::lock_guard lock(confirm_mutex_);
          confirmed_.clear();
          published_ = sql_load_published();
          saved = published_;
          next = published_ + 1;
          rewind_ = false;
          log::info("store publisher resuming", {{"from", next}, {"head", head}});
        }
        if (rewind_.exchange(false)) {
          // A message failed: wait for every outcome, then send again from the
          // first unconfirmed position.
          publisher_->flush(std::chrono::seconds(60));
          std::lock_guard lock(confirm_mutex_);
          confirmed_.clear();
          next = published_ + 1;
          m().rewinds.inc();
          log::warn("store publisher rewinding", {{"from", next}});
        }
        if (signalled < head) {
          signal_head(head);
          signalled = head;
        }
        if (next <= head) {
          Page page = take_page(next, head);
          std::uint64_t sent = 0;
          for (const events::Event* e : page.events) {
            const events::Event& event = *e;
            auto pos = event.position.value();
            if (pos != next) {
              throw std::runtime_error("position gap at " + std::to_string(next) + " (found " +
                                       std::to_string(pos) + ")");
            }
            // A deadline keeps a dead broker from blocking us (and stop())
            // forever; a message that misses it is simply sent again.
            broker::PublishOptions opts{std::string("sb.events"), event.type.value(), false,
                                        std::chrono::steady_clock::now() + kPublishDeadline};
            std::weak_ptr<Impl> self = shared_from_this();
            publisher_->publish(to_message(event), std::move(opts),
                                [self, pos](const broker::PublishOutcome& o) {
                                  if (auto s = self.lock()) s->outcome(pos, o);
                                });
            m().sent.inc();
            (page.from_memory ? m().from_memory : m().from_store).inc();
            ++sent;
            ++next;
            if (rewind_ || stopping()) break;
          }
          std::lock_guard lock(loop_.mutex());
          (page.from_memory ? stats_from_memory_ : stats_from_store_) += sent;
        }
        auto now = std::chrono::steady_clock::now();
        if (published_ != saved && now - last_save >= options_.checkpoint_interval) {
          save_checkpoint();
          saved = published_;
          last_save = now;
        }
      } catch (const std::exception& e) {
        log::error("store publisher error", {{"error", e.what()}});
        db_.reset();
        rewind_ = true;
        loop_.wait_for(std::chrono::milliseconds(500));
      }
    }
    // Stopping: give in-flight messages a moment, then save what is confirmed.
    if (publisher_) publisher_->flush(std::chrono::seconds(5));
    try {
      if (active_) {
        ensure_db();
        save_checkpoint();
      }
    } catch (const std::exception& e) {
      log::warn("store publisher could not save its checkpoint", {{"error", e.what()}});
    }
  }

  bool stopping() const { return loop_.stopping(); }

  void clear_handoff_locked() {
    handoff_.clear();
    handoff_events_ = 0;
    handoff_last_ = 0;
    overflowed_ = false;
  }

  // The next page from `next`: from the hand-off when it holds `next`, else
  // read back from the store (up to where the hand-off begins), taking the
  // page the prefetcher read meanwhile when it starts at `next`, and asking
  // it for the one after.
  Page take_page(std::int64_t next, std::int64_t head) {
    Page page;
    const auto page_size = static_cast<std::int64_t>(options_.page_size);
    std::int64_t store_limit = head;  // read back no further than this
    {
      std::lock_guard lock(loop_.mutex());
      // Sent already (a rewind reads them back): let them go.
      while (!handoff_.empty() && handoff_.front()->back().position.value() < next) {
        handoff_events_ -= handoff_.front()->size();
        handoff_.pop_front();
      }
      if (!handoff_.empty()) {
        const auto first = handoff_.front()->front().position.value();
        if (first <= next) {
          page.from_memory = true;
          for (const auto& batch : handoff_) {
            const auto batch_first = batch->front().position.value();
            auto i = static_cast<std::size_t>(std::max<std::int64_t>(0, next - batch_first));
            for (; i < batch->size() && static_cast<std::int64_t>(page.events.size()) < page_size;
                 ++i) {
              page.events.push_back(&(*batch)[i]);
            }
            page.held.push_back(batch);
            if (static_cast<std::int64_t>(page.events.size()) >= page_size) break;
          }
          return page;
        }
        store_limit = std::min(store_limit, first - 1);
      }
    }
    const auto last = std::min(store_limit, next + page_size - 1);
    if (auto ready = prefetcher_.take(next)) {
      page.read = std::move(*ready);
    } else {
      page.read = read_page(*db_, next, last);
    }
    if (!page.read.empty()) {
      const auto read_last = page.read.back().position.value();
      if (options_.prefetch && read_last < store_limit) {
        prefetcher_.request(read_last + 1, std::min(store_limit, read_last + page_size));
      }
    }
    page.events.reserve(page.read.size());
    for (const auto& e : page.read) page.events.push_back(&e);
    return page;
  }

  void outcome(std::int64_t pos, const broker::PublishOutcome& o) {
    if (!o.ok()) {
      log::warn("event publish failed", {{"position", pos}, {"reason", o.reason}});
      rewind_ = true;
      loop_.notify();
      return;
    }
    std::lock_guard lock(confirm_mutex_);
    if (pos <= published_) return;  // a re-send of something already counted
    auto p = published_.load();
    if (pos == p + 1 && confirmed_.empty()) {
      p = pos;  // in order, the usual case: the prefix grows by one
    } else {
      confirmed_.insert(pos);
    }
    while (!confirmed_.empty() && *confirmed_.begin() == p + 1) {
      confirmed_.erase(confirmed_.begin());
      ++p;
    }
    published_ = p;
    m().published.set(static_cast<double>(p));
  }

  void signal_head(std::int64_t head) {
    // A lost signal only delays a subscriber until its fallback poll.
    events::publish_head_signal(*publisher_, events::Position(head));
  }

  void ensure_db() {
    if (db_ && db_->is_open()) return;
    db_ = std::make_unique<pg::Connection>(options_.database);
  }

  std::int64_t sql_load_published() {
    auto r = db_->exec("SELECT position FROM store_positions WHERE name = 'published'");
    return r.empty() ? 0 : r[0][0].get<std::int64_t>();
  }

  void save_checkpoint() {
    db_->exec(
        "UPDATE store_positions SET position = GREATEST(position, $1) WHERE name = 'published'",
        {published_.load()});
  }

  EventPublisherOptions options_;
  std::unique_ptr<broker::Publisher> publisher_;
  std::unique_ptr<pg::Connection> db_;
  Prefetcher prefetcher_{options_.database};
  // Guarded by loop_.mutex(): activity, head, epoch, the hand-off, stats.
  bool active_ = false;
  std::int64_t head_ = 0;
  std::uint64_t epoch_ = 0;
  std::deque<Batch> handoff_;  // contiguous positions, oldest first
  std::size_t handoff_events_ = 0;
  std::int64_t handoff_last_ = 0;
  bool overflowed_ = false;
  std::uint64_t stats_from_memory_ = 0;
  std::uint64_t stats_from_store_ = 0;
  std::uint64_t stats_overflows_ = 0;
  std::atomic<bool> rewind_{false};
  std::mutex confirm_mutex_;
  std::set<std::int64_t> confirmed_;
  std::atomic<std::int64_t> published_{0};
  app::LoopThread loop_;  // last: joined before the members above go
};

EventPublisher::EventPublisher(EventPublisherOptions options)
    : impl_(std::make_shared<Impl>(std::move(options))) {}
EventPublisher::~EventPublisher() {
  impl_->stop();
}
void EventPublisher::start() {
  impl_->start();
}
void EventPublisher::stop(Deadline) noexcept {
  impl_->stop();
}
app::Health EventPublisher::health() const {
  return impl_->health();
}
void EventPublisher::on_active(std::int64_t head) {
  impl_->on_active(head);
}
void EventPublisher::on_standby() {
  impl_->on_standby();
}
void EventPublisher::on_commit(std::int64_t head) {
  impl_->on_commit(head);
}
void EventPublisher::on_commit(Batch committed, std::int64_t head) {
  impl_->on_commit(std::move(committed), head);
}
EventPublisher::Stats EventPublisher::stats() const {
  return impl_->stats();
}
std::int64_t EventPublisher::published() const noexcept {
  return impl_->published();
}

}  // namespace sb::store
