// The trusted publishers the SDK gives its push reactions (protocol §10.1,
// §11.6): the store's and the edge's users by default, the names
// scripts/servers.sh creates, plus the process's own login user.

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "switchboard/sdk/sdk.hpp"

namespace sb::sdk {
namespace {

using Users = std::vector<std::string>;

Options with_url(std::string url) {
  Options o;
  o.rabbitmq_url = std::move(url);
  return o;
}

TEST(SdkPushTrust, DefaultsAreThePlatformUsersPlusTheOwnLogin) {
  EXPECT_EQ(Options{}.trusted_publishers, (Users{"sb-store", "sb-edge"}));
  EXPECT_EQ(push_trusted_publishers(with_url("amqp://plugin-orders:s3cret@127.0.0.1:5672/")),
            (Users{"sb-store", "sb-edge", "plugin-orders"}));
}

TEST(SdkPushTrust, TheOwnLoginIsNotRepeated) {
  // The harness: every process is the same user; run.sh: the edge is sb-edge.
  EXPECT_EQ(push_trusted_publishers(with_url("amqp://sb-edge:pw@host/vh")),
            (Users{"sb-store", "sb-edge"}));
}

TEST(SdkPushTrust, TheLoginUserIsReadAsRabbitmqCReadsIt) {
  EXPECT_EQ(push_trusted_publishers(with_url("amqp://sb@localhost")).back(), "sb");
  EXPECT_EQ(push_trusted_publishers(with_url("amqp://plugin%2Dx:p%40ss@h:1/%2F")).back(),
            "plugin-x");
  EXPECT_EQ(push_trusted_publishers(with_url("amqp://a%40b:pw@h/v%2Fw")).back(), "a@b");
  EXPECT_EQ(push_trusted_publishers(with_url("amqp://localhost:5672/")).back(), "guest");
}

TEST(SdkPushTrust, AnEmptyListTurnsTheCheckOff) {
  auto o = with_url("amqp://plugin-orders:pw@h/");
  o.trusted_publishers.clear();
  EXPECT_TRUE(push_trusted_publishers(o).empty());
}

TEST(SdkPushTrust, ConfigKeysFillTheList) {
  const auto schema = config_schema("orders");
  auto load = [&](std::map<std::string, std::string> env) {
    env["SB_RABBITMQ_URL"] = "amqp://plugin-orders:pw@h/";
    return options_from_config(config::Config::load(schema, "", env));
  };
  EXPECT_EQ(load({}).trusted_publishers, (Users{"sb-store", "sb-edge"}));
  EXPECT_EQ(load({{"SB_RABBITMQ_STORE_USER", "store-2"}, {"SB_RABBITMQ_EDGE_USER", ""}})
                .trusted_publishers,
            (Users{"store-2"}));
  EXPECT_TRUE(load({{"SB_RABBITMQ_STORE_USER", ""}, {"SB_RABBITMQ_EDGE_USER", ""}})
                  .trusted_publishers.empty());
}

}  // namespace
}  // namespace sb::sdk
