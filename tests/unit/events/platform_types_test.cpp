#include <gtest/gtest.h>
#include <rapidjson/pointer.h>

#include "switchboard/events/platform_types.hpp"
#include "switchboard/shared/json.hpp"

using namespace sb::events;

namespace {

constexpr const char* kRegistration = R"({
  "name": "billing",
  "version": "1.4.2",
  "instance_id": "billing-7f9c-1",
  "transport": {"kind": "http", "base_url": "http://10.0.0.7:8080"},
  "endpoints": [
    {"method": "GET", "path": "/invoices/{id}", "roles": ["user"], "public": false},
    {"method": "POST", "path": "/invoices", "roles": [], "public": false,
     "rate_limit": {"per_second": 50, "burst": 100}},
    {"method": "GET", "path": "/health", "roles": [], "public": true}
  ],
  "event_types": [
    {"type": "billing.invoice.paid", "description": "Money arrived.",
     "versions": [{"version": 1, "schema": {"type": "object", "required": ["amount"]}},
                  {"version": 2, "schema": {"type": "object", "required": ["amount", "currency"]}}]},
    {"type": "billing.dunning.tick", "transient": true,
     "versions": [{"version": 1, "schema": {"type": "object"}}]}
  ],
  "command_types": [
    {"name": "billing.pay_invoice", "schema": {"type": "object", "required": ["invoice_id"]},
     "roles": ["tenant_admin"], "emits": ["billing.invoice.paid"]}
  ],
  "subscriptions": [
    {"group": "billing-projections", "kind": "checkpointed", "event_types": ["identity.user.registered"]},
    {"group": "billing-mailer", "kind": "push", "event_types": ["billing.invoice.*"]}
  ],
  "metadata": {"region": "eu-west-1", "build": {"commit": "abc123"}}
})";

rapidjson::Document edited(const char* pointer, const char* value_json) {
  auto doc = sb::json::parse(kRegistration);
  rapidjson::Document value;
  value.Parse(value_json);
  rapidjson::Value copy(value, doc.GetAllocator());  // deep copy into doc's allocator
  rapidjson::Pointer(pointer).Set(doc, copy);
  return doc;
}

rapidjson::Document removed(const char* pointer) {
  auto doc = sb::json::parse(kRegistration);
  rapidjson::Pointer(pointer).Erase(doc);
  return doc;
}

ValidationResult check(const Catalog& c, std::string_view type, const rapidjson::Value& data) {
  return c.validate_event(EventType(type), 1, data);
}

ValidationResult check(const Catalog& c, std::string_view type, const char* data) {
  return check(c, type, sb::json::parse(data));
}

}  // namespace

TEST(PlatformTypes, AllRegisteredWithTheirPersistence) {
  const auto c = builtin_catalog();
  for (auto type :
       {kServiceInstanceRegistered, kServiceInstanceDeregistered, kServiceInstanceExpired,
        kServiceVersionWeightsSet, kCatalogTypeRegistered, kStreamRetentionSet}) {
    ASSERT_TRUE(c.contains(EventType(type))) << type;
    EXPECT_FALSE(c.is_transient(EventType(type))) << type;
    EXPECT_EQ(c.find(EventType(type))->owner, kPlatformOwner);
  }
  for (auto type : {kServiceHeartbeat, kStoreHeadAdvanced}) {
    ASSERT_TRUE(c.contains(EventType(type))) << type;
    EXPECT_TRUE(c.is_transient(EventType(type))) << type;
  }
  EXPECT_EQ(c.event_types().size(), 8u);
  // Registering them again (every process does at start-up) changes nothing.
  Catalog again = builtin_catalog();
  const auto v = again.version();
  register_platform_types(again);
  EXPECT_EQ(again.version(), v);
}

TEST(PlatformTypes, RegistrationAcceptsARealisticInstance) {
  const auto c = builtin_catalog();
  const auto r = check(c, kServiceInstanceRegistered, kRegistration);
  EXPECT_TRUE(r.ok()) << r.message;
  // An AMQP instance needs no base URL, and empty lists are fine.
  auto amqp = edited("/transport", R"({"kind":"amqp"})");
  EXPECT_TRUE(check(c, kServiceInstanceRegistered, amqp).ok());
  auto empty = edited("/endpoints", "[]");
  EXPECT_TRUE(check(c, kServiceInstanceRegistered, empty).ok());

  // What the registration brings turns into catalog specs.
  Catalog plugin_types = builtin_catalog();
  const auto doc = sb::json::parse(kRegistration);
  for (const auto& t : doc["event_types"].GetArray()) {
    plugin_types.register_event_type(event_type_spec_from_json(t, "billing"));
  }
  for (const auto& t : doc["command_types"].GetArray()) {
    plugin_types.register_command_type(command_spec_from_json(t, "billing"));
  }
  EXPECT_EQ(plugin_types.current_version(EventType("billing.invoice.paid")), 2);
  EXPECT_TRUE(plugin_types.is_transient(EventType("billing.dunning.tick")));
  EXPECT_FALSE(
      plugin_types
          .validate_event(EventType("billing.invoice.paid"), 2, sb::json::parse(R"({"amount":5})"))
          .ok());
}

TEST(PlatformTypes, RegistrationRejectsBrokenInstances) {
  const auto c = builtin_catalog();
  struct Case {
    rapidjson::Document doc;
    const char* instance_path;
  };
  std::vector<Case> cases;
  cases.push_back({removed("/instance_id"), "/instance_id"});
  cases.push_back({edited("/name", R"("Billing Service")"), "/name"});
  cases.push_back({edited("/transport/kind", R"("grpc")"), "/transport/kind"});
  cases.push_back({edited("/transport", R"({"kind":"http"})"), "/transport"});
  cases.push_back({edited("/transport", R"({"kind":"amqp","base_url":"http://x"})"), "/transport"});
  cases.push_back({edited("/transport/base_url", R"("ftp://x")"), "/transport/base_url"});
  cases.push_back({edited("/endpoints/0/method", R"("FETCH")"), "/endpoints/0/method"});
  cases.push_back({edited("/endpoints/1/path", R"("invoices")"), "/endpoints/1/path"});
  cases.push_back(
      {edited("/endpoints/1/rate_limit/per_second", "0"), "/endpoints/1/rate_limit/per_second"});
  cases.push_back({edited("/endpoints/2/public", R"("yes")"), "/endpoints/2/public"});
  cases.push_back({edited("/endpoints/0/extra", "1"), "/endpoints/0/extra"});
  cases.push_back({edited("/event_types/0/type", R"("Billing")"), "/event_types/0/type"});
  cases.push_back({edited("/event_types/0/versions", "[]"), "/event_types/0/versions"});
  cases.push_back(
      {edited("/command_types/0/name", R"("billing.pay.invoice")"), "/command_types/0/name"});
  cases.push_back({edited("/subscriptions/0/kind", R"("pull")"), "/subscriptions/0/kind"});
  cases.push_back({edited("/metadata", "[]"), "/metadata"});
  cases.push_back({edited("/surprise", "true"), "/surprise"});
  for (const auto& c_ : cases) {
    const auto r = check(c, kServiceInstanceRegistered, c_.doc);
    EXPECT_FALSE(r.ok()) << sb::json::to_string(c_.doc);
    EXPECT_EQ(r.instance_path, c_.instance_path) << r.message;
    EXPECT_NE(r.message.find("service.instance.registered v1"), std::string::npos);
  }
}

TEST(PlatformTypes, LifecycleSignalsAndWeights) {
  const auto c = builtin_catalog();
  EXPECT_TRUE(check(c, kServiceInstanceDeregistered,
                    R"({"name":"billing","instance_id":"b-1","reason":"SIGTERM"})")
                  .ok());
  EXPECT_FALSE(check(c, kServiceInstanceDeregistered, R"({"name":"billing"})").ok());
  EXPECT_TRUE(
      check(c, kServiceInstanceExpired,
            R"({"name":"billing","instance_id":"b-1","last_seen":"2026-11-22T08:00:01.123Z"})")
          .ok());
  EXPECT_EQ(check(c, kServiceInstanceExpired,
                  R"({"name":"billing","instance_id":"b-1","last_seen":"yesterday"})")
                .instance_path,
            "/last_seen");
  EXPECT_TRUE(
      check(c, kServiceHeartbeat,
            R"({"name":"billing","instance_id":"b-1","version":"1.4.2","load":{"in_flight":3}})")
          .ok());
  EXPECT_FALSE(check(c, kServiceHeartbeat, R"({"name":"billing","instance_id":"b-1"})").ok());
  EXPECT_TRUE(check(c, kServiceVersionWeightsSet,
                    R"({"service":"billing","weights":{"1.4.2":90,"1.5.0":10}})")
                  .ok());
  EXPECT_EQ(
      check(c, kServiceVersionWeightsSet, R"({"service":"billing","weights":{"1.4.2":"ninety"}})")
          .instance_path,
      "/weights/1.4.2");
  EXPECT_TRUE(check(c, kStoreHeadAdvanced, R"({"position":18211})").ok());
  EXPECT_FALSE(check(c, kStoreHeadAdvanced, R"({"position":-1})").ok());
  EXPECT_FALSE(check(c, kStoreHeadAdvanced, R"({"position":"1"})").ok());
}

TEST(PlatformTypes, CatalogChangesAreValidCatalogEvents) {
  Catalog c = builtin_catalog();
  std::vector<std::string> published;
  c.on_change([&](const CatalogChange& change) { published.push_back(to_json(change)); });
  const auto doc = sb::json::parse(kRegistration);
  c.register_event_type(event_type_spec_from_json(doc["event_types"][0], "billing"));
  c.register_command_type(command_spec_from_json(doc["command_types"][0], "billing"));
  ASSERT_EQ(published.size(), 3u);
  for (const auto& data : published) {
    const auto r = check(c, kCatalogTypeRegistered, data.c_str());
    EXPECT_TRUE(r.ok()) << r.message << "\n" << data;
  }
  const auto first = sb::json::parse(published[0]);
  EXPECT_STREQ(first["kind"].GetString(), "event_type_added");
  EXPECT_EQ(first["catalog_version"].GetUint64(), 9u);
  EXPECT_STREQ(sb::json::parse(published[2])["emits"][0].GetString(), "billing.invoice.paid");
}
