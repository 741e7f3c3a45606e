#include "switchboard/events/subscription.hpp"

#include <map>
#include <utility>

#include "switchboard/shared/log.hpp"

namespace sb::events {
namespace {

using Clock = std::chrono::steady_clock;

/// The handler (or the upcaster) failed: subject to retry and the policy.
class HandlerFailure : public std::runtime_error {
 public:
  HandlerFailure(const std::string& what, std::optional<Position> position)
      : std::runtime_error(what), position_(position) {}
  std::optional<Position> position() const { return position_; }

 private:
  std::optional<Position> position_;
};

/// The checkpoint row no longer holds what the page was read after (a reset,
/// or another owner committed): drop the page and re-read.
struct CheckpointMoved {};

template <class F>
auto guarded(F&& f, std::optional<Position> position) {
  try {
    return f();
  } catch (const HandlerFailure&) {
    throw;
  } catch (const pg::Error& e) {
    // Lost connections and serialization failures are the database's, not
    // the handler's: with_transaction retries them, then the loop does.
    if (e.is_retryable()) throw;
    throw HandlerFailure(e.what(), position);
  } catch (const std::exception& e) {
    throw HandlerFailure(e.what(), position);
  } catch (...) {
    throw HandlerFailure("unknown exception", position);
  }
}

class FnHandler final : public SubscriptionHandler {
 public:
  explicit FnHandler(EventHandlerFn fn) : fn_(std::move(fn)) {}
  HandleResult handle(pg::Transaction& tx, const Event& event) override { return fn_(tx, event); }

 private:
  EventHandlerFn fn_;
};

constexpr const char* kTsUtc = "YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"";

}  // namespace

std::string_view to_string(SubscriptionState state) {
  switch (state) {
    case SubscriptionState::starting:
      return "starting";
    case SubscriptionState::standby:
      return "standby";
    case SubscriptionState::catching_up:
      return "catching_up";
    case SubscriptionState::running:
      return "running";
    case SubscriptionState::parked:
      return "parked";
    case SubscriptionState::stopped:
      return "stopped";
  }
  return "unknown";
}

std::shared_ptr<SubscriptionHandler> make_handler(EventHandlerFn fn) {
  if (!fn) throw InvalidValue("make_handler: empty function");
  return std::make_shared<FnHandler>(std::move(fn));
}

// ---------------------------------------------------------------------------

class CheckpointedSubscription::Impl {
 public:
  Impl(CheckpointedSubscriptionOptions options, std::shared_ptr<SubscriptionHandler> handler)
      : options_(std::move(options)),
        handler_(std::move(handler)),
        target_(options_.target ? options_.target : options_.store),
        key_(advisory_lock_key(options_.name, options_.partition.index)) {
    validate_subscription_name(options_.name);
    if (!handler_) throw InvalidValue("subscription '" + options_.name + "': no handler");
    if (!options_.store) throw InvalidValue("subscription '" + options_.name + "': no store pool");
    if (options_.page_size == 0) throw InvalidValue("subscription: page_size must be > 0");
    if (options_.poll_interval.count() <= 0 || options_.standby_poll.count() <= 0) {
      throw InvalidValue("subscription: poll intervals must be > 0");
    }
    if (options_.retry.attempts < 1)
      throw InvalidValue("subscription: retry.attempts must be >= 1");
    filter_ = options_.filter;
    filter_.partition = options_.partition;
    filter_.validate();
    reader_ = std::make_unique<EventReader>(*options_.store, nullptr, options_.read);
    if (options_.owner.empty()) options_.owner = sb::log::instance_id();
    status_.name = options_.name;
    status_.partition = options_.partition;
  }

  ~Impl() { stop(); }

  void start() {
    if (options_.migrate) {
      pg::migrate(target_->options().connection, pg::subscriptions_migrations());
    }
    pg::with_transaction(*target_, [&](pg::Transaction& tx) {
      tx.exec(
          "INSERT INTO subscription_checkpoints (name, partition, partitions) VALUES ($1, $2, $3) "
          "ON CONFLICT (name, partition) DO NOTHING",
          {options_.name, options_.partition.index, options_.partition.count});
      auto other = tx.exec(
                         "SELECT count(*) FROM subscription_checkpoints WHERE name = $1 AND "
                         "partitions <> $2",
                         {options_.name, options_.partition.count})
                       .one()[0]
                       .get<std::int64_t>();
      if (other > 0) {
        throw Error("subscription '" + options_.name + "' has checkpoints for another partition " +
                    "count than " + std::to_string(options_.partition.count) +
                    ": repartitioning needs a rebuild under a new name");
      }
    });
    if (options_.signals) {
      signal_id_ = options_.signals->subscribe([this](Position) { wake(); });
    }
    stopping_ = false;
    thread_ = std::thread([this] { run(); });
  }

  void stop() noexcept {
    {
      std::lock_guard lk(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    if (signal_id_) {
      options_.signals->unsubscribe(*signal_id_);
      signal_id_.reset();
    }
    {
      std::lock_guard lk(mu_);
      status_.state = SubscriptionState::stopped;
      status_.owner = false;
    }
    pos_cv_.notify_all();
  }

  SubscriptionStatus status() const {
    std::lock_guard lk(mu_);
    auto s = status_;
    s.rate = rate_.rate();
    return s;
  }

  bool wait_for_position(Position p, Clock::time_point deadline) const {
    std::unique_lock lk(mu_);
    return pos_cv_.wait_until(lk, deadline, [&] {
      return status_.position >= p || status_.state == SubscriptionState::stopped;
    }) && status_.position >= p;
  }

  void reset(Position p) {
    if (!reset_checkpoint(*target_, options_.name, options_.partition.index, p)) {
      throw Error("subscription '" + options_.name + "': no checkpoint row to reset");
    }
    sb::log::info("subscription checkpoint reset", {{"subscription", options_.name},
                                                    {"partition", options_.partition.index},
                                                    {"position", p.value()}});
    {
      std::lock_guard lk(mu_);
      reload_ = true;
    }
    cv_.notify_all();
  }

  void resume() {
    pg::with_transaction(*target_, [&](pg::Transaction& tx) {
      tx.exec(
          "UPDATE subscription_checkpoints SET state = 'running', updated_at = now() "
          "WHERE name = $1 AND partition = $2",
          {options_.name, options_.partition.index});
    });
    {
      std::lock_guard lk(mu_);
      resume_ = true;
    }
    cv_.notify_all();
  }

  void wake() {
    {
      std::lock_guard lk(mu_);
      woken_ = true;
    }
    cv_.notify_all();
  }

  app::Health health() const {
    std::lock_guard lk(mu_);
    switch (status_.state) {
      case SubscriptionState::parked:
        return {app::HealthState::degraded,
                "parked: " + status_.last_error.value_or("") + " at position " +
                    std::to_string(status_.failed_position.value_or(Position()).value())};
      case SubscriptionState::stopped:
        return {app::HealthState::failed, "stopped"};
      case SubscriptionState::starting:
        return {app::HealthState::starting, ""};
      default:
        return {};
    }
  }

 private:
  // ---- the loop (its own thread) ----------------------------------------

  void run() {
    int infra_failures = 0;
    while (!stopping()) {
      try {
        if (!owner_ && !try_own()) {
          set_state(SubscriptionState::standby);
          wait_for_wake(options_.standby_poll);
          continue;
        }
        if (!lock_conn_->check_alive()) {
          lose_ownership("lock connection lost");
          continue;
        }
        bool reload = false;
        bool parked = false;
        {
          std::lock_guard lk(mu_);
          reload = std::exchange(reload_, false);
          if (std::exchange(resume_, false) && status_.state == SubscriptionState::parked) {
            status_.state = SubscriptionState::catching_up;
          }
          if (reload && status_.state == SubscriptionState::parked) {
            status_.state = SubscriptionState::catching_up;
          }
          parked = status_.state == SubscriptionState::parked;
        }
        if (reload) load_checkpoint();
        if (parked) {
          wait_for_wake(options_.poll_interval);
          continue;
        }
        const bool more = step();
        infra_failures = 0;
        if (!more) wait_for_wake(options_.poll_interval);
      } catch (const std::exception& e) {
        ++infra_failures;
        {
          std::lock_guard lk(mu_);
          status_.last_error = e.what();
          ++status_.failures;
        }
        sb::log::warn("subscription: database problem; retrying",
                      {{"subscription", options_.name},
                       {"partition", options_.partition.index},
                       {"error", e.what()},
                       {"attempt", infra_failures}});
        if (lock_conn_ && !lock_conn_->check_alive()) lose_ownership(e.what());
        sleep_unless_stopped(std::max(options_.retry.delay_before(infra_failures + 1),
                                      std::chrono::milliseconds(50)));
      }
    }
    release();
  }

  bool stopping() const {
    std::lock_guard lk(mu_);
    return stopping_;
  }

  void set_state(SubscriptionState s) {
    std::lock_guard lk(mu_);
    status_.state = s;
  }

  void wait_for_wake(std::chrono::milliseconds timeout) {
    std::unique_lock lk(mu_);
    cv_.wait_for(lk, timeout, [&] { return stopping_ || woken_ || reload_ || resume_; });
    woken_ = false;
  }

  /// Sleeps for `d` unless stopping or a reset arrives; false if interrupted.
  bool sleep_unless_stopped(std::chrono::milliseconds d) {
    std::unique_lock lk(mu_);
    return !cv_.wait_for(lk, d, [&] { return stopping_ || reload_; });
  }

  bool try_own() {
    if (!lock_conn_ || !lock_conn_->is_open()) {
      lock_conn_.reset();
      auto conn = target_->options().connection;
      conn.application_name = "sb-sub-lock";
      lock_conn_ = std::make_unique<pg::Connection>(conn);
    }
    if (!lock_conn_->try_advisory_lock(key_)) return false;
    owner_ = true;
    auto row = pg::with_transaction(*target_, [&](pg::Transaction& tx) {
      return tx
          .exec(
              "UPDATE subscription_checkpoints SET owner = $3, updated_at = now() "
              "WHERE name = $1 AND partition = $2 RETURNING position, state, last_error",
              {options_.name, options_.partition.index, options_.owner})
          .one();
    });
    const auto state = row[1].get<std::string>();
    if (state == "parked") {
      sb::log::warn("subscription was parked; retrying it from its checkpoint",
                    {{"subscription", options_.name},
                     {"partition", options_.partition.index},
                     {"last_error", row[2].is_null() ? std::string() : row[2].get<std::string>()}});
    }
    {
      std::lock_guard lk(mu_);
      status_.owner = true;
      status_.position = Position(row[0].get<std::int64_t>());
      status_.state = SubscriptionState::catching_up;
    }
    pos_cv_.notify_all();
    sb::log::info("subscription partition owned", {{"subscription", options_.name},
                                                   {"partition", options_.partition.index},
                                                   {"position", row[0].get<std::int64_t>()}});
    return true;
  }

  void lose_ownership(const std::string& why) {
    if (owner_) {
      sb::log::warn("subscription lost its partition lock; standing by",
                    {{"subscription", options_.name},
                     {"partition", options_.partition.index},
                     {"reason", why}});
    }
    owner_ = false;
    lock_conn_.reset();
    std::lock_guard lk(mu_);
    status_.owner = false;
    status_.state = SubscriptionState::standby;
  }

  void release() noexcept {
    if (!lock_conn_) return;
    try {
      if (owner_ && lock_conn_->is_open()) lock_conn_->advisory_unlock(key_);
    } catch (const std::exception&) {
      // Closing the session releases it anyway.
    }
    lock_conn_->close();
    lock_conn_.reset();
    owner_ = false;
  }

  void load_checkpoint() {
    auto lease = target_->acquire();
    auto row = lease->exec(
        "SELECT position FROM subscription_checkpoints WHERE name = $1 AND partition = $2",
        {options_.name, options_.partition.index});
    if (row.empty()) throw Error("subscription '" + options_.name + "': checkpoint row vanished");
    {
      std::lock_guard lk(mu_);
      status_.position = Position(row[0][0].get<std::int64_t>());
    }
    pos_cv_.notify_all();
  }

  Position checkpoint() const {
    std::lock_guard lk(mu_);
    return status_.position;
  }

  /// One page. Returns whether more may be readable right away.
  bool step() {
    const Position cp = checkpoint();
    Page page;
    std::optional<Timestamp> cp_at;
    std::optional<Timestamp> head_at;
    pg::with_transaction(
        *options_.store,
        [&](pg::Transaction& tx) {
          page = reader_->read_all(tx, cp, filter_, options_.page_size);
          cp_at.reset();
          head_at.reset();
          if (page.head > cp) {
            auto rows = tx.exec(
                pg::Sql::trusted(
                    std::string("SELECT position, to_char(recorded_at AT TIME ZONE 'UTC', '") +
                    kTsUtc + "') FROM events WHERE position IN ($1, $2)"),
                {std::max<std::int64_t>(cp.value(), 1), page.head.value()});
            for (const auto& r : rows) {
              auto at = parse_rfc3339(r[1].get<std::string>());
              if (r[0].get<std::int64_t>() == page.head.value()) head_at = at;
              if (r[0].get<std::int64_t>() == std::max<std::int64_t>(cp.value(), 1)) cp_at = at;
            }
          }
        },
        {}, pg::TransactionOptions{pg::Isolation::repeatable_read, true});
    const auto plan = plan_page_step(cp, page.events.size(), page.scanned_to, page.head);
    {
      std::lock_guard lk(mu_);
      status_.head = page.head;
      status_.lag_events = std::max<std::int64_t>(0, page.head.value() - cp.value());
      status_.lag_ms =
          cp_at && head_at
              ? std::chrono::duration_cast<std::chrono::milliseconds>(*head_at - *cp_at)
              : std::chrono::milliseconds(0);
    }
    if (plan.write && !apply(cp, page, plan)) return true;  // re-read (moved) or parked
    if (!plan.write) {
      // Idle: notice a reset made from outside this process (reset_checkpoint).
      load_checkpoint();
      if (checkpoint() != cp) return true;
    }
    {
      std::lock_guard lk(mu_);
      if (status_.state != SubscriptionState::parked) {
        status_.state =
            plan.caught_up ? SubscriptionState::running : SubscriptionState::catching_up;
      }
      if (plan.caught_up) {
        status_.lag_events = 0;
        status_.lag_ms = std::chrono::milliseconds(0);
      } else {
        status_.lag_events = page.head.value() - plan.new_checkpoint.value();
      }
    }
    return !plan.caught_up;
  }

  /// Commits the page, retrying a failing handler. False when it did not
  /// commit (parked, the checkpoint moved, or stopping).
  bool apply(Position cp, const Page& page, const PageStep& plan) {
    std::map<std::int64_t, std::string> skip;
    int attempt = 1;
    while (true) {
      try {
        commit_page(cp, page, plan, skip);
        return true;
      } catch (const CheckpointMoved&) {
        sb::log::info("subscription checkpoint moved under it; re-reading",
                      {{"subscription", options_.name}, {"partition", options_.partition.index}});
        load_checkpoint();
        return false;
      } catch (const HandlerFailure& f) {
        {
          std::lock_guard lk(mu_);
          status_.last_error = f.what();
          status_.failed_position = f.position();
          ++status_.failures;
        }
        sb::log::warn("subscription handler failed",
                      {{"subscription", options_.name},
                       {"partition", options_.partition.index},
                       {"position", f.position().value_or(Position()).value()},
                       {"attempt", attempt},
                       {"error", f.what()}});
        if (attempt >= options_.retry.attempts) {
          if (options_.on_failure == FailurePolicy::skip_and_record && f.position() &&
              !skip.contains(f.position()->value())) {
            skip.emplace(f.position()->value(), f.what());
            attempt = 1;
            continue;
          }
          park(f);
          return false;
        }
        ++attempt;
        if (!sleep_unless_stopped(options_.retry.delay_before(attempt))) return false;
      }
    }
  }

  void commit_page(Position cp, const Page& page, const PageStep& plan,
                   const std::map<std::int64_t, std::string>& skip) {
    std::uint64_t handled = 0;
    std::uint64_t ignored = 0;
    std::uint64_t skipped = 0;
    pg::with_transaction(*target_, [&](pg::Transaction& tx) {
      handled = ignored = skipped = 0;
      auto row = tx.exec(
                       "SELECT position FROM subscription_checkpoints WHERE name = $1 AND "
                       "partition = $2 FOR UPDATE",
                       {options_.name, options_.partition.index})
                     .optional_one();
      if (!row || (*row)[0].get<std::int64_t>() != cp.value()) throw CheckpointMoved{};
      const PageContext ctx{options_.name,       options_.partition, cp,
                            plan.new_checkpoint, page.head,          page.events.size()};
      if (!page.events.empty()) {
        guarded([&] { handler_->begin_page(tx, ctx); }, std::nullopt);
        for (const auto& original : page.events) {
          auto s = skip.find(original.position.value());
          if (s != skip.end()) {
            tx.exec(
                "INSERT INTO subscription_skipped (name, partition, position, event_id, "
                "event_type, error) VALUES ($1, $2, $3, $4::uuid, $5, $6) ON CONFLICT DO NOTHING",
                {options_.name, options_.partition.index, original.position.value(),
                 original.id.value(), original.type.value(), s->second});
            ++skipped;
            continue;
          }
          const auto r = guarded(
              [&] {
                if (options_.catalog == nullptr) return handler_->handle(tx, original);
                Event e = original;
                options_.catalog->upcast(e);
                return handler_->handle(tx, e);
              },
              original.position);
          ++(r == HandleResult::handled ? handled : ignored);
        }
        guarded([&] { handler_->end_page(tx, ctx); }, std::nullopt);
      }
      tx.exec(
          "UPDATE subscription_checkpoints SET position = $3, state = 'running', last_error = "
          "NULL, last_error_at = NULL, failed_position = NULL, owner = $4, updated_at = now() "
          "WHERE name = $1 AND partition = $2",
          {options_.name, options_.partition.index, plan.new_checkpoint.value(), options_.owner});
    });
    if (skipped > 0) {
      sb::log::error("subscription skipped failing events (recorded in subscription_skipped)",
                     {{"subscription", options_.name},
                      {"partition", options_.partition.index},
                      {"skipped", skipped}});
    }
    {
      std::lock_guard lk(mu_);
      status_.position = plan.new_checkpoint;
      status_.handled += handled;
      status_.ignored += ignored;
      status_.skipped += skipped;
      ++status_.pages;
      status_.state = plan.caught_up ? SubscriptionState::running : SubscriptionState::catching_up;
      status_.lag_events = plan.caught_up ? 0 : page.head.value() - plan.new_checkpoint.value();
      if (plan.caught_up) status_.lag_ms = std::chrono::milliseconds(0);
      if (skipped == 0) {
        status_.last_error.reset();
        status_.failed_position.reset();
      }
      rate_.add(page.events.size());
    }
    pos_cv_.notify_all();
  }

  void park(const HandlerFailure& f) {
    sb::log::error("subscription parked after its retries",
                   {{"subscription", options_.name},
                    {"partition", options_.partition.index},
                    {"position", f.position().value_or(Position()).value()},
                    {"error", f.what()}});
    pg::with_transaction(*target_, [&](pg::Transaction& tx) {
      tx.exec(
          "UPDATE subscription_checkpoints SET state = 'parked', last_error = $3, last_error_at = "
          "now(), failed_position = $4, updated_at = now() WHERE name = $1 AND partition = $2",
          {options_.name, options_.partition.index, std::string(f.what()),
           f.position() ? pg::Param(f.position()->value()) : pg::Param(std::nullopt)});
    });
    std::lock_guard lk(mu_);
    status_.state = SubscriptionState::parked;
  }

  CheckpointedSubscriptionOptions options_;
  std::shared_ptr<SubscriptionHandler> handler_;
  std::shared_ptr<pg::Pool> target_;
  std::int64_t key_;
  Filter filter_;
  std::unique_ptr<EventReader> reader_;
  std::optional<HeadSignals::ListenerId> signal_id_;

  // Loop thread only.
  std::thread thread_;
  std::unique_ptr<pg::Connection> lock_conn_;
  bool owner_ = false;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  mutable std::condition_variable pos_cv_;
  bool stopping_ = false;
  bool woken_ = false;
  bool reload_ = false;
  bool resume_ = false;
  SubscriptionStatus status_;
  mutable RateMeter rate_;
};

// ---------------------------------------------------------------------------

CheckpointedSubscription::CheckpointedSubscription(CheckpointedSubscriptionOptions options,
                                                   std::shared_ptr<SubscriptionHandler> handler)
    : component_name_("subscription:" + options.name + "/" +
                      std::to_string(options.partition.index)),
      impl_(std::make_shared<Impl>(std::move(options), std::move(handler))) {}

CheckpointedSubscription::~CheckpointedSubscription() {
  impl_->stop();
}

void CheckpointedSubscription::start() {
  impl_->start();
}
void CheckpointedSubscription::stop(Deadline) noexcept {
  impl_->stop();
}
app::Health CheckpointedSubscription::health() const {
  return impl_->health();
}
SubscriptionStatus CheckpointedSubscription::status() const {
  return impl_->status();
}
bool CheckpointedSubscription::wait_for_position(
    Position position, std::chrono::steady_clock::time_point deadline) const {
  return impl_->wait_for_position(position, deadline);
}
void CheckpointedSubscription::reset(Position position) {
  impl_->reset(position);
}
void CheckpointedSubscription::resume() {
  impl_->resume();
}
void CheckpointedSubscription::wake() {
  impl_->wake();
}

// ---------------------------------------------------------------------------

std::vector<CheckpointRow> read_checkpoints(pg::Transaction& tx, std::string_view name) {
  std::vector<CheckpointRow> out;
  auto rows = tx.exec(
      "SELECT name, partition, partitions, position, state, last_error, failed_position, owner "
      "FROM subscription_checkpoints WHERE name = $1 ORDER BY partition",
      {name});
  for (const auto& r : rows) {
    CheckpointRow c;
    c.name = r[0].get<std::string>();
    c.partition = Partition{r[1].get<int>(), r[2].get<int>()};
    c.position = Position(r[3].get<std::int64_t>());
    c.state = r[4].get<std::string>();
    c.last_error = r[5].get_optional<std::string>();
    if (auto fp = r[6].get_optional<std::int64_t>()) c.failed_position = Position(*fp);
    c.owner = r[7].get_optional<std::string>();
    out.push_back(std::move(c));
  }
  return out;
}

std::optional<Position> min_checkpoint(pg::Transaction& tx, std::string_view name) {
  auto f = tx.exec("SELECT min(position) FROM subscription_checkpoints WHERE name = $1", {name})
               .one()[0];
  if (f.is_null()) return std::nullopt;
  return Position(f.get<std::int64_t>());
}

bool reset_checkpoint(pg::Pool& target, std::string_view name, int partition, Position position) {
  return pg::with_transaction(target, [&](pg::Transaction& tx) {
    return tx.exec(
                 "UPDATE subscription_checkpoints SET position = $3, state = 'running', "
                 "last_error = NULL, last_error_at = NULL, failed_position = NULL, "
                 "updated_at = now() WHERE name = $1 AND partition = $2",
                 {name, partition, position.value()})
               .affected_rows() > 0;
  });
}

}  // namespace sb::events
