#include "switchboard/registry/registry.hpp"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "switchboard/broker/consumer.hpp"
#include "switchboard/broker/publisher.hpp"
#include "switchboard/broker/rpc.hpp"
#include "switchboard/events/head_signals.hpp"
#include "switchboard/events/platform_types.hpp"
#include "switchboard/events/reader.hpp"
#include "switchboard/events/uuid.hpp"
#include "switchboard/projections/runner.hpp"
#include "switchboard/registry/liveness.hpp"
#include "switchboard/registry/projection.hpp"
#include "switchboard/registry/read_model.hpp"
#include "switchboard/shared/json.hpp"
#include "switchboard/shared/log.hpp"
#include "switchboard/shared/metrics.hpp"
#include "switchboard/shared/pg_migrations.hpp"

namespace sb::pg {
MigrationSet registry_migrations();
}  // namespace sb::pg

namespace sb::registry {
namespace {

using Clock = std::chrono::steady_clock;
using LiveMap = std::unordered_map<std::string, LiveInstance>;

std::string bigint_array(const std::vector<std::int64_t>& values) {
  std::string out = "{";
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ',';
    out += std::to_string(values[i]);
  }
  return out + "}";
}

std::int64_t epoch_ms(events::Timestamp t) {
  return t.time_since_epoch().count();
}

// The store's reply: "appended"/"duplicate", or an error code.
std::string append_outcome(const std::string& body) {
  try {
    auto doc = json::parse(body);
    if (auto r = json::optional_string(doc, "result")) return *r;
    if (const auto* e = json::find(doc, "error"); e && e->IsObject()) {
      return json::optional_string(*e, "code").value_or("error");
    }
  } catch (const json::Error&) {
  }
  return "malformed_reply";
}

broker::Message json_message(std::string body) {
  broker::Message m;
  m.body = std::move(body);
  m.persistent = false;
  return m;
}

}  // namespace

class Registry::Impl {
 public:
  explicit Impl(RegistryOptions options)
      : options_(std::move(options)),
        catalog_(events::builtin_catalog()),
        pause_(options_.default_ttl),
        unknown_(options_.unknown_grace, options_.unknown_repeat) {
    if (options_.store_database.url.empty()) options_.store_database = options_.database;
    routes_ = std::make_shared<const RouteTable>();
    routes_json_ = std::make_shared<const std::string>(to_json(*routes_));
    live_ = std::make_shared<const LiveMap>();
  }

  void start() {
    pause_.pause_from(Clock::now());
    pg::migrate(options_.database, pg::registry_migrations());
    pg::PoolOptions po;
    po.connection = options_.database;
    po.connection.application_name = "sb-registry";
    po.max_size = 6;
    db_ = std::make_shared<pg::Pool>(po);
    if (options_.store_database.url == options_.database.url) {
      store_db_ = db_;
    } else {
      po.connection = options_.store_database;
      store_db_ = std::make_shared<pg::Pool>(po);
    }

    catalog_listener_ = catalog_.on_change([this](const events::CatalogChange& c) {
      std::lock_guard lock(catalog_mu_);
      if (catalog_pending_.size() < 10000) catalog_pending_.push_back(c);
    });

    auto conn = [this](std::string_view what) {
      auto c = options_.broker;
      c.name = "registry-" + std::string(what) + "-" + options_.replica;
      return c;
    };
    broker::PublisherOptions pub;
    pub.connection = conn("signals");
    pub.topology = broker::platform_topology();
    publisher_ = std::make_unique<broker::Publisher>(std::move(pub));
    broker::RpcClientOptions rc;
    rc.connection = conn("store");
    store_ = std::make_unique<broker::RpcClient>(std::move(rc));

    head_ = std::make_shared<events::HeadSignals>(conn("head"), "registry");
    head_->start();
    head_listener_ = head_->subscribe([this](events::Position) { wake_routes(); });

    if (options_.run_read_model) {
      projections::RunnerOptions ro;
      ro.store = store_db_;
      ro.target = db_;
      ro.signals = head_;
      ro.page_size = 500;
      ro.poll_interval = std::chrono::milliseconds(500);
      ro.owner = options_.replica;
      runner_ = std::make_unique<projections::ProjectionRunner>(make_registry_projection(), ro);
      runner_->start();
    }

    running_ = true;
    route_thread_ = std::thread([this] { route_loop(); });

    if (options_.run_liveness) {
      heartbeat_connection_ = conn("heartbeats");
      reconnects_ = &metrics::Registry::global().counter(
          "sb_broker_reconnects_total", "Connections re-established",
          {{"connection", heartbeat_connection_.name}});
      reconnects_seen_ = reconnects_->value();
      broker::ConsumerOptions co;
      co.connection = heartbeat_connection_;
      co.workers = options_.heartbeat_workers;
      co.topology = broker::platform_topology();
      consumer_ = std::make_unique<broker::Consumer>(std::move(co));
      broker::QueueSpec q;
      q.name = "registry.heartbeats." + options_.replica + "." + broker::new_id().substr(0, 8);
      q.durable = false;
      q.exclusive = true;
      q.auto_delete = true;
      q.max_length = options_.heartbeat_queue_max;
      q.overflow = broker::Overflow::drop_head;
      broker::Topology t;
      t.queues.push_back(q);
      t.bindings.push_back({q.name, broker::kSignalsExchange, std::string(kHeartbeatKey)});
      consumer_->declare(t);
      broker::ConsumeOptions opts;
      opts.prefetch = options_.heartbeat_prefetch;
      opts.retry.enabled = false;
      consumer_->consume(q, opts, [this](const broker::Delivery& d) { on_heartbeat(d); });
      // Heartbeats start arriving only now.
      pause_.pause_from(Clock::now());
      flush_thread_ = std::thread([this] { flush_loop(); });
      sweep_thread_ = std::thread([this] { sweep_loop(); });
    }

    broker::RpcServerOptions so;
    so.connection = conn("rpc");
    so.workers = options_.rpc_workers;
    rpc_ = std::make_unique<broker::RpcServer>(std::move(so));
    rpc_->serve(std::string(kRoutesRpc),
                [this](const broker::Delivery& d) { return on_routes(d); });
    rpc_->serve(std::string(kCatalogRpc),
                [this](const broker::Delivery&) { return json_message(catalog_.to_json()); });
    rpc_->serve_async(std::string(kSetWeightsRpc),
                      [this](const broker::Delivery& d, broker::RpcResponder r) {
                        on_set_weights(d, std::move(r));
                      });
    log::info("registry started", {{"replica", options_.replica}});
  }

  void stop() noexcept {
    if (stopped_.exchange(true)) return;
    {
      std::lock_guard lock(mu_);
      running_ = false;
    }
    cv_.notify_all();
    rpc_.reset();
    consumer_.reset();
    for (auto* t : {&route_thread_, &flush_thread_, &sweep_thread_}) {
      if (t->joinable()) t->join();
    }
    flush_once();  // what is still in memory
    if (runner_) runner_->stop(Clock::now() + std::chrono::seconds(5));
    if (head_) {
      head_->unsubscribe(head_listener_);
      head_->stop(Clock::now() + std::chrono::seconds(2));
    }
    if (publisher_) publisher_->flush(std::chrono::seconds(2));
    store_.reset();
    publisher_.reset();
    catalog_.remove_listener(catalog_listener_);
    lock_connection_.reset();
  }

  app::Health health() const {
    if (!loaded_.load()) return {app::HealthState::starting, "route table not loaded yet"};
    if (runner_) {
      auto h = runner_->health();
      if (h.state != app::HealthState::ok) return h;
    }
    return {};
  }

  std::shared_ptr<const RouteTable> routes() const {
    std::lock_guard lock(mu_);
    return routes_;
  }

  bool wait_for_routes(std::int64_t version, std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mu_);
    return routes_cv_.wait_for(lock, timeout, [&] { return routes_->version >= version; });
  }

  RegistryStats stats() const {
    RegistryStats s;
    s.heartbeats = tracker_.received();
    s.flushed_rows = flushed_rows_.load();
    s.flushes = flushes_.load();
    s.expiries_sent = expiries_sent_.load();
    s.expiries_appended = expiries_appended_.load();
    s.expiry_conflicts = expiry_conflicts_.load();
    s.register_requests = register_requests_.load();
    s.route_changes = route_changes_.load();
    s.catalog_appends = catalog_appends_.load();
    s.sweeper = leader_.load();
    s.paused = pause_.paused(Clock::now());
    std::lock_guard lock(mu_);
    s.route_version = routes_->version;
    s.live_instances = live_->size();
    return s;
  }

  const events::Catalog& catalog() const { return catalog_; }

  void rebuild() {
    if (runner_) runner_->start_rebuild();
  }
  int generation() const { return runner_ ? runner_->status().generation : 0; }

 private:
  // ---------------------------------------------------------------- routes

  void wake_routes() {
    {
      std::lock_guard lock(mu_);
      route_wake_ = true;
    }
    cv_.notify_all();
  }

  void route_loop() {
    auto next_warning = Clock::now();
    while (true) {
      {
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, options_.route_poll, [this] { return !running_ || route_wake_; });
        if (!running_) return;
        route_wake_ = false;
      }
      try {
        reload_routes();
      } catch (const std::exception& e) {
        // The views appear once the projection created them; while the
        // database is away, say so every 10 s, not every poll.
        if (loaded_.load() && Clock::now() >= next_warning) {
          log::warn("registry route table reload failed", {{"error", e.what()}});
          next_warning = Clock::now() + std::chrono::seconds(10);
        }
      }
    }
  }

  void reload_routes() {
    const std::int64_t current = routes()->version;
    auto version =
        pg::with_transaction(*db_, [](pg::Transaction& tx) { return read_model_version(tx); }, {},
                             {pg::Isolation::read_committed, true});
    if (loaded_.load() && version == current) return;
    auto snap = pg::with_transaction(*db_, [](pg::Transaction& tx) { return load_snapshot(tx); },
                                     {}, {pg::Isolation::repeatable_read, true});
    learn_types(snap);
    // Route a new service only once the store accepts its types (bounded:
    // a store that does not answer must not freeze the route table).
    if (!append_catalog_changes(true, options_.store_timeout)) {
      log::warn("registry: catalog changes not stored yet; routing anyway");
    }
    std::vector<std::string> known;
    for (const auto& t : snap.service_types) known.push_back(std::get<0>(t));
    auto table = std::make_shared<const RouteTable>(
        assemble_route_table(snap.version, snap.live, snap.weights, known));
    auto json = std::make_shared<const std::string>(to_json(*table));
    auto live = std::make_shared<LiveMap>();
    for (auto& i : snap.live) {
      unknown_.known(i.instance_id);
      live->emplace(i.instance_id, std::move(i));
    }
    bool changed = false;
    {
      std::lock_guard lock(mu_);
      changed = table->version != routes_->version;
      routes_ = table;
      routes_json_ = json;
      live_ = std::move(live);
    }
    loaded_ = true;
    routes_cv_.notify_all();
    if (changed) {
      ++route_changes_;
      broker::PublishOptions po;
      po.exchange = broker::kSignalsExchange;
      po.routing_key = std::string(kRoutesChangedKey);
      po.deadline = Clock::now() + std::chrono::seconds(5);
      publisher_->publish(json_message(routes_changed_json(table->version)), po,
                          [](const broker::PublishOutcome&) {});
      log::debug("registry route table changed", {{"version", table->version}});
    }
  }

  // Every replica learns the types registrations brought from the read
  // model (only one replica folds events).
  void learn_types(const ReadModelSnapshot& snap) {
    for (const auto& [service, event_types, command_types] : snap.service_types) {
      auto key = service + "\n" + event_types + "\n" + command_types;
      if (learnt_.contains(service) && learnt_[service] == key) continue;
      learnt_[service] = key;
      auto learn = [&](const std::string& text, bool command) {
        auto doc = json::parse(text);
        for (const auto& v : doc.GetArray()) {
          try {
            if (command) {
              catalog_.register_command_type(events::command_spec_from_json(v, service));
            } else {
              catalog_.register_event_type(events::event_type_spec_from_json(v, service));
            }
          } catch (const std::exception& e) {
            log::warn("registry: a type a service brought was refused",
                      {{"service", service}, {"error", e.what()}});
          }
        }
      };
      learn(event_types, false);
      learn(command_types, true);
    }
  }

  broker::Message on_routes(const broker::Delivery& d) {
    std::int64_t min_version = 0;
    std::int64_t if_newer_than = -1;
    if (!d.message.body.empty()) {
      auto doc = json::parse(d.message.body);
      if (doc.IsObject()) {
        min_version = json::optional_int64(doc, "min_version").value_or(0);
        if_newer_than = json::optional_int64(doc, "if_newer_than").value_or(-1);
      }
    }
    if (min_version > 0) {
      auto wait = std::chrono::milliseconds(2000);
      if (auto deadline = d.message.header_int(broker::kDeadlineHeader)) {
        const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
        wait = std::clamp(std::chrono::milliseconds(*deadline - now - 50),
                          std::chrono::milliseconds(0), wait);
      }
      wait_for_routes(min_version, wait);
    }
    std::shared_ptr<const std::string> json;
    std::int64_t version = 0;
    {
      std::lock_guard lock(mu_);
      json = routes_json_;
      version = routes_->version;
    }
    if (version <= if_newer_than) {
      return json_message("{\"version\":" + std::to_string(version) + ",\"unchanged\":true}");
    }
    return json_message(*json);
  }

  // ------------------------------------------------------------ heartbeats

  void on_heartbeat(const broker::Delivery& d) {
    Heartbeat hb;
    try {
      hb = parse_heartbeat(d.message.body);
    } catch (const std::exception& e) {
      log::debug("registry: malformed heartbeat dropped", {{"error", e.what()}});
      return;
    }
    const auto now = events::now_ms();
    tracker_.record(hb.instance_id, now);
    std::shared_ptr<const LiveMap> live;
    {
      std::lock_guard lock(mu_);
      live = live_;
    }
    if (live->contains(hb.instance_id) || !loaded_.load()) return;
    // Only the sweeper asks, and not while paused (the read model and the
    // heartbeats may both be incomplete then).
    if (!leader_.load() || pause_.paused(Clock::now())) return;
    if (!unknown_.should_ask(hb.instance_id, now)) return;
    if (!events::EventType::is_valid(register_requested_key(hb.name))) return;
    ++register_requests_;
    broker::PublishOptions po;
    po.exchange = broker::kSignalsExchange;
    po.routing_key = register_requested_key(hb.name);
    po.deadline = Clock::now() + std::chrono::seconds(5);
    publisher_->publish(json_message(register_requested_json(hb.name, hb.instance_id)), po,
                        [](const broker::PublishOutcome&) {});
    log::info("registry asked an unknown instance to register",
              {{"service", hb.name}, {"instance_id", hb.instance_id}});
  }

  void flush_loop() {
    auto next_forget = Clock::now() + std::chrono::minutes(1);
    while (true) {
      {
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, options_.flush_interval, [this] { return !running_; });
        if (!running_) return;
      }
      flush_once();
      if (Clock::now() > next_forget) {
        next_forget = Clock::now() + std::chrono::minutes(1);
        tracker_.forget_older_than(events::now_ms() - std::chrono::hours(1));
        unknown_.forget_older_than(events::now_ms() - std::chrono::minutes(10));
        forget_stale_rows();
      }
    }
  }

  // Rows of instances that are gone and silent for an hour.
  void forget_stale_rows() noexcept {
    try {
      pg::with_transaction(*db_, [](pg::Transaction& tx) {
        tx.exec(
            "DELETE FROM registry_heartbeats h WHERE last_seen < now() - interval '1 hour' AND "
            "NOT EXISTS (SELECT 1 FROM registry_service_instances i WHERE i.instance_id = "
            "h.instance_id AND i.status = 'live')");
      });
    } catch (const std::exception& e) {
      log::warn("registry heartbeat cleanup failed", {{"error", e.what()}});
    }
  }

  void flush_once() noexcept {
    if (!db_) return;
    auto dirty = tracker_.take_dirty();
    if (dirty.empty()) return;
    std::shared_ptr<const LiveMap> live;
    {
      std::lock_guard lock(mu_);
      live = live_;
    }
    // Rows only for instances the read model holds; the others wait in
    // memory for their registration (or are forgotten).
    std::vector<HeartbeatTracker::Seen> later;
    std::vector<std::string> ids;
    std::vector<std::int64_t> times;
    for (auto& s : dirty) {
      if (live->contains(s.instance_id)) {
        ids.push_back(s.instance_id);
        times.push_back(epoch_ms(s.at));
      } else if (events::now_ms() - s.at < std::chrono::minutes(1)) {
        later.push_back(std::move(s));
      }
    }
    if (!later.empty()) tracker_.restore_dirty(later);
    if (ids.empty()) return;
    try {
      pg::with_transaction(*db_, [&](pg::Transaction& tx) {
        tx.exec(
            "INSERT INTO registry_heartbeats (instance_id, last_seen) "
            "SELECT i, timestamptz 'epoch' + ms * interval '1 millisecond' "
            "FROM unnest($1::text[], $2::bigint[]) AS u(i, ms) "
            "ON CONFLICT (instance_id) DO UPDATE SET last_seen = "
            "GREATEST(registry_heartbeats.last_seen, EXCLUDED.last_seen)",
            {events::pg_text_array(ids), bigint_array(times)});
      });
      flushed_rows_ += ids.size();
      ++flushes_;
    } catch (const std::exception& e) {
      log::warn("registry heartbeat flush failed", {{"rows", ids.size()}, {"error", e.what()}});
      std::vector<HeartbeatTracker::Seen> back;
      for (std::size_t i = 0; i < ids.size(); ++i) {
        back.push_back({ids[i], events::Timestamp(std::chrono::milliseconds(times[i]))});
      }
      tracker_.restore_dirty(back);
    }
  }

  // --------------------------------------------------------------- sweeper

  void sweep_loop() {
    while (true) {
      {
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, options_.sweep_interval, [this] { return !running_; });
        if (!running_) return;
      }
      try {
        watch_broker();
        hold_lock();
        if (leader_.load()) {
          append_catalog_changes();
          if (!pause_.paused(Clock::now()) && loaded_.load()) sweep();
        }
      } catch (const std::exception& e) {
        log::warn("registry sweep failed", {{"error", e.what()}});
      }
    }
  }

  // No heartbeat can arrive while the broker is away, nor until the queue
  // is back after a reconnect: pause for a TTL from then.
  void watch_broker() {
    const auto now = Clock::now();
    const auto reconnects = reconnects_->value();
    if (!consumer_->connected() || reconnects != reconnects_seen_) {
      if (reconnects != reconnects_seen_) {
        log::info("registry: broker reconnected, expiry paused for one TTL");
      }
      reconnects_seen_ = reconnects;
      pause_.pause_from(now);
    }
  }

  void hold_lock() {
    if (lock_connection_ && !lock_connection_->check_alive()) {
      lock_connection_.reset();
      if (leader_.exchange(false)) log::warn("registry sweeper lost its lock connection");
    }
    if (!lock_connection_) {
      auto c = options_.database;
      c.application_name = "sb-registry-sweeper";
      c.connect_timeout = std::chrono::milliseconds(2000);
      lock_connection_ = std::make_unique<pg::Connection>(c);
    }
    if (!leader_.load() && lock_connection_->try_advisory_lock(options_.sweeper_lock_key)) {
      leader_ = true;
      log::info("registry sweeper elected", {{"replica", options_.replica}});
    }
  }

  void sweep() {
    std::shared_ptr<const LiveMap> live_map;
    {
      std::lock_guard lock(mu_);
      live_map = live_;
    }
    // Forget expiries whose registration is gone or replaced.
    {
      std::lock_guard lock(expiry_mu_);
      for (auto it = expiring_.begin(); it != expiring_.end();) {
        auto l = live_map->find(it->first);
        if (l == live_map->end() || l->second.registered_position != it->second) {
          it = expiring_.erase(it);
        } else {
          ++it;
        }
      }
    }
    std::vector<LiveInstance> live;
    live.reserve(live_map->size());
    for (const auto& [id, i] : *live_map) live.push_back(i);
    const auto now = events::now_ms();
    auto remembered = [this](const std::string& id) { return tracker_.last_seen(id); };
    auto in_flight = [this](const LiveInstance& i) {
      std::lock_guard lock(expiry_mu_);
      return expiring_.contains(i.instance_id);
    };
    auto candidates = find_expired(live, now, remembered, nullptr, in_flight);
    if (candidates.empty()) return;
    // Check the shared table for heartbeats other replicas received.
    std::vector<std::string> ids;
    for (const auto& c : candidates) ids.push_back(c.instance->instance_id);
    std::unordered_map<std::string, events::Timestamp> stored_map;
    pg::with_transaction(*db_, [&](pg::Transaction& tx) {
      stored_map.clear();
      for (const auto& row :
           tx.exec("SELECT instance_id, (extract(epoch FROM last_seen) * 1000)::bigint "
                   "FROM registry_heartbeats WHERE instance_id = ANY($1::text[])",
                   {events::pg_text_array(ids)})) {
        stored_map[row[0].get<std::string>()] =
            events::Timestamp(std::chrono::milliseconds(row[1].get<std::int64_t>()));
      }
    });
    std::vector<LiveInstance> subset;
    for (const auto& c : candidates) subset.push_back(*c.instance);
    auto stored = [&](const std::string& id) -> std::optional<events::Timestamp> {
      auto it = stored_map.find(id);
      if (it == stored_map.end()) return std::nullopt;
      return it->second;
    };
    for (const auto& c : find_expired(subset, now, remembered, stored, in_flight)) {
      expire(*c.instance, c.last_seen);
    }
  }

  void expire(const LiveInstance& i, events::Timestamp last_seen) {
    {
      std::lock_guard lock(expiry_mu_);
      expiring_[i.instance_id] = i.registered_position;
    }
    const auto tenant = events::TenantId(i.tenant);
    AppendOne a;
    a.stream = i.stream;
    a.tenant = i.tenant;
    a.expected_version = std::to_string(i.stream_version);
    a.event_id =
        events::derive_event_id(
            tenant, events::CommandId(expiry_command_id(i.instance_id, i.registered_position)), 0)
            .value();
    a.type = std::string(events::kServiceInstanceExpired);
    a.data = "{\"name\":" + json::quoted(i.service) +
             ",\"instance_id\":" + json::quoted(i.instance_id) +
             ",\"last_seen\":" + json::quoted(events::format_rfc3339_ms(last_seen)) + "}";
    ++expiries_sent_;
    log::info("registry expiring a silent instance",
              {{"instance_id", i.instance_id},
               {"service", i.service},
               {"silent_ms", (events::now_ms() - last_seen).count()}});
    const auto id = i.instance_id;
    {
      // At most expiry_window appends in flight (see RegistryOptions).
      std::unique_lock lock(window_mu_);
      window_cv_.wait_for(lock, options_.store_timeout + std::chrono::seconds(1), [this] {
        return in_window_ < std::max<std::size_t>(1, options_.expiry_window);
      });
      ++in_window_;
    }
    store_->call("store.append", json_message(append_request_json(a)), options_.store_timeout,
                 [this, id](broker::RpcClient::Result r) {
                   {
                     std::lock_guard lock(window_mu_);
                     if (in_window_ > 0) --in_window_;
                   }
                   window_cv_.notify_all();
                   if (r.error) {
                     log::warn("registry expiry not appended; retried at the next sweep",
                               {{"instance_id", id}, {"error", r.error->what()}});
                     std::lock_guard lock(expiry_mu_);
                     expiring_.erase(id);
                     return;
                   }
                   const auto outcome = append_outcome(r.reply->body);
                   if (outcome == "appended" || outcome == "duplicate") {
                     ++expiries_appended_;
                   } else if (outcome == "wrong_expected_version") {
                     ++expiry_conflicts_;  // it re-registered or left first
                   } else {
                     log::warn("registry expiry refused by the store",
                               {{"instance_id", id}, {"outcome", outcome}});
                     std::lock_guard lock(expiry_mu_);
                     expiring_.erase(id);
                   }
                 });
  }

  // ------------------------------------------------------- weights, catalog

  void on_set_weights(const broker::Delivery& d, broker::RpcResponder responder) {
    auto fail = [&](std::string_view code, const std::string& message) {
      responder.reply(json_message("{\"error\":{\"code\":" + json::quoted(code) +
                                   ",\"message\":" + json::quoted(message) + "}}"));
    };
    rapidjson::Document doc;
    try {
      doc = json::parse(d.message.body);
    } catch (const json::Error& e) {
      fail("malformed_json", e.what());
      return;
    }
    if (!doc.IsObject()) {
      fail("invalid_request", "the body must be an object");
      return;
    }
    std::optional<std::string> command_id;
    if (const auto* c = json::find(doc, "command_id"); c != nullptr) {
      if (!c->IsString() || !events::CommandId::is_valid(c->GetString())) {
        fail("invalid_request", "command_id must be a printable string");
        return;
      }
      command_id = c->GetString();
      doc.RemoveMember("command_id");
    }
    events::ValidationResult valid;
    {
      // RapidJSON 1.1's regex (the schema's "pattern") keeps its match state
      // in the compiled schema: validations must not run concurrently.
      std::lock_guard lock(validate_mu_);
      valid = catalog_.validate_event(events::EventType(events::kServiceVersionWeightsSet), 1,
                                      static_cast<const rapidjson::Value&>(doc));
    }
    if (!valid) {
      fail("schema_violation", valid.message);
      return;
    }
    const auto service = json::require_string(doc, "service");
    const auto tenant = events::TenantId(kPlatformTenant);
    AppendOne a;
    a.stream = service_stream(service);
    a.tenant = std::string(kPlatformTenant);
    a.event_id = command_id
                     ? events::derive_event_id(tenant, events::CommandId(*command_id), 0).value()
                     : events::new_event_id().value();
    a.type = std::string(events::kServiceVersionWeightsSet);
    a.data = json::to_string(doc);
    store_->call("store.append", json_message(append_request_json(a)), options_.store_timeout,
                 [responder](broker::RpcClient::Result r) mutable {
                   if (r.error) {
                     responder.reply(json_message(
                         "{\"error\":{\"code\":\"unavailable\",\"message\":" +
                         json::quoted(std::string("store: ") + r.error->what()) + "}}"));
                     return;
                   }
                   responder.reply(json_message(r.reply->body));
                 });
  }

  // Appends the catalog changes waiting to be appended. With `wait`, blocks
  // until the store answered each (at most `timeout`) and says whether all
  // were stored: the route table waits for that, so a service is routed
  // only once the store accepts the types it brought.
  bool append_catalog_changes(bool wait = false,
                              std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) {
    std::deque<events::CatalogChange> pending;
    {
      std::lock_guard lock(catalog_mu_);
      pending.swap(catalog_pending_);
    }
    if (pending.empty()) return true;
    const auto tenant = events::TenantId(kPlatformTenant);
    auto outstanding = std::make_shared<std::atomic<std::size_t>>(pending.size());
    auto all_ok = std::make_shared<std::atomic<bool>>(true);
    auto done = std::make_shared<std::promise<void>>();
    auto finished = done->get_future();
    for (auto& c : pending) {
      static constexpr const char* kinds[] = {"event_type_added", "event_version_added",
                                              "command_type_added", "command_type_updated"};
      const std::string kind = kinds[static_cast<int>(c.kind)];
      AppendOne a;
      a.stream = "catalog-" + c.name;
      a.tenant = std::string(kPlatformTenant);
      // One event per change, whichever replica or restart sees it.
      a.event_id =
          events::derive_event_id(
              tenant,
              events::CommandId(
                  "catalog:" + kind + ":" + c.name + ":" + std::to_string(c.schema_version) + ":" +
                  events::uuid_v5(events::kEventIdNamespace, c.json_schema + c.owner).to_string()),
              0)
              .value();
      a.type = std::string(events::kCatalogTypeRegistered);
      a.data = events::to_json(c);
      store_->call("store.append", json_message(append_request_json(a)), options_.store_timeout,
                   [this, c, outstanding, all_ok, done](broker::RpcClient::Result r) {
                     if (!r.error) {
                       const auto outcome = append_outcome(r.reply->body);
                       if (outcome == "appended" || outcome == "duplicate") {
                         ++catalog_appends_;
                       } else {
                         log::warn("registry: catalog change refused by the store",
                                   {{"name", c.name}, {"outcome", outcome}});
                         // never becomes good: not retried
                       }
                     } else {
                       all_ok->store(false);
                       std::lock_guard lock(catalog_mu_);
                       catalog_pending_.push_back(c);  // next sweep
                     }
                     if (outstanding->fetch_sub(1) == 1) done->set_value();
                   });
    }
    if (!wait) return true;
    if (finished.wait_for(timeout) != std::future_status::ready) return false;
    return all_ok->load();
  }

  RegistryOptions options_;
  events::Catalog catalog_;
  events::Catalog::ListenerId catalog_listener_ = 0;
  ExpiryPause pause_;
  UnknownInstances unknown_;
  HeartbeatTracker tracker_;

  std::shared_ptr<pg::Pool> db_;
  std::shared_ptr<pg::Pool> store_db_;
  std::unique_ptr<broker::Publisher> publisher_;
  std::unique_ptr<broker::RpcClient> store_;
  std::shared_ptr<events::HeadSignals> head_;
  events::HeadSignals::ListenerId head_listener_ = 0;
  std::unique_ptr<projections::ProjectionRunner> runner_;
  std::unique_ptr<broker::Consumer> consumer_;
  std::unique_ptr<broker::RpcServer> rpc_;
  broker::ConnectionOptions heartbeat_connection_;
  metrics::Counter* reconnects_ = nullptr;
  std::uint64_t reconnects_seen_ = 0;
  std::unique_ptr<pg::Connection> lock_connection_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  mutable std::condition_variable routes_cv_;
  bool running_ = false;
  bool route_wake_ = false;
  std::shared_ptr<const RouteTable> routes_;
  std::shared_ptr<const std::string> routes_json_;
  std::shared_ptr<const LiveMap> live_;
  std::atomic<bool> loaded_{false};
  std::atomic<bool> leader_{false};
  std::atomic<bool> stopped_{false};
  std::unordered_map<std::string, std::string> learnt_;  // route thread only

  std::mutex expiry_mu_;
  std::unordered_map<std::string, std::int64_t> expiring_;  // id -> registration position
  std::mutex catalog_mu_;
  std::mutex validate_mu_;
  std::mutex window_mu_;
  std::condition_variable window_cv_;
  std::size_t in_window_ = 0;
  std::deque<events::CatalogChange> catalog_pending_;

  std::thread route_thread_;
  std::thread flush_thread_;
  std::thread sweep_thread_;

  std::atomic<std::uint64_t> flushed_rows_{0}, flushes_{0}, expiries_sent_{0},
      expiries_appended_{0}, expiry_conflicts_{0}, register_requests_{0}, route_changes_{0},
      catalog_appends_{0};
};

Registry::Registry(RegistryOptions options) : impl_(std::make_shared<Impl>(std::move(options))) {}
Registry::~Registry() {
  impl_->stop();
}
void Registry::start() {
  try {
    impl_->start();
  } catch (...) {
    impl_->stop();
    throw;
  }
}
void Registry::stop(Deadline) noexcept {
  impl_->stop();
}
app::Health Registry::health() const {
  return impl_->health();
}
std::shared_ptr<const RouteTable> Registry::routes() const {
  return impl_->routes();
}
bool Registry::wait_for_routes(std::int64_t version, std::chrono::milliseconds timeout) const {
  return impl_->wait_for_routes(version, timeout);
}
RegistryStats Registry::stats() const {
  return impl_->stats();
}
const events::Catalog& Registry::catalog() const {
  return impl_->catalog();
}
void Registry::rebuild_read_model() {
  impl_->rebuild();
}
int Registry::read_model_generation() const {
  return impl_->generation();
}

}  // namespace sb::registry
