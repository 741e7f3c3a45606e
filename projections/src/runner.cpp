#include "switchboard/projections/runner.hpp"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>

#include "switchboard/events/reader.hpp"
#include "switchboard/events/subscription_logic.hpp"
#include "switchboard/shared/log.hpp"
#include "switchboard/shared/metrics.hpp"

namespace sb::projections {
namespace {

using Clock = std::chrono::steady_clock;
using events::Position;
using events::SubscriptionState;

/// projection_generations, as one replica reads it.
struct GenerationsRow {
  int serving = 0;
  std::string serving_fingerprint;
  int serving_partitions = 1;
  std::optional<int> building;
  std::optional<std::string> building_fingerprint;
  std::optional<int> building_partitions;
};

std::optional<GenerationsRow> read_row(pg::Transaction& tx, std::string_view name,
                                       bool for_update) {
  auto r =
      (for_update ? tx.exec("SELECT serving_generation, serving_fingerprint, serving_partitions, "
                            "building_generation, building_fingerprint, building_partitions FROM "
                            "projection_generations WHERE name = $1 FOR UPDATE",
                            {name})
                  : tx.exec("SELECT serving_generation, serving_fingerprint, serving_partitions, "
                            "building_generation, building_fingerprint, building_partitions FROM "
                            "projection_generations WHERE name = $1",
                            {name}))
          .optional_one();
  if (!r) return std::nullopt;
  GenerationsRow row;
  row.serving = (*r)[0].get<int>();
  row.serving_fingerprint = (*r)[1].get<std::string>();
  row.serving_partitions = (*r)[2].get<int>();
  row.building = (*r)[3].get_optional<int>();
  row.building_fingerprint = (*r)[4].get_optional<std::string>();
  row.building_partitions = (*r)[5].get_optional<int>();
  return row;
}

/// Checkpoints of one generation by partition (a missing row reads as 0).
std::vector<Position> read_positions(pg::Transaction& tx, std::string_view projection,
                                     int generation, int partitions, bool for_update = false) {
  std::vector<Position> out(static_cast<std::size_t>(std::max(partitions, 1)), Position(0));
  const pg::Params params{subscription_name(projection, generation), partitions};
  const auto rows =
      for_update ? tx.exec(
                       "SELECT partition, position FROM subscription_checkpoints WHERE name = $1 "
                       "AND partitions = $2 ORDER BY partition FOR UPDATE",
                       params)
                 : tx.exec(
                       "SELECT partition, position FROM subscription_checkpoints WHERE name = $1 "
                       "AND partitions = $2 ORDER BY partition",
                       params);
  for (const auto& r : rows) {
    const auto p = r[0].get<int>();
    if (p >= 0 && p < partitions)
      out[static_cast<std::size_t>(p)] = Position(r[1].get<std::int64_t>());
  }
  return out;
}

Position min_of(const std::vector<Position>& v) {
  if (v.empty()) return Position(0);
  return *std::min_element(v.begin(), v.end());
}

bool is_lock_timeout(const std::exception& e) {
  const auto* pe = dynamic_cast<const pg::Error*>(&e);
  return pe != nullptr && pe->sqlstate() == pg::sqlstate::kLockNotAvailable;
}

/// Calls apply() per event and flush() at the end of each page.
class Adapter final : public events::SubscriptionHandler {
 public:
  Adapter(std::shared_ptr<Projection> projection, Tables tables)
      : projection_(std::move(projection)), tables_(std::move(tables)) {}
  events::HandleResult handle(pg::Transaction& tx, const events::Event& event) override {
    return projection_->apply(tx, tables_, event);
  }
  void end_page(pg::Transaction& tx, const events::PageContext&) override {
    projection_->flush(tx, tables_);
  }

 private:
  std::shared_ptr<Projection> projection_;
  Tables tables_;
};

/// One generation as this replica runs it: a subscription per partition,
/// or none when the code no longer matches the generation (frozen).
struct Generation {
  int number = 0;
  int partitions = 1;
  bool fed = false;
  std::vector<std::unique_ptr<events::CheckpointedSubscription>> subs;

  void stop() noexcept {
    for (auto& s : subs) s->stop(Clock::now() + std::chrono::seconds(10));
  }
};

/// Aggregated view of one generation's partitions.
struct Aggregate {
  SubscriptionState state = SubscriptionState::starting;
  Position position;
  Position head;
  std::chrono::milliseconds lag_ms{0};
  double rate = 0;
  std::optional<std::string> last_error;
  std::vector<events::SubscriptionStatus> partitions;
};

int state_rank(SubscriptionState s) {
  switch (s) {
    case SubscriptionState::parked:
      return 6;
    case SubscriptionState::stopped:
      return 5;
    case SubscriptionState::catching_up:
      return 4;
    case SubscriptionState::starting:
      return 3;
    case SubscriptionState::running:
      return 2;
    case SubscriptionState::standby:
      return 1;
  }
  return 0;
}

struct RateSample {
  Clock::time_point at;
  std::int64_t position;
};

}  // namespace

// ---------------------------------------------------------------------------

class ProjectionRunner::Impl {
 public:
  Impl(std::shared_ptr<Projection> projection, RunnerOptions options)
      : projection_(std::move(projection)), options_(std::move(options)) {
    if (!projection_) throw Error("ProjectionRunner: no projection");
    validate(*projection_);
    if (!options_.store) throw Error("projection '" + name() + "': no store pool");
    if (!options_.target) options_.target = options_.store;
    if (options_.partitions < 1)
      throw Error("projection '" + name() + "': partitions must be >= 1");
    if (options_.page_size == 0) throw Error("projection '" + name() + "': page_size must be > 0");
    if (options_.poll_interval.count() <= 0) {
      throw Error("projection '" + name() + "': poll_interval must be > 0");
    }
    if (options_.owner.empty()) options_.owner = sb::log::instance_id();
    name_ = std::string(projection_->name());
    fingerprint_ = fingerprint(*projection_);
    lock_key_ = events::advisory_lock_key("sb.projection." + name_, 0);
    reader_ = std::make_unique<events::EventReader>(*options_.store);
    auto& m = metrics::Registry::global();
    const metrics::Labels labels{{"projection", name_}};
    m_generation_ = &m.gauge("sb_projection_generation", "Serving generation", labels);
    m_position_ = &m.gauge("sb_projection_position", "Lowest checkpoint (serving)", labels);
    m_lag_ = &m.gauge("sb_projection_lag_events", "Events behind the head (serving)", labels);
    m_progress_ = &m.gauge("sb_projection_rebuild_progress", "Rebuild progress 0..1", labels);
  }

  ~Impl() { stop(); }

  const std::string& name() const { return name_; }

  // ---- lifecycle ----------------------------------------------------------

  void start() {
    pg::migrate(options_.target->options().connection, pg::subscriptions_migrations());
    pg::migrate(options_.target->options().connection, pg::projections_migrations());
    const auto row = bootstrap();
    {
      std::lock_guard rk(reconcile_mu_);
      reconcile(row);
    }
    {
      std::lock_guard lk(mu_);
      stopping_ = false;
      started_ = true;
    }
    supervisor_ = std::thread([this] { supervise(); });
    sb::log::info("projection started", {{"projection", name_},
                                         {"generation", row.serving},
                                         {"building", row.building.value_or(0)},
                                         {"fingerprint", fingerprint_}});
  }

  void stop() noexcept {
    {
      std::lock_guard lk(mu_);
      if (stopped_) return;
      stopping_ = true;
    }
    cv_.notify_all();
    if (supervisor_.joinable()) supervisor_.join();
    std::shared_ptr<Generation> serving;
    std::shared_ptr<Generation> building;
    {
      std::lock_guard lk(mu_);
      serving = serving_;
      building = building_;
      stopped_ = true;
    }
    if (building) building->stop();
    if (serving) serving->stop();
  }

  app::Health health() const {
    std::shared_ptr<Generation> serving;
    std::shared_ptr<Generation> building;
    {
      std::lock_guard lk(mu_);
      if (!started_) return {app::HealthState::starting, ""};
      if (stopping_) return {app::HealthState::stopping, ""};
      serving = serving_;
      building = building_;
    }
    if (serving) {
      for (const auto& s : serving->subs) {
        auto h = s->health();
        if (h.state == app::HealthState::degraded || h.state == app::HealthState::failed) {
          return {app::HealthState::degraded,
                  "generation " + std::to_string(serving->number) + ": " + h.detail};
        }
      }
      if (!serving->fed) {
        return {app::HealthState::degraded,
                "generation " + std::to_string(serving->number) +
                    " is frozen (its schema changed) until the rebuild swaps"};
      }
    }
    if (building) {
      for (const auto& s : building->subs) {
        auto h = s->health();
        if (h.state == app::HealthState::degraded) {
          return {app::HealthState::degraded,
                  "rebuild " + std::to_string(building->number) + ": " + h.detail};
        }
      }
    }
    return {};
  }

  // ---- status -------------------------------------------------------------

  ProjectionStatus status() const {
    std::shared_ptr<Generation> serving;
    std::shared_ptr<Generation> building;
    std::vector<Position> serving_db;
    std::vector<Position> building_db;
    Position head;
    int swap_attempts = 0;
    {
      std::lock_guard lk(mu_);
      serving = serving_;
      building = building_;
      serving_db = serving_db_;
      building_db = building_db_;
      head = head_;
      swap_attempts = swap_attempts_;
    }
    ProjectionStatus st;
    st.name = name_;
    if (!serving) {
      st.state = stopped_now() ? SubscriptionState::stopped : SubscriptionState::starting;
      return st;
    }
    st.generation = serving->number;
    auto agg = aggregate(*serving, serving_db);
    head = std::max(head, agg.head);
    st.state = agg.state;
    st.position = agg.position;
    st.head = head;
    st.lag_events = std::max<std::int64_t>(0, head.value() - agg.position.value());
    st.lag_ms = agg.lag_ms;
    st.rate = agg.rate;
    st.last_error = agg.last_error;
    st.partitions = std::move(agg.partitions);
    if (!serving->fed && !st.last_error) {
      st.last_error = "generation " + std::to_string(serving->number) +
                      " was built by other code (fingerprint); frozen until the rebuild swaps";
    }
    if (stopped_now()) st.state = SubscriptionState::stopped;
    if (building) {
      auto b = aggregate(*building, building_db);
      head = std::max(head, b.head);
      RebuildStatus r;
      r.generation = building->number;
      r.position = b.position;
      r.head = head;
      r.progress = head.value() > 0 ? std::min(1.0, static_cast<double>(b.position.value()) /
                                                        static_cast<double>(head.value()))
                                    : 1.0;
      r.rate = rebuild_rate(building->number, b.position, b.rate);
      if (r.rate > 0) {
        const double left = static_cast<double>(std::max<std::int64_t>(
            0, head.value() - b.position.value() - options_.rebuild_swap_lag));
        r.eta = std::chrono::seconds(static_cast<std::int64_t>(left / r.rate + 0.5));
      } else if (b.position >= head) {
        r.eta = std::chrono::seconds(0);
      }
      r.swap_attempts = swap_attempts;
      st.rebuild = r;
      if (!st.last_error && b.last_error) st.last_error = "rebuild: " + *b.last_error;
    }
    return st;
  }

  // ---- read-your-writes ---------------------------------------------------

  bool wait_for_position(Position p, Clock::time_point deadline) const {
    while (true) {
      std::shared_ptr<Generation> serving;
      {
        std::lock_guard lk(mu_);
        if (stopping_ || stopped_) return false;
        serving = serving_;
      }
      if (!serving) return false;
      events::CheckpointedSubscription* lagging_owned = nullptr;
      bool need_db = false;
      for (const auto& s : serving->subs) {
        const auto st = s->status();
        if (st.owner && st.position >= p) continue;
        if (st.owner) {
          lagging_owned = s.get();
          break;
        }
        need_db = true;
      }
      if (lagging_owned == nullptr && (need_db || serving->subs.empty())) {
        try {
          auto positions = pg::with_transaction(*options_.target, [&](pg::Transaction& tx) {
            return read_positions(tx, name_, serving->number, serving->partitions);
          });
          if (min_of(positions) >= p) return true;
        } catch (const std::exception& e) {
          sb::log::debug("projection wait_for_position: database", {{"error", e.what()}});
        }
      } else if (lagging_owned == nullptr) {
        return true;
      }
      const auto now = Clock::now();
      if (now >= deadline) return false;
      const auto slice = std::min(deadline, now + std::chrono::milliseconds(100));
      if (lagging_owned != nullptr) {
        if (lagging_owned->wait_for_position(p, slice)) continue;
        // A stopped subscription answers at once: do not spin.
        if (lagging_owned->status().state == SubscriptionState::stopped) {
          std::unique_lock lk(mu_);
          cv_wait_.wait_until(lk, std::min(deadline, now + std::chrono::milliseconds(20)));
        }
      } else {
        std::unique_lock lk(mu_);
        cv_wait_.wait_until(lk, std::min(deadline, now + std::chrono::milliseconds(20)));
      }
    }
  }

  // ---- rebuild and resume -------------------------------------------------

  void start_rebuild() {
    auto row = pg::with_transaction(*options_.target, [&](pg::Transaction& tx) {
      tx.exec("SELECT pg_advisory_xact_lock($1)", {lock_key_});
      auto r = read_row(tx, name_, true);
      if (!r) throw Error("projection '" + name_ + "': start() it before a rebuild");
      if (!r->building) begin_rebuild(tx, *r, "requested");
      return *r;
    });
    std::lock_guard rk(reconcile_mu_);
    reconcile(row);
  }

  void resume() {
    std::shared_ptr<Generation> serving;
    std::shared_ptr<Generation> building;
    {
      std::lock_guard lk(mu_);
      serving = serving_;
      building = building_;
    }
    for (auto* g : {serving.get(), building.get()}) {
      if (g == nullptr) continue;
      for (auto& s : g->subs) {
        if (s->status().state == SubscriptionState::parked) s->resume();
      }
    }
  }

 private:
  bool stopped_now() const {
    std::lock_guard lk(mu_);
    return stopped_ || stopping_;
  }

  // ---- bookkeeping transactions (all under the projection's advisory lock)

  /// Creates the projection's row and first generation, or checks the
  /// recorded ones against this code; starts a rebuild when they differ.
  GenerationsRow bootstrap() {
    return pg::with_transaction(*options_.target, [&](pg::Transaction& tx) {
      tx.exec("SELECT pg_advisory_xact_lock($1)", {lock_key_});
      auto row = read_row(tx, name_, true);
      if (!row) {
        create_generation(tx, 1, options_.partitions);
        ensure_views(tx, 1);
        tx.exec(
            "INSERT INTO projection_generations (name, serving_generation, serving_fingerprint, "
            "serving_partitions) VALUES ($1, 1, $2, $3)",
            {name_, fingerprint_, options_.partitions});
        return GenerationsRow{1, fingerprint_, options_.partitions, {}, {}, {}};
      }
      if (row->building && (row->building_fingerprint != fingerprint_ ||
                            row->building_partitions != options_.partitions)) {
        sb::log::warn("projection: abandoning a rebuild started by other code or partitions",
                      {{"projection", name_}, {"generation", *row->building}});
        tx.exec(
            "UPDATE projection_generations SET building_generation = NULL, building_fingerprint "
            "= NULL, building_partitions = NULL, rebuild_started_at = NULL, updated_at = now() "
            "WHERE name = $1",
            {name_});
        row->building.reset();
        row->building_fingerprint.reset();
        row->building_partitions.reset();
      }
      if (!row->building && (row->serving_fingerprint != fingerprint_ ||
                             row->serving_partitions != options_.partitions)) {
        begin_rebuild(tx, *row,
                      row->serving_fingerprint != fingerprint_ ? "schema or handlers changed"
                                                               : "partition count changed");
      }
      ensure_views(tx, row->serving);
      return *row;
    });
  }

  /// Inside a locked transaction: records generation N+1 as building and
  /// creates its tables and checkpoints; updates `row`.
  void begin_rebuild(pg::Transaction& tx, GenerationsRow& row, std::string_view why) {
    const auto max_recorded =
        tx.exec("SELECT coalesce(max(generation), 0) FROM projection_tables WHERE name = $1",
                {name_})
            .one()[0]
            .get<int>();
    const int next = std::max(row.serving, max_recorded) + 1;
    create_generation(tx, next, options_.partitions);
    tx.exec(
        "UPDATE projection_generations SET building_generation = $2, building_fingerprint = $3, "
        "building_partitions = $4, rebuild_started_at = now(), updated_at = now() WHERE name = $1",
        {name_, next, fingerprint_, options_.partitions});
    row.building = next;
    row.building_fingerprint = fingerprint_;
    row.building_partitions = options_.partitions;
    sb::log::info("projection rebuild started", {{"projection", name_},
                                                 {"generation", next},
                                                 {"serving", row.serving},
                                                 {"reason", std::string(why)}});
  }

  void create_generation(pg::Transaction& tx, int generation, int partitions) {
    const Tables t(name_, generation);
    for (const auto& ddl : projection_->schema(t)) tx.exec(pg::Sql::trusted(ddl));
    for (const auto& logical : projection_->tables()) {
      const auto physical = t(logical);
      auto kind =
          tx.exec("SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)", {physical})
              .optional_one();
      if (!kind || (*kind)[0].get<std::string>() != "r") {
        throw Error("projection '" + name_ + "': schema() did not create table '" + physical +
                    "' (address tables as {" + logical + "} or through Tables)");
      }
      tx.exec(
          "INSERT INTO projection_tables (name, generation, logical, physical) VALUES ($1, $2, $3, "
          "$4) ON CONFLICT DO NOTHING",
          {name_, generation, logical, physical});
    }
    // The checkpoint rows exist with the generation, so a reader never sees
    // a partial set of partitions (projection_checkpoint).
    const auto sub = subscription_name(name_, generation);
    tx.exec("DELETE FROM subscription_checkpoints WHERE name = $1", {sub});
    for (int p = 0; p < partitions; ++p) {
      tx.exec(
          "INSERT INTO subscription_checkpoints (name, partition, partitions) VALUES ($1, $2, $3)",
          {sub, p, partitions});
    }
  }

  /// Points every view at `generation`'s tables: CREATE OR REPLACE when the
  /// columns match, DROP + CREATE when they changed (same transaction).
  void ensure_views(pg::Transaction& tx, int generation) {
    const Tables t(name_, generation);
    for (const auto& logical : projection_->tables()) {
      const auto view = t.view(logical);
      const auto physical = t(logical);
      auto rel = tx.exec("SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)", {view})
                     .optional_one();
      const std::string create = "CREATE VIEW " + view + " AS SELECT * FROM " + physical;
      if (!rel) {
        tx.exec(pg::Sql::trusted(create));
      } else {
        if ((*rel)[0].get<std::string>() != "v") {
          throw Error("projection '" + name_ + "': '" + view + "' exists and is not a view");
        }
        const bool points = tx.exec(
                                  "SELECT EXISTS (SELECT 1 FROM pg_rewrite r JOIN pg_depend d ON "
                                  "d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid WHERE "
                                  "r.ev_class = to_regclass($1) AND d.refobjid = to_regclass($2))",
                                  {view, physical})
                                .one()[0]
                                .get<bool>();
        if (points) continue;
        const bool same_columns =
            tx.exec(
                  "SELECT (SELECT array_agg(attname::text || ':' || atttypid::text ORDER BY "
                  "attnum) FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND "
                  "NOT attisdropped) IS NOT DISTINCT FROM (SELECT array_agg(attname::text || ':' "
                  "|| atttypid::text ORDER BY attnum) FROM pg_attribute WHERE attrelid = "
                  "to_regclass($2) AND attnum > 0 AND NOT attisdropped)",
                  {view, physical})
                .one()[0]
                .get<bool>();
        if (same_columns) {
          tx.exec(
              pg::Sql::trusted("CREATE OR REPLACE VIEW " + view + " AS SELECT * FROM " + physical));
        } else {
          tx.exec(pg::Sql::trusted("DROP VIEW " + view));
          tx.exec(pg::Sql::trusted(create));
        }
      }
      tx.exec(pg::Sql::trusted("COMMENT ON VIEW " + view + " IS 'projection " + name_ +
                               ", generation " + std::to_string(generation) + "'"));
    }
  }

  enum class SwapOutcome { swapped, not_ready, gone };

  /// Switches the views to the building generation if it has caught up.
  SwapOutcome try_swap(int building, Position head) {
    const auto ms = std::to_string(std::max<std::int64_t>(1, options_.swap_lock_timeout.count()));
    return pg::with_transaction(*options_.target, [&](pg::Transaction& tx) {
      // Every lock below (the advisory lock, the checkpoint rows, the views)
      // is waited for at most this long: a long query on the old views
      // delays the swap, never the other way round for long.
      tx.exec("SELECT set_config('lock_timeout', $1, true)", {ms + "ms"});
      tx.exec("SELECT pg_advisory_xact_lock($1)", {lock_key_});
      auto row = read_row(tx, name_, true);
      if (!row || row->building != building) return SwapOutcome::gone;
      // Hold the new generation's checkpoints still while comparing.
      const auto fresh = read_positions(tx, name_, building, row->building_partitions.value_or(1),
                                        /*for_update=*/true);
      const auto fresh_min = min_of(fresh);
      if (fresh_min.value() + options_.rebuild_swap_lag < head.value()) {
        return SwapOutcome::not_ready;
      }
      if (row->serving_fingerprint == fingerprint_) {
        // The old generation is still fed: the views must not go back in
        // time by more than the allowed lag.
        const auto old_min =
            min_of(read_positions(tx, name_, row->serving, row->serving_partitions));
        if (fresh_min.value() + options_.rebuild_swap_lag < old_min.value()) {
          return SwapOutcome::not_ready;
        }
      }
      ensure_views(tx, building);
      tx.exec(
          "UPDATE projection_generations SET serving_generation = building_generation, "
          "serving_fingerprint = building_fingerprint, serving_partitions = building_partitions, "
          "building_generation = NULL, building_fingerprint = NULL, building_partitions = NULL, "
          "swapped_at = now(), updated_at = now() WHERE name = $1",
          {name_});
      return SwapOutcome::swapped;
    });
  }

  /// Drops the tables and checkpoints of generations that neither serve nor
  /// build. Returns whether anything is left to drop (a lock timed out).
  bool collect_garbage() {
    try {
      const auto ms = std::to_string(std::max<std::int64_t>(1, options_.swap_lock_timeout.count()));
      pg::with_transaction(*options_.target, [&](pg::Transaction& tx) {
        tx.exec("SELECT set_config('lock_timeout', $1, true)", {ms + "ms"});
        auto rows = tx.exec(
            "SELECT t.generation, t.physical FROM projection_tables t JOIN projection_generations "
            "g ON g.name = t.name WHERE t.name = $1 AND t.generation <> g.serving_generation AND "
            "t.generation IS DISTINCT FROM g.building_generation ORDER BY t.generation",
            {name_});
        if (rows.empty()) return;
        tx.exec("SELECT pg_advisory_xact_lock($1)", {lock_key_});
        std::vector<int> generations;
        for (const auto& r : rows) {
          const auto generation = r[0].get<int>();
          // Re-check under the lock: a rebuild may have just claimed it.
          if (generations.empty() || generations.back() != generation) {
            generations.push_back(generation);
          }
        }
        auto row = read_row(tx, name_, true);
        if (!row) return;
        for (const auto& r : rows) {
          const auto generation = r[0].get<int>();
          if (generation == row->serving || generation == row->building) continue;
          tx.exec(pg::Sql::trusted("DROP TABLE IF EXISTS " + r[1].get<std::string>()));
        }
        for (int generation : generations) {
          if (generation == row->serving || generation == row->building) continue;
          tx.exec("DELETE FROM projection_tables WHERE name = $1 AND generation = $2",
                  {name_, generation});
          tx.exec("DELETE FROM subscription_checkpoints WHERE name = $1",
                  {subscription_name(name_, generation)});
          sb::log::info("projection generation dropped",
                        {{"projection", name_}, {"generation", generation}});
        }
      });
      return false;
    } catch (const std::exception& e) {
      if (is_lock_timeout(e)) {
        sb::log::info("projection: old tables still in use; dropping them later",
                      {{"projection", name_}});
      } else {
        sb::log::warn("projection: dropping old tables failed; retrying later",
                      {{"projection", name_}, {"error", e.what()}});
      }
      return true;
    }
  }

  // ---- generations this replica runs --------------------------------------

  std::shared_ptr<Generation> make_generation(int number, int partitions, bool fed) {
    auto g = std::make_shared<Generation>();
    g->number = number;
    g->partitions = partitions;
    g->fed = fed;
    if (!fed) return g;
    for (int p = 0; p < partitions; ++p) {
      events::CheckpointedSubscriptionOptions o;
      o.name = subscription_name(name_, number);
      o.partition = events::Partition{p, partitions};
      o.filter.types = projection_->event_types();
      o.page_size = options_.page_size;
      o.poll_interval = options_.poll_interval;
      o.standby_poll = options_.poll_interval;
      o.retry = options_.retry;
      o.on_failure = options_.on_failure;
      o.store = options_.store;
      o.target = options_.target;
      o.catalog = options_.catalog;
      o.signals = options_.signals;
      o.migrate = false;
      o.owner = options_.owner;
      g->subs.push_back(std::make_unique<events::CheckpointedSubscription>(
          o, std::make_shared<Adapter>(projection_, Tables(name_, number))));
    }
    try {
      for (auto& s : g->subs) s->start();
    } catch (...) {
      g->stop();
      throw;
    }
    return g;
  }

  /// Brings the generations this replica runs in line with `row`. Callers
  /// hold reconcile_mu_.
  void reconcile(const GenerationsRow& row) {
    std::shared_ptr<Generation> serving;
    std::shared_ptr<Generation> building;
    {
      std::lock_guard lk(mu_);
      serving = serving_;
      building = building_;
    }
    std::vector<std::shared_ptr<Generation>> retired;
    if (!serving || serving->number != row.serving) {
      std::shared_ptr<Generation> next;
      if (building && building->number == row.serving) {
        next = building;
        building.reset();
      } else {
        next = make_generation(row.serving, row.serving_partitions,
                               row.serving_fingerprint == fingerprint_);
      }
      if (serving) {
        retired.push_back(serving);
        sb::log::info("projection now serves a new generation",
                      {{"projection", name_}, {"generation", row.serving}});
      }
      serving = next;
    }
    if (row.building) {
      if (!building || building->number != *row.building) {
        if (building) retired.push_back(building);
        building = make_generation(*row.building, row.building_partitions.value_or(1),
                                   row.building_fingerprint == fingerprint_);
        std::lock_guard lk(mu_);
        rebuild_samples_.clear();
      }
    } else if (building) {
      retired.push_back(building);
      building.reset();
    }
    {
      std::lock_guard lk(mu_);
      serving_ = serving;
      building_ = building;
      if (!building_) swap_attempts_ = 0;
    }
    cv_wait_.notify_all();
    for (auto& g : retired) g->stop();
  }

  // ---- the supervisor thread ----------------------------------------------

  void supervise() {
    bool garbage = true;  // look once at start: a crash may have left some
    while (!wait_tick(options_.poll_interval)) {
      try {
        garbage = tick(garbage);
      } catch (const std::exception& e) {
        sb::log::warn("projection supervisor: retrying",
                      {{"projection", name_}, {"error", e.what()}});
      }
    }
  }

  /// Waits for the next tick; true when stopping.
  bool wait_tick(std::chrono::milliseconds d) {
    std::unique_lock lk(mu_);
    cv_.wait_for(lk, d, [&] { return stopping_ || woken_; });
    woken_ = false;
    return stopping_;
  }

  bool tick(bool garbage) {
    GenerationsRow row;
    std::vector<Position> serving_db;
    std::vector<Position> building_db;
    pg::with_transaction(*options_.target, [&](pg::Transaction& tx) {
      auto r = read_row(tx, name_, false);
      if (!r) throw Error("projection '" + name_ + "': its projection_generations row vanished");
      row = *r;
      serving_db = read_positions(tx, name_, row.serving, row.serving_partitions);
      building_db.clear();
      if (row.building) {
        building_db = read_positions(tx, name_, *row.building, row.building_partitions.value_or(1));
      }
    });
    const Position head = reader_->head();
    {
      std::lock_guard lk(mu_);
      serving_db_ = serving_db;
      building_db_ = building_db;
      head_ = head;
    }
    std::lock_guard rk(reconcile_mu_);
    int swapped_from = 0;
    {
      std::lock_guard lk(mu_);
      if (serving_) swapped_from = serving_->number;
    }
    reconcile(row);
    if (swapped_from != 0 && swapped_from != row.serving) garbage = true;
    if (row.building && row.building_fingerprint == fingerprint_ &&
        min_of(building_db).value() + options_.rebuild_swap_lag >= head.value()) {
      try {
        const auto outcome = try_swap(*row.building, head);
        if (outcome == SwapOutcome::swapped) {
          sb::log::info(
              "projection swapped to its rebuilt generation",
              {{"projection", name_}, {"generation", *row.building}, {"previous", row.serving}});
          row.serving = *row.building;
          row.serving_fingerprint = *row.building_fingerprint;
          row.serving_partitions = row.building_partitions.value_or(1);
          row.building.reset();
          row.building_fingerprint.reset();
          row.building_partitions.reset();
          reconcile(row);
          garbage = true;
        }
      } catch (const std::exception& e) {
        if (!is_lock_timeout(e)) throw;
        {
          std::lock_guard lk(mu_);
          ++swap_attempts_;
        }
        sb::log::info("projection swap waited past its lock timeout; retrying",
                      {{"projection", name_}, {"generation", *row.building}});
        wake();  // retry at once: the lock wait already took swap_lock_timeout
      }
    }
    if (garbage) garbage = collect_garbage();
    auto st = status();
    m_generation_->set(st.generation);
    m_position_->set(static_cast<double>(st.position.value()));
    m_lag_->set(static_cast<double>(st.lag_events));
    m_progress_->set(st.rebuild ? st.rebuild->progress : 0.0);
    return garbage;
  }

  void wake() {
    {
      std::lock_guard lk(mu_);
      woken_ = true;
    }
    cv_.notify_all();
  }

  // ---- aggregation --------------------------------------------------------

  Aggregate aggregate(const Generation& g, const std::vector<Position>& db) const {
    Aggregate a;
    bool first = true;
    if (!g.fed) {
      // Frozen until the rebuild swaps (which is what it is waiting for).
      a.state = SubscriptionState::catching_up;
      a.position = min_of(db);
      return a;
    }
    int rank = 0;
    for (std::size_t i = 0; i < g.subs.size(); ++i) {
      auto st = g.subs[i]->status();
      if (!st.owner && i < db.size()) st.position = std::max(st.position, db[i]);
      if (first || st.position < a.position) a.position = st.position;
      first = false;
      a.head = std::max(a.head, st.head);
      a.lag_ms = std::max(a.lag_ms, st.lag_ms);
      a.rate += st.rate;
      if (st.state == SubscriptionState::parked || !a.last_error) {
        if (st.last_error) a.last_error = st.last_error;
      }
      if (state_rank(st.state) > rank) {
        rank = state_rank(st.state);
        a.state = st.state;
      }
      a.partitions.push_back(std::move(st));
    }
    // Some partitions running and the others owned elsewhere: running.
    if (a.state == SubscriptionState::standby) {
      for (const auto& p : a.partitions) {
        if (p.state == SubscriptionState::running) a.state = SubscriptionState::running;
      }
    }
    return a;
  }

  /// Positions per second the rebuild advances, over the last 10 s.
  double rebuild_rate(int generation, Position position, double fallback) const {
    std::lock_guard lk(mu_);
    const auto now = Clock::now();
    if (rebuild_generation_ != generation) {
      rebuild_samples_.clear();
      rebuild_generation_ = generation;
    }
    if (rebuild_samples_.empty() ||
        now - rebuild_samples_.back().at >= std::chrono::milliseconds(50)) {
      rebuild_samples_.push_back({now, position.value()});
    }
    while (rebuild_samples_.size() > 2 &&
           now - rebuild_samples_.front().at > std::chrono::seconds(10)) {
      rebuild_samples_.pop_front();
    }
    const auto& a = rebuild_samples_.front();
    const auto& b = rebuild_samples_.back();
    const double dt = std::chrono::duration<double>(b.at - a.at).count();
    if (dt < 0.2) return fallback;
    return static_cast<double>(b.position - a.position) / dt;
  }

  std::shared_ptr<Projection> projection_;
  RunnerOptions options_;
  std::string name_;
  std::string fingerprint_;
  std::int64_t lock_key_ = 0;
  std::unique_ptr<events::EventReader> reader_;
  metrics::Gauge* m_generation_ = nullptr;
  metrics::Gauge* m_position_ = nullptr;
  metrics::Gauge* m_lag_ = nullptr;
  metrics::Gauge* m_progress_ = nullptr;

  std::thread supervisor_;
  /// Serialises reconcile() between the supervisor and start_rebuild().
  std::mutex reconcile_mu_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  mutable std::condition_variable cv_wait_;
  bool started_ = false;
  bool stopping_ = false;
  bool stopped_ = false;
  bool woken_ = false;
  std::shared_ptr<Generation> serving_;
  std::shared_ptr<Generation> building_;
  std::vector<Position> serving_db_;
  std::vector<Position> building_db_;
  Position head_;
  int swap_attempts_ = 0;
  mutable std::deque<RateSample> rebuild_samples_;
  mutable int rebuild_generation_ = 0;
};

// ---------------------------------------------------------------------------

ProjectionRunner::ProjectionRunner(std::shared_ptr<Projection> projection, RunnerOptions options)
    : name_("projection:" + std::string(projection ? projection->name() : "")),
      impl_(std::make_shared<Impl>(std::move(projection), std::move(options))) {}

ProjectionRunner::~ProjectionRunner() {
  impl_->stop();
}

std::string_view ProjectionRunner::name() const {
  return name_;
}
void ProjectionRunner::start() {
  impl_->start();
}
void ProjectionRunner::stop(Deadline) noexcept {
  impl_->stop();
}
app::Health ProjectionRunner::health() const {
  return impl_->health();
}
ProjectionStatus ProjectionRunner::status() const {
  return impl_->status();
}
bool ProjectionRunner::wait_for_position(events::Position position,
                                         std::chrono::steady_clock::time_point deadline) const {
  return impl_->wait_for_position(position, deadline);
}
void ProjectionRunner::start_rebuild() {
  impl_->start_rebuild();
}
void ProjectionRunner::resume() {
  impl_->resume();
}

// ---------------------------------------------------------------------------

std::string subscription_name(std::string_view projection, int generation) {
  return "projection." + std::string(projection) + ".g" + std::to_string(generation);
}

std::optional<int> serving_generation(pg::Transaction& tx, std::string_view projection) {
  auto r =
      tx.exec("SELECT serving_generation FROM projection_generations WHERE name = $1", {projection})
          .optional_one();
  if (!r) return std::nullopt;
  return (*r)[0].get<int>();
}

std::optional<events::Position> projection_checkpoint(pg::Transaction& tx,
                                                      std::string_view projection) {
  auto r = tx.exec(
                 "SELECT serving_generation, serving_partitions FROM projection_generations "
                 "WHERE name = $1",
                 {projection})
               .optional_one();
  if (!r) return std::nullopt;
  const auto generation = (*r)[0].get<int>();
  const auto partitions = (*r)[1].get<int>();
  return min_of(read_positions(tx, projection, generation, partitions));
}

}  // namespace sb::projections
