// The store as a real process, killed with SIGKILL at random moments during a
// 100,000-event load and restarted each time, while writers retry every
// unacknowledged append with the same event ids. Then we count: every event
// id must be in the table exactly once, positions 1..N without a gap, and
// every event must have been published to sb.events at least once.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>

#include "store_process.hpp"
#include "switchboard/broker/consumer.hpp"
#include "switchboard/broker/rpc.hpp"
#include "switchboard/events/uuid.hpp"
#include "switchboard/shared/json.hpp"
#include "switchboard/shared/pg.hpp"
#include "switchboard/testing/process.hpp"
#include "switchboard/testing/servers.hpp"

using namespace sb;
using namespace std::chrono_literals;
namespace tst = sb::testing;

namespace {

constexpr int kWriters = 8;
constexpr int kEventsPerAppend = 10;
constexpr int kAppends = 10'000;  // 100,000 events

std::string append_body(const std::string& stream, const std::vector<std::string>& ids) {
  std::string b =
      R"({"stream":")" + stream + R"(","expected_version":"any","tenant":"acme","events":[)";
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) b += ',';
    b +=
        R"({"id":")" + ids[i] +
        R"(","type":"test.thing.happened","schema":1,"occurred_at":"2026-11-22T08:00:01.123Z","data":{"i":)" +
        std::to_string(i) + "}}";
  }
  return b + "]}";
}

}  // namespace

TEST(StoreProcess, SigkillDuringLoadLosesNothing) {
  auto db = tst::fresh_database("storekill");
  auto amqp = tst::fresh_vhost("storekill");
  broker::ConnectionOptions conn;
  conn.url = amqp;
  conn.heartbeat = 5s;

  // Every event published to sb.events, counted by id.
  std::mutex seen_mutex;
  std::unordered_map<std::string, int> seen;
  broker::ConsumerOptions co;
  co.connection = conn;
  co.workers = 2;
  co.topology = broker::platform_topology();
  broker::Consumer consumer(co);
  broker::QueueSpec q;
  q.name = "test.all-events";
  broker::Topology t;
  t.queues.push_back(q);
  t.bindings.push_back({q.name, broker::kEventsExchange, "#"});
  consumer.declare(t);
  broker::ConsumeOptions opts;
  opts.prefetch = 1000;
  opts.retry.enabled = false;
  consumer.consume(q, opts, [&](const broker::Delivery& d) {
    std::lock_guard lock(seen_mutex);
    ++seen[d.message.message_id];
  });

  tst::StoreProcess store(db, amqp);
  broker::RpcClientOptions ro;
  ro.connection = conn;
  broker::RpcClient rpc(ro);

  std::atomic<int> next_append{0};
  std::atomic<int> acked{0};
  std::atomic<int> retries{0};
  std::atomic<bool> done{false};
  std::mutex ids_mutex;
  std::vector<std::string> all_ids;
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      std::mt19937 rng(static_cast<unsigned>(w));
      for (int a = next_append++; a < kAppends; a = next_append++) {
        std::vector<std::string> ids;
        for (int i = 0; i < kEventsPerAppend; ++i) ids.push_back(events::new_event_id().value());
        std::string stream = "thing-" + std::to_string(rng() % 500);
        broker::Message m;
        m.body = append_body(stream, ids);
        // Retry with the same ids until the store acknowledges.
        for (int attempt = 0;; ++attempt) {
          try {
            auto reply = rpc.call("store.append", m, 5s).get();
            auto doc = json::parse(reply.body);
            if (doc.HasMember("result")) break;
            ASSERT_EQ(json::require_string(doc["error"], "code"), "unavailable") << reply.body;
          } catch (const broker::RpcError&) {
            // no_route (store down), timeout, connection_lost: outcome unknown; retry.
          }
          ++retries;
          std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 80));
          ASSERT_LT(attempt, 3000) << "append never acknowledged";
        }
        ++acked;
        std::lock_guard lock(ids_mutex);
        all_ids.insert(all_ids.end(), ids.begin(), ids.end());
      }
    });
  }

  // Kill the store at random moments while the load runs.
  int kills = 0;
  std::mt19937 rng(7);
  while (acked.load() < kAppends && kills < 6) {
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(800 + rng() % 1500);
    while (std::chrono::steady_clock::now() < until && acked.load() < kAppends) {
      std::this_thread::sleep_for(10ms);
    }
    if (acked.load() >= kAppends) break;
    store.kill();
    ++kills;
    store.start();
  }
  for (auto& th : writers) th.join();
  done = true;
  ASSERT_EQ(acked.load(), kAppends);

  pg::ConnectOptions pgo;
  pgo.url = db;
  pg::Connection c(pgo);
  auto r = c.exec(
                "SELECT count(*), count(DISTINCT id), coalesce(min(position),0), "
                "coalesce(max(position),0) FROM events")
               .one();
  auto rows = r[0].get<std::int64_t>();
  EXPECT_EQ(rows, kAppends * kEventsPerAppend);
  EXPECT_EQ(r[1].get<std::int64_t>(), rows) << "an event id is stored twice";
  EXPECT_EQ(r[2].get<std::int64_t>(), 1);
  EXPECT_EQ(r[3].get<std::int64_t>(), rows) << "positions are not 1..N";

  // Everything acknowledged must be stored and, eventually, published.
  std::int64_t lost_in_table = 0;
  {
    std::string arr = "{";
    for (std::size_t i = 0; i < all_ids.size(); ++i) arr += (i ? "," : "") + all_ids[i];
    arr += "}";
    lost_in_table = static_cast<std::int64_t>(all_ids.size()) -
                    c.exec("SELECT count(*) FROM events WHERE id = ANY($1::uuid[])", {arr})
                        .one()[0]
                        .get<std::int64_t>();
  }
  auto published_all = tst::wait_until(
      [&] {
        std::lock_guard lock(seen_mutex);
        return seen.size() >= all_ids.size();
      },
      90s, 50ms);
  std::size_t missing = 0;
  std::size_t duplicates = 0;
  {
    std::lock_guard lock(seen_mutex);
    for (const auto& id : all_ids) {
      auto it = seen.find(id);
      if (it == seen.end()) {
        ++missing;
      } else if (it->second > 1) {
        duplicates += static_cast<std::size_t>(it->second - 1);
      }
    }
  }
  std::printf(
      "kills=%d acked_appends=%d events=%lld retries=%d lost=%lld unpublished=%zu "
      "duplicate_deliveries=%zu\n",
      kills, acked.load(), static_cast<long long>(rows), retries.load(),
      static_cast<long long>(lost_in_table), missing, duplicates);
  EXPECT_GE(kills, 3) << "the load ended before the store was killed enough times";
  EXPECT_EQ(lost_in_table, 0);
  EXPECT_TRUE(published_all);
  EXPECT_EQ(missing, 0u);
}
