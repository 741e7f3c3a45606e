#include "switchboard/store/event_publisher.hpp"

#include <mutex>
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
  msg.headers[std::string(broker::kCorrelationIdHeader)] = e.correlation_id.value();
  if (e.causation_id)
    msg.headers[std::string(broker::kCausationIdHeader)] = e.causation_id->value();
  if (e.meta.is_object()) {
    const auto& meta = e.meta.value();
    auto it = meta.FindMember("traceparent");
    if (it != meta.MemberEnd() && it->value.IsString()) {
      msg.headers[std::string(broker::kTraceparentHeader)] = std::string(it->value.GetString());
    }
  }
  return msg;
}

}  // namespace

class EventPublisher::Impl : public std::enable_shared_from_this<Impl> {
 public:
  explicit Impl(EventPublisherOptions options) : options_(std::move(options)) {}

  void start() {
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
    publisher_.reset();
  }

  void on_active(std::int64_t head) {
    std::lock_guard lock(loop_.mutex());
    active_ = true;
    head_ = head;
    ++epoch_;
    loop_.notify();
  }
  void on_standby() {
    std::lock_guard lock(loop_.mutex());
    active_ = false;
    loop_.notify();
  }
  void on_commit(std::int64_t head) {
    std::lock_guard lock(loop_.mutex());
    head_ = std::max(head_, head);
    loop_.notify();
  }
  std::int64_t published() const noexcept { return published_.load(); }
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
          auto last = std::min(head, next + static_cast<std::int64_t>(options_.page_size) - 1);
          auto rows =
              db_->exec(std::string("SELECT ") + events::kEventColumns +
                            " FROM events WHERE position BETWEEN $1 AND $2 ORDER BY position",
                        {next, last});
          for (const auto& row : rows) {
            auto event = events::event_from_row(row);
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
            ++next;
            if (rewind_ || stopping()) break;
          }
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

  void outcome(std::int64_t pos, const broker::PublishOutcome& o) {
    if (!o.ok()) {
      log::warn("event publish failed", {{"position", pos}, {"reason", o.reason}});
      rewind_ = true;
      loop_.notify();
      return;
    }
    std::lock_guard lock(confirm_mutex_);
    if (pos <= published_) return;  // a re-send of something already counted
    confirmed_.insert(pos);
    auto p = published_.load();
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
  bool active_ = false;  // active_, head_, epoch_: guarded by loop_.mutex()
  std::int64_t head_ = 0;
  std::uint64_t epoch_ = 0;
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
std::int64_t EventPublisher::published() const noexcept {
  return impl_->published();
}

}  // namespace sb::store
