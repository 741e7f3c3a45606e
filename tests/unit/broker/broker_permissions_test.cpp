// Server-free tests of the broker users' permissions (protocol §11.6): each
// regex matched against the names the code really uses, the user_id
// property in the codec, and scripts/servers.sh applying exactly
// platform_permissions(). std::regex (ECMAScript) agrees with RabbitMQ's
// PCRE on these patterns: alternation, groups, escapes, `.+`.

#include "amqp_codec.hpp"
#include "switchboard/broker/broker.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace sb::broker {
namespace {

bool matches(const std::string& re, const std::string& name) {
  return std::regex_match(name, std::regex(re));
}

// Queue names as the code builds them (events/push.cpp, events/head_signals.cpp,
// services/sdk/src/plugin.cpp, broker retry/parked and rpc).
const std::string kInstance = "0190c6a2-7a4e-7cc0-8f00-000000000001";
std::string push(const std::string& group) {
  return "sub." + group;
}

TEST(BrokerPermissions, PluginMayConfigureItsOwnQueuesOnly) {
  const Permissions p = plugin_permissions("orders");
  const std::string main = push("orders.shipping");
  for (const std::string& own : std::vector<std::string>{
           main, main + ".overflow", retry_queue_name(main, std::chrono::seconds(1)),
           parked_queue_name(main), retry_queue_name(main + ".overflow", std::chrono::seconds(10)),
           RpcServer::queue_for("orders.1.2.0").name,
           "sb.head.orders." + kInstance + ".abcdef012345", "sb.regreq." + kInstance,
           "amq.gen-xyz"}) {
    EXPECT_TRUE(matches(p.configure, own)) << own;
    EXPECT_TRUE(matches(p.write, own)) << own;  // queue.bind
    EXPECT_TRUE(matches(p.read, own)) << own;   // basic.consume, DLX declare
  }
  for (const std::string& other :
       {push("billing.x"), std::string("sub.orders"), std::string("sub.ordersx.y"),
        std::string("rpc.orders-x.1"), std::string("rpc.store.append"), std::string("store.ingest"),
        std::string("registry.heartbeats.r.1"), std::string("sb.head.registry.1"),
        std::string("sb.events"), std::string("sb.ingest"), std::string("sb.signals"),
        std::string("sb.rpc"), std::string("sb.dlx"), std::string("amq.default")}) {
    EXPECT_FALSE(matches(p.configure, other)) << other;
  }
}

TEST(BrokerPermissions, PluginWritesWhatTheSdkPublishesButNeverSbEvents) {
  const Permissions p = plugin_permissions("orders");
  for (const char* x : {"sb.ingest", "sb.signals", "sb.rpc", "sb.dlx", "amq.default"}) {
    EXPECT_TRUE(matches(p.write, x)) << x;
  }
  EXPECT_FALSE(matches(p.write, "sb.events"));
  EXPECT_FALSE(matches(p.write, push("billing.x")));
  for (const char* x : {"sb.events", "sb.signals", "sb.rpc", "sb.dlx", "amq.rabbitmq.reply-to"}) {
    EXPECT_TRUE(matches(p.read, x)) << x;
  }
  EXPECT_FALSE(matches(p.read, "sb.ingest"));
  EXPECT_FALSE(matches(p.read, push("billing.x")));
  EXPECT_FALSE(matches(p.read, "sub.billing.x.parked"));
  EXPECT_FALSE(matches(p.read, "rpc.store.append"));
  EXPECT_FALSE(matches(p.read, "store.ingest"));
  ASSERT_EQ(p.topics.size(), 1u);
  EXPECT_EQ(p.topics[0].exchange, "sb.dlx");
  EXPECT_TRUE(matches(p.topics[0].read, "sub.orders.shipping.overflow"));
  EXPECT_FALSE(matches(p.topics[0].read, "sub.billing.x.overflow"));
}

TEST(BrokerPermissions, PluginNamesAndUsers) {
  EXPECT_EQ(plugin_user("orders"), "plugin-orders");
  EXPECT_EQ(plugin_of_user("plugin-orders"), std::optional<std::string_view>("orders"));
  EXPECT_EQ(plugin_of_user("sb-store"), std::nullopt);
  EXPECT_EQ(plugin_of_user("plugin-"), std::nullopt);
  for (const char* bad : {"", "Orders", "a.b", "-x", "store", "registry", "edge", "identity", "sb",
                          "amq", "x y", "ä"}) {
    EXPECT_FALSE(valid_plugin_name(bad)) << bad;
    EXPECT_THROW(plugin_permissions(bad), std::invalid_argument) << bad;
  }
  EXPECT_TRUE(valid_plugin_name("my_plugin-2"));
}

TEST(BrokerPermissions, OnlyTheStoreWritesSbEventsAndConfiguresExchanges) {
  for (auto s : kPlatformServices) {
    const Permissions p = platform_permissions(s);
    const bool store = s == PlatformService::store;
    EXPECT_EQ(matches(p.write, "sb.events"), store) << to_string(s);
    for (const char* x : {"sb.events", "sb.ingest", "sb.signals", "sb.rpc", "sb.dlx"}) {
      EXPECT_EQ(matches(p.configure, x), store) << to_string(s) << " " << x;
    }
    EXPECT_EQ(platform_user(s), "sb-" + std::string(to_string(s)));
  }
}

TEST(BrokerPermissions, PlatformServicesReachTheirQueues) {
  const Permissions store = platform_permissions(PlatformService::store);
  for (const std::string& q :
       {std::string("store.ingest"), retry_queue_name("store.ingest", std::chrono::seconds(30)),
        parked_queue_name("store.ingest"), RpcServer::queue_for("store.append").name,
        RpcServer::queue_for("store.read").name}) {
    EXPECT_TRUE(matches(store.configure, q) && matches(store.write, q) && matches(store.read, q))
        << q;
  }
  EXPECT_TRUE(matches(store.read, "sb.ingest"));  // binding store.ingest

  const Permissions registry = platform_permissions(PlatformService::registry);
  for (const std::string& q :
       {std::string("registry.heartbeats.r1.abcdef01"), std::string("sb.head.registry.abc"),
        RpcServer::queue_for("registry.routes").name,
        RpcServer::queue_for("registry.set_weights").name}) {
    EXPECT_TRUE(matches(registry.configure, q) && matches(registry.read, q)) << q;
  }
  EXPECT_FALSE(matches(registry.configure, "store.ingest"));

  const Permissions edge = platform_permissions(PlatformService::edge);
  for (const std::string& q :
       {std::string("edge.routes.r1.abcdef01"), std::string("sb.head.edge.abcdef012345")}) {
    EXPECT_TRUE(matches(edge.configure, q) && matches(edge.read, q)) << q;
  }
  // Operator endpoints: list, requeue and drop any group's parked messages.
  EXPECT_TRUE(matches(edge.read, parked_queue_name(push("orders.shipping"))));
  EXPECT_FALSE(matches(edge.read, push("orders.shipping")));
  EXPECT_TRUE(matches(edge.write, "amq.default"));  // replays and requeues

  const Permissions identity = platform_permissions(PlatformService::identity);
  EXPECT_TRUE(matches(identity.configure, RpcServer::queue_for("identity.1.0.0").name));
  EXPECT_TRUE(matches(identity.configure, push("identity.config")));
}

TEST(BrokerPermissions, ServersShAppliesExactlyThesePermissions) {
  const char* src = std::getenv("SB_SOURCE_DIR");
  ASSERT_NE(src, nullptr);
  std::ifstream in(std::string(src) + "/scripts/servers.sh");
  ASSERT_TRUE(in);
  std::stringstream text;
  text << in.rdbuf();
  const std::string script = text.str();
  for (auto s : kPlatformServices) {
    const Permissions p = platform_permissions(s);
    ASSERT_EQ(p.topics.size(), 1u);
    const std::string line = "perm_" + std::string(to_string(s)) + "=('" + p.configure + "' '" +
                             p.write + "' '" + p.read + "' '" + p.topics[0].exchange + "' '" +
                             p.topics[0].write + "' '" + p.topics[0].read + "')";
    EXPECT_NE(script.find(line), std::string::npos) << "scripts/servers.sh should hold\n" << line;
  }
}

TEST(BrokerCodec, UserIdDefaultsToTheLoginUserAndRoundTrips) {
  detail::PropertiesBuilder builder("sb-store");
  Message m;
  m.body = "{}";
  EXPECT_EQ(detail::decode_properties(builder.build(m)).user_id, "sb-store");
  m.user_id = "forged";
  EXPECT_EQ(detail::decode_properties(builder.build(m)).user_id, "forged");
  detail::PropertiesBuilder none;
  Message plain;
  const auto& props = none.build(plain);
  EXPECT_EQ(props._flags & AMQP_BASIC_USER_ID_FLAG, 0u);
  EXPECT_EQ(detail::decode_properties(props).user_id, "");
}

}  // namespace
}  // namespace sb::broker
