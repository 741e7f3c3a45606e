// Checkpointed subscriptions and the reader against a real PostgreSQL:
// filters, filtered-out positions, failure policies, reset/replay,
// partition ownership across two replicas, wait_for_position.
#include <atomic>
#include <map>
#include <thread>

#include "support.hpp"

namespace sb::subtest {
namespace {

using Clock = std::chrono::steady_clock;

void append_mix(store::Writer& w, int streams, int rounds) {
  for (int r = 0; r < rounds; ++r) {
    for (int s = 0; s < streams; ++s) {
      append(w, "acct-" + std::to_string(s),
             {new_event("bank.account.opened"), new_event("bank.noise.ticked")},
             s % 2 == 0 ? "acme" : "globex");
    }
  }
}

TEST(Reader, FiltersPagesAndStreams) {
  Db db;
  auto writer = start_writer(db.url);
  append_mix(*writer, 4, 3);  // 24 events, positions 1..24
  events::EventReader reader(*db.pool);
  EXPECT_EQ(reader.head(), events::Position(24));

  events::Filter f;
  f.types = {"bank.*.opened"};
  auto page = reader.read_all(events::Position(0), f, 5);
  ASSERT_EQ(page.events.size(), 5u);
  EXPECT_EQ(page.scanned_to, page.events.back().position) << "a full page ends at its last row";
  for (const auto& e : page.events) EXPECT_EQ(e.type.value(), "bank.account.opened");
  page = reader.read_all(events::Position(0), f, 100);
  EXPECT_EQ(page.events.size(), 12u);
  EXPECT_EQ(page.scanned_to, events::Position(24)) << "a short page scans to the head";
  EXPECT_TRUE(page.at_head());

  f.tenant = events::TenantId("globex");
  EXPECT_EQ(reader.read_all(events::Position(0), f, 100).events.size(), 6u);
  events::Filter hash;
  hash.types = {"#.ticked"};
  EXPECT_EQ(reader.read_all(events::Position(0), hash, 100).events.size(), 12u);
  events::Filter none;
  none.types = {"bank.*"};
  EXPECT_TRUE(reader.read_all(events::Position(0), none, 100).events.empty());
  events::Filter time;
  time.recorded_to = events::parse_rfc3339("2000-01-01T00:00:00Z");
  EXPECT_TRUE(reader.read_all(events::Position(0), time, 100).events.empty());
  time.recorded_to = events::now_ms() + std::chrono::hours(1);
  EXPECT_EQ(reader.read_all(events::Position(0), time, 100).events.size(), 24u);

  // The SQL partition expression agrees with partition_of.
  for (int p = 0; p < 3; ++p) {
    events::Filter pf;
    pf.partition = events::Partition{p, 3};
    for (const auto& e : reader.read_all(events::Position(0), pf, 100).events) {
      EXPECT_EQ(events::partition_of(e.stream.value(), 3), p) << e.stream;
    }
  }

  // A bounded scan window makes progress over long filtered-out stretches.
  events::EventReader windowed(*db.pool, nullptr, events::ReadOptions{.scan_window = 5});
  auto w = windowed.read_all(events::Position(0), none, 100);
  EXPECT_TRUE(w.events.empty());
  EXPECT_EQ(w.scanned_to, events::Position(5));
  EXPECT_FALSE(w.at_head());

  auto fwd = reader.read_stream(events::StreamId("acct-1"), events::StreamVersion(1),
                                events::Direction::forward, 3);
  ASSERT_EQ(fwd.events.size(), 3u);
  EXPECT_EQ(fwd.events[0].version, events::StreamVersion(1));
  EXPECT_EQ(fwd.last_version, events::StreamVersion(5));
  auto back = reader.read_stream(events::StreamId("acct-1"), events::StreamVersion(5),
                                 events::Direction::backward, 2);
  ASSERT_EQ(back.events.size(), 2u);
  EXPECT_EQ(back.events[0].version, events::StreamVersion(5));
  EXPECT_EQ(back.events[1].version, events::StreamVersion(4));
  EXPECT_FALSE(reader
                   .read_stream(events::StreamId("nope"), events::StreamVersion(0),
                                events::Direction::forward, 10)
                   .last_version.has_value());
  auto at = reader.read_positions({events::Position(3), events::Position(1), events::Position(99)});
  ASSERT_EQ(at.size(), 2u);
  EXPECT_EQ(at[0].position, events::Position(1));
}

TEST(Checkpointed, FilteredOutPositionsAdvanceTheCheckpoint) {
  Db db;
  auto writer = start_writer(db.url);
  append_mix(*writer, 3, 2);  // 12 events, none of type x.*.*
  std::atomic<int> calls{0};
  auto o = sub_options(db, "nothing");
  o.filter.types = {"x.*.*"};
  events::CheckpointedSubscription sub(o, events::make_handler([&](pg::Transaction&, const auto&) {
                                         ++calls;
                                         return events::HandleResult::handled;
                                       }));
  sub.start();
  ASSERT_TRUE(sub.wait_for_position(events::Position(12), Clock::now() + 20s));
  EXPECT_EQ(calls.load(), 0);
  EXPECT_EQ(db.scalar("SELECT position FROM subscription_checkpoints WHERE name = 'nothing'"), 12);
  auto st = sub.status();
  EXPECT_EQ(st.lag_events, 0);
  EXPECT_TRUE(tst::wait_until(
      [&] { return sub.status().state == events::SubscriptionState::running; }, 5s));
  // More filtered-out events: still advances, live.
  append(*writer, "acct-9", {new_event("bank.noise.ticked")});
  ASSERT_TRUE(sub.wait_for_position(events::Position(13), Clock::now() + 20s));
  EXPECT_EQ(calls.load(), 0);
}

TEST(Checkpointed, FailingHandlerRetriesThenParksWithTheErrorVisible) {
  Db db;
  auto writer = start_writer(db.url);
  append_mix(*writer, 3, 2);  // 12 events
  std::atomic<bool> broken{true};
  std::atomic<int> attempts_on_5{0};
  auto o = sub_options(db, "fragile");
  auto rec = recorder("fragile");
  events::CheckpointedSubscription sub(
      o, events::make_handler([&](pg::Transaction& tx, const events::Event& e) {
        if (e.position == events::Position(5) && broken) {
          ++attempts_on_5;
          throw std::runtime_error("cannot handle five");
        }
        return rec(tx, e);
      }));
  sub.start();
  ASSERT_TRUE(tst::wait_until(
      [&] { return sub.status().state == events::SubscriptionState::parked; }, 20s));
  auto st = sub.status();
  EXPECT_EQ(attempts_on_5.load(), 3) << "retried in-process up to the configured attempts";
  ASSERT_TRUE(st.last_error.has_value());
  EXPECT_NE(st.last_error->find("cannot handle five"), std::string::npos);
  EXPECT_EQ(st.failed_position, events::Position(5));
  EXPECT_LT(st.position, events::Position(5)) << "never skipped silently";
  EXPECT_EQ(sub.health().state, app::HealthState::degraded);
  pg::Connection c(connect(db.url));
  auto row = c.exec(
                  "SELECT state, last_error, failed_position FROM subscription_checkpoints "
                  "WHERE name = 'fragile'")
                 .one();
  EXPECT_EQ(row[0].get<std::string>(), "parked");
  EXPECT_NE(row[1].get<std::string>().find("cannot handle five"), std::string::npos);
  EXPECT_EQ(row[2].get<std::int64_t>(), 5);
  EXPECT_EQ(db.scalar("SELECT count(*) FROM seen WHERE position >= 5"), 0);
  // Stays parked (no further attempts) until resumed.
  const int attempts = attempts_on_5.load();
  EXPECT_FALSE(sub.wait_for_position(events::Position(12), Clock::now() + 300ms));
  EXPECT_EQ(attempts_on_5.load(), attempts);

  broken = false;
  sub.resume();
  ASSERT_TRUE(sub.wait_for_position(events::Position(12), Clock::now() + 20s));
  EXPECT_EQ(db.scalar("SELECT count(*) FROM seen"), 12);
  EXPECT_EQ(db.scalar("SELECT count(DISTINCT position) FROM seen"), 12);
  EXPECT_FALSE(sub.status().last_error.has_value());
}

TEST(Checkpointed, SkipAndRecordPolicyRecordsTheSkippedEvent) {
  Db db;
  auto writer = start_writer(db.url);
  append_mix(*writer, 3, 2);  // 12 events
  auto o = sub_options(db, "skipper");
  o.on_failure = events::FailurePolicy::skip_and_record;
  auto rec = recorder("skipper");
  events::CheckpointedSubscription sub(
      o, events::make_handler([&](pg::Transaction& tx, const events::Event& e) {
        if (e.position == events::Position(7)) throw std::runtime_error("poison seven");
        return rec(tx, e);
      }));
  sub.start();
  ASSERT_TRUE(sub.wait_for_position(events::Position(12), Clock::now() + 20s));
  EXPECT_EQ(db.scalar("SELECT count(*) FROM seen"), 11);
  EXPECT_EQ(db.scalar("SELECT count(*) FROM seen WHERE position = 7"), 0);
  pg::Connection c(connect(db.url));
  auto row =
      c.exec("SELECT position, error FROM subscription_skipped WHERE name = 'skipper'").one();
  EXPECT_EQ(row[0].get<std::int64_t>(), 7);
  EXPECT_NE(row[1].get<std::string>().find("poison seven"), std::string::npos);
  EXPECT_EQ(sub.status().skipped, 1u);
}

TEST(Checkpointed, ResetReplaysFromThePosition) {
  Db db;
  auto writer = start_writer(db.url);
  append_mix(*writer, 2, 3);  // 12 events
  auto o = sub_options(db, "replayer");
  events::CheckpointedSubscription sub(o, events::make_handler(recorder("replayer")));
  sub.start();
  ASSERT_TRUE(sub.wait_for_position(events::Position(12), Clock::now() + 20s));
  EXPECT_EQ(db.scalar("SELECT count(*) FROM seen"), 12);
  sub.reset(events::Position(4));
  ASSERT_TRUE(tst::wait_until([&] { return db.scalar("SELECT count(*) FROM seen") == 20; }, 20s));
  EXPECT_EQ(
      db.scalar("SELECT min(position) FROM seen WHERE seq > (SELECT min(seq) + 11 FROM seen)"), 5);
  sub.reset(events::Position(0));
  ASSERT_TRUE(tst::wait_until([&] { return db.scalar("SELECT count(*) FROM seen") == 32; }, 20s));
  // An admin reset from outside the process is noticed too.
  ASSERT_TRUE(events::reset_checkpoint(*db.pool, "replayer", 0, events::Position(10)));
  ASSERT_TRUE(tst::wait_until([&] { return db.scalar("SELECT count(*) FROM seen") == 34; }, 20s));
  EXPECT_FALSE(events::reset_checkpoint(*db.pool, "nobody", 0, events::Position(0)));
}

TEST(Checkpointed, TwoReplicasOwnEachPartitionOnceAndKeepStreamOrder) {
  Db db;
  auto writer = start_writer(db.url);
  constexpr int kPartitions = 3;
  std::vector<std::unique_ptr<events::CheckpointedSubscription>> subs;
  for (const std::string replica : {"r1", "r2"}) {
    for (int p = 0; p < kPartitions; ++p) {
      auto o = sub_options(db, "parts");
      o.partition = events::Partition{p, kPartitions};
      o.owner = replica;
      o.page_size = 7;
      subs.push_back(std::make_unique<events::CheckpointedSubscription>(
          o, events::make_handler(recorder(replica, p))));
      subs.back()->start();
    }
  }
  std::thread load([&] { append_mix(*writer, 20, 10); });  // 400 events on 20 streams
  // Kill one owner mid-way: its standby takes over from the checkpoint.
  ASSERT_TRUE(tst::wait_until([&] { return db.scalar("SELECT count(*) FROM seen") > 100; }, 30s));
  int killed = -1;
  for (std::size_t i = 0; i < subs.size(); ++i) {
    if (subs[i]->status().owner) {
      subs[i]->stop(Clock::now() + 5s);
      killed = static_cast<int>(i);
      break;
    }
  }
  ASSERT_GE(killed, 0);
  load.join();
  const events::Position head(400);
  for (int p = 0; p < kPartitions; ++p) {
    ASSERT_TRUE(tst::wait_until(
        [&] {
          for (const auto& s : subs) {
            auto st = s->status();
            if (st.partition.index == p && st.owner && st.position >= head) return true;
          }
          return false;
        },
        30s))
        << "partition " << p;
  }
  int owners = 0;
  for (const auto& s : subs) owners += s->status().owner ? 1 : 0;
  EXPECT_EQ(owners, kPartitions) << "exactly one owner per partition";
  EXPECT_EQ(db.scalar("SELECT count(*) FROM seen"), 400);
  EXPECT_EQ(db.scalar("SELECT count(DISTINCT position) FROM seen"), 400);
  // Every stream was handled in version order, each within one partition.
  EXPECT_EQ(db.scalar("SELECT count(*) FROM (SELECT version < lag(version) OVER (PARTITION BY "
                      "stream ORDER BY seq) AS back FROM seen) x WHERE back"),
            0);
  EXPECT_EQ(db.scalar("SELECT count(*) FROM (SELECT stream FROM seen GROUP BY stream HAVING "
                      "count(DISTINCT partition) > 1) x"),
            0);
  pg::Connection c(connect(db.url));
  for (const auto& row : c.exec("SELECT DISTINCT stream, partition FROM seen")) {
    EXPECT_EQ(events::partition_of(row[0].get<std::string>(), kPartitions), row[1].get<int>());
  }
  auto tx = c.begin();
  EXPECT_EQ(events::min_checkpoint(tx, "parts"), head);
  EXPECT_EQ(events::read_checkpoints(tx, "parts").size(), static_cast<std::size_t>(kPartitions));
}

TEST(Checkpointed, PartitionCountMismatchIsRefused) {
  Db db;
  auto o = sub_options(db, "fixed");
  o.partition = events::Partition{0, 2};
  events::CheckpointedSubscription a(o, events::make_handler(recorder("a")));
  a.start();
  o.partition = events::Partition{0, 3};
  events::CheckpointedSubscription b(o, events::make_handler(recorder("b")));
  EXPECT_THROW(b.start(), events::Error);
}

TEST(Checkpointed, WaitForPosition) {
  Db db;
  auto writer = start_writer(db.url);
  auto o = sub_options(db, "waiter");
  o.filter.types = {"bank.account.*"};
  events::CheckpointedSubscription sub(o, events::make_handler(recorder("waiter")));
  sub.start();
  auto r =
      append(*writer, "acct-1", {new_event("bank.noise.ticked"), new_event("bank.noise.ticked")});
  const events::Position p(r.positions.back());
  EXPECT_TRUE(sub.wait_for_position(p, Clock::now() + 20s)) << "filtered-out positions count";
  EXPECT_FALSE(sub.wait_for_position(events::Position(p.value() + 1000), Clock::now() + 200ms));
  pg::Connection c(connect(db.url));
  auto tx = c.begin();
  EXPECT_GE(events::min_checkpoint(tx, "waiter").value(), p);
  EXPECT_FALSE(events::min_checkpoint(tx, "unknown").has_value());
}

}  // namespace
}  // namespace sb::subtest
