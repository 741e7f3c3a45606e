#include "switchboard/store/service.hpp"

#include <algorithm>
#include <mutex>

#include "switchboard/events/platform_types.hpp"
#include "switchboard/events/reader.hpp"
#include "switchboard/shared/log.hpp"
#include "switchboard/shared/pg_migrations.hpp"
#include "switchboard/shared/process.hpp"
#include "switchboard/store/endpoints.hpp"
#include "switchboard/store/event_publisher.hpp"
#include "switchboard/store/read_endpoint.hpp"
#include "switchboard/store/retention.hpp"
#include "switchboard/store/schema.hpp"
#include "switchboard/store/writer.hpp"

namespace sb::store {
namespace {

// Applies the store's migrations before anything else starts.
class Migrations : public app::Component {
 public:
  explicit Migrations(pg::ConnectOptions db) : db_(std::move(db)) {}
  std::string_view name() const override { return "store-migrations"; }
  void start() override {
    auto report = pg::migrate(db_, pg::store_migrations());
    log::info("store schema ready",
              {{"applied", report.applied.size()}, {"already_applied", report.already_applied}});
  }

 private:
  pg::ConnectOptions db_;
};

// Owns the catalog the store validates appends against: the platform's types
// plus every type registered at run time, learnt from the committed
// catalog.type.registered events — all of them at start, those committed
// while this store was standby on activation, and each new one as it commits.
class CatalogHolder : public app::Component {
 public:
  explicit CatalogHolder(pg::ConnectOptions db)
      : db_(std::move(db)), catalog_(events::builtin_catalog()) {}
  std::string_view name() const override { return "catalog"; }
  void start() override { catch_up(); }
  events::Catalog& catalog() { return catalog_; }

  void catch_up() {
    pg::Connection c(db_);
    std::lock_guard lock(mutex_);
    auto rows =
        c.exec(pg::Sql::trusted(std::string("SELECT ") + events::kEventColumns +
                                " FROM events WHERE type = $1 AND position > $2 ORDER BY position"),
               {std::string(events::kCatalogTypeRegistered), applied_});
    for (const auto& row : rows) apply(events::event_from_row(row));
  }

  void on_commit(const std::vector<events::Event>& committed) {
    std::lock_guard lock(mutex_);
    for (const auto& e : committed) {
      if (e.type.value() == events::kCatalogTypeRegistered) apply(e);
    }
  }

 private:
  void apply(const events::Event& e) {
    try {
      events::apply_catalog_change(catalog_, e.data.value());
    } catch (const std::exception& ex) {
      // Stored already, so it is history: say so loudly, keep serving.
      log::error("catalog change not applied",
                 {{"position", e.position.value()}, {"error", ex.what()}});
    }
    applied_ = std::max(applied_, e.position.value());
  }

  pg::ConnectOptions db_;
  events::Catalog catalog_;
  std::mutex mutex_;
  std::int64_t applied_ = 0;
};

}  // namespace

config::Schema config_schema() {
  auto s = app::common_schema("store");
  s.optional("http.host", config::Type::string, "127.0.0.1", "admin HTTP address")
      .optional("http.port", config::Type::integer, "0", "admin HTTP port (0: any free port)")
      .optional("store.lock_key", config::Type::integer, "96301182",
                "advisory lock of the active store")
      .optional("store.max_batch_events", config::Type::integer, "2000", "events per group commit")
      .optional("store.max_queued_appends", config::Type::integer, "20000", "bounded append queue")
      .optional("store.rpc_workers", config::Type::integer, "4", "RPC decode threads")
      .optional("store.publish_window", config::Type::integer, "2048", "unconfirmed events at most")
      .optional("store.retention_interval", config::Type::duration, "10s",
                "how often retention truncates and scavenges")
      .optional("store.catalog.test_types", config::Type::boolean, "false",
                "accept test.* event types with any data (tests and benchmarks only)");
  return s;
}

void build(app::Lifecycle& lifecycle, const config::Config& cfg) {
  if (!cfg.has("postgres.url")) throw config::Error("postgres.url", "required by the store");
  if (!cfg.has("rabbitmq.url")) throw config::Error("rabbitmq.url", "required by the store");
  pg::ConnectOptions db;
  db.url = cfg.get_string("postgres.url");
  db.application_name = "sb-store";
  broker::ConnectionOptions amqp;
  amqp.url = cfg.get_string("rabbitmq.url");
  amqp.heartbeat = std::chrono::seconds(5);

  app::AdminOptions http;
  http.host = cfg.get_string("http.host");
  http.port = static_cast<int>(cfg.get_int("http.port"));
  lifecycle.emplace<app::AdminServer>(http, lifecycle, app::dependency_probes(cfg));
  lifecycle.emplace<Migrations>(db);
  // Reads need no lock: standbys serve them too.
  lifecycle.emplace<ReadEndpoint>(amqp, db);
  auto& catalog_holder = lifecycle.emplace<CatalogHolder>(db);
  auto& catalog = catalog_holder.catalog();
  if (cfg.get_bool("store.catalog.test_types")) {
    if (cfg.get_string("mode") == "production") {
      throw config::Error("store.catalog.test_types", "is not allowed in production mode");
    }
    for (const char* t : {"test.thing.happened", "test.thing.changed", "test.other.happened"}) {
      catalog.register_event_type({events::EventType(t),
                                   "tests",
                                   events::Persistence::stored,
                                   {{1, R"({"type":"object"})", {}}},
                                   "test type"});
    }
  }

  EventPublisherOptions po;
  po.database = db;
  po.broker = amqp;
  po.window = static_cast<std::size_t>(cfg.get_int("store.publish_window"));
  auto& publisher = lifecycle.emplace<EventPublisher>(po);

  WriterOptions wo;
  wo.connection = db;
  wo.connection.application_name = "sb-store-writer";
  wo.lock_key = cfg.get_int("store.lock_key");
  wo.max_batch_events = static_cast<std::size_t>(cfg.get_int("store.max_batch_events"));
  wo.max_queued_requests = static_cast<std::size_t>(cfg.get_int("store.max_queued_appends"));
  // The endpoints are created after the writer; the listener reaches them
  // through this slot.
  auto endpoints_slot = std::make_shared<Endpoints*>(nullptr);
  CommitListener listener{
      .on_active =
          [&publisher, &catalog_holder, endpoints_slot](std::int64_t head) {
            // Types registered while this store was standby, before it serves.
            try {
              catalog_holder.catch_up();
            } catch (const std::exception& e) {
              log::error("catalog catch-up failed", {{"error", e.what()}});
            }
            publisher.on_active(head);
            if (*endpoints_slot != nullptr) (*endpoints_slot)->on_writer_state_changed();
          },
      .on_standby =
          [&publisher, endpoints_slot] {
            publisher.on_standby();
            if (*endpoints_slot != nullptr) (*endpoints_slot)->on_writer_state_changed();
          },
      .on_commit = {},
      .on_commit_batch =
          [&publisher, &catalog_holder](EventPublisher::Batch committed, std::int64_t head) {
            catalog_holder.on_commit(*committed);
            publisher.on_commit(std::move(committed), head);
          }};
  auto& writer = lifecycle.emplace<Writer>(wo, listener);

  RetentionOptions ro;
  ro.database = db;
  ro.interval = cfg.get_duration("store.retention_interval");
  lifecycle.emplace<Retention>(ro, [&writer] { return writer.active(); });

  EndpointOptions eo;
  eo.broker = amqp;
  eo.rpc_workers = static_cast<std::size_t>(cfg.get_int("store.rpc_workers"));
  *endpoints_slot = &lifecycle.emplace<Endpoints>(eo, writer, catalog);
}

int main(int argc, const char* const* argv) {
  return app::run_process("store", config_schema(), argc, argv, build);
}

}  // namespace sb::store
