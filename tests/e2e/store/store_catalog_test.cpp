// The open catalog through the real store: a type registered at run time
// (a catalog.type.registered event, as the registry appends when a plugin
// brings its types) is validated and stored like a platform type at once,
// and is still known after the store restarts.
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
std::string event(const std::string& type, const std::string& data) {
  return R"({"id":")" + events::new_event_id().value() + R"(","type":")" + type +
         R"(","schema":1,"occurred_at":"2026-11-22T08:00:01.123Z","data":)" + data + "}";
}
}  // namespace

TEST(StoreCatalog, TypesRegisteredAtRunTimeAreValidatedAndSurviveARestart) {
  auto db = tst::fresh_database("storecat");
  auto amqp = tst::fresh_vhost("storecat");
  tst::StoreProcess store(db, amqp);
  broker::RpcClientOptions ro;
  ro.connection.url = amqp;
  broker::RpcClient rpc(ro);
  auto append = [&](const std::string& stream, const std::string& ev) {
    return tst::call_store(
        rpc, "store.append",
        R"({"stream":")" + stream + R"(","tenant":"acme","events":[)" + ev + "]}");
  };
  auto code = [](const rapidjson::Document& d) { return tst::error_code(d); };
  const std::string widget = event("shop.widget.made", R"({"size":3})");
  EXPECT_EQ(code(append("widget-1", widget)), "unknown_event_type");

  auto registered = append(
      "catalog-shop.widget.made",
      event(
          "catalog.type.registered",
          R"({"kind":"event_type_added","name":"shop.widget.made","owner":"widgets",)"
          R"("catalog_version":1,"schema_version":1,"transient":false,)"
          R"("schema":{"type":"object","required":["size"],"properties":{"size":{"type":"integer"}}}})"));
  ASSERT_EQ(code(registered), "") << json::to_string(registered);

  EXPECT_EQ(code(append("widget-1", event("shop.widget.made", R"({"size":3})"))), "");
  EXPECT_EQ(code(append("widget-1", event("shop.widget.made", R"({"size":"big"})"))),
            "schema_violation");

  store.kill();
  store.start();
  EXPECT_EQ(code(append("widget-2", event("shop.widget.made", R"({"size":4})"))), "")
      << "the restarted store learnt the type from its events";
  EXPECT_EQ(code(append("widget-2", event("shop.widget.made", R"({})"))), "schema_violation");
}
