// The store's publisher against real PostgreSQL and RabbitMQ: events handed
// over in memory by the writer, read back from the store (before it was
// active, and when the hand-off overflows), and the prefetched next page —
// all published exactly in position order, every position once, with the
// bodies the store holds.
#include <gtest/gtest.h>

#include <future>
#include <map>
#include <mutex>

#include "switchboard/broker/consumer.hpp"
#include "switchboard/events/uuid.hpp"
#include "switchboard/shared/json.hpp"
#include "switchboard/shared/pg.hpp"
#include "switchboard/store/event_publisher.hpp"
#include "switchboard/store/schema.hpp"
#include "switchboard/store/writer.hpp"
#include "switchboard/testing/servers.hpp"

using namespace sb;
namespace tst = sb::testing;
using namespace std::chrono_literals;

namespace {

pg::ConnectOptions connect(const std::string& url) {
  pg::ConnectOptions o;
  o.url = url;
  return o;
}

events::NewEvent new_event(int n) {
  return events::NewEvent{
      .id = events::new_event_id(),
      .type = events::EventType("test.thing.happened"),
      .schema_version = 1,
      .data = events::Payload::parse(R"({"n":)" + std::to_string(n) +
                                     R"(,"text":"tab\there","nested":{"b":[1,2.5,"x"],"a":null}})"),
      .meta = events::Payload::parse(R"({"traceparent":"00-0af7651916cd43dd8448eb211c80319c-)"
                                     R"(b7ad6b7169203331-01"})"),
      .occurred_at = events::now_ms(),
      .correlation_id = std::nullopt,
      .causation_id = std::nullopt,
      .actor = std::nullopt};
}

store::AppendResult append_sync(store::Writer& w, const std::string& stream, int events, int& n) {
  store::AppendRequest r{
      events::StreamId(stream), events::ExpectedVersion::any(), events::TenantId("acme"), {}, {}};
  for (int i = 0; i < events; ++i) r.events.push_back(new_event(++n));
  std::promise<store::AppendResult> p;
  auto f = p.get_future();
  w.append(std::move(r), [&p](store::AppendResult res) { p.set_value(std::move(res)); });
  EXPECT_EQ(f.wait_for(30s), std::future_status::ready);
  return f.get();
}

struct Seen {
  std::mutex mutex;
  std::vector<std::int64_t> positions;  // in arrival order
  std::map<std::int64_t, std::string> bodies;
  std::size_t size() {
    std::lock_guard lock(mutex);
    return positions.size();
  }
};

}  // namespace

TEST(StorePublisher, HandOffReadBackAndOverflowPublishEveryPositionInOrder) {
  const auto db_url = tst::fresh_database("storepub");
  const auto amqp_url = tst::fresh_vhost("storepub");
  pg::migrate(connect(db_url), pg::store_migrations());
  int n = 0;

  // 1. Stored before any publisher runs: read back from the store, across
  //    several pages (page 40) with the prefetcher.
  {
    store::WriterOptions wo;
    wo.connection = connect(db_url);
    store::Writer w(wo, {});
    w.start();
    ASSERT_TRUE(tst::wait_until([&] { return w.active(); }, 10s));
    for (int i = 0; i < 30; ++i) {
      ASSERT_EQ(append_sync(w, "s-" + std::to_string(i % 7), 10, n).kind,
                store::AppendResult::Kind::appended);
    }
  }
  const std::int64_t stored_first = n;  // 300

  broker::ConnectionOptions amqp;
  amqp.url = amqp_url;
  broker::QueueSpec q;
  q.name = "storepub.sink";
  broker::ConsumerOptions co;
  co.connection = amqp;
  co.workers = 1;  // arrival order is delivery order
  co.topology = broker::platform_topology();
  co.topology.queues.push_back(q);
  co.topology.bindings.push_back({q.name, "sb.events", "#"});
  broker::Consumer consumer(co);
  Seen seen;
  broker::ConsumeOptions copts;
  copts.prefetch = 200;
  copts.retry.enabled = false;
  consumer.consume(q, copts, [&](const broker::Delivery& d) {
    auto pos = d.message.header_int("position");
    ASSERT_TRUE(pos.has_value());
    std::lock_guard lock(seen.mutex);
    seen.positions.push_back(*pos);
    seen.bodies[*pos] = d.message.body;
  });

  store::EventPublisherOptions po;
  po.database = connect(db_url);
  po.broker = amqp;
  po.page_size = 40;
  po.handoff_capacity = 50;
  po.prefetch = true;
  po.checkpoint_interval = 20ms;
  store::EventPublisher publisher(po);
  publisher.start();
  store::WriterOptions wo;
  wo.connection = connect(db_url);
  store::Writer writer(
      wo, {.on_active = [&](std::int64_t h) { publisher.on_active(h); },
           .on_standby = [&] { publisher.on_standby(); },
           .on_commit = {},
           .on_commit_batch = [&](store::EventPublisher::Batch b,
                                  std::int64_t h) { publisher.on_commit(std::move(b), h); }});
  writer.start();
  ASSERT_TRUE(tst::wait_until([&] { return publisher.published() == stored_first; }, 30s));
  auto s1 = publisher.stats();
  EXPECT_EQ(s1.sent_from_store, static_cast<std::uint64_t>(stored_first));
  EXPECT_EQ(s1.sent_from_memory, 0U);

  // 2. Live, caught up, batches that fit: handed over in memory. The first
  //    one after catching up is always taken from memory.
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(append_sync(writer, "live-" + std::to_string(i % 3), 5, n).kind,
              store::AppendResult::Kind::appended);
  }
  ASSERT_TRUE(tst::wait_until([&] { return publisher.published() == n; }, 30s));
  auto s2 = publisher.stats();
  EXPECT_GE(s2.sent_from_memory, 5U);
  EXPECT_EQ(s2.sent_from_memory + s2.sent_from_store, static_cast<std::uint64_t>(n));

  // 3. A batch larger than the hand-off: not kept, read back instead; the
  //    next small batch is kept again.
  ASSERT_EQ(append_sync(writer, "big", 120, n).kind, store::AppendResult::Kind::appended);
  ASSERT_EQ(append_sync(writer, "small", 3, n).kind, store::AppendResult::Kind::appended);
  ASSERT_TRUE(tst::wait_until([&] { return publisher.published() == n; }, 30s));
  auto s3 = publisher.stats();
  EXPECT_GE(s3.handoff_overflows, 1U);
  EXPECT_GE(s3.sent_from_store, s2.sent_from_store + 120);
  EXPECT_EQ(s3.sent_from_memory + s3.sent_from_store, static_cast<std::uint64_t>(n));

  // The saved checkpoint reaches the contiguous confirmed prefix.
  pg::Connection c(connect(db_url));
  auto saved = [&] {
    return c.exec("SELECT position FROM store_positions WHERE name = 'published'")
        .one()[0]
        .get<std::int64_t>();
  };
  EXPECT_TRUE(tst::wait_until([&] { return saved() == n; }, 10s)) << "saved " << saved();

  // Every position exactly once (nothing was rewound), in position order.
  ASSERT_TRUE(tst::wait_until([&] { return seen.size() >= static_cast<std::size_t>(n); }, 30s));
  writer.stop(std::chrono::steady_clock::now());
  publisher.stop(std::chrono::steady_clock::now());
  std::lock_guard lock(seen.mutex);
  ASSERT_EQ(seen.positions.size(), static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < seen.positions.size(); ++i) {
    ASSERT_EQ(seen.positions[i], static_cast<std::int64_t>(i + 1)) << "arrival " << i;
  }

  // Each body is the stored event, whichever way it was sent.
  auto rows = c.exec(
      "SELECT position, id::text, stream, version, data::text, meta::text FROM events ORDER BY "
      "position");
  ASSERT_EQ(rows.size(), static_cast<std::size_t>(n));
  for (const auto& row : rows) {
    auto pos = row[0].get<std::int64_t>();
    auto body = json::parse(seen.bodies.at(pos));
    EXPECT_EQ(json::require_int64(body, "position"), pos);
    EXPECT_EQ(json::require_string(body, "id"), row[1].get<std::string>());
    EXPECT_EQ(json::require_string(body, "stream"), row[2].get<std::string>());
    EXPECT_EQ(json::require_int64(body, "version"), row[3].get<std::int64_t>());
    auto data = json::parse(row[4].get<std::string>());
    auto meta = json::parse(row[5].get<std::string>());
    EXPECT_TRUE(json::require(body, "data") == data) << "position " << pos;
    EXPECT_TRUE(json::require(body, "meta") == meta) << "position " << pos;
  }
}
