#include <gtest/gtest.h>

#include "switchboard/events/platform_types.hpp"
#include "switchboard/shared/json.hpp"
#include "switchboard/store/append_codec.hpp"

using namespace sb;
using namespace sb::store;

namespace {
events::Catalog catalog() {
  auto c = events::builtin_catalog();
  c.register_event_type(
      {events::EventType("shop.order.placed"),
       "orders",
       events::Persistence::stored,
       {{1, R"({"type":"object","required":["sku"],"properties":{"sku":{"type":"string"}}})", {}}},
       ""});
  return c;
}

std::string body(const std::string& events, const std::string& extra = R"("tenant":"acme",)") {
  return R"({"stream":"order-1","expected_version":"no_stream",)" + extra + R"("events":)" +
         events + "}";
}

const std::string kEvent =
    R"({"id":"0190c6a2-7a4e-7cc0-8f00-000000000001","type":"shop.order.placed","schema":1,)"
    R"("occurred_at":"2026-11-22T08:00:01.123Z","data":{"sku":"A-1"}})";

DecodeError err(const std::variant<AppendRequest, DecodeError>& v) {
  EXPECT_TRUE(std::holds_alternative<DecodeError>(v));
  return std::holds_alternative<DecodeError>(v) ? std::get<DecodeError>(v) : DecodeError{};
}
}  // namespace

TEST(AppendCodec, DecodesAValidAppend) {
  auto cat = catalog();
  auto v = decode_append(body("[" + kEvent + "]"), cat);
  ASSERT_TRUE(std::holds_alternative<AppendRequest>(v)) << err(v).message;
  const auto& r = std::get<AppendRequest>(v);
  EXPECT_EQ(r.stream.value(), "order-1");
  EXPECT_EQ(r.tenant.value(), "acme");
  EXPECT_EQ(r.expected, events::ExpectedVersion::no_stream());
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].type.value(), "shop.order.placed");
}

TEST(AppendCodec, ExpectedVersionForms) {
  auto cat = catalog();
  auto exact = decode_append(
      R"({"stream":"s","expected_version":4,"tenant":"acme","events":[)" + kEvent + "]}", cat);
  ASSERT_TRUE(std::holds_alternative<AppendRequest>(exact));
  EXPECT_EQ(std::get<AppendRequest>(exact).expected,
            events::ExpectedVersion::exact(events::StreamVersion(4)));
  auto any = decode_append(R"({"stream":"s","tenant":"acme","events":[)" + kEvent + "]}", cat);
  EXPECT_EQ(std::get<AppendRequest>(any).expected, events::ExpectedVersion::any());
  EXPECT_EQ(err(decode_append(R"({"stream":"s","expected_version":true,"tenant":"a","events":[)" +
                                  kEvent + "]}",
                              cat))
                .path,
            "/expected_version");
}

TEST(AppendCodec, BadInputGetsACodeAndAPath) {
  auto cat = catalog();
  EXPECT_EQ(err(decode_append("{not json", cat)).code, "malformed_json");
  EXPECT_EQ(err(decode_append("[1,2]", cat)).code, "invalid_request");
  EXPECT_EQ(err(decode_append(body("[]"), cat)).path, "/events");
  auto no_tenant = err(decode_append(body("[" + kEvent + "]", ""), cat));
  EXPECT_EQ(no_tenant.path, "/tenant");
  auto bad_tenant = err(decode_append(body("[" + kEvent + "]", R"("tenant":"Not Valid!",)"), cat));
  EXPECT_EQ(bad_tenant.path, "/tenant");
  auto missing_id = err(decode_append(
      body(R"([{"type":"shop.order.placed","occurred_at":"2026-11-22T08:00:01Z","data":{}}])"),
      cat));
  EXPECT_EQ(missing_id.code, "invalid_request");
  EXPECT_EQ(missing_id.path.rfind("/events/0", 0), 0u) << missing_id.path;
}

TEST(AppendCodec, UnknownTransientAndInvalidTypesAreRejected) {
  auto cat = catalog();
  std::string unknown = kEvent;
  unknown.replace(unknown.find("shop.order.placed"), 17, "shop.order.shipped");
  auto u = err(decode_append(body("[" + unknown + "]"), cat));
  EXPECT_EQ(u.code, "unknown_event_type");
  EXPECT_EQ(u.path, "/events/0/type");

  std::string transient = kEvent;
  transient.replace(transient.find("shop.order.placed"), 17, "service.heartbeat");
  EXPECT_EQ(err(decode_append(body("[" + transient + "]"), cat)).code, "transient_event_type");

  std::string bad = kEvent;
  bad.replace(bad.find(R"({"sku":"A-1"})"), 13, R"({"sku":42})");
  auto s = err(decode_append(body("[" + bad + "]"), cat));
  EXPECT_EQ(s.code, "schema_violation");
  EXPECT_EQ(s.path, "/events/0/data/sku");
}

TEST(AppendCodec, OversizedIsRejected) {
  auto cat = catalog();
  std::string big = kEvent;
  big.replace(big.find(R"("A-1")"), 5, "\"" + std::string(2 * 1024 * 1024, 'x') + "\"");
  EXPECT_EQ(err(decode_append(body("[" + big + "]"), cat)).code, "too_large");
  std::string many = "[";
  for (int i = 0; i < 1001; ++i) many += (i > 0 ? "," : "") + kEvent;
  many += "]";
  EXPECT_EQ(err(decode_append(body(many), cat)).code, "too_large");
}

TEST(AppendCodec, ResultsEncodeAsJson) {
  AppendResult ok{AppendResult::Kind::appended, {5, 6}, 1, -1, "", ""};
  auto d = json::parse(encode_result(ok));
  EXPECT_EQ(json::require_string(d, "result"), "appended");
  EXPECT_EQ(d["positions"][1].GetInt64(), 6);
  AppendResult conflict{AppendResult::Kind::conflict, {}, -1, 3, "wrong_expected_version", "m"};
  auto c = json::parse(encode_result(conflict));
  EXPECT_EQ(json::require_string(c["error"], "code"), "wrong_expected_version");
  EXPECT_EQ(c["error"]["details"]["current_version"].GetInt64(), 3);
  auto e = json::parse(encode_error({"schema_violation", "bad \"sku\"", "/events/0/data/sku"}));
  EXPECT_EQ(json::require_string(e["error"]["details"], "path"), "/events/0/data/sku");
}

namespace {
AppendRequest decoded(const std::string& events_json) {
  auto cat = catalog();
  auto v = decode_append(body(events_json), cat);
  EXPECT_TRUE(std::holds_alternative<AppendRequest>(v)) << err(v).message;
  return std::get<AppendRequest>(v);
}

const std::string kEventWithMeta =
    R"({"id":"0190c6a2-7a4e-7cc0-8f00-000000000002","type":"shop.order.placed","schema":1,)"
    R"("occurred_at":"2026-11-22T08:00:01.123Z","data":{"sku":"A-1"},)"
    R"("meta":{"traceparent":"t","publisher":"forged"},"actor":"user:u1"})";
}  // namespace

TEST(AppendCodec, StampsThePublisherIntoMeta) {
  auto r = decoded("[" + kEvent + "," + kEventWithMeta + "]");
  stamp_publisher(r, "sb-registry", false);
  ASSERT_EQ(r.events.size(), 2u);
  // No meta: the member alone; meta with a caller's publisher: replaced, the
  // rest kept.
  EXPECT_EQ(r.events[0].meta, events::Payload::parse(R"({"publisher":"sb-registry"})"));
  EXPECT_EQ(r.events[1].meta,
            events::Payload::parse(R"({"traceparent":"t","publisher":"sb-registry"})"));
  EXPECT_EQ(r.events[1].actor->value(), "user:u1");  // an RPC append keeps its actor
  EXPECT_FALSE(r.events[0].actor.has_value());
}

TEST(AppendCodec, SplicedMetaIsValidJsonWithOtherMembers) {
  auto r = decoded(
      R"([{"id":"0190c6a2-7a4e-7cc0-8f00-000000000003","type":"shop.order.placed","schema":1,)"
      R"("occurred_at":"2026-11-22T08:00:01.123Z","data":{"sku":"A-1"},"meta":{"a":[1,{"b":"\""}]}}])");
  stamp_publisher(r, "plugin-a\"b", false);
  const auto& meta = r.events[0].meta;
  EXPECT_EQ(meta, events::Payload::parse(R"({"a":[1,{"b":"\""}],"publisher":"plugin-a\"b"})"));
  EXPECT_EQ(json::parse(meta.text())["publisher"].GetString(), std::string("plugin-a\"b"));
}

TEST(AppendCodec, IngestFromAPluginActsAsTheService) {
  auto r = decoded("[" + kEvent + "," + kEventWithMeta + "]");
  stamp_publisher(r, "plugin-orders", true);
  for (const auto& e : r.events) {
    ASSERT_TRUE(e.actor.has_value());
    EXPECT_EQ(e.actor->value(), "service:orders");
    EXPECT_EQ(json::parse(e.meta.text())["publisher"].GetString(), std::string("plugin-orders"));
  }
  // A platform user's ingest keeps the actor it sent.
  auto p = decoded("[" + kEventWithMeta + "]");
  stamp_publisher(p, "sb-registry", true);
  EXPECT_EQ(p.events[0].actor->value(), "user:u1");
}

TEST(AppendCodec, NoUserIdRecordsNothing) {
  auto r = decoded("[" + kEvent + "," + kEventWithMeta + "]");
  stamp_publisher(r, "", true);
  EXPECT_EQ(r.events[0].meta, events::Payload());
  // A caller's own claim is dropped: the member only ever holds a validated user.
  EXPECT_EQ(r.events[1].meta, events::Payload::parse(R"({"traceparent":"t"})"));
  EXPECT_EQ(r.events[1].actor->value(), "user:u1");
}
