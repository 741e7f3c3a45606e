// The identity view: the fold of identity.* events the edge enforces with.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "identity_events.hpp"
#include "switchboard/edge/identity_view.hpp"
#include "switchboard/shared/json.hpp"

using namespace sb;
using namespace sb::edge;
using sb::edgetest::IdentityEvents;

TEST(IdentityView, TenantPolicyFollowsCreatedChangedSuspendedReinstated) {
  IdentityView v;
  IdentityEvents ev(v);
  EXPECT_FALSE(v.tenant("acme"));
  EXPECT_TRUE(v.service_enabled("acme", "orders")) << "no policy: everything enabled";
  ev.tenant("acme", R"(["orders","payments"])", "[]");
  EXPECT_TRUE(v.service_enabled("acme", "orders"));
  EXPECT_FALSE(v.service_enabled("acme", "inventory"));
  EXPECT_TRUE(v.service_enabled("acme", "identity")) << "identity is always enabled";
  ev.apply("identity.tenant.services_changed", "tenant-acme", "acme",
           R"({"services":["*"],"disabled":["payments"]})");
  EXPECT_TRUE(v.service_enabled("acme", "inventory"));
  EXPECT_FALSE(v.service_enabled("acme", "payments"));
  EXPECT_FALSE(v.tenant_suspended("acme"));
  ev.apply("identity.tenant.suspended", "tenant-acme", "acme", R"({"reason":"unpaid"})");
  EXPECT_TRUE(v.tenant_suspended("acme"));
  EXPECT_FALSE(v.tenant_suspended("globex"));
  ev.apply("identity.tenant.reinstated", "tenant-acme", "acme", R"({"reason":"paid"})");
  EXPECT_FALSE(v.tenant_suspended("acme"));
}

TEST(IdentityView, UsersSecurityVersionAndDeactivation) {
  IdentityView v;
  IdentityEvents ev(v);
  ev.apply("identity.user.registered", "user-u1", "acme",
           R"({"user_id":"u1","username":"ann","email":"","roles":["user"],)"
           R"("password_hash":"$argon2id$x","invited":false})");
  EXPECT_EQ(v.check_token("u1", "s1", 0), TokenDenial::none);
  ev.user_event("roles_changed", "acme", "u1", 1);
  EXPECT_EQ(v.check_token("u1", "s1", 0), TokenDenial::stale_user_version);
  EXPECT_EQ(v.check_token("u1", "s1", 1), TokenDenial::none);
  ev.user_event("deactivated", "acme", "u1", 2);
  EXPECT_EQ(v.check_token("u1", "s1", 2), TokenDenial::user_deactivated);
  ev.user_event("reactivated", "acme", "u1", 3);
  EXPECT_EQ(v.check_token("u1", "s1", 2), TokenDenial::stale_user_version);
  EXPECT_EQ(v.check_token("u1", "s1", 3), TokenDenial::none);
  EXPECT_EQ(v.check_token("someone-else", "", 0), TokenDenial::none) << "unknown users pass";
}

TEST(IdentityView, RevokedSessionsAreKeptUntilTheirTokensExpireThenPruned) {
  IdentityView v(60);
  IdentityEvents ev(v);
  ev.revoke_session("acme", "s1", 1000);
  ev.revoke_session("acme", "s2", 5000);
  EXPECT_EQ(v.check_token("u1", "s1", 0), TokenDenial::session_revoked);
  EXPECT_TRUE(v.session_revoked("s2"));
  EXPECT_EQ(v.prune(1000 + 60), 0u) << "kept through the leeway";
  EXPECT_EQ(v.prune(1000 + 61), 1u);
  EXPECT_FALSE(v.session_revoked("s1"));
  EXPECT_TRUE(v.session_revoked("s2"));
  EXPECT_EQ(v.revoked_sessions(), 1u);
}

TEST(IdentityView, CustomRolesAreDefinedAndRemovedPerTenant) {
  IdentityView v;
  IdentityEvents ev(v);
  ev.apply("identity.role.defined", "role-acme.auditor", "acme",
           R"({"role":"auditor","permissions":["route:orders:GET:*","platform:events:read"]})");
  EXPECT_TRUE(v.role_grants("acme", "auditor", "route:orders:GET:/orders/{id}"));
  EXPECT_FALSE(v.role_grants("acme", "auditor", "route:orders:POST:/orders"));
  EXPECT_FALSE(v.role_grants("globex", "auditor", "platform:events:read")) << "per tenant";
  EXPECT_EQ(v.role_permissions("acme", "auditor").size(), 2u);
  ev.apply("identity.role.removed", "role-acme.auditor", "acme", R"({"role":"auditor"})");
  EXPECT_FALSE(v.role_grants("acme", "auditor", "platform:events:read"));
}

TEST(IdentityView, ApiKeysByPrefixStayKnownWhenRevoked) {
  IdentityView v;
  IdentityEvents ev(v);
  ev.api_key("acme", "k1", "0123456789ab", "hash", R"(["user"])", R"(["command:orders.*"])", 99);
  auto k = v.api_key("0123456789ab");
  ASSERT_TRUE(k);
  EXPECT_EQ(k->key_id, "k1");
  EXPECT_EQ(k->tenant, "acme");
  EXPECT_EQ(k->scopes, std::vector<std::string>{"command:orders.*"});
  EXPECT_EQ(k->expires_at, 99);
  EXPECT_FALSE(k->revoked);
  ev.apply("identity.apikey.revoked", "apikey-k1", "acme",
           R"({"key_id":"k1","prefix":"0123456789ab"})");
  EXPECT_TRUE(v.api_key("0123456789ab")->revoked);
  EXPECT_FALSE(v.api_key("ffffffffffff"));
}

TEST(IdentityView, OldPositionsAndOtherTypesAreIgnoredMalformedDataThrows) {
  IdentityView v;
  IdentityEvents ev(v);
  auto suspended = ev.make("identity.tenant.suspended", "tenant-acme", "acme", R"({"reason":""})");
  auto other = ev.make("orders.order.placed", "order-1", "acme", "{}");
  auto bad = ev.make("identity.apikey.issued", "apikey-x", "acme", R"({"key_id":"x"})");
  EXPECT_TRUE(v.apply(suspended));
  EXPECT_FALSE(v.apply(suspended)) << "the same position again";
  EXPECT_FALSE(v.apply(other));
  EXPECT_THROW(v.apply(bad), sb::json::Error);
  EXPECT_EQ(v.position(), bad.position.value()) << "the position advances past a bad event";
  EXPECT_TRUE(v.tenant_suspended("acme"));
}

TEST(IdentityView, ReadersRunAlongsideTheWriter) {
  IdentityView v;
  IdentityEvents ev(v);
  std::atomic<bool> done{false};
  std::atomic<std::int64_t> seen{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 4; ++r) {
    readers.emplace_back([&] {
      while (!done) {
        if (v.check_token("u1", "s-7", 0) == TokenDenial::session_revoked) seen++;
        (void)v.service_enabled("acme", "orders");
      }
    });
  }
  for (int i = 0; i < 2000; ++i) ev.revoke_session("acme", "s-" + std::to_string(i), 4'000'000'000);
  done = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(v.revoked_sessions(), 2000u);
  EXPECT_TRUE(v.session_revoked("s-7"));
}
