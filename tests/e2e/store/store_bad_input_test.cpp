// Bad input never crashes the store and never disappears: RPC appends get a
// clear error code naming the problem; unusable messages on the ingest queue
// are parked at once with the reason. The store keeps serving throughout.
#include <gtest/gtest.h>

#include "store_process.hpp"
#include "switchboard/broker/consumer.hpp"
#include "switchboard/broker/publisher.hpp"
#include "switchboard/broker/rpc.hpp"
#include "switchboard/events/uuid.hpp"
#include "switchboard/shared/json.hpp"
#include "switchboard/testing/servers.hpp"

using namespace sb;
using namespace std::chrono_literals;
namespace tst = sb::testing;

namespace {

std::string event(const std::string& type, const std::string& data) {
  return R"({"id":")" + events::new_event_id().value() + R"(","type":")" + type +
         R"(","schema":1,"occurred_at":"2026-11-22T08:00:01.123Z","data":)" + data + "}";
}

std::string append(const std::string& stream, const std::string& expected, const std::string& ev) {
  return R"({"stream":")" + stream + R"(","expected_version":)" + expected +
         R"(,"tenant":"acme","events":[)" + ev + "]}";
}

class BadInput : public ::testing::Test {
 protected:
  std::string db = tst::fresh_database("storebad");
  std::string amqp = tst::fresh_vhost("storebad");
  broker::ConnectionOptions conn = [this] {
    broker::ConnectionOptions c;
    c.url = amqp;
    return c;
  }();
  tst::StoreProcess store{db, amqp};
  broker::RpcClient rpc{broker::RpcClientOptions{conn, 64}};

  // The store's reply body.
  std::string call(const std::string& body) {
    return json::to_string(tst::call_store(rpc, "store.append", body));
  }
  static std::string code(const std::string& reply) { return tst::error_code(json::parse(reply)); }
  static std::string path(const std::string& reply) {
    auto d = json::parse(reply);
    return json::require_string(d["error"]["details"], "path");
  }
};

}  // namespace

TEST_F(BadInput, RpcAppendsGetClearErrorsAndTheStoreKeepsRunning) {
  auto malformed = call(R"({"stream": "s", "events": [)");
  EXPECT_EQ(code(malformed), "malformed_json") << malformed;

  auto unknown = call(append("s-1", "\"any\"", event("nope.thing.happened", "{}")));
  EXPECT_EQ(code(unknown), "unknown_event_type") << unknown;
  EXPECT_EQ(path(unknown), "/events/0/type");

  auto schema = call(append("s-1", "\"any\"", event("service.instance.expired", R"({"name":42})")));
  EXPECT_EQ(code(schema), "schema_violation") << schema;
  EXPECT_EQ(path(schema).rfind("/events/0/data", 0), 0u) << schema;

  auto transient = call(append("s-1", "\"any\"", event("service.heartbeat", "{}")));
  EXPECT_EQ(code(transient), "transient_event_type") << transient;

  auto big =
      call(append("s-1", "\"any\"",
                  event("test.thing.happened", R"({"pad":")" + std::string(1100000, 'x') + "\"}")));
  EXPECT_EQ(code(big), "too_large") << big.substr(0, 200);

  auto no_tenant = call(R"({"stream":"s","events":[)" + event("test.thing.happened", "{}") + "]}");
  EXPECT_EQ(code(no_tenant), "invalid_request");

  auto first = call(append("order-9", "\"no_stream\"", event("test.thing.happened", "{}")));
  EXPECT_EQ(code(first), "") << first;
  auto conflict = call(append("order-9", "\"no_stream\"", event("test.thing.happened", "{}")));
  EXPECT_EQ(code(conflict), "wrong_expected_version") << conflict;
  EXPECT_EQ(json::parse(conflict)["error"]["details"]["current_version"].GetInt64(), 0);

  EXPECT_TRUE(store.child().running());
  auto ok = call(append("order-9", "0", event("test.thing.happened", R"({"n":2})")));
  EXPECT_EQ(code(ok), "") << ok;
  EXPECT_EQ(json::parse(ok)["positions"][0].GetInt64(), 2);
}

TEST_F(BadInput, UnusableIngestMessagesAreParkedAtOnceWithTheReason) {
  // Wait until the store serves (it declares the ingest queue then).
  ASSERT_NE(call(append("warmup", "\"any\"", event("test.thing.happened", "{}"))), "");
  broker::PublisherOptions po;
  po.connection = conn;
  po.topology = broker::platform_topology();
  broker::Publisher publisher(po);
  auto send = [&](const std::string& body) {
    broker::Message m;
    m.body = body;
    auto outcome =
        publisher.publish(m, {broker::kIngestExchange, "store.ingest", true, std::nullopt}).get();
    ASSERT_TRUE(outcome.ok()) << outcome.reason;
  };
  send("{definitely not json");
  send(append("s-2", "\"any\"", event("service.instance.expired", R"({"name":42})")));
  send(append("s-2", "\"any\"", event("test.thing.happened", R"({"fine":true})")));

  broker::ParkedQueue parked(conn, "store.ingest");
  std::vector<broker::ParkedMessage> list;
  ASSERT_TRUE(tst::wait_until(
      [&] {
        list = parked.list(10);
        return list.size() >= 2;
      },
      15s, 100ms))
      << "parked: " << list.size();
  EXPECT_EQ(list.size(), 2u);
  EXPECT_NE(list[0].error.find("malformed_json"), std::string::npos) << list[0].error;
  EXPECT_NE(list[1].error.find("schema_violation"), std::string::npos) << list[1].error;
  EXPECT_EQ(list[0].failures, 1u) << "bad input must not be retried";
  EXPECT_TRUE(store.child().running());
}
