// The registry's contracts one at a time, against the real store process:
// deregistration, weights, pushed route changes, asking unknown instances
// to register, the catalog, and two replicas sharing one sweeper.
#include <thread>

#include "support.hpp"
#include "switchboard/registry/read_model.hpp"

namespace sb::regtest {
namespace {

// Collects signals from sb.signals on an exclusive queue.
class SignalTap {
 public:
  SignalTap(const std::string& vhost, const std::vector<std::string>& keys) {
    broker::ConsumerOptions co;
    co.connection = amqp(vhost, "test-tap");
    co.topology = broker::platform_topology();
    consumer_ = std::make_unique<broker::Consumer>(co);
    broker::QueueSpec q;
    q.name = tst::unique_name("tap");
    q.durable = false;
    q.exclusive = true;
    q.auto_delete = true;
    broker::Topology t;
    t.queues.push_back(q);
    for (const auto& k : keys) t.bindings.push_back({q.name, broker::kSignalsExchange, k});
    consumer_->declare(t);
    broker::ConsumeOptions opts;
    opts.retry.enabled = false;
    consumer_->consume(q, opts, [this](const broker::Delivery& d) {
      std::lock_guard lock(mu_);
      got_.emplace_back(d.routing_key, d.message.body);
    });
  }
  std::vector<std::pair<std::string, std::string>> got() const {
    std::lock_guard lock(mu_);
    return got_;
  }
  bool has(const std::string& key, const std::string& body_part) const {
    for (const auto& [k, b] : got()) {
      if (k == key && b.find(body_part) != std::string::npos) return true;
    }
    return false;
  }

 private:
  std::unique_ptr<broker::Consumer> consumer_;
  mutable std::mutex mu_;
  std::vector<std::pair<std::string, std::string>> got_;
};

class RegistryTest : public ::testing::Test {
 protected:
  RegistryTest()
      : db_(tst::fresh_database("reg")),
        vhost_(tst::fresh_vhost("reg")),
        store_(db_, vhost_),
        fleet_(vhost_),
        rpc_([&] {
          broker::RpcClientOptions o;
          o.connection = amqp(vhost_, "test-rpc");
          return o;
        }()) {}

  std::unique_ptr<registry::Registry> start_registry(const std::string& replica) {
    auto o = registry_options(db_, vhost_, replica);
    o.default_ttl = 1500ms;  // instances here beat every 500 ms
    auto r = std::make_unique<registry::Registry>(o);
    r->start();
    return r;
  }

  Registration fast(Registration r) {
    r.metadata = R"({"heartbeat_interval_ms":500})";
    return r;
  }

  std::string call(std::string_view service, const std::string& body) {
    broker::Message m;
    m.body = body;
    return rpc_.call(std::string(service), m, 5s).get().body;
  }

  std::int64_t scalar(const pg::Sql& sql, const pg::Params& p = {}) {
    pg::ConnectOptions o;
    o.url = db_;
    pg::Connection c(o);
    return c.exec(sql, p).one()[0].get<std::int64_t>();
  }

  std::string db_;
  std::string vhost_;
  StoreProcess store_;
  Fleet fleet_;
  broker::RpcClient rpc_;
};

TEST_F(RegistryTest, DeregistrationLeavesTheRouteTableAndEdgesHearOfIt) {
  SignalTap tap(vhost_, {std::string(registry::kRoutesChangedKey)});
  auto reg = start_registry("a");
  fleet_.add(fast(make_registration("orders", "1", "o-1", false)), 500ms);
  fleet_.add(fast(make_registration("orders", "1", "o-2", true)), 500ms);
  ASSERT_TRUE(tst::wait_until([&] { return routed_ids(*reg->routes()).size() == 2; }, 15s));
  const auto v1 = reg->routes()->version;
  EXPECT_TRUE(
      tst::wait_until([&] { return tap.has("registry.routes.changed", std::to_string(v1)); }, 5s));

  const auto& version = reg->routes()->services.at(0).versions.at(0);
  EXPECT_EQ(version.weight, registry::kDefaultWeight);
  ASSERT_EQ(version.endpoints.size(), 2u);
  EXPECT_EQ(version.instances.at(1).transport.base_url, "http://127.0.0.1:9/o-2");

  fleet_.deregister("o-1");
  ASSERT_TRUE(tst::wait_until(
      [&] { return routed_ids(*reg->routes()) == std::set<std::string>{"o-2"}; }, 10s));
  const auto v2 = reg->routes()->version;
  EXPECT_GT(v2, v1);
  EXPECT_TRUE(
      tst::wait_until([&] { return tap.has("registry.routes.changed", std::to_string(v2)); }, 5s));
  // An edge that knows v2 gets "unchanged" instead of the table.
  EXPECT_NE(call(registry::kRoutesRpc, "{\"if_newer_than\":" + std::to_string(v2) + "}")
                .find("\"unchanged\":true"),
            std::string::npos);
  EXPECT_EQ(scalar("SELECT count(*) FROM registry_service_instances WHERE status = "
                   "'deregistered'"),
            1);
  EXPECT_EQ(scalar("SELECT count(*) FROM events WHERE type = 'service.instance.expired'"), 0);
}

TEST_F(RegistryTest, WeightsAreACommandAndAnEvent) {
  auto reg = start_registry("a");
  fleet_.add(fast(make_registration("orders", "1", "o-1", false)), 500ms);
  fleet_.add(fast(make_registration("orders", "2", "o-2", false)), 500ms);
  ASSERT_TRUE(tst::wait_until([&] { return routed_ids(*reg->routes()).size() == 2; }, 15s));

  const auto reply = call(registry::kSetWeightsRpc,
                          R"({"service":"orders","weights":{"1":90,"2":10},"command_id":"w-1"})");
  ASSERT_NE(reply.find("\"appended\""), std::string::npos) << reply;
  const auto position = json::require(json::parse(reply), "positions")[0].GetInt64();
  // Read-your-writes through the RPC: min_version waits for the position.
  const auto table = registry::route_table_from_json(
      call(registry::kRoutesRpc, "{\"min_version\":" + std::to_string(position) + "}"));
  ASSERT_EQ(table.version, position);
  EXPECT_EQ(table.services.at(0).versions.at(0).weight, 90);
  EXPECT_EQ(table.services.at(0).versions.at(1).weight, 10);

  // The same command again is the same event: a duplicate.
  EXPECT_NE(call(registry::kSetWeightsRpc,
                 R"({"service":"orders","weights":{"1":90,"2":10},"command_id":"w-1"})")
                .find("\"duplicate\""),
            std::string::npos);
  // Bad input is refused before the store.
  EXPECT_NE(call(registry::kSetWeightsRpc, R"({"service":"orders","weights":{"1":-5}})")
                .find("schema_violation"),
            std::string::npos);
  EXPECT_NE(call(registry::kSetWeightsRpc, "nope").find("malformed_json"), std::string::npos);

  // Weights set for v1 only: v2 gets nothing.
  const auto r2 = call(registry::kSetWeightsRpc, R"({"service":"orders","weights":{"1":1}})");
  const auto p2 = json::require(json::parse(r2), "positions")[0].GetInt64();
  ASSERT_TRUE(reg->wait_for_routes(p2, 5s));
  EXPECT_EQ(reg->routes()->services.at(0).versions.at(1).weight, 0);
}

TEST_F(RegistryTest, AnUnknownInstanceIsAskedToRegister) {
  SignalTap tap(vhost_, {"service.register_requested.*"});
  auto reg = start_registry("a");
  ASSERT_TRUE(tst::wait_until([&] { return !reg->stats().paused && reg->stats().sweeper; }, 15s));
  const bool asked = tst::wait_until(
      [&] {
        fleet_.heartbeat_unregistered("ghost", "ghost-1");
        return tap.has("service.register_requested.ghost", "\"ghost-1\"");
      },
      10s, 250ms);
  EXPECT_TRUE(asked);
  EXPECT_GE(reg->stats().register_requests, 1u);
  // It registers: it is routed and no longer asked.
  fleet_.add(fast(make_registration("ghost", "1", "ghost-1", false)), 500ms);
  ASSERT_TRUE(
      tst::wait_until([&] { return routed_ids(*reg->routes()).count("ghost-1") == 1; }, 10s));
  const auto before = reg->stats().register_requests;
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(reg->stats().register_requests, before);
}

TEST_F(RegistryTest, TypesARegistrationBringsJoinTheCatalogOnce) {
  auto reg = start_registry("a");
  auto r = fast(make_registration("shop", "1", "shop-1", false));
  r.event_types = {
      R"({"type":"shop.order.placed","versions":[{"version":1,"schema":{"type":"object","required":["id"]}}]})"};
  r.command_types = {R"({"name":"shop.place_order","schema":{"type":"object"},"roles":["user"]})"};
  fleet_.add(r, 500ms);
  auto r2 = r;
  r2.instance_id = "shop-2";
  fleet_.add(r2, 500ms);  // a second instance brings the same types
  ASSERT_TRUE(tst::wait_until([&] { return routed_ids(*reg->routes()).size() == 2; }, 15s));
  EXPECT_TRUE(reg->catalog().contains(events::EventType("shop.order.placed")));
  const auto catalog = call(registry::kCatalogRpc, "");
  EXPECT_NE(catalog.find("shop.place_order"), std::string::npos);
  ASSERT_TRUE(tst::wait_until(
      [&] {
        return scalar("SELECT count(*) FROM events WHERE type = 'catalog.type.registered'") == 2;
      },
      10s));
  EXPECT_EQ(scalar("SELECT count(*) FROM events WHERE type = 'catalog.type.registered' AND "
                   "data->>'name' = 'shop.order.placed' AND data->>'owner' = 'shop'"),
            1);
}

TEST_F(RegistryTest, TwoReplicasShareOneSweeperAndExpireOnce) {
  auto a = start_registry("a");
  auto b = start_registry("b");
  for (int i = 0; i < 6; ++i) {
    fleet_.add(fast(make_registration("pay", "1", "pay-" + std::to_string(i), false)), 500ms);
  }
  ASSERT_TRUE(tst::wait_until(
      [&] { return routed_ids(*a->routes()).size() == 6 && routed_ids(*b->routes()).size() == 6; },
      15s));
  ASSERT_TRUE(tst::wait_until([&] { return !a->stats().paused && !b->stats().paused; }, 15s));
  EXPECT_NE(a->stats().sweeper, b->stats().sweeper);
  fleet_.stop("pay-0");
  fleet_.stop("pay-1");
  ASSERT_TRUE(tst::wait_until(
      [&] { return routed_ids(*a->routes()).size() == 4 && routed_ids(*b->routes()).size() == 4; },
      10s));
  EXPECT_EQ(*a->routes(), *b->routes());
  // The sweeper goes: the other takes over and expires the next one.
  auto& leader = a->stats().sweeper ? a : b;
  auto& other = a->stats().sweeper ? b : a;
  leader.reset();
  ASSERT_TRUE(tst::wait_until([&] { return other->stats().sweeper; }, 10s));
  fleet_.stop("pay-2");
  ASSERT_TRUE(tst::wait_until([&] { return routed_ids(*other->routes()).size() == 3; }, 10s));
  EXPECT_EQ(scalar("SELECT count(*) FROM events WHERE type = 'service.instance.expired'"), 3);
  EXPECT_EQ(scalar("SELECT count(DISTINCT data->>'instance_id') FROM events WHERE type = "
                   "'service.instance.expired'"),
            3);
  // Heartbeats were flushed to the shared table by both replicas.
  EXPECT_EQ(scalar("SELECT count(*) FROM registry_heartbeats"), 6);
}

}  // namespace
}  // namespace sb::regtest
