// Broker users (protocol §11.6) against real RabbitMQ, PostgreSQL and the
// real sb-store: a plugin's user, made with broker::plugin_permissions() on a
// fresh vhost where the platform topology exists, is refused what is not its
// own (publishing to sb.events, another group's queues, a forged user_id)
// and can do everything the SDK does (its push queues, its RPC queue, head
// and register-request queues, ingest, store.append, heartbeats). The real
// sb-test-plugin, started as such a user, registers, heartbeats and serves;
// the store records the publisher of what it appends and ingests.

#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <mutex>
#include <set>
#include <string>

#include "../../integration/registry/support.hpp"
#include "switchboard/broker/broker.hpp"
#include "switchboard/events/push.hpp"
#include "switchboard/events/time.hpp"
#include "switchboard/events/uuid.hpp"
#include "switchboard/registry/route_table.hpp"
#include "switchboard/shared/pg.hpp"

namespace sb::sectest {
namespace {

using namespace std::chrono_literals;
using regtest::amqp;
using regtest::StoreProcess;
namespace tst = sb::testing;

/// A broker user with exactly these permissions on the vhost; returns its URL.
std::string user_url(const std::string& vhost, const std::string& user,
                     const broker::Permissions& p) {
  std::vector<tst::BrokerTopicPermission> topics;
  for (const auto& t : p.topics) topics.push_back({t.exchange, t.write, t.read});
  return tst::broker_user(vhost, user, p.configure, p.write, p.read, topics);
}

/// A plugin name no other test uses: [a-z0-9][a-z0-9_-]*.
std::string plugin_name(const char* prefix) {
  return tst::unique_name(prefix);
}

broker::Message json(std::string body) {
  broker::Message m;
  m.body = std::move(body);
  m.message_id = broker::new_id();
  return m;
}

TEST(BrokerUsers, APluginUserIsLimitedToItsOwnResources) {
  const auto vhost = tst::fresh_vhost("sec");
  const std::string name = plugin_name("sec");
  const std::string other = plugin_name("other");
  {
    // The platform topology and another plugin's push queue exist.
    broker::PublisherOptions po;
    po.connection = amqp(vhost, "admin");
    broker::Publisher admin(po);
    broker::Topology t = broker::platform_topology();
    broker::QueueSpec q;
    q.name = "sub." + other + ".x";
    t.queues.push_back(q);
    admin.declare(t);
  }
  const auto url = user_url(vhost, broker::plugin_user(name), broker::plugin_permissions(name));

  broker::PublisherOptions po;
  po.connection = amqp(url, "plugin-pub");
  po.topology = broker::platform_topology();  // declared passively: no configure on exchanges
  broker::Publisher pub(po);

  // Publishing to sb.events: 403 from RabbitMQ, reported, not hung.
  auto refused = pub.publish(json("{}"), {broker::kEventsExchange, "shop.order.placed", false, {}});
  ASSERT_EQ(refused.wait_for(10s), std::future_status::ready);
  auto o = refused.get();
  EXPECT_EQ(o.status, broker::PublishStatus::failed);
  EXPECT_NE(o.reason.find("403"), std::string::npos) << o.reason;
  EXPECT_NE(o.reason.find("ACCESS_REFUSED"), std::string::npos) << o.reason;

  // A forged user_id: 406 from RabbitMQ.
  auto forged_msg = json("{}");
  forged_msg.user_id = "sb-store";
  auto forged =
      pub.publish(std::move(forged_msg), {broker::kIngestExchange, "store.ingest", false, {}});
  ASSERT_EQ(forged.wait_for(10s), std::future_status::ready);
  o = forged.get();
  EXPECT_EQ(o.status, broker::PublishStatus::failed);
  EXPECT_NE(o.reason.find("PRECONDITION_FAILED"), std::string::npos) << o.reason;

  // Publishing to sb.ingest and on sb.signals works.
  o = pub.publish(json("{}"), {broker::kIngestExchange, "store.ingest", false, {}}).get();
  EXPECT_TRUE(o.ok()) << o.reason;
  o = pub.publish(json("{}"), {broker::kSignalsExchange, "service.heartbeat", false, {}}).get();
  EXPECT_TRUE(o.ok()) << o.reason;

  // Another group's queue: neither declared nor consumed.
  broker::ConsumerOptions co;
  co.connection = amqp(url, "plugin-con");
  co.topology = broker::platform_topology();
  broker::Consumer con(co);
  broker::QueueSpec theirs;
  theirs.name = "sub." + other + ".x";
  try {
    con.consume(
        theirs, broker::ConsumeOptions{}, [](const broker::Delivery&) {}, 10s);
    ADD_FAILURE() << "consumed another group's queue";
  } catch (const broker::RejectedError& e) {
    EXPECT_NE(std::string(e.what()).find("403"), std::string::npos) << e.what();
  }

  // Its own push subscription (main, overflow, retry and parked queues,
  // bound to sb.events and sb.dlx) works and receives stored events.
  std::atomic<int> received{0};
  events::PushSubscriptionOptions so;
  so.group = name + ".react";
  so.topics = {"sec.thing.*"};
  so.connection = amqp(url, "plugin-push");
  so.migrate = false;
  so.handler = [&](const events::Event&) { received.fetch_add(1); };
  events::PushSubscription push(so);
  push.start();

  // Its RPC queue (the SDK's rpc.<name>.<version>), and the replies.
  broker::RpcServerOptions rso;
  rso.connection = amqp(url, "plugin-rpc");
  broker::RpcServer server(rso);
  std::mutex mu;
  std::string caller;
  server.serve(name + ".1.0.0", [&](const broker::Delivery& d) {
    std::lock_guard lk(mu);
    caller = d.message.user_id;
    return json(R"({"ok":true})");
  });
  // Head-signal and register-request queues (exclusive, bound to sb.signals).
  broker::Topology own;
  broker::QueueSpec head;
  head.name = "sb.head." + name + ".i1.abc";
  head.durable = false;
  head.exclusive = true;
  head.auto_delete = true;
  broker::QueueSpec regreq = head;
  regreq.name = "sb.regreq." + events::uuid_v4().to_string();
  own.queues = {head, regreq};
  own.bindings = {{head.name, broker::kSignalsExchange, "store.head.advanced"},
                  {regreq.name, broker::kSignalsExchange, "service.register_requested." + name}};
  con.declare(own, 10s);

  // The platform (admin here) calls the plugin and publishes a stored event.
  broker::RpcClientOptions rco;
  rco.connection = amqp(vhost, "platform-rpc");
  broker::RpcClient platform(rco);
  const auto reply = platform.call(name + ".1.0.0", json("{}"), 5s).get();
  EXPECT_EQ(reply.body, R"({"ok":true})");
  EXPECT_EQ(reply.user_id, broker::plugin_user(name));
  {
    std::lock_guard lk(mu);
    EXPECT_EQ(caller, tst::servers().rabbitmq_user);
  }
  broker::PublisherOptions apo;
  apo.connection = amqp(vhost, "platform-pub");
  broker::Publisher platform_pub(apo);
  events::Event e{events::EventId(events::uuid_v4().to_string()),
                  events::EventType("sec.thing.done"),
                  1,
                  events::StreamId("thing-1"),
                  events::StreamVersion(0),
                  events::Position(1),
                  events::TenantId("acme"),
                  events::now_ms(),
                  events::now_ms(),
                  events::CorrelationId("c1"),
                  std::nullopt,
                  std::nullopt,
                  events::Payload(),
                  events::Payload()};
  ASSERT_TRUE(
      platform_pub
          .publish(events::event_message(e), {broker::kEventsExchange, "sec.thing.done", false, {}})
          .get()
          .ok());
  EXPECT_TRUE(tst::wait_until([&] { return received.load() >= 1; }, 10s));
  push.stop(std::chrono::steady_clock::now() + 5s);
}

// The real store and sb-test-plugin, each with its own user: the plugin
// registers (store.append over RPC), heartbeats, serves over AMQP; the
// store records who appended and ingested.
TEST(BrokerUsers, APluginProcessWorksAsItsOwnUserAndTheStoreRecordsIt) {
  const auto db = tst::fresh_database("sec");
  const auto vhost = tst::fresh_vhost("sec");
  const std::string name = plugin_name("sec");
  const std::string store_user = tst::unique_name("store");
  const std::string registry_user = tst::unique_name("registry");
  const auto store_url =
      user_url(vhost, store_user, broker::platform_permissions(broker::PlatformService::store));
  const auto registry_url = user_url(
      vhost, registry_user, broker::platform_permissions(broker::PlatformService::registry));
  const std::string plugin = broker::plugin_user(name);
  const auto plugin_url = user_url(vhost, plugin, broker::plugin_permissions(name));

  StoreProcess store(db, store_url);  // the only one that creates the exchanges
  {
    // Wait for them before the others start (passive declarations need them).
    broker::RpcClientOptions o;
    o.connection = amqp(vhost, "wait-store");
    broker::RpcClient rpc(o);
    ASSERT_TRUE(tst::wait_until(
        [&] {
          try {
            rpc.call("store.read", json(R"({"tenant":"*","after":0,"limit":1})"), 2s).get();
            return true;
          } catch (const broker::RpcError&) {
            return false;
          }
        },
        60s, 100ms))
        << store.child().output();
  }
  registry::Registry reg(regtest::registry_options(db, registry_url, "r1"));
  reg.start();

  const int admin_port = tst::free_port();
  tst::ChildProcess child(tst::built_binary("tests/support/plugin/sb-test-plugin"), {},
                          {{"SB_POSTGRES_URL", db},
                           {"SB_RABBITMQ_URL", plugin_url},
                           {"SB_HTTP_PORT", std::to_string(admin_port)},
                           {"SB_PLUGIN_NAME", name},
                           {"SB_PLUGIN_TRANSPORT", "amqp"},
                           {"SB_PLUGIN_HEARTBEAT_INTERVAL", "300ms"},
                           {"SB_LOG_LEVEL", "warn"},
                           {"SB_CONFIG", ""}});
  ASSERT_TRUE(tst::wait_until([&] { return tst::http_get(admin_port, "/ready", 1s).status == 200; },
                              60s, 50ms))
      << child.output();

  // Registered (through store.append as its own user) and routed.
  broker::RpcClientOptions o;
  o.connection = amqp(vhost, "sec-rpc");
  broker::RpcClient rpc(o);
  auto routed = [&] {
    broker::Message m = json("{}");
    const auto table = registry::route_table_from_json(
        rpc.call(std::string(registry::kRoutesRpc), m, 5s).get().body);
    for (const auto& s : table.services) {
      for (const auto& v : s.versions) {
        if (s.name == name && !v.instances.empty()) return true;
      }
    }
    return false;
  };
  ASSERT_TRUE(tst::wait_until(routed, 30s, 100ms)) << child.output();

  // Serves a routed request over AMQP (as the edge sends it, §9.1).
  broker::Message req;
  req.content_type = "text/plain";
  req.headers["x-sb-kind"] = std::string("request");
  req.headers["x-sb-deadline"] = regtest::now_ms() + 10000;
  req.headers["x-sb-request-id"] = broker::new_id();
  req.headers["x-sb-tenant"] = std::string("acme");
  req.headers["x-sb-actor"] = std::string("user:u1");
  req.headers["x-sb-roles"] = std::string("user");
  req.headers["x-sb-method"] = std::string("GET");
  req.headers["x-sb-path"] = std::string("/public/ping");
  req.headers["x-sb-route"] = std::string("/public/ping");
  req.headers["x-sb-params"] = std::string("{}");
  req.headers["x-sb-query"] = std::string("");
  req.headers["x-sb-http-headers"] = std::string("{}");
  const auto pong = rpc.call(name + ".1.0.0", req, 10s).get();
  EXPECT_EQ(pong.body, R"({"pong":true,"version":"1.0.0"})");
  EXPECT_EQ(pong.user_id, plugin);

  pg::ConnectOptions co;
  co.url = db;
  pg::Connection c(co);
  auto scalar = [&](const pg::Sql& sql, const pg::Params& params = {}) {
    auto r = c.exec(sql, params);
    return r.empty() || r[0][0].is_null() ? std::string() : r[0][0].get<std::string>();
  };
  // The registration event: appended by the plugin, over RPC, as its user.
  EXPECT_EQ(scalar("SELECT meta->>'publisher' FROM events WHERE type = "
                   "'service.instance.registered' ORDER BY position DESC LIMIT 1"),
            plugin);

  // An event the plugin ingests: meta.publisher is its user whatever it
  // claimed, the actor is service:<name>.
  broker::PublisherOptions po;
  po.connection = amqp(plugin_url, "sec-ingest");
  broker::Publisher pub(po);
  const std::string id = events::uuid_v4().to_string();
  const std::string type = name + ".item.created";
  // The plugin's own catalog holds <name>.item.created once the registry
  // appended its catalog change: retry the ingest until stored.
  const std::string ingest_body =
      R"({"stream":"item-sec1","tenant":"acme","events":[{"id":")" + id + R"(","type":")" + type +
      R"(","schema":1,"occurred_at":"2026-11-22T08:00:01.123Z","data":{"id":"sec1","title":"t"},)"
      R"("meta":{"publisher":"sb-store","k":1},"actor":"user:someone"}]})";
  bool stored = false;
  ASSERT_TRUE(tst::wait_until(
      [&] {
        auto out =
            pub.publish(json(ingest_body), {broker::kIngestExchange, "store.ingest", false, {}})
                .get();
        EXPECT_TRUE(out.ok()) << out.reason;
        stored = tst::wait_until(
            [&] { return !scalar("SELECT 1 FROM events WHERE id = $1::uuid", {id}).empty(); }, 3s,
            50ms);
        return stored;
      },
      40s, 10ms))
      << child.output();
  EXPECT_EQ(scalar("SELECT meta->>'publisher' FROM events WHERE id = $1::uuid", {id}), plugin);
  EXPECT_EQ(scalar("SELECT meta->>'k' FROM events WHERE id = $1::uuid", {id}), "1");
  EXPECT_EQ(scalar("SELECT actor FROM events WHERE id = $1::uuid", {id}), "service:" + name);

  // Heartbeats on sb.signals reach the registry; still routed, never expired.
  EXPECT_TRUE(tst::wait_until([&] { return reg.stats().heartbeats >= 2; }, 30s, 50ms))
      << child.output();
  EXPECT_TRUE(routed());
  EXPECT_EQ(reg.stats().expiries_sent, 0u);

  child.signal(SIGTERM);
  EXPECT_EQ(child.wait(20s), 0) << child.output();
  reg.stop(std::chrono::steady_clock::now() + 5s);
}

}  // namespace
}  // namespace sb::sectest
