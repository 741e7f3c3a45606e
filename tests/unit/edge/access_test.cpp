// Tenant (suspended), services enabled per tenant, and RBAC (11.4).
#include <gtest/gtest.h>

#include "identity_events.hpp"
#include "switchboard/edge/http.hpp"
#include "switchboard/edge/rbac.hpp"
#include "switchboard/edge/service_policy.hpp"
#include "switchboard/edge/tenant_check.hpp"

using namespace sb;
using namespace sb::edge;
using sb::edgetest::IdentityEvents;

namespace {

auth::Principal user(std::string tenant, std::vector<std::string> roles) {
  auth::Principal p;
  p.subject = "u1";
  p.tenant = std::move(tenant);
  p.roles = std::move(roles);
  return p;
}

auth::Principal key(std::string tenant, std::vector<std::string> roles,
                    std::vector<std::string> scopes) {
  auto p = user(std::move(tenant), std::move(roles));
  p.kind = auth::Principal::Kind::api_key;
  p.subject = "k1";
  p.scopes = std::move(scopes);
  return p;
}

// The error code thrown, or "".
std::string code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const HttpError& e) {
    return std::to_string(e.status()) + " " + e.code();
  }
  return "";
}

}  // namespace

TEST(TenantCheck, SuspendedCredentialOrActingTenantIs403) {
  IdentityView v;
  IdentityEvents ev(v);
  ev.tenant("acme");
  ev.tenant("globex");
  ev.apply("identity.tenant.suspended", "tenant-globex", "globex", R"({"reason":""})");
  EXPECT_EQ(code_of([&] { require_tenant_active(v, user("acme", {"user"}), "acme"); }), "");
  EXPECT_EQ(code_of([&] { require_tenant_active(v, user("globex", {"user"}), "globex"); }),
            "403 tenant_suspended");
  auto root = user("_platform", {"super_admin"});
  EXPECT_EQ(code_of([&] { require_tenant_active(v, root, "globex", "orders"); }),
            "403 tenant_suspended")
      << "a super admin acting for a suspended tenant";
  EXPECT_EQ(code_of([&] { require_tenant_active(v, root, "globex", "identity"); }), "")
      << "except towards identity (to reinstate it)";
  EXPECT_EQ(code_of([&] { require_tenant_active(v, user("nobody", {}), "nobody"); }), "")
      << "unknown tenants are not suspended";
}

TEST(ServicePolicy, DisabledOrUnlistedServiceIs403IdentityAlwaysUnknownTenantAlways) {
  IdentityView v;
  IdentityEvents ev(v);
  ev.tenant("acme", R"(["orders"])", "[]");
  ev.tenant("globex", R"(["*"])", R"(["payments"])");
  EXPECT_EQ(code_of([&] { require_service_enabled(v, "acme", "orders"); }), "");
  EXPECT_EQ(code_of([&] { require_service_enabled(v, "acme", "payments"); }),
            "403 service_not_enabled");
  EXPECT_EQ(code_of([&] { require_service_enabled(v, "acme", "identity"); }), "");
  EXPECT_EQ(code_of([&] { require_service_enabled(v, "globex", "inventory"); }), "");
  EXPECT_EQ(code_of([&] { require_service_enabled(v, "globex", "payments"); }),
            "403 service_not_enabled");
  EXPECT_EQ(code_of([&] { require_service_enabled(v, "devtenant", "payments"); }), "");
  EXPECT_EQ(code_of([&] { require_service_enabled(v, "", "payments"); }), "") << "anonymous";
}

// Pattern matching and the hierarchy themselves: tests/unit/shared/auth_test.cpp.
TEST(Rbac, PermissionKeys) {
  EXPECT_EQ(route_permission("orders", "GET", "/orders/{id}"), "route:orders:GET:/orders/{id}");
  EXPECT_EQ(command_permission("orders.place"), "command:orders.place");
  EXPECT_EQ(platform_permission("events", false), "platform:events:read");
  EXPECT_EQ(platform_permission("replays", true), "platform:replays:write");
}

TEST(Rbac, HierarchySuperAdminOverTenantAdminOverUser) {
  const std::string k = "command:orders.place";
  EXPECT_EQ(code_of([&] { authorize(nullptr, user("acme", {"user"}), {"user"}, k); }), "");
  EXPECT_EQ(code_of([&] { authorize(nullptr, user("acme", {"tenant_admin"}), {"user"}, k); }), "");
  EXPECT_EQ(code_of([&] { authorize(nullptr, user("acme", {"super_admin"}), {"user"}, k); }), "");
  EXPECT_EQ(code_of([&] { authorize(nullptr, user("acme", {"super_admin"}), {"x"}, k); }), "");
  EXPECT_EQ(code_of([&] { authorize(nullptr, user("acme", {"user"}), {"tenant_admin"}, k); }),
            "403 forbidden");
  EXPECT_EQ(
      code_of([&] { authorize(nullptr, user("acme", {"tenant_admin"}), {"super_admin"}, k); }),
      "403 forbidden");
  EXPECT_EQ(code_of([&] { authorize(nullptr, user("acme", {}), {}, k); }), "")
      << "no roles listed: any authenticated caller";
  EXPECT_EQ(code_of([&] { authorize(nullptr, user("acme", {"admin"}), {"admin"}, k); }), "")
      << "a listed custom role held directly";
}

TEST(Rbac, CustomRolesGrantByTheirTenantsPermissionPatterns) {
  IdentityView v;
  IdentityEvents ev(v);
  ev.apply("identity.role.defined", "role-acme.clerk", "acme",
           R"({"role":"clerk","permissions":["command:orders.*","route:orders:GET:*"]})");
  const auto clerk = user("acme", {"clerk"});
  EXPECT_EQ(code_of([&] { authorize(&v, clerk, {"user"}, "command:orders.place"); }), "");
  EXPECT_EQ(code_of([&] { authorize(&v, clerk, {"tenant_admin"}, "route:orders:GET:/o/{id}"); }),
            "");
  EXPECT_EQ(code_of([&] { authorize(&v, clerk, {"user"}, "command:payments.refund"); }),
            "403 forbidden");
  EXPECT_EQ(
      code_of([&] { authorize(&v, user("globex", {"clerk"}), {"user"}, "command:orders.place"); }),
      "403 forbidden")
      << "another tenant's clerk";
  EXPECT_EQ(code_of([&] { authorize(&v, clerk, {"tenant_admin"}, "platform:replays:write"); }),
            "403 forbidden");
}

TEST(Rbac, ApiKeysMustAlsoHaveAMatchingScope) {
  const auto scoped = key("acme", {"tenant_admin"}, {"command:orders.*", "platform:events:read"});
  EXPECT_EQ(code_of([&] { authorize(nullptr, scoped, {"user"}, "command:orders.place"); }), "");
  EXPECT_EQ(code_of([&] { authorize(nullptr, scoped, {"user"}, "command:payments.refund"); }),
            "403 forbidden")
      << "role passes, scope does not";
  EXPECT_EQ(code_of([&] { require_scope(scoped, "platform:events:read"); }), "");
  EXPECT_EQ(code_of([&] { require_scope(scoped, "platform:replays:write"); }), "403 forbidden");
  const auto unlimited = key("acme", {"user"}, {"*"});
  EXPECT_EQ(code_of([&] { authorize(nullptr, unlimited, {"user"}, "route:a:GET:/x"); }), "");
  EXPECT_EQ(code_of([&] { authorize(nullptr, key("acme", {"user"}, {}), {}, "route:a:GET:/x"); }),
            "403 forbidden")
      << "no scopes: nothing";
  EXPECT_EQ(code_of([&] { require_scope(user("acme", {}), "anything"); }), "")
      << "users have no scopes";
}
