// The identity service's pure parts: aggregates (folds and decisions),
// names and credential formats. The role hierarchy, permission patterns and
// the API-key format are shared/auth.hpp's (tests/unit/shared/auth_test.cpp);
// a plugin's broker permissions are the broker library's
// (tests/unit/broker/broker_permissions_test.cpp).
#include <gtest/gtest.h>

#include "switchboard/identity/aggregates.hpp"
#include "switchboard/identity/identity.hpp"
#include "switchboard/identity/model.hpp"
#include "switchboard/shared/auth.hpp"
#include "switchboard/shared/json.hpp"

using namespace sb;
using namespace sb::identity;

namespace {

events::Event event(std::string_view type, const std::string& data, std::int64_t version = 0,
                    const std::string& tenant = "acme",
                    const std::string& id = "0b8f2b8e-7d55-4d1c-9a5e-0c1f3a2b4c5d") {
  return events::event_from_json(
      R"({"id":")" + id + R"(","type":")" + std::string(type) +
      R"(","schema":1,"stream":"s-1","version":)" + std::to_string(version) +
      R"(,"position":7,"tenant":")" + tenant +
      R"(","occurred_at":"2026-01-01T00:00:00.000Z","recorded_at":"2026-01-01T00:00:00.000Z","correlation_id":"c","data":)" +
      data + R"(,"meta":{}})");
}

const sdk::NewEvent& only(const sdk::Decision& d) {
  EXPECT_FALSE(d.refusal.has_value()) << (d.refusal ? d.refusal->body : "");
  EXPECT_EQ(d.events.size(), 1u);
  return d.events.front();
}

int refused(const sdk::Decision& d) {
  return d.refusal ? d.refusal->status : 0;
}

std::string code(const sdk::Decision& d) {
  if (!d.refusal) return "";
  auto doc = json::parse(d.refusal->body);
  return doc["error"]["code"].GetString();
}

template <class State>
void fold(State& s, const sdk::Decision& d, std::int64_t version = 0,
          const std::string& tenant = "acme") {
  apply(s, event(only(d).type, only(d).data, version, tenant));
}

// Epoch seconds of the test events' recorded_at (2026-01-01T00:00:00Z).
constexpr std::int64_t kRecordedAt = 1767225600;

}  // namespace

// ---------------------------------------------------------------- tenant

TEST(IdentityTenant, CreateOnceWithEveryServiceByDefault) {
  Tenant t;
  auto d = create_tenant(t, "Acme", {});
  EXPECT_EQ(only(d).type, kTenantCreated);
  fold(t, d);
  EXPECT_TRUE(t.exists);
  EXPECT_EQ(t.name, "Acme");
  EXPECT_EQ(t.services, std::vector<std::string>{"*"});
  EXPECT_EQ(refused(create_tenant(t, "Acme", {})), 409);
  EXPECT_EQ(code(create_tenant(t, "Acme", {})), "tenant_exists");
}

TEST(IdentityTenant, ServicePolicyEmitsTheWholeResult) {
  Tenant t;
  fold(t, create_tenant(t, "Acme", {"orders"}));
  auto en = enable_service(t, "payments");
  fold(t, en, 1);
  EXPECT_EQ(t.services, (std::vector<std::string>{"orders", "payments"}));
  EXPECT_TRUE(enable_service(t, "orders").events.empty());  // already on
  fold(t, disable_service(t, "orders"), 2);
  EXPECT_EQ(t.services, std::vector<std::string>{"payments"});
  EXPECT_EQ(t.disabled, std::vector<std::string>{"orders"});
  EXPECT_EQ(refused(disable_service(t, "identity")), 422);
  EXPECT_EQ(refused(enable_service(Tenant{}, "x")), 404);
}

TEST(IdentityTenant, SuspendAndReinstateAreIdempotent) {
  Tenant t;
  fold(t, create_tenant(t, "Acme", {}));
  fold(t, suspend_tenant(t, "unpaid"), 1);
  EXPECT_TRUE(t.suspended);
  EXPECT_TRUE(suspend_tenant(t, "again").events.empty());
  fold(t, reinstate_tenant(t, "paid"), 2);
  EXPECT_FALSE(t.suspended);
  EXPECT_TRUE(reinstate_tenant(t, "x").events.empty());
  Tenant platform;
  fold(platform, create_tenant(platform, "P", {}), 0, "_platform");
  EXPECT_EQ(refused(suspend_tenant(platform, "no")), 422);
}

// ---------------------------------------------------------------- user

TEST(IdentityUser, RegisterThenUsernameTaken) {
  User u;
  NewUser n{user_id("acme", "Alice"), "Alice", "a@x", {"user"}, "$argon2id$fake"};
  auto d = register_user(u, n);
  auto doc = json::parse(only(d).data);
  EXPECT_FALSE(doc["invited"].GetBool());
  EXPECT_EQ(std::string(doc["password_hash"].GetString()), "$argon2id$fake");
  fold(u, d);
  EXPECT_TRUE(u.exists);
  EXPECT_EQ(u.user_id, n.user_id);
  EXPECT_EQ(u.security_version, 0);
  EXPECT_EQ(code(register_user(u, n)), "username_taken");
}

TEST(IdentityUser, SecurityVersionRisesWithEveryChange) {
  User u;
  fold(u, register_user(u, {"id", "bob", "", {"user"}, "h1"}));
  fold(u, change_roles(u, {"tenant_admin"}), 1);
  EXPECT_EQ(u.security_version, 1);
  EXPECT_EQ(u.roles, std::vector<std::string>{"tenant_admin"});
  EXPECT_TRUE(change_roles(u, {"tenant_admin"}).events.empty());
  fold(u,
       change_password(
           u, [](std::string_view h) { return h == "h1"; }, "h2"),
       2);
  EXPECT_EQ(u.security_version, 2);
  EXPECT_EQ(u.password_hash, "h2");
  EXPECT_EQ(code(change_password(
                u, [](std::string_view) { return false; }, "h3")),
            "invalid_credentials");
  fold(u, deactivate_user(u), 3);
  EXPECT_FALSE(u.active);
  EXPECT_EQ(u.security_version, 3);
  EXPECT_TRUE(deactivate_user(u).events.empty());
  fold(u, reactivate_user(u), 4);
  EXPECT_TRUE(u.active);
  EXPECT_EQ(u.security_version, 4);
  EXPECT_EQ(refused(change_roles(User{}, {"user"})), 404);
  EXPECT_EQ(refused(deactivate_user(User{})), 404);
}

TEST(IdentityUser, InvitationAcceptedOnceWithinSevenDays) {
  User u;
  auto d = register_user(u, {"id", "carol", "", {"user"}, ""});
  EXPECT_TRUE(json::parse(only(d).data)["invited"].GetBool());
  EXPECT_EQ(json::find(json::parse(only(d).data), "password_hash"), nullptr);
  fold(u, d);
  EXPECT_TRUE(u.invited);
  EXPECT_EQ(u.registered_at_epoch_s, kRecordedAt);
  EXPECT_EQ(code(accept_invitation(u, false, kRecordedAt + 10, "h")), "invalid_invitation");
  EXPECT_EQ(refused(accept_invitation(u, true, kRecordedAt + kInvitationSeconds + 1, "h")), 401);
  auto ok = accept_invitation(u, true, kRecordedAt + 10, "h");
  fold(u, ok, 1);
  EXPECT_FALSE(u.invited);
  EXPECT_EQ(u.password_hash, "h");
  EXPECT_EQ(refused(accept_invitation(u, true, kRecordedAt + 20, "h")), 401);
}

TEST(IdentityUser, InvitationTokenIsBoundToKeyTenantUserAndEvent) {
  const std::string key(32, 'k');
  const auto t = invitation_token(key, "acme", "u1", "e1");
  EXPECT_EQ(t.size(), 43u);
  EXPECT_EQ(t, invitation_token(key, "acme", "u1", "e1"));
  EXPECT_NE(t, invitation_token(key, "acme", "u1", "e2"));
  EXPECT_NE(t, invitation_token(key, "other", "u1", "e1"));
  EXPECT_NE(t, invitation_token(std::string(32, 'j'), "acme", "u1", "e1"));
}

TEST(IdentityUser, OtherTenantsEventsAreIgnored) {
  User u;
  auto f = in_tenant<User>("acme");
  auto d = register_user(u, {"id", "eve", "", {"user"}, "h"});
  f(u, event(only(d).type, only(d).data, 0, "evil"));
  EXPECT_FALSE(u.exists);
  f(u, event(only(d).type, only(d).data, 0, "acme"));
  EXPECT_TRUE(u.exists);
}

// ---------------------------------------------------------------- session

TEST(IdentitySession, RefreshRotatesAndReuseRevokes) {
  Session s;
  fold(s, start_session(s, "sid", "u1", "h0", 1000));
  EXPECT_EQ(judge_refresh(s, "h0", 10), RefreshVerdict::rotate);
  auto r1 = refresh_session(s, "h0", "h1", 10);
  EXPECT_EQ(only(r1).type, kSessionRefreshed);
  auto doc = json::parse(only(r1).data);
  EXPECT_EQ(std::string(doc["previous_hash"].GetString()), "h0");
  EXPECT_EQ(doc["expires_at"].GetInt64(), 1000);  // the family's, not extended
  fold(s, r1, 1);
  EXPECT_EQ(s.refresh_hash, "h1");
  // The old one again: the whole session goes.
  EXPECT_EQ(judge_refresh(s, "h0", 11), RefreshVerdict::reuse);
  auto reuse = refresh_session(s, "h0", "h2", 11);
  auto rdoc = json::parse(only(reuse).data);
  EXPECT_EQ(only(reuse).type, kSessionRevoked);
  EXPECT_EQ(std::string(rdoc["reason"].GetString()), "reuse");
  EXPECT_EQ(rdoc["access_expires_at"].GetInt64(), 11 + kAccessTokenSeconds);
  fold(s, reuse, 2);
  EXPECT_TRUE(s.revoked);
  // ... including the newest token.
  EXPECT_EQ(code(refresh_session(s, "h1", "h3", 12)), "invalid_refresh_token");
}

TEST(IdentitySession, UnknownOrExpiredTokensAreInvalid) {
  Session s;
  EXPECT_EQ(refused(refresh_session(s, "h0", "h1", 10)), 401);
  fold(s, start_session(s, "sid", "u1", "h0", 1000));
  EXPECT_EQ(judge_refresh(s, "nope", 10), RefreshVerdict::invalid);
  EXPECT_EQ(judge_refresh(s, "h0", 1000), RefreshVerdict::invalid);
  EXPECT_EQ(refused(start_session(s, "sid", "u1", "h", 1)), 409);
}

TEST(IdentitySession, LogoutOnlyByTheOwnerWithTheCurrentToken) {
  Session s;
  fold(s, start_session(s, "sid", "u1", "h0", 1000));
  EXPECT_EQ(refused(logout_session(s, "u2", "h0", 5)), 401);
  EXPECT_EQ(refused(logout_session(s, "u1", "bad", 5)), 401);
  auto out = logout_session(s, "u1", "h0", 5);
  EXPECT_EQ(std::string(json::parse(only(out).data)["reason"].GetString()), "logout");
  fold(s, out, 1);
  EXPECT_TRUE(logout_session(s, "u1", "h0", 6).events.empty());  // already out: 204 again
  EXPECT_EQ(judge_refresh(s, "h0", 7), RefreshVerdict::invalid);
}

// ---------------------------------------------------------------- roles, keys, config

TEST(IdentityRole, DefineRedefineRemove) {
  Role r;
  EXPECT_EQ(refused(remove_role(r, "auditor")), 404);
  fold(r, define_role(r, "auditor", {"platform:events:read"}));
  EXPECT_TRUE(define_role(r, "auditor", {"platform:events:read"}).events.empty());
  fold(r, define_role(r, "auditor", {"platform:events:*"}), 1);
  EXPECT_EQ(r.permissions, std::vector<std::string>{"platform:events:*"});
  fold(r, remove_role(r, "auditor"), 2);
  EXPECT_FALSE(r.exists);
}

TEST(IdentityApiKey, IssueOnceRevokeOnce) {
  ApiKeyState k;
  NewApiKey n{"kid", "0123456789ab", std::string(64, 'a'), "ci", "u1", {"user"}, {"*"}, 0};
  auto d = issue_api_key(k, n);
  EXPECT_EQ(json::parse(only(d).data)["key_hash"].GetString(), std::string(64, 'a'));
  fold(k, d);
  EXPECT_EQ(refused(issue_api_key(k, n)), 409);
  auto rv = revoke_api_key(k);
  EXPECT_EQ(std::string(json::parse(only(rv).data)["prefix"].GetString()), "0123456789ab");
  fold(k, rv, 1);
  EXPECT_TRUE(revoke_api_key(k).events.empty());
  EXPECT_EQ(refused(revoke_api_key(ApiKeyState{})), 404);
}

TEST(IdentityConfig, SetUnsetFold) {
  TenantConfig c;
  fold(c, set_config(c, "theme", R"({"dark":true})"));
  EXPECT_EQ(c.values.at("theme"), R"({"dark":true})");
  EXPECT_TRUE(set_config(c, "theme", R"({"dark":true})").events.empty());
  fold(c, unset_config(c, "theme"), 1);
  EXPECT_TRUE(c.values.empty());
  EXPECT_TRUE(unset_config(c, "theme").events.empty());
  EXPECT_TRUE(valid_config_key("feature.x-1"));
  EXPECT_FALSE(valid_config_key(""));
  EXPECT_FALSE(valid_config_key("a b"));
}

// ---------------------------------------------------------------- names

TEST(IdentityNames, TenantsUsernamesRoles) {
  EXPECT_TRUE(valid_tenant("_platform"));
  EXPECT_TRUE(valid_tenant("acme-1"));
  EXPECT_FALSE(valid_tenant("Acme"));
  EXPECT_FALSE(valid_tenant(""));
  EXPECT_FALSE(valid_tenant(std::string(64, 'a')));
  EXPECT_TRUE(valid_username("Alice Smith"));
  EXPECT_FALSE(valid_username(""));
  EXPECT_FALSE(valid_username("tab\there"));
  EXPECT_FALSE(valid_username(std::string(65, 'a')));
  EXPECT_EQ(user_id("acme", "Alice"), user_id("acme", "alice"));
  EXPECT_NE(user_id("acme", "alice"), user_id("other", "alice"));
  EXPECT_TRUE(valid_password("12345678"));
  EXPECT_FALSE(valid_password("1234567"));
  EXPECT_FALSE(valid_password(std::string(257, 'x')));
  EXPECT_TRUE(valid_custom_role("auditor"));
  EXPECT_TRUE(valid_custom_role("billing.reader"));
  EXPECT_FALSE(valid_custom_role("tenant_admin"));
  EXPECT_FALSE(valid_custom_role("1abc"));
  EXPECT_FALSE(valid_custom_role("Auditor"));
  EXPECT_TRUE(valid_role("super_admin"));
}

// ---------------------------------------------------------------- credentials

TEST(IdentityCredentials, RefreshTokenFormat) {
  auto t = new_refresh_token();
  EXPECT_EQ(t.secret.size(), 43u);
  auto parsed = parse_refresh_token(t.text());
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->session_id, t.session_id);
  EXPECT_EQ(parsed->secret, t.secret);
  EXPECT_NE(new_refresh_token().secret, t.secret);
  EXPECT_FALSE(parse_refresh_token("nodot"));
  EXPECT_FALSE(parse_refresh_token(t.session_id + "." + t.secret.substr(1)));
  EXPECT_FALSE(parse_refresh_token("ZZ." + t.secret));
  EXPECT_FALSE(parse_refresh_token("." + t.secret));
  EXPECT_EQ(secret_hash(t.text()).size(), 64u);
}

TEST(IdentityCredentials, ApiKeyHashIsWhatTheEdgeCompares) {
  // The edge compares auth::sha256_hex of the presented key with key_hash.
  const auto k = auth::new_api_key().text();
  EXPECT_EQ(secret_hash(k), auth::sha256_hex(k));
}

// ---------------------------------------------------------------- broker users

TEST(IdentityBroker, VhostOfUrl) {
  EXPECT_EQ(vhost_of("amqp://u:p@h:5672/"), "/");
  EXPECT_EQ(vhost_of("amqp://u:p@h:5672"), "/");
  EXPECT_EQ(vhost_of("amqp://u:p@h:5672/%2F"), "/");
  EXPECT_EQ(vhost_of("amqp://u:p@h:5672/sb_test"), "sb_test");
}

// ---------------------------------------------------------------- settings

namespace {
config::Config load(std::map<std::string, std::string> env) {
  auto schema = extra_keys();
  schema.optional("mode", config::Type::string, "development", "")
      .add({"redis.url", config::Type::string, false, std::nullopt, "", true})
      .add({"rabbitmq.url", config::Type::string, false, std::nullopt, "", true});
  return config::Config::load(schema, "", env);
}
const std::string kSecret(32, 's');
}  // namespace

TEST(IdentitySettings, NoDefaultSecretInAnyMode) {
  EXPECT_THROW(settings_from_config(load({})), config::Error);
  EXPECT_THROW(settings_from_config(load({{"SB_AUTH_JWT_SECRET", "short"}})), config::Error);
  EXPECT_THROW(settings_from_config(load({{"SB_MODE", "production"}})), config::Error);
  auto s = settings_from_config(load({{"SB_AUTH_JWT_SECRET", kSecret}}));
  EXPECT_EQ(s.password_cost.memory_bytes, 19456u * 1024u);
  EXPECT_EQ(s.password_cost.ops, 2u);
}

TEST(IdentitySettings, ProductionRefusesCheapHashesAndShortBootstrapPasswords) {
  std::map<std::string, std::string> env{{"SB_AUTH_JWT_SECRET", kSecret},
                                         {"SB_IDENTITY_PASSWORD_MEMORY_KIB", "64"},
                                         {"SB_IDENTITY_PASSWORD_OPS", "1"}};
  EXPECT_EQ(settings_from_config(load(env)).password_cost.memory_bytes, 64u * 1024u);
  env["SB_MODE"] = "production";
  EXPECT_THROW(settings_from_config(load(env)), config::Error);
  env.erase("SB_IDENTITY_PASSWORD_MEMORY_KIB");
  env.erase("SB_IDENTITY_PASSWORD_OPS");
  env["SB_IDENTITY_BOOTSTRAP_USERNAME"] = "root";
  env["SB_IDENTITY_BOOTSTRAP_PASSWORD"] = "elevenbytes";
  EXPECT_THROW(settings_from_config(load(env)), config::Error);
  env["SB_IDENTITY_BOOTSTRAP_PASSWORD"] = "twelve-bytes";
  EXPECT_EQ(settings_from_config(load(env)).bootstrap_username, "root");
}

TEST(IdentityEventTypes, EverySchemaParses) {
  EXPECT_EQ(event_types().size(), 20u);
  for (const auto& t : event_types()) {
    EXPECT_NO_THROW(json::parse(t.schema)) << t.type;
  }
}
