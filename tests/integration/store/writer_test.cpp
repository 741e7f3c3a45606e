// The single writer against a real PostgreSQL: group commit under concurrent
// writers with real conflicts, gap-free positions, contiguous stream
// versions, idempotent retries, tenant ownership of streams.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <random>
#include <thread>

#include "switchboard/events/uuid.hpp"
#include "switchboard/shared/pg.hpp"
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

store::WriterOptions writer_options(const std::string& url) {
  store::WriterOptions o;
  o.connection = connect(url);
  return o;
}

struct StoreDb {
  std::string url = tst::fresh_database("store");
  StoreDb() { pg::migrate(connect(url), pg::store_migrations()); }
};

events::NewEvent new_event(std::string type = "test.thing.happened") {
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

store::AppendResult append_sync(store::Writer& w, store::AppendRequest r) {
  std::promise<store::AppendResult> p;
  auto f = p.get_future();
  w.append(std::move(r), [&p](store::AppendResult res) { p.set_value(std::move(res)); });
  EXPECT_EQ(f.wait_for(30s), std::future_status::ready);
  return f.get();
}

store::AppendRequest request(const std::string& stream, events::ExpectedVersion e,
                             std::vector<events::NewEvent> evs,
                             const std::string& tenant = "acme") {
  return {events::StreamId(stream), e, events::TenantId(tenant), std::move(evs), {}};
}

std::unique_ptr<store::Writer> start_writer(const std::string& url, store::CommitListener l = {}) {
  auto w = std::make_unique<store::Writer>(writer_options(url), std::move(l));
  w->start();
  EXPECT_TRUE(tst::wait_until([&] { return w->active(); }, 10s));
  return w;
}

}  // namespace

TEST(StoreWriter, ConcurrentWritersGetGapFreePositionsAndContiguousVersions) {
  StoreDb db;
  std::atomic<std::int64_t> committed_via_listener{0};
  auto writer = start_writer(
      db.url, {.on_active = {}, .on_standby = {}, .on_commit = [&](const auto& rows, std::int64_t) {
                 committed_via_listener += static_cast<std::int64_t>(rows.size());
               }});
  constexpr int kWriters = 8;
  constexpr int kTotal = 100'000;
  constexpr int kStreams = 50;  // overlapping: every writer hits every stream
  std::atomic<int> stored{0};
  std::atomic<int> conflicts{0};
  std::atomic<int> other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kWriters; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t));
      // Each writer keeps what it believes each stream's version is, like an
      // aggregate loaded a moment ago; stale beliefs produce real conflicts.
      std::vector<std::int64_t> belief(kStreams, -1);
      while (stored.load() < kTotal) {
        auto s = static_cast<std::size_t>(rng() % kStreams);
        int n = 1 + static_cast<int>(rng() % 20);
        std::vector<events::NewEvent> evs;
        for (int i = 0; i < n; ++i) evs.push_back(new_event());
        auto expected = belief[s] < 0
                            ? events::ExpectedVersion::no_stream()
                            : events::ExpectedVersion::exact(events::StreamVersion(belief[s]));
        auto res =
            append_sync(*writer, request("order-" + std::to_string(s), expected, std::move(evs)));
        if (res.kind == store::AppendResult::Kind::appended) {
          stored += n;
          belief[s] = res.last_version;
        } else if (res.kind == store::AppendResult::Kind::conflict) {
          ++conflicts;
          belief[s] = res.current_version;  // reload and try again, as a command handler would
        } else {
          ++other;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  auto stats = writer->stats();
  writer.reset();

  pg::Connection c(connect(db.url));
  auto total = c.exec("SELECT count(*), min(position), max(position) FROM events").one();
  auto n = total[0].get<std::int64_t>();
  EXPECT_EQ(other.load(), 0);
  EXPECT_GE(n, kTotal);
  EXPECT_EQ(n, stored.load());
  EXPECT_EQ(total[1].get<std::int64_t>(), 1);
  EXPECT_EQ(total[2].get<std::int64_t>(), n) << "positions must be exactly 1..N";
  EXPECT_EQ(committed_via_listener.load(), n);
  auto gaps = c.exec(
                   "SELECT count(*) FROM (SELECT stream, count(*) AS c, min(version) AS lo, "
                   "max(version) AS hi FROM events GROUP BY stream) s WHERE lo <> 0 OR hi <> c - 1")
                  .one()[0]
                  .get<std::int64_t>();
  EXPECT_EQ(gaps, 0) << "every stream's versions must be 0..count-1";
  auto mismatched =
      c.exec(
           "SELECT count(*) FROM streams s WHERE last_version <> (SELECT max(version) "
           "FROM events e WHERE e.stream = s.stream)")
          .one()[0]
          .get<std::int64_t>();
  EXPECT_EQ(mismatched, 0);
  auto recorded_monotonic = c.exec(
                                 "SELECT count(*) FROM (SELECT recorded_at < lag(recorded_at) OVER "
                                 "(ORDER BY position) AS back FROM events) x WHERE back")
                                .one()[0]
                                .get<std::int64_t>();
  EXPECT_EQ(recorded_monotonic, 0) << "recorded_at must follow position order";
  double per_tx = static_cast<double>(stats.requests - stats.conflicts) /
                  static_cast<double>(std::max<std::uint64_t>(stats.batches, 1));
  std::printf(
      "writers=%d events=%lld appends=%llu conflicts=%d (%.1f%% of appends) transactions=%llu "
      "appends/transaction=%.2f\n",
      kWriters, static_cast<long long>(n), static_cast<unsigned long long>(stats.requests),
      conflicts.load(), 100.0 * conflicts.load() / static_cast<double>(stats.requests),
      static_cast<unsigned long long>(stats.batches), per_tx);
  EXPECT_GT(conflicts.load(), 0) << "the test needs a real conflict rate";
  EXPECT_GT(per_tx, 1.0) << "group commit should put more than one append in a transaction";
}

TEST(StoreWriter, RetriedAppendWithSameIdsReturnsOriginalPositions) {
  StoreDb db;
  auto writer = start_writer(db.url);
  std::vector<events::NewEvent> evs{new_event(), new_event()};
  auto first = append_sync(*writer, request("cart-1", events::ExpectedVersion::no_stream(), evs));
  ASSERT_EQ(first.kind, store::AppendResult::Kind::appended);
  auto again = append_sync(*writer, request("cart-1", events::ExpectedVersion::no_stream(), evs));
  EXPECT_EQ(again.kind, store::AppendResult::Kind::duplicate);
  EXPECT_EQ(again.positions, first.positions);
  EXPECT_EQ(writer->head(), 2);
}

TEST(StoreWriter, AppendWhoseDeadlinePassedIsRefusedAndNeverStored) {
  StoreDb db;
  auto writer = start_writer(db.url);
  auto late = request("late-1", events::ExpectedVersion::any(), {new_event()});
  late.deadline = std::chrono::system_clock::now() - 1ms;
  auto refused = append_sync(*writer, std::move(late));
  EXPECT_EQ(refused.kind, store::AppendResult::Kind::rejected);
  EXPECT_EQ(refused.code, "deadline_exceeded");
  auto in_time = request("late-1", events::ExpectedVersion::no_stream(), {new_event()});
  in_time.deadline = std::chrono::system_clock::now() + 30s;
  auto stored = append_sync(*writer, std::move(in_time));
  EXPECT_EQ(stored.kind, store::AppendResult::Kind::appended);
  EXPECT_EQ(stored.positions, std::vector<std::int64_t>{1});
  EXPECT_EQ(writer->head(), 1);
}

TEST(StoreWriter, StreamsBelongToOneTenant) {
  StoreDb db;
  auto writer = start_writer(db.url);
  ASSERT_EQ(
      append_sync(*writer, request("s-1", events::ExpectedVersion::any(), {new_event()}, "acme"))
          .kind,
      store::AppendResult::Kind::appended);
  auto other =
      append_sync(*writer, request("s-1", events::ExpectedVersion::any(), {new_event()}, "globex"));
  EXPECT_EQ(other.kind, store::AppendResult::Kind::rejected);
  EXPECT_EQ(other.code, "stream_not_found");
  EXPECT_EQ(writer->head(), 1);
}

TEST(StoreWriter, StandbyWaitsForTheLockAndTakesOverWithTheHead) {
  StoreDb db;
  auto active = start_writer(db.url);
  ASSERT_EQ(
      append_sync(*active, request("x", events::ExpectedVersion::any(), {new_event(), new_event()}))
          .kind,
      store::AppendResult::Kind::appended);
  store::Writer standby(writer_options(db.url), {});
  standby.start();
  // The standby must not become active while the other holds the lock.
  EXPECT_FALSE(tst::wait_until([&] { return standby.active(); }, 1s));
  active.reset();  // releases the lock (session ends)
  ASSERT_TRUE(tst::wait_until([&] { return standby.active(); }, 10s));
  EXPECT_EQ(standby.head(), 2);
  auto r = append_sync(
      standby,
      request("x", events::ExpectedVersion::exact(events::StreamVersion(1)), {new_event()}));
  EXPECT_EQ(r.kind, store::AppendResult::Kind::appended);
  EXPECT_EQ(r.positions, (std::vector<std::int64_t>{3}));
}
