#include <gtest/gtest.h>

#include <thread>

#include "switchboard/events/envelope.hpp"
#include "switchboard/events/uuid.hpp"
#include "switchboard/shared/json.hpp"

using namespace sb::events;

namespace {

Event sample_event() {
  return Event{
      .id = EventId("0190f5d2-7c1a-7b3e-8f00-1234567890ab"),
      .type = EventType("identity.user.registered"),
      .schema_version = 2,
      .stream = StreamId("user-4f1c"),
      .version = StreamVersion(3),
      .position = Position(18211),
      .tenant = TenantId("acme"),
      .occurred_at = parse_rfc3339("2026-11-22T08:00:01.123Z"),
      .recorded_at = parse_rfc3339("2026-11-22T08:00:01.125Z"),
      .correlation_id = CorrelationId("req-77"),
      .causation_id = CausationId("cmd-1"),
      .actor = ActorId("user:4f1c"),
      .data = Payload::parse(
          R"({"email":"zoë@example.com","name":"Zoë 🚀 \"Z\"","tags":["a","b"],"address":{"city":"Köln","geo":{"lat":50.94,"lon":6.96}},"n":null,"ok":true,"big":9007199254740993})"),
      .meta = Payload::parse(R"({"traceparent":"00-abc-def-01"})"),
  };
}

const char* kSampleJson =
    R"({"id":"0190f5d2-7c1a-7b3e-8f00-1234567890ab","type":"identity.user.registered","schema":2,)"
    R"("stream":"user-4f1c","version":3,"position":18211,"tenant":"acme",)"
    R"("occurred_at":"2026-11-22T08:00:01.123Z","recorded_at":"2026-11-22T08:00:01.125Z",)"
    R"("correlation_id":"req-77","causation_id":"cmd-1","actor":"user:4f1c",)"
    R"("data":{"email":"zoë@example.com","name":"Zoë 🚀 \"Z\"","tags":["a","b"],)"
    R"("address":{"city":"Köln","geo":{"lat":50.94,"lon":6.96}},"n":null,"ok":true,)"
    R"("big":9007199254740993},"meta":{"traceparent":"00-abc-def-01"}})";

std::string json_without(const std::string& key) {
  auto doc = sb::json::parse(kSampleJson);
  doc.RemoveMember(key.c_str());
  return sb::json::to_string(doc);
}

std::string json_with(const std::string& key, const char* value_json) {
  auto doc = sb::json::parse(kSampleJson);
  rapidjson::Document value;
  value.Parse(value_json);
  doc[key.c_str()].CopyFrom(value, doc.GetAllocator());
  return sb::json::to_string(doc);
}

void expect_error_at(const std::string& text, const std::string& path,
                     const std::string& fragment = "") {
  try {
    event_from_json(text);
    FAIL() << "accepted: " << text;
  } catch (const sb::json::Error& e) {
    EXPECT_EQ(e.path(), path) << e.what();
    if (!fragment.empty()) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  }
}

}  // namespace

TEST(Envelope, SerialisesInTheDocumentedShape) {
  EXPECT_EQ(to_json(sample_event()), kSampleJson);
}

TEST(Envelope, RoundTripIsExact) {
  const auto event = sample_event();
  const auto text = to_json(event);
  const auto back = event_from_json(text);
  EXPECT_EQ(back, event);
  EXPECT_EQ(to_json(back), text);
  EXPECT_EQ(back.data.value()["address"]["geo"]["lat"].GetDouble(), 50.94);
  EXPECT_EQ(back.data.value()["big"].GetInt64(), 9007199254740993);
  EXPECT_STREQ(back.data.value()["name"].GetString(), "Zoë 🚀 \"Z\"");
}

TEST(Envelope, OptionalFieldsAreOmittedAndReadBack) {
  auto event = sample_event();
  event.causation_id.reset();
  event.actor.reset();
  event.meta = Payload();
  const auto text = to_json(event);
  EXPECT_EQ(text.find("causation_id"), std::string::npos);
  EXPECT_EQ(text.find("actor"), std::string::npos);
  EXPECT_NE(text.find(R"("meta":{})"), std::string::npos);
  EXPECT_EQ(event_from_json(text), event);
  // Absent meta, null optional fields and unknown fields are accepted.
  const auto lenient = event_from_json(json_with("actor", "null"));
  EXPECT_FALSE(lenient.actor.has_value());
  EXPECT_EQ(event_from_json(json_without("meta")).meta, Payload());
  EXPECT_NO_THROW(event_from_json(json_with("id", R"("0190F5D2-7C1A-7B3E-8F00-1234567890AB")")));
  auto doc = sb::json::parse(kSampleJson);
  doc.AddMember("added_later", 1, doc.GetAllocator());
  EXPECT_EQ(event_from_json(sb::json::to_string(doc)), sample_event());
}

TEST(Envelope, NonCompactInputIsCompactedSoNdjsonStaysOneLine) {
  auto event = event_from_json(json_with("data", "{\n  \"a\" : [1, 2],\n  \"b\" : \"x\\ny\"\n}"));
  EXPECT_EQ(event.data.text(), R"({"a":[1,2],"b":"x\ny"})");
  EXPECT_EQ(to_json(event).find('\n'), std::string::npos);
}

TEST(Envelope, MalformedInputNamesTheField) {
  expect_error_at("{", "", "malformed JSON");
  expect_error_at("[]", "", "object");
  expect_error_at(json_without("id"), "/id", "missing");
  expect_error_at(json_with("id", R"("nope")"), "/id", "UUID");
  expect_error_at(json_with("type", R"("Identity.User")"), "/type", "event type");
  expect_error_at(json_with("schema", "0"), "/schema");
  expect_error_at(json_with("schema", R"("2")"), "/schema", "integer");
  expect_error_at(json_with("stream", R"("")"), "/stream");
  expect_error_at(json_with("version", "-1"), "/version", "negative");
  expect_error_at(json_with("position", "1.5"), "/position");
  expect_error_at(json_without("tenant"), "/tenant");
  expect_error_at(json_with("occurred_at", R"("2026-11-22 08:00")"), "/occurred_at", "RFC 3339");
  expect_error_at(json_with("recorded_at", "17"), "/recorded_at", "string");
  expect_error_at(json_without("correlation_id"), "/correlation_id");
  expect_error_at(json_with("causation_id", "7"), "/causation_id");
  expect_error_at(json_with("actor", R"("a b")"), "/actor");
  expect_error_at(json_without("data"), "/data");
  expect_error_at(json_with("data", "[1]"), "/data", "object");
  expect_error_at(json_with("meta", R"("x")"), "/meta", "object");
}

TEST(Envelope, NewEventRoundTrip) {
  NewEvent proposed{
      .id = new_event_id(),
      .type = EventType("billing.invoice.paid"),
      .schema_version = 1,
      .data =
          Payload::parse(R"({"amount":{"value":"12.50","currency":"EUR"},"lines":[{"sku":"ü"}]})"),
      .meta = Payload(),
      .occurred_at = now_ms(),
      .correlation_id = std::nullopt,
      .causation_id = CausationId("cmd-9"),
      .actor = std::nullopt,
  };
  const auto text = to_json(proposed);
  EXPECT_EQ(new_event_from_json(text), proposed);
  EXPECT_EQ(to_json(new_event_from_json(text)), text);
  // The schema version defaults to 1 for producers that leave it out.
  auto doc = sb::json::parse(text);
  doc.RemoveMember("schema");
  EXPECT_EQ(new_event_from_json(sb::json::to_string(doc)).schema_version, 1);
  try {
    doc.RemoveMember("occurred_at");
    new_event_from_json(sb::json::to_string(doc));
    FAIL();
  } catch (const sb::json::Error& e) {
    EXPECT_EQ(e.path(), "/occurred_at");
  }
}

TEST(Envelope, RecordAddsWhatTheStoreAssigns) {
  NewEvent proposed{.id = new_event_id(),
                    .type = EventType("billing.invoice.paid"),
                    .data = Payload::parse(R"({"x":1})"),
                    .meta = Payload(),
                    .occurred_at = now_ms()};
  const auto id = proposed.id;
  const auto at = now_ms();
  const auto event =
      record(proposed, StreamId("invoice-1"), StreamVersion(0), Position(5), TenantId("acme"), at);
  EXPECT_EQ(event.id, id);
  EXPECT_EQ(event.correlation_id.value(), id.value());  // defaults to the event's own id
  EXPECT_EQ(event.position, Position(5));
  EXPECT_EQ(event.recorded_at, at);
  EXPECT_EQ(event.data.text(), R"({"x":1})");
  proposed.correlation_id = CorrelationId("req-1");
  EXPECT_EQ(
      record(proposed, StreamId("invoice-1"), StreamVersion(0), Position(5), TenantId("acme"), at)
          .correlation_id.value(),
      "req-1");
}

TEST(Payload, CopiesShareAndCompareByValue) {
  const auto a = Payload::parse(R"({"b":1,"a":[1,2,{"c":null}]})");
  const auto copy = a;
  EXPECT_EQ(&copy.value(), &a.value());
  EXPECT_EQ(a, Payload::parse(R"({ "a" : [1,2,{"c":null}], "b" : 1 })"));
  EXPECT_NE(a, Payload::parse(R"({"b":2,"a":[1,2,{"c":null}]})"));
  EXPECT_EQ(Payload().text(), "{}");
  EXPECT_TRUE(Payload().is_object());
  auto doc = a.to_document();
  doc["b"].SetInt(2);
  EXPECT_EQ(a.value()["b"].GetInt(), 1);  // the copy is deep
  EXPECT_EQ(Payload::from_document(std::move(doc)).text(), R"({"b":2,"a":[1,2,{"c":null}]})");
  EXPECT_THROW(Payload::parse("{"), sb::json::Error);
}

TEST(Payload, TrustedTextIsParsedOnceOnDemandFromAnyThread) {
  const auto p = Payload::from_trusted_text(R"({"a": 1, "b": [true]})");
  EXPECT_EQ(p.text(), R"({"a": 1, "b": [true]})");  // kept as stored
  std::vector<std::thread> threads;
  std::vector<const rapidjson::Value*> seen(4);
  for (std::size_t i = 0; i < seen.size(); ++i) {
    threads.emplace_back([&, i] { seen[i] = &p.value(); });
  }
  for (auto& t : threads) t.join();
  for (const auto* v : seen) EXPECT_EQ(v, seen[0]);
  EXPECT_EQ(p.value()["a"].GetInt(), 1);
  EXPECT_EQ(p, Payload::parse(R"({"a":1,"b":[true]})"));

  const auto broken = Payload::from_trusted_text("{nope");
  EXPECT_THROW(broken.value(), sb::json::Error);
  EXPECT_THROW(broken.value(), sb::json::Error);  // and again, not a crash
}
