#pragma once
// Helpers of the subscription integration tests: a fresh store database
// with the real single writer, pools, and a recording handler.

#include <gtest/gtest.h>

#include <future>
#include <memory>
#include <string>
#include <vector>

#include "switchboard/broker/broker.hpp"
#include "switchboard/events/head_signals.hpp"
#include "switchboard/events/reader.hpp"
#include "switchboard/events/subscription.hpp"
#include "switchboard/events/uuid.hpp"
#include "switchboard/shared/pg.hpp"
#include "switchboard/store/schema.hpp"
#include "switchboard/store/writer.hpp"
#include "switchboard/testing/servers.hpp"

namespace sb::subtest {

using namespace std::chrono_literals;
namespace tst = sb::testing;

inline pg::ConnectOptions connect(const std::string& url) {
  pg::ConnectOptions o;
  o.url = url;
  return o;
}

inline std::shared_ptr<pg::Pool> make_pool(const std::string& url, std::size_t size = 8) {
  pg::PoolOptions o;
  o.connection = connect(url);
  o.max_size = size;
  return std::make_shared<pg::Pool>(o);
}

/// A fresh database with the store's and the subscriptions' tables, and a
/// `seen` table that handlers record into (in their transaction).
struct Db {
  std::string url = tst::fresh_database("subs");
  std::shared_ptr<pg::Pool> pool;
  Db() {
    pg::migrate(connect(url), pg::store_migrations());
    pg::migrate(connect(url), pg::subscriptions_migrations());
    pool = make_pool(url, 16);
    pg::Connection c(connect(url));
    c.exec(
        "CREATE TABLE seen (seq bigserial PRIMARY KEY, who text NOT NULL, partition int NOT NULL, "
        "position bigint NOT NULL, stream text NOT NULL, version bigint NOT NULL, type text NOT "
        "NULL)");
  }
  std::int64_t scalar(const pg::Sql& sql, const pg::Params& params = {}) const {
    pg::Connection c(connect(url));
    return c.exec(sql, params).one()[0].get<std::int64_t>();
  }
};

inline events::NewEvent new_event(const std::string& type) {
  return events::NewEvent{.id = events::new_event_id(),
                          .type = events::EventType(type),
                          .schema_version = 1,
                          .data = events::Payload::parse(R"({"n":1})"),
                          .meta = events::Payload(),
                          .occurred_at = events::now_ms(),
                          .correlation_id = std::nullopt,
                          .causation_id = std::nullopt,
                          .actor = std::nullopt};
}

inline std::unique_ptr<store::Writer> start_writer(const std::string& url,
                                                   store::CommitListener listener = {}) {
  store::WriterOptions o;
  o.connection = connect(url);
  auto w = std::make_unique<store::Writer>(o, std::move(listener));
  w->start();
  EXPECT_TRUE(tst::wait_until([&] { return w->active(); }, 10s));
  return w;
}

inline store::AppendResult append(store::Writer& w, const std::string& stream,
                                  std::vector<events::NewEvent> evs,
                                  const std::string& tenant = "acme") {
  std::promise<store::AppendResult> p;
  auto f = p.get_future();
  w.append({events::StreamId(stream), events::ExpectedVersion::any(), events::TenantId(tenant),
            std::move(evs)},
           [&p](store::AppendResult r) { p.set_value(std::move(r)); });
  EXPECT_EQ(f.wait_for(30s), std::future_status::ready);
  auto r = f.get();
  EXPECT_EQ(r.kind, store::AppendResult::Kind::appended) << r.message;
  return r;
}

/// Records every event into `seen` in the page's transaction.
inline events::EventHandlerFn recorder(std::string who, int partition = 0) {
  return [who = std::move(who), partition](pg::Transaction& tx, const events::Event& e) {
    tx.exec(
        "INSERT INTO seen (who, partition, position, stream, version, type) VALUES ($1, $2, $3, "
        "$4, $5, $6)",
        {who, partition, e.position.value(), e.stream.value(), e.version.value(), e.type.value()});
    return events::HandleResult::handled;
  };
}

inline events::CheckpointedSubscriptionOptions sub_options(const Db& db, const std::string& name) {
  events::CheckpointedSubscriptionOptions o;
  o.name = name;
  o.store = db.pool;
  o.poll_interval = 50ms;
  o.standby_poll = 50ms;
  o.page_size = 100;
  o.retry.initial = 10ms;
  o.retry.max = 50ms;
  o.retry.attempts = 3;
  return o;
}

inline broker::ConnectionOptions amqp(const std::string& url, const std::string& name) {
  broker::ConnectionOptions o;
  o.url = url;
  o.name = name;
  o.heartbeat = std::chrono::seconds(2);
  o.connect_timeout = 2000ms;
  o.reconnect_min = 100ms;
  o.reconnect_max = 1000ms;
  return o;
}

}  // namespace sb::subtest
