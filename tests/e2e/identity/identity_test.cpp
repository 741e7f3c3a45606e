// The identity service through the edge's HTTP API (docs/protocol.md 11):
// bootstrap, tenants, users, login/refresh/logout, failed-login limits, role
// checks, API keys, tenant config, tenant isolation, plugin credentials
// (the broker user they create has the broker library's permissions, and
// works as a restricted user: protocol 11.6).
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <regex>

#include "../edge/edge_stack.hpp"
#include "switchboard/broker/broker.hpp"
#include "switchboard/broker/permissions.hpp"

using namespace sb;
using namespace sb::edgetest;

namespace {

const std::string kRootPassword = "root-password-123";

class Identity : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto& srv = tst::servers();
    identity = std::make_unique<Proc>(
        "sb-identity", "services/identity/sb-identity",
        std::map<std::string, std::string>{
            {"SB_POSTGRES_URL", stack.db},
            {"SB_RABBITMQ_URL", stack.amqp},
            {"SB_REDIS_URL", srv.redis_url},
            {"SB_HTTP_PORT", "0"},
            {"SB_AUTH_JWT_SECRET", kJwtSecret},
            {"SB_IDENTITY_BOOTSTRAP_USERNAME", "root"},
            {"SB_IDENTITY_BOOTSTRAP_PASSWORD", kRootPassword},
            // A cheap Argon2id for tests (development mode allows it).
            {"SB_IDENTITY_PASSWORD_MEMORY_KIB", "64"},
            {"SB_IDENTITY_PASSWORD_OPS", "1"},
            // Every test logs in from 127.0.0.1 against one Redis: the per-address
            // limit would couple the tests (the per-user limit is what they check).
            {"SB_IDENTITY_LOGIN_ADDRESS_FAILURES", "1000000"},
            {"SB_RABBITMQ_MANAGEMENT_URL", srv.rabbitmq_mgmt_url},
            {"SB_RABBITMQ_MANAGEMENT_USER", srv.rabbitmq_user},
            {"SB_RABBITMQ_MANAGEMENT_PASSWORD", srv.rabbitmq_password}});
    // Bootstrapped and routed: the root can log in.
    ASSERT_TRUE(tst::wait_until(
        [&] { return login("_platform", "root", kRootPassword).status == 200; }, 60s, 100ms))
        << identity->output();
    root = login("_platform", "root", kRootPassword).json()["access_token"].GetString();
  }

  Response login(const std::string& tenant, const std::string& user, const std::string& password,
                 const std::string& address = "") {
    std::map<std::string, std::string> h;
    h["X-Forwarded-For"] = address.empty() ? address_ : address;
    return http.post("/api/identity/login",
                     R"({"tenant":)" + json::quoted(tenant) + R"(,"username":)" +
                         json::quoted(user) + R"(,"password":)" + json::quoted(password) + "}",
                     h);
  }

  Response command(const std::string& token, const std::string& name, const std::string& body,
                   const std::string& tenant = "") {
    auto h = bearer(token);
    if (!tenant.empty()) h["X-Tenant"] = tenant;
    return http.post("/api/v1/commands/identity/" + name, body, h);
  }

  Response get(const std::string& token, const std::string& path, std::int64_t min_position = 0,
               const std::string& tenant = "") {
    auto h = bearer(token);
    if (min_position > 0) h["X-Min-Position"] = std::to_string(min_position);
    if (!tenant.empty()) h["X-Tenant"] = tenant;
    return http.get("/api/identity" + path, h);
  }

  static std::int64_t position(const Response& r) { return r.json()["position"].GetInt64(); }

  /// Registers `user` in `tenant` (as root) and logs in.
  std::string user_token(const std::string& tenant, const std::string& user,
                         const std::string& roles) {
    auto r = command(root, "register_user",
                     R"({"username":)" + json::quoted(user) + R"(,"password":"password-of-)" +
                         user + R"(","roles":)" + roles + "}",
                     tenant);
    EXPECT_TRUE(r.status == 201 || r.status == 200) << r.status << " " << r.body;
    auto l = login(tenant, user, "password-of-" + user);
    EXPECT_EQ(l.status, 200) << l.body;
    return l.status == 200 ? l.json()["access_token"].GetString() : "";
  }

  Stack stack;
  Http http{stack.edge_port};
  std::unique_ptr<Proc> identity;
  std::string root;
  std::string address_ = "10.0.0." + std::to_string(std::random_device{}() % 250 + 1);
};

bool created(const Response& r) {
  return r.status == 201 || r.status == 200;
}

/// A response header by name in any case (the edge passes them lower-case).
std::string header(const Response& r, std::string name) {
  auto lower = [](std::string v) {
    std::transform(v.begin(), v.end(), v.begin(), [](char c) {
      return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    });
    return v;
  };
  name = lower(name);
  for (const auto& [k, v] : r.headers) {
    if (lower(k) == name) return v;
  }
  return "";
}

}  // namespace

TEST_F(Identity, UsersSessionsKeysConfigAndIsolation) {
  const auto a = tst::unique_name("ta");
  const auto b = tst::unique_name("tb");
  ASSERT_TRUE(created(command(root, "create_tenant", R"({"tenant":")" + a + R"(","name":"A"})")));
  ASSERT_TRUE(created(command(root, "create_tenant", R"({"tenant":")" + b + R"(","name":"B"})")));
  EXPECT_EQ(command(root, "create_tenant", R"({"tenant":")" + a + R"(","name":"A"})").error_code(),
            "tenant_exists");
  EXPECT_EQ(command(root, "create_tenant", R"({"tenant":"Bad Name","name":"A"})").status, 400);

  // A tenant admin registers a user; the user logs in and sees themself.
  const auto admin_a = user_token(a, "admin", R"(["tenant_admin"])");
  auto reg = command(admin_a, "register_user",
                     R"({"username":"Bob","password":"bob-password","email":"bob@a"})");
  ASSERT_TRUE(created(reg)) << reg.body;
  const std::string bob_id = reg.json()["user_id"].GetString();
  EXPECT_EQ(command(admin_a, "register_user", R"({"username":"bob","password":"another-pw"})")
                .error_code(),
            "username_taken");
  EXPECT_EQ(command(admin_a, "register_user", R"({"username":"eve","password":"short"})").status,
            400);
  // Only a super admin grants super_admin.
  EXPECT_EQ(command(admin_a, "register_user",
                    R"({"username":"mallory","password":"password-x","roles":["super_admin"]})")
                .status,
            403);

  auto bob = login(a, "bob", "bob-password");
  ASSERT_EQ(bob.status, 200) << bob.body;
  auto bj = bob.json();
  EXPECT_EQ(std::string(bj["token_type"].GetString()), "Bearer");
  EXPECT_EQ(bj["expires_in"].GetInt64(), 900);
  EXPECT_EQ(std::string(bj["user_id"].GetString()), bob_id);
  const std::string first_token = bj["access_token"].GetString();
  const std::string r1 = bj["refresh_token"].GetString();
  auto me = get(first_token, "/me");
  ASSERT_EQ(me.status, 200) << me.body;
  EXPECT_EQ(std::string(me.json()["username"].GetString()), "Bob");
  EXPECT_EQ(me.body.find("hash"), std::string::npos);
  // The same answer for an unknown user and a wrong password.
  auto unknown = login(a, "nobody", "whatever-pw", "10.1.1.1");
  auto wrong = login(a, "bob", "wrong-password", "10.1.1.1");
  EXPECT_EQ(unknown.status, 401);
  EXPECT_EQ(wrong.status, 401);
  EXPECT_EQ(unknown.body, wrong.body);
  EXPECT_EQ(wrong.error_code(), "invalid_credentials");

  // Refresh rotates; the rotated token again revokes the family.
  auto refreshed = http.post("/api/identity/refresh", R"({"refresh_token":")" + r1 + R"("})");
  ASSERT_EQ(refreshed.status, 200) << refreshed.body;
  const std::string r2 = refreshed.json()["refresh_token"].GetString();
  EXPECT_NE(r1, r2);
  EXPECT_FALSE(std::string(refreshed.json()["access_token"].GetString()).empty());
  auto reused = http.post("/api/identity/refresh", R"({"refresh_token":")" + r1 + R"("})");
  EXPECT_EQ(reused.status, 401);
  EXPECT_EQ(reused.error_code(), "invalid_refresh_token");
  EXPECT_EQ(http.post("/api/identity/refresh", R"({"refresh_token":")" + r2 + R"("})").status, 401);

  // Logout ends the session: its refresh token is refused.
  auto again = login(a, "bob", "bob-password").json();
  const std::string r3 = again["refresh_token"].GetString();
  const std::string t3 = again["access_token"].GetString();
  auto out = http.post("/api/identity/logout", R"({"refresh_token":")" + r3 + R"("})", bearer(t3));
  EXPECT_EQ(out.status, 204) << out.body;
  EXPECT_EQ(http.post("/api/identity/refresh", R"({"refresh_token":")" + r3 + R"("})").status, 401);

  // Bob's earlier sessions are gone (reuse, logout): a fresh one.
  auto fresh = login(a, "bob", "bob-password");
  ASSERT_EQ(fresh.status, 200) << fresh.body;
  const std::string bob_token = fresh.json()["access_token"].GetString();

  // A user is not a tenant admin.
  auto forbidden =
      command(bob_token, "register_user", R"({"username":"carol","password":"carol-password"})");
  EXPECT_EQ(forbidden.status, 403) << forbidden.body;
  EXPECT_EQ(get(bob_token, "/users").status, 403);

  // API keys: shown once, never listed.
  auto key = command(admin_a, "issue_api_key", R"({"name":"ci","scopes":["command:orders.*"]})");
  ASSERT_TRUE(created(key)) << key.body;
  const std::string api_key = key.json()["api_key"].GetString();
  const std::string key_id = key.json()["key_id"].GetString();
  EXPECT_TRUE(std::regex_match(api_key, std::regex("^sbk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$")));
  EXPECT_EQ(command(admin_a, "issue_api_key", R"({"name":"x","scopes":["bogus"]})").status, 400);
  auto keys = get(admin_a, "/api-keys", position(key));
  ASSERT_EQ(keys.status, 200) << keys.body;
  EXPECT_NE(keys.body.find(key_id), std::string::npos);
  EXPECT_EQ(keys.body.find(api_key), std::string::npos);
  EXPECT_EQ(keys.body.find(api_key.substr(17)), std::string::npos);
  EXPECT_EQ(keys.body.find("hash"), std::string::npos);
  EXPECT_EQ(keys.body.find("\"api_key\""), std::string::npos);

  // Tenant config.
  auto set = command(admin_a, "set_config", R"({"key":"theme","value":{"dark":true}})");
  ASSERT_TRUE(created(set)) << set.body;
  auto cfg = get(bob_token, "/config", position(set));
  ASSERT_EQ(cfg.status, 200) << cfg.body;
  EXPECT_TRUE(cfg.json()["config"]["theme"]["dark"].GetBool());
  auto one = get(bob_token, "/config/theme", position(set));
  EXPECT_EQ(one.status, 200) << one.body;
  EXPECT_EQ(get(bob_token, "/config/missing").status, 404);

  // Custom roles: names and patterns are checked.
  EXPECT_TRUE(created(command(admin_a, "define_role",
                              R"({"role":"auditor","permissions":["platform:events:read"]})")));
  EXPECT_EQ(command(admin_a, "define_role", R"({"role":"user","permissions":[]})").status, 400);
  EXPECT_EQ(command(admin_a, "define_role", R"({"role":"x","permissions":["route:*:x"]})").status,
            400);

  // Tenant isolation.
  const auto admin_b = user_token(b, "admin", R"(["tenant_admin"])");
  auto last = command(admin_b, "set_config", R"({"key":"k","value":1})");
  ASSERT_TRUE(created(last));
  auto users_b = get(admin_b, "/users", position(last));
  ASSERT_EQ(users_b.status, 200) << users_b.body;
  EXPECT_EQ(users_b.json()["users"].GetArray().Size(), 1u);
  EXPECT_EQ(users_b.body.find(bob_id), std::string::npos);
  EXPECT_EQ(get(admin_b, "/users", 0, a).status, 403);  // X-Tenant from a non-super-admin
  EXPECT_EQ(command(admin_b, "deactivate_user", R"({"user_id":")" + bob_id + R"("})").status, 404);
  auto users_a = get(admin_a, "/users", position(key));
  ASSERT_EQ(users_a.status, 200);
  EXPECT_EQ(users_a.json()["users"].GetArray().Size(), 2u) << users_a.body;  // admin, bob
  EXPECT_EQ(users_a.body.find("hash"), std::string::npos);
  EXPECT_EQ(get(admin_a, "/tenants").status, 403);
  auto tenants = get(root, "/tenants", position(last));
  ASSERT_EQ(tenants.status, 200);
  EXPECT_NE(tenants.body.find(a), std::string::npos);
  EXPECT_NE(tenants.body.find(b), std::string::npos);
  auto tenant = get(bob_token, "/tenant", position(last));
  ASSERT_EQ(tenant.status, 200) << tenant.body;
  EXPECT_EQ(std::string(tenant.json()["tenant"].GetString()), a);
}

TEST_F(Identity, TooManyFailedLoginsAnswer429WithRetryAfter) {
  const auto t = tst::unique_name("tl");
  ASSERT_TRUE(created(command(root, "create_tenant", R"({"tenant":")" + t + R"(","name":"L"})")));
  user_token(t, "dave", R"(["user"])");
  for (int i = 0; i < 5; ++i) {
    auto r = login(t, "dave", "wrong-password");
    EXPECT_EQ(r.status, 401) << i << " " << r.body;
  }
  auto blocked = login(t, "dave", "wrong-password");
  EXPECT_EQ(blocked.status, 429) << blocked.body;
  EXPECT_EQ(blocked.error_code(), "too_many_attempts");
  const auto retry_after = header(blocked, "Retry-After");
  ASSERT_FALSE(retry_after.empty());
  EXPECT_GT(std::stoll(retry_after), 0);
  // Even the right password waits now.
  EXPECT_EQ(login(t, "dave", "password-of-dave").status, 429);
}

TEST_F(Identity, InvitationAndPluginCredentials) {
  const auto t = tst::unique_name("ti");
  ASSERT_TRUE(created(command(root, "create_tenant", R"({"tenant":")" + t + R"(","name":"I"})")));
  auto inv = command(root, "invite_user", R"({"username":"erin"})", t);
  ASSERT_TRUE(created(inv)) << inv.body;
  const std::string token = inv.json()["invitation_token"].GetString();
  EXPECT_EQ(login(t, "erin", "anything-at-all").status, 401);
  auto accept = [&](const std::string& tok) {
    return http.post("/api/identity/accept-invitation",
                     R"({"tenant":")" + t + R"(","username":"erin","invitation_token":")" + tok +
                         R"(","password":"erin-password"})");
  };
  EXPECT_EQ(accept("x" + token.substr(1)).status, 401);
  EXPECT_TRUE(created(accept(token)));
  EXPECT_EQ(accept(token).status, 401);  // once
  EXPECT_EQ(login(t, "erin", "erin-password").status, 200);

  const auto plugin = tst::unique_name("greeter");
  auto creds = command(root, "issue_plugin_credentials", R"({"plugin":")" + plugin + R"("})");
  ASSERT_TRUE(created(creds)) << creds.body;
  auto cj = creds.json();
  const std::string user = cj["broker_user"].GetString();
  const std::string password = cj["password"].GetString();
  const std::string vhost = cj["vhost"].GetString();
  EXPECT_EQ(user, broker::plugin_user(plugin));
  EXPECT_GE(password.size(), 32u);
  // The reply shows the broker library's permissions, topic permissions too.
  const auto expected = broker::plugin_permissions(plugin);
  ASSERT_EQ(expected.topics.size(), 1u);
  const auto& shown = cj["permissions"];
  EXPECT_EQ(std::string(shown["configure"].GetString()), expected.configure);
  EXPECT_EQ(std::string(shown["write"].GetString()), expected.write);
  EXPECT_EQ(std::string(shown["read"].GetString()), expected.read);
  ASSERT_EQ(shown["topics"].Size(), 1u) << creds.body;
  EXPECT_EQ(std::string(shown["topics"][0]["exchange"].GetString()), "sb.dlx");
  EXPECT_EQ(std::string(shown["topics"][0]["write"].GetString()), expected.topics[0].write);
  EXPECT_EQ(std::string(shown["topics"][0]["read"].GetString()), expected.topics[0].read);

  // What RabbitMQ holds (the vhost is a fresh_vhost name: nothing to encode).
  const auto& srv = tst::servers();
  httplib::Client mgmt(srv.rabbitmq_mgmt_url);
  mgmt.set_basic_auth(srv.rabbitmq_user, srv.rabbitmq_password);
  mgmt.set_connection_timeout(5, 0);
  mgmt.set_read_timeout(10, 0);
  auto u = mgmt.Get("/api/users/" + user);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->status, 200);
  auto perms = mgmt.Get("/api/permissions/" + vhost + "/" + user);
  ASSERT_TRUE(perms);
  ASSERT_EQ(perms->status, 200) << perms->body;
  const auto pj = json::parse(perms->body);
  EXPECT_EQ(std::string(pj["configure"].GetString()), expected.configure);
  EXPECT_EQ(std::string(pj["write"].GetString()), expected.write);
  EXPECT_EQ(std::string(pj["read"].GetString()), expected.read);
  auto topics = mgmt.Get("/api/topic-permissions/" + vhost + "/" + user);
  ASSERT_TRUE(topics);
  ASSERT_EQ(topics->status, 200) << topics->body;
  const auto tj = json::parse(topics->body);
  ASSERT_TRUE(tj.IsArray() && tj.Size() == 1u) << topics->body;
  EXPECT_EQ(std::string(tj[0]["exchange"].GetString()), expected.topics[0].exchange);
  EXPECT_EQ(std::string(tj[0]["write"].GetString()), expected.topics[0].write);
  EXPECT_EQ(std::string(tj[0]["read"].GetString()), expected.topics[0].read);

  // The credentials work, as a restricted user: connected with them to the
  // vhost, it may offer events on sb.ingest but not publish on sb.events.
  broker::PublisherOptions po;
  po.connection.url = "amqp://" + user + ":" + password + "@" +
                      stack.amqp.substr(stack.amqp.rfind('@') + 1);  // base64url: no escaping
  po.connection.name = "identity-e2e-plugin";
  po.connection.connect_timeout = 2000ms;
  po.topology = broker::platform_topology();  // declared passively
  broker::Publisher pub(po);
  auto message = [] {
    broker::Message m;
    m.body = "{}";
    m.message_id = broker::new_id();
    return m;
  };
  auto accepted = pub.publish(message(), {broker::kIngestExchange, "store.ingest", false, {}});
  ASSERT_EQ(accepted.wait_for(10s), std::future_status::ready);
  const auto ingested = accepted.get();
  EXPECT_TRUE(ingested.ok()) << ingested.reason;
  auto refused = pub.publish(message(), {broker::kEventsExchange, "shop.order.placed", false, {}});
  ASSERT_EQ(refused.wait_for(10s), std::future_status::ready);
  const auto o = refused.get();
  EXPECT_EQ(o.status, broker::PublishStatus::failed);
  EXPECT_NE(o.reason.find("403"), std::string::npos) << o.reason;
  EXPECT_NE(o.reason.find("ACCESS_REFUSED"), std::string::npos) << o.reason;

  EXPECT_EQ(command(root, "issue_plugin_credentials", R"({"plugin":"Bad.Name"})").status, 400);
  for (const char* reserved : {"store", "registry", "edge", "identity", "sb", "amq"}) {
    EXPECT_EQ(command(root, "issue_plugin_credentials",
                      std::string(R"({"plugin":")") + reserved + R"("})")
                  .status,
              400)
        << reserved << ": a platform name";
  }
  const auto admin = user_token(t, "admin", R"(["tenant_admin"])");
  EXPECT_EQ(command(admin, "issue_plugin_credentials", R"({"plugin":"x"})").status, 403);
}
