// Issue 5's done-when for the registry: 200 simulated instances of 20
// services register and heartbeat; 50 stop without deregistering, in three
// waves — with no restart, around a registry restart, and around a RabbitMQ
// restart. Every stopped instance expires within TTL + 1 s of its last
// heartbeat (or of the end of the pause that a restart imposes, for those
// stopped while the registry could not hear them), exactly once; none of
// the live ones ever expires; the route table equals the live set; and a
// replay of the store into fresh tables gives the read model's tables again.
#include <thread>

#include "support.hpp"
#include "switchboard/events/reader.hpp"
#include "switchboard/events/subscription.hpp"
#include "switchboard/registry/read_model.hpp"

namespace sb::regtest {
namespace {

constexpr std::int64_t kTtlMs = 6000;
constexpr std::int64_t kSlackMs = 1000;  // the "TTL + 1 s"

struct Db {
  std::string url = tst::fresh_database("reg");
  std::int64_t scalar(const pg::Sql& sql, const pg::Params& p = {}) const {
    pg::ConnectOptions o;
    o.url = url;
    pg::Connection c(o);
    return c.exec(sql, p).one()[0].get<std::int64_t>();
  }
  pg::Result query(const pg::Sql& sql, const pg::Params& p = {}) const {
    pg::ConnectOptions o;
    o.url = url;
    pg::Connection c(o);
    return c.exec(sql, p);
  }
};

// recorded_at (epoch ms) of the expiry of each stopped instance, once all
// are expired in the read model.
std::map<std::string, std::int64_t> wait_expired(const Db& db, const std::vector<std::string>& ids,
                                                 std::chrono::milliseconds deadline) {
  std::map<std::string, std::int64_t> out;
  tst::wait_until(
      [&] {
        out.clear();
        for (const auto& row :
             db.query("SELECT instance_id, (extract(epoch FROM ended_at) * 1000)::bigint "
                      "FROM registry_service_instances WHERE status = 'expired' AND "
                      "instance_id = ANY($1::text[])",
                      {events::pg_text_array(ids)})) {
          out[row[0].get<std::string>()] = row[1].get<std::int64_t>();
        }
        return out.size() == ids.size();
      },
      deadline, 50ms);
  return out;
}

// Every expiry event ever appended for these instances.
std::map<std::string, int> expiry_events(const Db& db) {
  std::map<std::string, int> out;
  for (const auto& row :
       db.query("SELECT data->>'instance_id', count(*) FROM events WHERE type = $1 GROUP BY 1",
                {std::string(events::kServiceInstanceExpired)})) {
    out[row[0].get<std::string>()] = static_cast<int>(row[1].get<std::int64_t>());
  }
  return out;
}

struct Wave {
  std::string name;
  std::vector<std::string> ids;
  std::map<std::string, std::int64_t> last_sent;
  std::map<std::string, std::int64_t> not_before;  // expiry cannot start before (pause end)
};

void check_wave(const Db& db, const Wave& w, std::vector<std::int64_t>& latencies) {
  auto expired = wait_expired(db, w.ids, 30s);
  ASSERT_EQ(expired.size(), w.ids.size()) << w.name << ": not all stopped instances expired";
  std::int64_t worst = 0;
  for (const auto& id : w.ids) {
    const auto from =
        std::max(w.last_sent.at(id) + kTtlMs,
                 w.not_before.count(id) != 0u ? w.not_before.at(id) : std::int64_t{0});
    const auto late = expired.at(id) - from;  // how far past its due time
    EXPECT_LE(late, kSlackMs) << w.name << ": " << id << " expired " << late
                              << " ms after its TTL ran out";
    latencies.push_back(expired.at(id) - w.last_sent.at(id));
    worst = std::max(worst, late);
  }
  std::printf("[ figures  ] %s: %zu expired, worst %lld ms past due\n", w.name.c_str(),
              w.ids.size(), static_cast<long long>(worst));
}

void check_no_false_expiry(const Db& db, const Fleet& fleet, const std::string& when) {
  const auto events = expiry_events(db);
  int false_expiries = 0;
  for (const auto& id : fleet.running()) {
    if (events.count(id) != 0u) {
      ++false_expiries;
      ADD_FAILURE() << when << ": live instance " << id << " was expired";
    }
  }
  for (const auto& [id, n] : events) EXPECT_EQ(n, 1) << id << " expired " << n << " times";
  std::printf("[ figures  ] %s: false expiries %d\n", when.c_str(), false_expiries);
}

void check_routes_equal_live(registry::Registry& reg, const Fleet& fleet, broker::RpcClient& rpc) {
  const auto live = fleet.running();
  const bool same = tst::wait_until([&] { return routed_ids(*reg.routes()) == live; }, 10s, 50ms);
  EXPECT_TRUE(same) << "route table " << routed_ids(*reg.routes()).size() << " vs live "
                    << live.size();
  // The RPC answers the same table.
  broker::Message req;
  req.body = "{\"min_version\":" + std::to_string(reg.routes()->version) + "}";
  const auto reply = rpc.call(std::string(registry::kRoutesRpc), req, 5s).get();
  const auto table = registry::route_table_from_json(reply.body);
  EXPECT_EQ(routed_ids(table), live);
  EXPECT_GE(table.version, reg.routes()->version);
}

TEST(RegistryDoneWhen, ExpiresExactlyTheStoppedInstancesAcrossRestarts) {
  Db db;
  const auto vhost = tst::fresh_vhost("reg");
  StoreProcess store(db.url, vhost);
  Fleet fleet(vhost);
  broker::RpcClientOptions rco;
  rco.connection = amqp(vhost, "test-rpc");
  broker::RpcClient rpc(rco);

  auto reg = std::make_unique<registry::Registry>(registry_options(db.url, vhost, "r1"));
  reg->start();

  // 20 services x 10 instances, two versions, both transports.
  std::vector<std::string> ids;
  for (int s = 0; s < 20; ++s) {
    for (int i = 0; i < 10; ++i) {
      char service[16];
      std::snprintf(service, sizeof service, "svc-%02d", s);
      const auto id = std::string(service) + "-i" + std::to_string(i);
      const auto reply =
          fleet.add(make_registration(service, i < 6 ? "1.0" : "2.0", id, (i % 2) == 1));
      ASSERT_NE(reply.find("\"appended\""), std::string::npos) << reply;
      ids.push_back(id);
    }
  }
  ASSERT_TRUE(tst::wait_until([&] { return routed_ids(*reg->routes()).size() == 200; }, 30s))
      << routed_ids(*reg->routes()).size();
  check_routes_equal_live(*reg, fleet, rpc);
  ASSERT_EQ(reg->routes()->services.size(), 20u);
  EXPECT_GE(reg->catalog().event_types().size(), 7u);

  std::vector<std::int64_t> latencies;
  std::size_t next = 0;
  auto stop_some = [&](Wave& w, std::size_t n) {
    for (std::size_t k = 0; k < n; ++k, next += 4) {  // every 4th: spread over services
      const auto& id = ids[next % ids.size()];
      w.ids.push_back(id);
      w.last_sent[id] = fleet.stop(id);
    }
  };

  // Wave A: no restart. Let the start-up pause pass first.
  ASSERT_TRUE(tst::wait_until([&] { return !reg->stats().paused && reg->stats().sweeper; }, 20s));
  Wave a{"wave A (steady)", {}, {}, {}};
  stop_some(a, 20);
  check_wave(db, a, latencies);
  ASSERT_TRUE(store.child().running()) << "sb-store died: the registry cannot append";
  check_no_false_expiry(db, fleet, "after wave A");
  check_routes_equal_live(*reg, fleet, rpc);

  // Wave B: 5 stop just before a registry restart, 10 after its pause.
  Wave b{"wave B (registry restart)", {}, {}, {}};
  stop_some(b, 5);
  reg.reset();
  reg = std::make_unique<registry::Registry>(registry_options(db.url, vhost, "r2"));
  reg->start();
  const auto restarted = now_ms();
  for (const auto& id : b.ids) b.not_before[id] = restarted + kTtlMs;
  ASSERT_TRUE(tst::wait_until([&] { return !reg->stats().paused && reg->stats().sweeper; }, 20s));
  stop_some(b, 10);
  check_wave(db, b, latencies);
  ASSERT_TRUE(store.child().running()) << "sb-store died: the registry cannot append";
  check_no_false_expiry(db, fleet, "after wave B");
  check_routes_equal_live(*reg, fleet, rpc);

  // Wave C: 5 stop just before a RabbitMQ restart, 10 after the pause.
  Wave c{"wave C (RabbitMQ restart)", {}, {}, {}};
  stop_some(c, 5);
  tst::servers().restart("rabbitmq");
  const auto broker_back = now_ms();
  // The registry hears again once its consumer reconnected (backoff <= 1 s).
  for (const auto& id : c.ids) c.not_before[id] = broker_back + 2000 + kTtlMs;
  ASSERT_TRUE(tst::wait_until([&] { return !reg->stats().paused && reg->stats().sweeper; }, 30s));
  stop_some(c, 10);
  check_wave(db, c, latencies);
  ASSERT_TRUE(store.child().running()) << "sb-store died: the registry cannot append";
  check_no_false_expiry(db, fleet, "after wave C");
  check_routes_equal_live(*reg, fleet, rpc);
  EXPECT_EQ(fleet.running().size(), 150u);

  std::sort(latencies.begin(), latencies.end());
  std::printf(
      "[ figures  ] expiry after last heartbeat (ms): min %lld median %lld max %lld "
      "(TTL %lld)\n",
      static_cast<long long>(latencies.front()),
      static_cast<long long>(latencies[latencies.size() / 2]),
      static_cast<long long>(latencies.back()), static_cast<long long>(kTtlMs));

  // Replay: fold every event again into fresh tables and compare.
  const auto version = reg->routes()->version;
  ASSERT_EQ(db.scalar("SELECT last_position FROM registry_meta"), version);
  pg::ConnectOptions co;
  co.url = db.url;
  {
    pg::Connection conn(co);
    for (const auto& ddl :
         registry::read_model_schema(registry::TableNames::with_prefix("replay_")))
      conn.exec(pg::Sql::trusted(ddl));
  }
  pg::PoolOptions po;
  po.connection = co;
  auto pool = std::make_shared<pg::Pool>(po);
  events::CheckpointedSubscriptionOptions so;
  so.name = "registry-replay-check";
  so.store = pool;
  so.filter.types = registry::read_model_event_types();
  so.poll_interval = 100ms;
  const auto names = registry::TableNames::with_prefix("replay_");
  events::CheckpointedSubscription replay(
      so, events::make_handler([&](pg::Transaction& tx, const events::Event& e) {
        return registry::apply_event(tx, names, e);
      }));
  replay.start();
  ASSERT_TRUE(tst::wait_until(
      [&] {
        return db.scalar("SELECT coalesce((SELECT last_position FROM replay_meta), 0)") == version;
      },
      30s));
  for (const auto& t : registry::read_model_tables()) {
    const auto diff = db.scalar(pg::Sql::trusted(
        "SELECT count(*) FROM ((SELECT * FROM registry_" + t + " EXCEPT ALL SELECT * FROM replay_" +
        t + ") UNION ALL (SELECT * FROM replay_" + t + " EXCEPT ALL SELECT * FROM registry_" + t +
        ")) d"));
    EXPECT_EQ(diff, 0) << "table " << t << " differs after replay";
    std::printf(
        "[ figures  ] replay %s: %lld rows, %lld differ\n", t.c_str(),
        static_cast<long long>(db.scalar(pg::Sql::trusted("SELECT count(*) FROM registry_" + t))),
        static_cast<long long>(diff));
  }
  replay.stop(std::chrono::steady_clock::now() + 5s);

  // And the projection engine's own rebuild serves the same route table.
  const auto before = *reg->routes();
  const auto generation = reg->read_model_generation();
  reg->rebuild_read_model();
  ASSERT_TRUE(tst::wait_until([&] { return reg->read_model_generation() > generation; }, 30s));
  EXPECT_EQ(db.scalar("SELECT last_position FROM registry_meta"), version);
  // The rebuilt generation's views give the very same route table.
  auto snap =
      pg::with_transaction(*pool, [](pg::Transaction& tx) { return registry::load_snapshot(tx); });
  EXPECT_EQ(registry::assemble_route_table(snap.version, snap.live, snap.weights), before);
  EXPECT_EQ(*reg->routes(), before);
  EXPECT_EQ(db.scalar("SELECT count(*) FROM registry_service_instances WHERE status = 'live'"),
            150);
}

}  // namespace
}  // namespace sb::regtest
