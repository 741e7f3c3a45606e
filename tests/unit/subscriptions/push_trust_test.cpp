// Who a push subscription trusts (protocol §10.1, §11.6): the decision on a
// delivery's validated publisher, and the list the SDK gives its push
// reactions. No server.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "switchboard/events/push.hpp"

namespace sb::events {
namespace {

const std::vector<std::string> kTrusted{"sb-store", "sb-edge", "plugin-orders"};

TEST(PushTrust, ATrustedPublisherIsHandled) {
  EXPECT_EQ(untrusted_publisher("sb-store", kTrusted), std::nullopt);
  EXPECT_EQ(untrusted_publisher("sb-edge", kTrusted), std::nullopt);
  // The consumer's own user: what it published itself (or, in a harness
  // where every process is one user, everything).
  EXPECT_EQ(untrusted_publisher("plugin-orders", kTrusted), std::nullopt);
}

TEST(PushTrust, AnotherUserIsRefusedAndNamed) {
  const auto why = untrusted_publisher("plugin-evil", kTrusted);
  ASSERT_TRUE(why.has_value());
  EXPECT_NE(why->find("untrusted publisher 'plugin-evil'"), std::string::npos) << *why;
  EXPECT_NE(why->find("sb-store"), std::string::npos) << *why;
}

TEST(PushTrust, NoUserIdIsRefused) {
  const auto why = untrusted_publisher("", kTrusted);
  ASSERT_TRUE(why.has_value());
  EXPECT_NE(why->find("no user_id"), std::string::npos) << *why;
  // Even when a misconfigured list holds an empty name.
  EXPECT_TRUE(untrusted_publisher("", {"", "sb-store"}).has_value());
}

TEST(PushTrust, MatchingIsExact) {
  EXPECT_TRUE(untrusted_publisher("SB-STORE", kTrusted).has_value());
  EXPECT_TRUE(untrusted_publisher("sb-store ", kTrusted).has_value());
  EXPECT_TRUE(untrusted_publisher("sb-stor", kTrusted).has_value());
}

TEST(PushTrust, AnEmptyListTurnsTheCheckOff) {
  EXPECT_EQ(untrusted_publisher("plugin-evil", {}), std::nullopt);
  EXPECT_EQ(untrusted_publisher("", {}), std::nullopt);
}

}  // namespace
}  // namespace sb::events
