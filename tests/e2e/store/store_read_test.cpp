// RPC store.read through the real store process: paged stream reads both
// ways, paged reads by position with a type filter, tenant isolation.
#include <gtest/gtest.h>

#include "store_process.hpp"
#include "switchboard/broker/rpc.hpp"
#include "switchboard/events/uuid.hpp"
#include "switchboard/shared/json.hpp"
#include "switchboard/testing/servers.hpp"

using namespace sb;
using namespace std::chrono_literals;
namespace tst = sb::testing;

namespace {
std::string events_json(int n, const std::string& type) {
  std::string out = "[";
  for (int i = 0; i < n; ++i) {
    out += (i ? "," : "") + std::string(R"({"id":")") + events::new_event_id().value() +
           R"(","type":")" + type +
           R"(","schema":1,"occurred_at":"2026-11-22T08:00:01.123Z","data":{"i":)" +
           std::to_string(i) + "}}";
  }
  return out + "]";
}
}  // namespace

TEST(StoreRead, PagesByStreamAndByPositionWithinTheTenant) {
  auto db = tst::fresh_database("storeread");
  auto amqp = tst::fresh_vhost("storeread");
  tst::StoreProcess store(db, amqp);
  broker::RpcClientOptions ro;
  ro.connection.url = amqp;
  broker::RpcClient rpc(ro);
  auto call = [&](const std::string& service, const std::string& body) {
    return tst::call_store(rpc, service, body);
  };
  auto ok = call("store.append", R"({"stream":"cart-1","tenant":"acme","events":)" +
                                     events_json(25, "test.thing.happened") + "}");
  ASSERT_TRUE(ok.HasMember("result"));
  call("store.append", R"({"stream":"cart-2","tenant":"acme","events":)" +
                           events_json(5, "test.other.happened") + "}");
  call("store.append", R"({"stream":"cart-3","tenant":"globex","events":)" +
                           events_json(3, "test.thing.happened") + "}");

  auto page = call("store.read", R"({"tenant":"acme","stream":"cart-1","limit":10})");
  ASSERT_TRUE(page.HasMember("events")) << json::to_string(page);
  EXPECT_EQ(page["events"].Size(), 10u);
  EXPECT_EQ(page["next_version"].GetInt64(), 10);
  EXPECT_EQ(page["last_version"].GetInt64(), 24);
  auto back =
      call("store.read", R"({"tenant":"acme","stream":"cart-1","direction":"backward","limit":3})");
  EXPECT_EQ(back["events"][0]["version"].GetInt64(), 24);
  EXPECT_EQ(back["next_version"].GetInt64(), 21);

  auto foreign = call("store.read", R"({"tenant":"acme","stream":"cart-3"})");
  EXPECT_STREQ(foreign["error"]["code"].GetString(), "stream_not_found");

  // By position, filtered, page by page until the head.
  std::int64_t after = 0;
  std::size_t seen = 0;
  for (int pages = 0; pages < 20; ++pages) {
    auto p = call("store.read", R"({"tenant":"acme","types":["test.thing.*"],"limit":7,"after":)" +
                                    std::to_string(after) + "}");
    for (const auto& e : p["events"].GetArray()) {
      EXPECT_STREQ(e["tenant"].GetString(), "acme");
      EXPECT_STREQ(e["type"].GetString(), "test.thing.happened");
      ++seen;
    }
    after = p["next_after"].GetInt64();
    if (after >= p["head"].GetInt64()) break;
  }
  EXPECT_EQ(seen, 25u);
  auto everyone = call("store.read", R"({"tenant":"*","limit":1000})");
  EXPECT_EQ(everyone["events"].Size(), 33u);
  auto bad = call("store.read", R"({"tenant":"acme","limit":5000})");
  EXPECT_STREQ(bad["error"]["code"].GetString(), "invalid_request");
}
