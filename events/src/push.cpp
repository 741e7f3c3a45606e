#include "switchboard/events/push.hpp"

#include <algorithm>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include "switchboard/events/subscription.hpp"
#include "switchboard/events/subscription_logic.hpp"
#include "switchboard/shared/log.hpp"
#include "switchboard/shared/metrics.hpp"

namespace sb::events {
namespace {

bool is_replay(const broker::Message& m) {
  auto it = m.headers.find(kReplayHeader);
  if (it == m.headers.end()) return false;
  if (const auto* b = std::get_if<bool>(&it->second)) return *b;
  if (const auto* s = std::get_if<std::string>(&it->second)) return *s == "true";
  if (const auto* i = std::get_if<std::int64_t>(&it->second)) return *i != 0;
  return false;
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

}  // namespace

std::optional<std::string> untrusted_publisher(std::string_view user_id,
                                               const std::vector<std::string>& trusted) {
  if (trusted.empty()) return std::nullopt;
  if (user_id.empty()) {
    return std::string(broker::kUntrustedPublisherError) +
           ": no user_id (trusted: " + joined(trusted) + ")";
  }
  if (std::find(trusted.begin(), trusted.end(), user_id) != trusted.end()) return std::nullopt;
  return std::string(broker::kUntrustedPublisherError) + " '" + std::string(user_id) +
         "' (trusted: " + joined(trusted) + ")";
}

std::string push_queue_name(std::string_view group) {
  return "sub." + std::string(group);
}

std::string push_overflow_queue_name(std::string_view group) {
  return push_queue_name(group) + ".overflow";
}

broker::Message event_message(const Event& event, bool replay) {
  broker::Message m;
  m.body = to_json(event);
  m.message_id = event.id.value();
  m.type = event.type.value();
  m.persistent = true;
  m.headers[std::string(kPositionHeader)] = event.position.value();
  m.headers[std::string(kTenantHeader)] = event.tenant.value();
  m.headers[std::string(broker::kCorrelationIdHeader)] = event.correlation_id.value();
  if (replay) m.headers[std::string(kReplayHeader)] = true;
  return m;
}

// ---------------------------------------------------------------------------

class PushSubscription::Impl {
 public:
  explicit Impl(PushSubscriptionOptions options)
      : options_(std::move(options)),
        untrusted_metric_(metrics::Registry::global().counter(
            "sb_push_untrusted_total",
            "push deliveries parked because their publisher is not trusted",
            {{"group", options_.group}})) {
    validate_subscription_name(options_.group);
    if (options_.topics.empty()) throw InvalidValue("push subscription: no topics");
    for (const auto& t : options_.topics) validate_type_pattern(t);
    if (static_cast<bool>(options_.tx_handler) == static_cast<bool>(options_.handler)) {
      throw InvalidValue("push subscription: set exactly one of tx_handler and handler");
    }
    if (options_.tx_handler && !options_.pool) {
      throw InvalidValue("push subscription: a tx_handler needs a pool");
    }
    if (options_.max_length <= 0 || options_.overflow_max_length <= 0) {
      throw InvalidValue("push subscription: queue lengths must be > 0");
    }
    if (options_.pool) reader_ = std::make_unique<EventReader>(*options_.pool);
    status_.group = options_.group;
  }

  ~Impl() { stop(); }

  void start() {
    if (options_.pool && options_.migrate) {
      pg::migrate(options_.pool->options().connection, pg::subscriptions_migrations());
    }
    broker::ConsumerOptions co;
    co.connection = options_.connection;
    co.connection.name = options_.connection.name + ".sub." + options_.group;
    co.workers = options_.workers;
    co.topology = broker::platform_topology();
    co.topology.merge(PushSubscription::topology(options_));
    consumer_ = std::make_unique<broker::Consumer>(co);
    consumer_->declare(co.topology, options_.connection.connect_timeout * 2);
    const auto topo = PushSubscription::topology(options_);
    broker::ConsumeOptions main;
    main.prefetch = options_.prefetch;
    main.retry = options_.retry;
    {
      std::lock_guard lk(mu_);
      stopping_ = false;
    }
    if (options_.pool) catchup_ = std::thread([this] { catch_up_loop(); });
    // The overflow queue gets a connection and worker of its own, so busy or
    // stuck handlers of the main queue can never starve the recording of
    // what overflowed.
    broker::ConsumerOptions oo = co;
    oo.connection.name = co.connection.name + ".overflow";
    oo.workers = 1;
    overflow_consumer_ = std::make_unique<broker::Consumer>(oo);
    overflow_consumer_->consume(
        topo.queues[1], main, [this](const broker::Delivery& d) { on_overflow(d); },
        options_.connection.connect_timeout * 2);
    consumer_->consume(
        topo.queues[0], main, [this](const broker::Delivery& d) { on_delivery(d); },
        options_.connection.connect_timeout * 2);
  }

  void stop() noexcept {
    consumer_.reset();
    overflow_consumer_.reset();
    {
      std::lock_guard lk(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (catchup_.joinable()) catchup_.join();
  }

  PushStatus status() const {
    std::lock_guard lk(mu_);
    auto s = status_;
    s.rate = rate_.rate();
    s.connected = consumer_ && consumer_->connected();
    s.lag_events = std::max<std::int64_t>(0, s.head.value() - s.last_position.value());
    return s;
  }

  app::Health health() const {
    if (!consumer_) return {app::HealthState::starting, ""};
    if (!consumer_->connected()) return {app::HealthState::degraded, "broker disconnected"};
    std::lock_guard lk(mu_);
    if (status_.overflow_pending > 0) {
      return {app::HealthState::degraded,
              std::to_string(status_.overflow_pending) + " overflowed events to catch up"};
    }
    return {};
  }

 private:
  Event decode(const broker::Message& m) const {
    Event e = event_from_json(m.body);
    if (options_.catalog != nullptr) options_.catalog->upcast(e);
    return e;
  }

  /// Handles one event; returns false when deduplication skipped it.
  bool process(const Event& e, bool replay) {
    if (!options_.tx_handler) {
      options_.handler(e);
      return true;
    }
    return pg::with_transaction(*options_.pool, [&](pg::Transaction& tx) {
      if (replay) {
        tx.exec(
            "INSERT INTO processed_events (group_name, event_id, position) VALUES ($1, $2::uuid, "
            "$3) ON CONFLICT (group_name, event_id) DO UPDATE SET processed_at = now()",
            {options_.group, e.id.value(), e.position.value()});
      } else {
        auto r = tx.exec(
            "INSERT INTO processed_events (group_name, event_id, position) VALUES ($1, $2::uuid, "
            "$3) ON CONFLICT (group_name, event_id) DO NOTHING",
            {options_.group, e.id.value(), e.position.value()});
        if (r.affected_rows() == 0) return false;
      }
      options_.tx_handler(tx, e);
      return true;
    });
  }

  void record_success(const Event& e, bool handled, bool replay) {
    std::lock_guard lk(mu_);
    if (handled) {
      ++status_.handled;
      rate_.add(1);
    } else {
      ++status_.duplicates;
    }
    if (replay) ++status_.replayed;
    if (e.position > status_.last_position) status_.last_position = e.position;
  }

  void record_failure(const std::string& what) {
    std::lock_guard lk(mu_);
    ++status_.failures;
    status_.last_error = what;
  }

  /// Parks (PermanentError) a delivery whose validated publisher is not
  /// trusted, before anything of it is decoded or handled.
  void check_publisher(const broker::Delivery& d) {
    auto why = untrusted_publisher(d.message.user_id, options_.trusted_publishers);
    if (!why) return;
    untrusted_metric_.inc();
    {
      std::lock_guard lk(mu_);
      ++status_.untrusted;
      status_.last_error = *why;
    }
    throw broker::PermanentError(*why);  // the consumer parks it with x-sb-error and logs
  }

  void on_delivery(const broker::Delivery& d) {
    check_publisher(d);
    try {
      const Event e = decode(d.message);
      const bool replay = is_replay(d.message);
      const bool handled = process(e, replay);
      record_success(e, handled, replay);
    } catch (const std::exception& ex) {
      record_failure(ex.what());
      throw;  // the broker retries, then parks
    }
  }

  void on_overflow(const broker::Delivery& d) {
    // Dead-lettering keeps the user_id, so what overflowed from sub.<group>
    // passes; a message put straight into the overflow queue by name could
    // otherwise make the group handle any stored position.
    check_publisher(d);
    try {
      const Event e = decode(d.message);
      sb::log::warn("push subscription queue overflowed; catching up from the store",
                    {{"group", options_.group},
                     {"position", e.position.value()},
                     {"event_id", e.id.value()}});
      if (options_.pool) {
        pg::with_transaction(*options_.pool, [&](pg::Transaction& tx) {
          tx.exec(
              "INSERT INTO push_overflow (group_name, position, event_id) VALUES ($1, $2, "
              "$3::uuid) ON CONFLICT DO NOTHING",
              {options_.group, e.position.value(), e.id.value()});
        });
        {
          std::lock_guard lk(mu_);
          ++status_.overflowed;
          woken_ = true;
        }
        cv_.notify_all();
      } else {
        // No store access: the dropped copy is the event itself.
        const bool handled = process(e, false);
        {
          std::lock_guard lk(mu_);
          ++status_.overflowed;
          ++status_.caught_up;
        }
        record_success(e, handled, false);
      }
    } catch (const std::exception& ex) {
      record_failure(ex.what());
      throw;
    }
  }

  void catch_up_loop() {
    while (true) {
      {
        std::unique_lock lk(mu_);
        cv_.wait_for(lk, options_.overflow_poll, [&] { return stopping_ || woken_; });
        if (stopping_) return;
        woken_ = false;
      }
      try {
        catch_up_once();
      } catch (const std::exception& e) {
        record_failure(e.what());
        sb::log::warn("push subscription catch-up failed; will retry",
                      {{"group", options_.group}, {"error", e.what()}});
      }
    }
  }

  void catch_up_once() {
    auto lease = options_.pool->acquire();
    const Position head(
        lease->exec("SELECT coalesce(max(position), 0) FROM events").one()[0].get<std::int64_t>());
    std::vector<Position> positions;
    for (const auto& r : lease->exec(
             "SELECT position FROM push_overflow WHERE group_name = $1 AND handled_at IS NULL "
             "ORDER BY position LIMIT 200",
             {options_.group})) {
      positions.emplace_back(r[0].get<std::int64_t>());
    }
    const auto pending =
        lease
            ->exec(
                "SELECT count(*) FROM push_overflow WHERE group_name = $1 AND handled_at IS NULL",
                {options_.group})
            .one()[0]
            .get<std::int64_t>();
    {
      std::lock_guard lk(mu_);
      status_.head = head;
      status_.overflow_pending = pending;
    }
    if (positions.empty()) return;
    for (const auto& e : reader_->read_positions(positions)) {
      {
        std::lock_guard lk(mu_);
        if (stopping_) return;
      }
      Event ev = e;
      try {
        if (options_.catalog != nullptr) options_.catalog->upcast(ev);
        const bool handled = process(ev, false);
        lease->exec(
            "UPDATE push_overflow SET handled_at = now(), attempts = attempts + 1 WHERE "
            "group_name = $1 AND position = $2",
            {options_.group, ev.position.value()});
        record_success(ev, handled, false);
        std::lock_guard lk(mu_);
        ++status_.caught_up;
        --status_.overflow_pending;
      } catch (const pg::Error& err) {
        if (err.is_retryable()) throw;
        note_catch_up_failure(*lease, ev, err.what());
      } catch (const std::exception& err) {
        note_catch_up_failure(*lease, ev, err.what());
      }
    }
    {
      std::lock_guard lk(mu_);
      woken_ = true;  // look again at once: there may be more
    }
  }

  void note_catch_up_failure(pg::Connection& c, const Event& e, const std::string& what) {
    record_failure(what);
    sb::log::error("push subscription could not handle an overflowed event; will retry",
                   {{"group", options_.group}, {"position", e.position.value()}, {"error", what}});
    c.exec(
        "UPDATE push_overflow SET attempts = attempts + 1, last_error = $3 WHERE group_name = $1 "
        "AND position = $2",
        {options_.group, e.position.value(), what});
  }

  PushSubscriptionOptions options_;
  metrics::Counter& untrusted_metric_;
  std::unique_ptr<EventReader> reader_;
  std::unique_ptr<broker::Consumer> consumer_;
  std::unique_ptr<broker::Consumer> overflow_consumer_;
  std::thread catchup_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool woken_ = false;
  PushStatus status_;
  mutable RateMeter rate_;
};

// ---------------------------------------------------------------------------

PushSubscription::PushSubscription(PushSubscriptionOptions options)
    : component_name_("push:" + options.group), impl_(std::make_shared<Impl>(std::move(options))) {}

PushSubscription::~PushSubscription() {
  impl_->stop();
}

broker::Topology PushSubscription::topology(const PushSubscriptionOptions& options) {
  broker::Topology t;
  const auto main_name = push_queue_name(options.group);
  const auto overflow_name = push_overflow_queue_name(options.group);
  broker::QueueSpec main;
  main.name = main_name;
  main.durable = true;
  main.max_length = options.max_length;
  main.overflow = broker::Overflow::drop_head;
  main.expires = options.expires;
  main.dead_letter_exchange = broker::kDeadLetterExchange;
  main.dead_letter_routing_key = overflow_name;
  broker::QueueSpec overflow;
  overflow.name = overflow_name;
  overflow.durable = true;
  overflow.max_length = options.overflow_max_length;
  overflow.overflow = broker::Overflow::drop_head;
  overflow.expires = options.expires;
  t.queues = {main, overflow};
  for (const auto& topic : options.topics) {
    t.bindings.push_back({main_name, broker::kEventsExchange, topic});
  }
  t.bindings.push_back({overflow_name, broker::kDeadLetterExchange, overflow_name});
  return t;
}

void PushSubscription::start() {
  impl_->start();
}
void PushSubscription::stop(Deadline) noexcept {
  impl_->stop();
}
app::Health PushSubscription::health() const {
  return impl_->health();
}
PushStatus PushSubscription::status() const {
  return impl_->status();
}

// ---------------------------------------------------------------------------

ReplayResult replay_to_group(const EventReader& reader, broker::Publisher& publisher,
                             const ReplayRequest& request, std::chrono::milliseconds timeout) {
  validate_subscription_name(request.group);
  if (request.page_size == 0) throw InvalidValue("replay: page_size must be > 0");
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const Position up_to = request.up_to ? *request.up_to : reader.head();
  ReplayResult result;
  result.last_position = request.after;
  std::vector<std::future<broker::PublishOutcome>> outcomes;
  Position from = request.after;
  while (from < up_to) {
    auto page = reader.read_all(from, request.filter, request.page_size);
    for (const auto& e : page.events) {
      if (e.position > up_to) break;
      broker::PublishOptions po;
      po.exchange = "";
      po.routing_key = push_queue_name(request.group);
      po.mandatory = true;
      po.deadline = deadline;
      outcomes.push_back(publisher.publish(event_message(e, true), po));
      ++result.published;
      result.last_position = e.position;
    }
    if (page.scanned_to <= from) break;
    from = page.scanned_to;
  }
  for (auto& f : outcomes) {
    auto o = f.get();
    if (!o.ok()) {
      throw broker::BrokerError(std::string("replay to '") + request.group +
                                "' failed: " + broker::to_string(o.status) + " " + o.reason);
    }
  }
  return result;
}

}  // namespace sb::events
