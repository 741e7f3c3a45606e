// The registry's logic without servers: payloads, the liveness decisions
// and the route table.

#include <gtest/gtest.h>

#include "switchboard/events/platform_types.hpp"
#include "switchboard/events/uuid.hpp"
#include "switchboard/registry/liveness.hpp"
#include "switchboard/registry/protocol.hpp"
#include "switchboard/registry/read_model.hpp"
#include "switchboard/registry/route_table.hpp"
#include "switchboard/shared/json.hpp"

namespace sb::registry {
namespace {

using namespace std::chrono_literals;

Registration sample(const std::string& id = "orders-1") {
  Registration r;
  r.name = "orders";
  r.version = "1.2.0";
  r.instance_id = id;
  r.transport = {Transport::Kind::http, "http://127.0.0.1:8080"};
  r.endpoints = {{"GET", "/orders/{id}", {"user"}, false, RateLimit{50, 100}},
                 {"POST", "/orders", {}, true, std::nullopt}};
  r.event_types = {
      R"({"type":"shop.order.placed","versions":[{"version":1,"schema":{"type":"object"}}]})"};
  r.command_types = {R"({"name":"orders.place","schema":{"type":"object"}})"};
  r.subscriptions = {{"orders-billing", "push", {"shop.payment.*"}}};
  r.metadata = R"({"zone":"a"})";
  return r;
}

TEST(RegistryProtocol, RegistrationRoundTripsAndPassesThePlatformSchema) {
  const auto r = sample();
  const auto text = to_json(r);
  auto doc = json::parse(text);
  auto catalog = events::builtin_catalog();
  auto v = catalog.validate_event(events::EventType(events::kServiceInstanceRegistered), 1,
                                  static_cast<const rapidjson::Value&>(doc));
  EXPECT_TRUE(v.ok()) << v.message << " at " << v.instance_path;
  const auto back = parse_registration(doc);
  EXPECT_EQ(back.name, r.name);
  EXPECT_EQ(back.transport, r.transport);
  EXPECT_EQ(back.endpoints, r.endpoints);
  EXPECT_EQ(back.subscriptions, r.subscriptions);
  EXPECT_EQ(back.event_types, r.event_types);
  EXPECT_EQ(back.command_types, r.command_types);
  EXPECT_EQ(back.metadata, r.metadata);
  EXPECT_EQ(back.ttl(), 6000ms);
}

TEST(RegistryProtocol, AmqpTransportHasNoBaseUrl) {
  auto r = sample();
  r.transport = {};
  auto doc = json::parse(to_json(r));
  EXPECT_FALSE(doc["transport"].HasMember("base_url"));
  auto catalog = events::builtin_catalog();
  EXPECT_TRUE(catalog
                  .validate_event(events::EventType(events::kServiceInstanceRegistered), 1,
                                  static_cast<const rapidjson::Value&>(doc))
                  .ok());
}

TEST(RegistryProtocol, HeartbeatIntervalFromMetadataSetsTheTtl) {
  auto r = sample();
  r.metadata = R"({"heartbeat_interval_ms":500})";
  EXPECT_EQ(r.ttl(), 1500ms);
  r.metadata = R"({"heartbeat_interval_ms":"fast"})";
  EXPECT_EQ(r.ttl(), 6000ms);
  r.metadata = R"({"heartbeat_interval_ms":1})";  // below the floor: ignored
  EXPECT_EQ(r.ttl(), 6000ms);
}

TEST(RegistryProtocol, HeartbeatAndDeregistrationPassThePlatformSchemas) {
  auto catalog = events::builtin_catalog();
  Heartbeat h{"orders", "orders-1", "1.2.0", 3, 0.5};
  auto doc = json::parse(to_json(h));
  EXPECT_TRUE(catalog
                  .validate_event(events::EventType(events::kServiceHeartbeat), 1,
                                  static_cast<const rapidjson::Value&>(doc))
                  .ok());
  auto back = parse_heartbeat(to_json(h));
  EXPECT_EQ(back.instance_id, "orders-1");
  EXPECT_EQ(back.in_flight, 3);
  EXPECT_THROW(parse_heartbeat(R"({"name":"x"})"), json::Error);
  EXPECT_THROW(parse_heartbeat("not json"), json::Error);

  Deregistration d{"orders", "orders-1", "shutdown"};
  auto dd = json::parse(to_json(d));
  EXPECT_TRUE(catalog
                  .validate_event(events::EventType(events::kServiceInstanceDeregistered), 1,
                                  static_cast<const rapidjson::Value&>(dd))
                  .ok());
  EXPECT_EQ(parse_deregistration(dd).reason, "shutdown");
}

TEST(RegistryProtocol, ExpiryIdsAreDeterministicPerRegistration) {
  const events::TenantId t(kPlatformTenant);
  auto id = [&](std::int64_t pos) {
    return events::derive_event_id(t, events::CommandId(expiry_command_id("orders-1", pos)), 0);
  };
  EXPECT_EQ(id(7), id(7));
  EXPECT_NE(id(7), id(8));
  EXPECT_EQ(instance_stream("orders-1"), "service-instance-orders-1");
  EXPECT_EQ(register_requested_key("orders"), "service.register_requested.orders");
}

TEST(RegistryProtocol, AppendRequestCarriesANumericExpectedVersion) {
  AppendOne a{"service-instance-x",       "_platform", "4", events::new_event_id().value(),
              "service.instance.expired", R"({"a":1})"};
  auto doc = json::parse(append_request_json(a));
  EXPECT_TRUE(doc["expected_version"].IsInt64());
  EXPECT_EQ(doc["expected_version"].GetInt64(), 4);
  a.expected_version = "any";
  doc = json::parse(append_request_json(a));
  EXPECT_STREQ(doc["expected_version"].GetString(), "any");
  EXPECT_EQ(doc["events"].Size(), 1u);
}

// ----------------------------------------------------------------- liveness

events::Timestamp at(std::int64_t ms) {
  return events::Timestamp(std::chrono::milliseconds(ms));
}

LiveInstance live(const std::string& id, std::int64_t registered_ms, std::int64_t position = 1) {
  LiveInstance i;
  i.instance_id = id;
  i.service = "orders";
  i.version = "1";
  i.registered_at = at(registered_ms);
  i.registered_position = position;
  return i;
}

TEST(RegistryLiveness, TrackerKeepsTheNewestAndHandsOutDirtyEntriesSorted) {
  HeartbeatTracker t;
  t.record("b", at(100));
  t.record("a", at(200));
  t.record("b", at(50));  // older: ignored
  EXPECT_EQ(t.last_seen("b"), at(100));
  auto d = t.take_dirty();
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[0].instance_id, "a");
  EXPECT_EQ(d[1].instance_id, "b");
  EXPECT_TRUE(t.take_dirty().empty());
  t.restore_dirty({{"a", at(150)}});
  auto again = t.take_dirty();
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].at, at(200));  // restoring never moves back
  EXPECT_EQ(t.received(), 3u);
  EXPECT_EQ(t.forget_older_than(at(150)), 1u);
  EXPECT_FALSE(t.last_seen("b"));
}

TEST(RegistryLiveness, ExpiresOnlyPastTheTtlFromTheLatestEvidence) {
  std::vector<LiveInstance> l{live("quiet", 0), live("beating", 0), live("new", 9000),
                              live("stored", 0)};
  std::map<std::string, events::Timestamp> mem{{"beating", at(8000)}};
  std::map<std::string, events::Timestamp> db{{"stored", at(7000)}};
  auto remembered = [&](const std::string& id) -> std::optional<events::Timestamp> {
    auto it = mem.find(id);
    return it == mem.end() ? std::nullopt : std::optional(it->second);
  };
  auto stored = [&](const std::string& id) -> std::optional<events::Timestamp> {
    auto it = db.find(id);
    return it == db.end() ? std::nullopt : std::optional(it->second);
  };
  auto out = find_expired(l, at(10000), remembered, stored, nullptr);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].instance->instance_id, "quiet");
  EXPECT_EQ(out[0].last_seen, at(0));
  // Exactly at the TTL is not past it.
  EXPECT_TRUE(find_expired({live("edge", 4000)}, at(10000), remembered, stored, nullptr).empty());
  EXPECT_EQ(find_expired({live("edge", 4000)}, at(10001), remembered, stored, nullptr).size(), 1u);
  // An expiry in flight is not sent again.
  EXPECT_TRUE(find_expired(l, at(10000), remembered, stored, [](const LiveInstance&) {
                return true;
              }).empty());
}

TEST(RegistryLiveness, PauseLastsOneTtlFromTheLatestCause) {
  ExpiryPause p(6s);
  const auto t0 = ExpiryPause::Clock::now();
  EXPECT_FALSE(p.paused(t0));
  p.pause_from(t0);
  EXPECT_TRUE(p.paused(t0 + 5s));
  EXPECT_FALSE(p.paused(t0 + 6s));
  p.pause_from(t0 + 3s);
  EXPECT_TRUE(p.paused(t0 + 8s));
  p.pause_from(t0);  // an older cause never shortens it
  EXPECT_EQ(p.until(), t0 + 9s);
}

TEST(RegistryLiveness, UnknownInstancesAreAskedAfterTheGraceThenRarely) {
  UnknownInstances u(1500ms, 5000ms);
  EXPECT_FALSE(u.should_ask("x", at(0)));
  EXPECT_FALSE(u.should_ask("x", at(1000)));
  EXPECT_TRUE(u.should_ask("x", at(2000)));
  EXPECT_FALSE(u.should_ask("x", at(4000)));
  EXPECT_TRUE(u.should_ask("x", at(7000)));
  u.known("x");
  EXPECT_EQ(u.size(), 0u);
  EXPECT_FALSE(u.should_ask("x", at(8000)));
  EXPECT_FALSE(u.should_ask("y", at(8000)));
  EXPECT_EQ(u.forget_older_than(at(8001)), 2u);
  EXPECT_EQ(u.size(), 0u);
}

// -------------------------------------------------------------- route table

TEST(RegistryRoutes, GroupsByServiceAndVersionWithDefaultWeights) {
  auto a = live("a", 0, 1);
  a.endpoints = {{"GET", "/o", {}, true, std::nullopt}};
  auto b = live("b", 0, 2);
  b.endpoints = {{"GET", "/o", {"admin"}, false, std::nullopt},
                 {"POST", "/o", {}, false, std::nullopt}};
  auto c = live("c", 0, 3);
  c.version = "2";
  c.transport = {Transport::Kind::http, "http://h:1"};
  auto t = assemble_route_table(42, {c, b, a}, {});
  EXPECT_EQ(t.version, 42);
  ASSERT_EQ(t.services.size(), 1u);
  const auto& s = t.services[0];
  ASSERT_EQ(s.versions.size(), 2u);
  EXPECT_EQ(s.versions[0].version, "1");
  EXPECT_EQ(s.versions[0].weight, kDefaultWeight);
  ASSERT_EQ(s.versions[0].instances.size(), 2u);
  EXPECT_EQ(s.versions[0].instances[0].instance_id, "a");
  ASSERT_EQ(s.versions[0].endpoints.size(), 2u);
  // The later registration (b) wins for GET /o.
  EXPECT_EQ(s.versions[0].endpoints[0].roles, std::vector<std::string>{"admin"});
  EXPECT_EQ(s.versions[1].instances[0].transport.base_url, "http://h:1");
  EXPECT_EQ(route_table_from_json(to_json(t)), t);
}

TEST(RegistryRoutes, WeightsOnceSetGiveUnlistedVersionsNothing) {
  auto a = live("a", 0);
  auto c = live("c", 0);
  c.version = "2";
  auto d = live("d", 0);
  d.service = "billing";
  WeightMap w{
      {{"orders", "1"}, 90}, {{"orders", "2"}, std::nullopt}, {{"billing", "1"}, std::nullopt}};
  auto t = assemble_route_table(1, {a, c, d}, w);
  ASSERT_EQ(t.services.size(), 2u);
  EXPECT_EQ(t.services[0].name, "billing");
  EXPECT_EQ(t.services[0].versions[0].weight, kDefaultWeight);
  EXPECT_EQ(t.services[1].versions[0].weight, 90);
  EXPECT_EQ(t.services[1].versions[1].weight, 0);
}

TEST(RegistryRoutes, KnownServicesWithoutLiveInstancesAppearWithNoVersions) {
  auto a = live("a", 0);
  auto t = assemble_route_table(7, {a}, {}, {"billing", "orders"});
  ASSERT_EQ(t.services.size(), 2u);
  EXPECT_EQ(t.services[0].name, "billing");
  EXPECT_TRUE(t.services[0].versions.empty());
  EXPECT_EQ(t.services[1].name, "orders");
  EXPECT_EQ(t.services[1].versions.size(), 1u);
  EXPECT_EQ(route_table_from_json(to_json(t)), t);
}

TEST(RegistryReadModel, SchemaAddressesTablesThroughTheirNames) {
  auto ddl = read_model_schema(TableNames::with_prefix("x_"));
  ASSERT_FALSE(ddl.empty());
  for (const auto& d : ddl) EXPECT_EQ(d.find('{'), std::string::npos) << d;
  EXPECT_NE(ddl[0].find("x_services"), std::string::npos);
  EXPECT_EQ(read_model_event_types().size(), 4u);
}

}  // namespace
}  // namespace sb::registry
