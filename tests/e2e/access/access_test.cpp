// Identity and access, end to end (issue 9's security tests): real sb-store,
// sb-registry, sb-edge, sb-identity and a tenant-data plugin (sb-test-plugin
// "vault") on a fresh database and vhost. Every credential here is a real
// one — users log in through the identity service — except the forged
// tokens, which are the point.
#include <atomic>
#include <mutex>
#include <thread>

#include "../edge/edge_stack.hpp"
#include "switchboard/broker/broker.hpp"
#include "switchboard/events/time.hpp"
#include "switchboard/shared/auth.hpp"

using namespace sb;
using namespace sb::edgetest;

namespace {

const std::string kRootPassword = "root-password-for-e2e-0123";
const std::string kPassword = "correct horse battery staple";

std::string uid(const char* prefix) {
  auto n = tst::unique_name(prefix);
  for (auto& c : n) {
    if (c == '_') c = '-';
  }
  return n;
}

// Tenants unique per run: failed-login counters live in the shared Redis.
const std::string& acme() {
  static const std::string t = uid("acme");
  return t;
}
const std::string& globex() {
  static const std::string t = uid("globex");
  return t;
}
const std::string& initech() {
  static const std::string t = uid("initech");
  return t;
}
const std::string& hooli() {
  static const std::string t = uid("hooli");
  return t;
}

std::int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string str(const rapidjson::Value& v, const char* name) {
  auto it = v.FindMember(name);
  if (it == v.MemberEnd() || !it->value.IsString()) return {};
  return {it->value.GetString(), it->value.GetStringLength()};
}

struct Session {
  std::string access;
  std::string refresh;
  std::string user_id;
};

/// Reads an SSE stream on its own thread until stopped; keeps the frames.
class SseTap {
 public:
  SseTap(int port, std::map<std::string, std::string> headers, std::string path)
      : thread_([this, port, headers = std::move(headers), path = std::move(path)] {
          httplib::Client c("127.0.0.1", port);
          c.set_read_timeout(30, 0);
          httplib::Headers hs;
          for (const auto& [k, v] : headers) hs.emplace(k, v);
          auto res = c.Get(path.c_str(), hs, [&](const char* data, size_t n) {
            std::lock_guard lock(mu_);
            text_.append(data, n);
            return !stop_.load();
          });
          if (res) status_ = res->status;
        }) {}
  ~SseTap() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::string text() {
    std::lock_guard lock(mu_);
    return text_;
  }

 private:
  std::mutex mu_;
  std::string text_;
  std::atomic<bool> stop_{false};
  std::atomic<int> status_{0};
  std::thread thread_;
};

class Access : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    stack_ = new Stack();
    identity_ = new Proc("sb-identity", "services/identity/sb-identity",
                         std::map<std::string, std::string>{
                             {"SB_POSTGRES_URL", stack_->db},
                             {"SB_RABBITMQ_URL", stack_->amqp},
                             {"SB_REDIS_URL", tst::servers().redis_url},
                             {"SB_HTTP_PORT", "0"},
                             {"SB_AUTH_JWT_SECRET", kJwtSecret},
                             {"SB_IDENTITY_BOOTSTRAP_USERNAME", root_name()},
                             {"SB_IDENTITY_BOOTSTRAP_PASSWORD", kRootPassword},
                             // Cheap Argon2id for a test that logs in dozens of times; the
                             // production cost is measured by bench/identity.
                             {"SB_IDENTITY_PASSWORD_MEMORY_KIB", "1024"},
                             {"SB_IDENTITY_PASSWORD_OPS", "1"},
                             // Every test logs in from 127.0.0.1 against one Redis: the
                             // per-address limit would couple the tests (the per-user limit
                             // is what they check).
                             {"SB_IDENTITY_LOGIN_ADDRESS_FAILURES", "1000000"}});
    stack_->plugin("vault", "1.0.0", "amqp");
    ASSERT_TRUE(tst::wait_until([] { return routes_to_any("identity"); }, 30s))
        << identity_->output();
    // The platform's super admin, once the bootstrap stored it (waiting by
    // trying to log in would count failed logins and lock the account out),
    // then two tenants with an admin and a user each.
    ASSERT_TRUE(tst::wait_until(
        [] {
          Http h(stack_->edge_port);
          auto r = h.get("/api/v1/events?type=identity.user.registered&tenant=_platform",
                         bearer(stack_->admin_token()));
          return r.status == 200 && r.body.find("\"" + root_name() + "\"") != std::string::npos;
        },
        30s))
        << identity_->output();
    root_ = new Session(login("_platform", root_name(), kRootPassword));
    for (const auto& t : {acme(), globex()}) {
      auto r = command(root_->access, "identity", "create_tenant",
                       R"({"tenant":")" + t + R"(","name":")" + t + R"("})");
      ASSERT_TRUE(r.status == 201 || r.status == 200) << r.body;
    }
    register_user(acme(), "ann", {"tenant_admin"});
    register_user(acme(), "bob", {"user"});
    register_user(globex(), "gus", {"tenant_admin"});
  }
  static void TearDownTestSuite() {
    delete root_;
    delete identity_;
    delete stack_;
    root_ = nullptr;
    identity_ = nullptr;
    stack_ = nullptr;
  }

  /// Unique per run: failed-login counters live in the shared Redis.
  static const std::string& root_name() {
    static const std::string name = uid("root");
    return name;
  }
  static bool routes_to_any(const std::string& name) {
    Http h(stack_->edge_port);
    auto r = h.get("/api/v1/services", bearer(stack_->admin_token()));
    if (r.status != 200) return false;
    auto d = r.json();
    for (const auto& s : d["services"].GetArray()) {
      if (name != s["name"].GetString()) continue;
      for (const auto& v : s["versions"].GetArray()) {
        if (!v["instances"].GetArray().Empty()) return true;
      }
    }
    return false;
  }
  static Response try_login(const std::string& tenant, const std::string& user,
                            const std::string& password) {
    Http h(stack_->edge_port);
    return h.post("/api/identity/login", R"({"tenant":")" + tenant + R"(","username":")" + user +
                                             R"(","password":")" + password + R"("})");
  }
  static Session login(const std::string& tenant, const std::string& user,
                       const std::string& password = kPassword) {
    auto r = try_login(tenant, user, password);
    EXPECT_EQ(r.status, 200) << r.body;
    if (r.status != 200) return {};
    auto d = r.json();
    return {str(d, "access_token"), str(d, "refresh_token"), str(d, "user_id")};
  }
  static Response command(const std::string& token, const std::string& service,
                          const std::string& name, const std::string& body,
                          std::map<std::string, std::string> extra = {}) {
    Http h(stack_->edge_port);
    auto headers = bearer(token);
    headers.insert(extra.begin(), extra.end());
    return h.post("/api/v1/commands/" + service + "/" + name, body, headers);
  }
  static void register_user(const std::string& tenant, const std::string& user,
                            const std::vector<std::string>& roles) {
    std::string r = "[";
    for (std::size_t i = 0; i < roles.size(); ++i) r += (i ? ",\"" : "\"") + roles[i] + "\"";
    r += "]";
    auto res = command(
        root_->access, "identity", "register_user",
        R"({"username":")" + user + R"(","password":")" + kPassword + R"(","roles":)" + r + "}",
        {{"X-Tenant", tenant}});
    ASSERT_TRUE(res.status == 201 || res.status == 200) << res.body;
  }
  static std::map<std::string, std::string> with(const std::string& token,
                                                 std::map<std::string, std::string> extra = {}) {
    auto h = bearer(token);
    h.insert(extra.begin(), extra.end());
    return h;
  }
  /// Whether `token` is refused on a cheap authenticated endpoint.
  static int me_status(const std::string& token) {
    Http h(stack_->edge_port);
    return h.get("/api/identity/me", bearer(token)).status;
  }

  static Stack* stack_;
  static Proc* identity_;
  static Session* root_;
};
Stack* Access::stack_ = nullptr;
Proc* Access::identity_ = nullptr;
Session* Access::root_ = nullptr;

}  // namespace

TEST_F(Access, ForgedTamperedAndExpiredTokensAre401) {
  auto bob = login(acme(), "bob");
  ASSERT_EQ(me_status(bob.access), 200);
  const auto d1 = bob.access.find('.');
  const auto d2 = bob.access.find('.', d1 + 1);
  const auto payload = auth::base64url_decode(bob.access.substr(d1 + 1, d2 - d1 - 1));
  auto elevated = payload;
  const auto at = elevated.find("\"user\"");
  ASSERT_NE(at, std::string::npos) << payload;
  elevated.replace(at, 6, "\"super_admin\"");
  // (1) the payload changed, the signature kept: tampered.
  const auto tampered =
      bob.access.substr(0, d1) + "." + auth::base64url_encode(elevated) + bob.access.substr(d2);
  // (2) alg none, no signature.
  const auto none = auth::base64url_encode(R"({"alg":"none","typ":"JWT"})") + "." +
                    auth::base64url_encode(elevated) + ".";
  // (3) a well-formed token signed with another key.
  auth::JwtOptions other;
  other.secrets = {"another-key-that-is-long-enough-0123456789"};
  auth::Principal p;
  p.subject = bob.user_id;
  p.tenant = acme();
  p.roles = {"super_admin"};
  p.expires_at = now_s() + 600;
  const auto wrong_key = auth::JwtVerifier(other).sign(p, now_s());
  // (4) the right key, expired two minutes ago (beyond the 30 s leeway).
  auth::JwtOptions right;
  right.secrets = {kJwtSecret};
  p.roles = {"user"};
  p.expires_at = now_s() - 120;
  const auto expired = auth::JwtVerifier(right).sign(p, now_s() - 1000);
  Http h(stack_->edge_port);
  for (const auto& [what, t] :
       std::vector<std::pair<std::string, std::string>>{{"tampered", tampered},
                                                        {"alg none", none},
                                                        {"wrong key", wrong_key},
                                                        {"expired", expired}}) {
    auto r = h.get("/api/identity/me", bearer(t));
    EXPECT_EQ(r.status, 401) << what << ": " << r.body;
    EXPECT_EQ(r.error_code(), "unauthenticated") << what;
    r = command(t, "identity", "create_tenant", R"({"tenant":"evil","name":"x"})");
    EXPECT_EQ(r.status, 401) << what << ": " << r.body;
    r = h.get("/api/v1/events", bearer(t));
    EXPECT_EQ(r.status, 401) << what << ": " << r.body;
  }
}

TEST_F(Access, AReusedRefreshTokenIs401AndEndsTheWholeSession) {
  auto bob = login(acme(), "bob");
  Http h(stack_->edge_port);
  auto r = h.post("/api/identity/refresh", R"({"refresh_token":")" + bob.refresh + R"("})");
  ASSERT_EQ(r.status, 200) << r.body;
  const auto rotated = str(r.json(), "refresh_token");
  const auto access2 = str(r.json(), "access_token");
  ASSERT_NE(rotated, bob.refresh);
  EXPECT_EQ(me_status(access2), 200);
  // The old refresh token again: reuse. 401, and the family is revoked...
  r = h.post("/api/identity/refresh", R"({"refresh_token":")" + bob.refresh + R"("})");
  EXPECT_EQ(r.status, 401) << r.body;
  r = h.post("/api/identity/refresh", R"({"refresh_token":")" + rotated + R"("})");
  EXPECT_EQ(r.status, 401) << r.body;
  // ...including its access tokens, refused by the edge from its deny list.
  EXPECT_TRUE(tst::wait_until([&] { return me_status(access2) == 401; }, 10s));
  EXPECT_TRUE(tst::wait_until([&] { return me_status(bob.access) == 401; }, 10s));
  // Another session of the same user is untouched.
  EXPECT_EQ(me_status(login(acme(), "bob").access), 200);
}

TEST_F(Access, LogoutRevokesTheAccessTokenAtTheEdge) {
  auto bob = login(acme(), "bob");
  ASSERT_EQ(me_status(bob.access), 200);
  Http h(stack_->edge_port);
  auto r = h.post("/api/identity/logout", R"({"refresh_token":")" + bob.refresh + R"("})",
                  bearer(bob.access));
  EXPECT_EQ(r.status, 204) << r.body;
  EXPECT_TRUE(tst::wait_until([&] { return me_status(bob.access) == 401; }, 10s));
}

TEST_F(Access, AUserCallingAnAdminCommandOrEndpointIs403) {
  auto bob = login(acme(), "bob");
  auto r = command(bob.access, "identity", "register_user",
                   R"({"username":"mallory","password":"long-enough-password"})");
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_EQ(r.error_code(), "forbidden");
  r = command(bob.access, "identity", "create_tenant", R"({"tenant":"evil","name":"x"})");
  EXPECT_EQ(r.status, 403) << r.body;
  r = command(bob.access, "identity", "change_roles",
              R"({"user_id":")" + bob.user_id + R"(","roles":["tenant_admin"]})");
  EXPECT_EQ(r.status, 403) << r.body;
  Http h(stack_->edge_port);
  EXPECT_EQ(h.get("/api/identity/users", bearer(bob.access)).status, 403);
  EXPECT_EQ(h.get("/api/v1/subscriptions", bearer(bob.access)).status, 403);
  EXPECT_EQ(h.post("/api/v1/replays", R"({"group":"x","from_position":1,"to_position":2})",
                   bearer(bob.access))
                .status,
            403);
  // The same calls pass for the tenant's admin (the check is the role, not a blanket refusal).
  auto ann = login(acme(), "ann");
  EXPECT_EQ(h.get("/api/identity/users", bearer(ann.access)).status, 200);
}

TEST_F(Access, TenantAReachesNothingOfTenantBThroughAnyEndpoint) {
  auto ann = login(acme(), "ann");
  auto gus = login(globex(), "gus");
  const auto secret = uid("globex-secret");
  const auto corr = "corr-" + secret;
  auto r =
      command(gus.access, "vault", "create_item",
              R"({"id":")" + secret + R"(","title":"globex only"})", {{"X-Correlation-Id", corr}});
  ASSERT_EQ(r.status, 201) << r.body;
  const auto marker = uid("acme-marker");
  Http h(stack_->edge_port);
  // Historical SSE from the start, as ann: it must reach ann's marker (written
  // after globex's item) without ever showing globex's item.
  SseTap sse(stack_->edge_port, with(ann.access, {{"Last-Event-ID", "0"}}),
             "/api/v1/events/stream?type=vault.item.created");
  r = command(ann.access, "vault", "create_item", R"({"id":")" + marker + R"(","title":"acme"})");
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_TRUE(tst::wait_until([&] { return sse.text().find(marker) != std::string::npos; }, 20s))
      << sse.text();
  EXPECT_EQ(sse.text().find(secret), std::string::npos) << "SSE leaked globex's event";
  const std::map<std::string, std::string> as_globex{{"X-Tenant", globex()}};
  // commands
  r = command(ann.access, "vault", "create_item", R"({"id":"x","title":"y"})", as_globex);
  EXPECT_EQ(r.status, 403) << r.body;
  r = command(ann.access, "identity", "deactivate_user", R"({"user_id":")" + gus.user_id + R"("})");
  EXPECT_EQ(r.status, 404) << r.body;
  // queries (a plugin's read model and identity's)
  r = h.get("/api/vault/items/" + secret, bearer(ann.access));
  EXPECT_EQ(r.status, 404) << r.body;
  EXPECT_EQ(r.body.find("globex only"), std::string::npos);
  EXPECT_EQ(h.get("/api/vault/items/" + secret, bearer(gus.access)).status, 200);
  EXPECT_EQ(h.get("/api/vault/items/" + secret, with(ann.access, as_globex)).status, 403);
  r = h.get("/api/identity/users", bearer(ann.access));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body.find("gus"), std::string::npos) << r.body;
  EXPECT_EQ(h.get("/api/identity/users", with(ann.access, as_globex)).status, 403);
  EXPECT_EQ(h.get("/api/identity/api-keys", with(ann.access, as_globex)).status, 403);
  EXPECT_EQ(h.get("/api/identity/config", with(ann.access, as_globex)).status, 403);
  // events, streams (as of now), correlations, SSE naming the tenant
  EXPECT_EQ(h.get("/api/v1/events?tenant=" + globex(), bearer(ann.access)).status, 403);
  r = h.get("/api/v1/events?type=vault.item.created&limit=1000", bearer(ann.access));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body.find(secret), std::string::npos);
  EXPECT_NE(r.body.find(marker), std::string::npos);
  const auto as_of = events::format_rfc3339_ms(std::chrono::system_clock::now() + 5s);
  EXPECT_EQ(h.get("/api/v1/streams/item-" + secret, bearer(ann.access)).status, 404);
  EXPECT_EQ(h.get("/api/v1/streams/item-" + secret + "?as_of=" + as_of, bearer(ann.access)).status,
            404);
  EXPECT_EQ(h.get("/api/v1/streams/item-" + secret, bearer(gus.access)).status, 200);
  EXPECT_EQ(h.get("/api/v1/correlations/" + corr, bearer(ann.access)).status, 404);
  EXPECT_EQ(h.get("/api/v1/correlations/" + corr, bearer(gus.access)).status, 200);
  EXPECT_EQ(h.get("/api/v1/events/stream?tenant=" + globex(), bearer(ann.access)).status, 403);
  // replay and subscriptions
  r = h.post("/api/v1/replays",
             R"({"group":"vault.items","from_position":1,"to_position":100,"tenant":")" + globex() +
                 R"("})",
             bearer(ann.access));
  EXPECT_EQ(r.status, 403) << r.body;
  r = h.get("/api/v1/subscriptions", with(ann.access, as_globex));
  EXPECT_EQ(r.status, 403) << r.body;
  // identity's own data: another tenant's user is absent
  r = command(ann.access, "identity", "change_roles",
              R"({"user_id":")" + gus.user_id + R"(","roles":["user"]})");
  EXPECT_EQ(r.status, 404) << r.body;
}

TEST_F(Access, AnApiKeyActsOnlyWithinItsScopesUntilRevoked) {
  auto ann = login(acme(), "ann");
  auto r = command(ann.access, "identity", "issue_api_key",
                   R"({"name":"reader","roles":["user"],"scopes":["route:vault:GET:*"]})");
  ASSERT_TRUE(r.status == 201 || r.status == 200) << r.body;
  const auto key = str(r.json(), "api_key");
  const auto key_id = str(r.json(), "key_id");
  ASSERT_EQ(key.rfind("sbk_", 0), 0u) << r.body;
  Http h(stack_->edge_port);
  const std::map<std::string, std::string> k{{"X-API-Key", key}};
  // In scope: answered (404: no such item — the point is that it got through).
  ASSERT_TRUE(tst::wait_until(
      [&] { return h.get("/api/vault/items/nothing-here", k).status == 404; }, 10s));
  // Out of scope: a command, the events API.
  r = h.post("/api/v1/commands/vault/create_item", R"({"id":"k1","title":"t"})", k);
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_EQ(r.error_code(), "forbidden");
  EXPECT_EQ(h.get("/api/v1/events", k).status, 403);
  // A wrong secret with the right prefix, and garbage, are 401.
  auto wrong = key;
  wrong.back() = wrong.back() == 'A' ? 'B' : 'A';
  EXPECT_EQ(h.get("/api/vault/items/x", {{"X-API-Key", wrong}}).status, 401);
  EXPECT_EQ(h.get("/api/vault/items/x", {{"X-API-Key", "sbk_nonsense"}}).status, 401);
  // The list never shows the key or its hash.
  r = h.get("/api/identity/api-keys", bearer(ann.access));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body.find(key), std::string::npos);
  EXPECT_EQ(r.body.find(auth::sha256_hex(key)), std::string::npos);
  // Revoked: refused within a deadline.
  r = command(ann.access, "identity", "revoke_api_key", R"({"key_id":")" + key_id + R"("})");
  ASSERT_TRUE(r.status == 200 || r.status == 201) << r.body;
  EXPECT_TRUE(tst::wait_until(
      [&] { return h.get("/api/vault/items/nothing-here", k).status == 401; }, 10s));
}

TEST_F(Access, RepeatedWrongPasswordsAre429) {
  register_user(acme(), "carol", {"user"});
  int last = 0;
  Response r;
  for (int i = 0; i < 10 && last != 429; ++i) {
    r = try_login(acme(), "carol", "not-the-password");
    last = r.status;
    if (last != 429) {
      EXPECT_EQ(last, 401) << r.body;
    }
  }
  EXPECT_EQ(last, 429) << r.body;
  EXPECT_EQ(r.error_code(), "too_many_attempts");
  EXPECT_FALSE(r.header("Retry-After").empty());
  // Locked out for now even with the right password; other users are not.
  EXPECT_EQ(try_login(acme(), "carol", kPassword).status, 429);
  EXPECT_EQ(try_login(acme(), "bob", kPassword).status, 200);
}

TEST_F(Access, ADeactivatedUsersTokensAndASuspendedTenantAreRefused) {
  register_user(acme(), "dave", {"user"});
  auto dave = login(acme(), "dave");
  ASSERT_EQ(me_status(dave.access), 200);
  auto ann = login(acme(), "ann");
  auto r = command(ann.access, "identity", "deactivate_user",
                   R"({"user_id":")" + dave.user_id + R"("})");
  ASSERT_TRUE(r.status == 200 || r.status == 201) << r.body;
  EXPECT_TRUE(tst::wait_until([&] { return me_status(dave.access) == 401; }, 10s));
  EXPECT_EQ(try_login(acme(), "dave", kPassword).status, 401);

  // A suspended tenant: its users' tokens are refused with 403 tenant_suspended.
  r = command(root_->access, "identity", "create_tenant",
              R"({"tenant":")" + initech() + R"(","name":"i"})");
  ASSERT_TRUE(r.status == 201 || r.status == 200) << r.body;
  register_user(initech(), "ivy", {"tenant_admin"});
  auto ivy = login(initech(), "ivy");
  ASSERT_EQ(me_status(ivy.access), 200);
  r = command(root_->access, "identity", "suspend_tenant", R"({"reason":"unpaid"})",
              {{"X-Tenant", initech()}});
  ASSERT_TRUE(r.status == 200 || r.status == 201) << r.body;
  Http h(stack_->edge_port);
  EXPECT_TRUE(tst::wait_until(
      [&] {
        return h.get("/api/vault/items/x", bearer(ivy.access)).error_code() == "tenant_suspended";
      },
      10s));
  EXPECT_EQ(h.get("/api/vault/items/x", bearer(ivy.access)).status, 403);
}

TEST_F(Access, AServiceDisabledForATenantIs403ForThatTenantOnly) {
  auto r = command(root_->access, "identity", "create_tenant",
                   R"({"tenant":")" + hooli() + R"(","name":"h"})");
  ASSERT_TRUE(r.status == 201 || r.status == 200) << r.body;
  register_user(hooli(), "hal", {"tenant_admin"});
  auto hal = login(hooli(), "hal");
  auto ann = login(acme(), "ann");
  Http h(stack_->edge_port);
  EXPECT_EQ(h.get("/api/vault/items/x", bearer(hal.access)).status, 404);
  r = command(root_->access, "identity", "disable_service", R"({"service":"vault"})",
              {{"X-Tenant", hooli()}});
  ASSERT_TRUE(r.status == 200 || r.status == 201) << r.body;
  EXPECT_TRUE(tst::wait_until(
      [&] {
        return h.get("/api/vault/items/x", bearer(hal.access)).error_code() ==
               "service_not_enabled";
      },
      10s));
  r = command(hal.access, "vault", "create_item", R"({"id":"h1","title":"t"})");
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_EQ(h.get("/api/vault/items/x", bearer(ann.access)).status, 404);  // acme unaffected
  EXPECT_EQ(me_status(hal.access), 200);  // identity is always enabled
}

TEST_F(Access, TenantConfigChangesReachAServiceLiveAndStayInTheirTenant) {
  // A service's subscriber on sb.events, as any plugin would bind it.
  broker::ConsumerOptions co;
  co.connection.url = stack_->amqp;
  co.connection.name = "access-config";
  broker::Consumer consumer(co);
  broker::QueueSpec q;
  q.name = "access-config-" + tst::unique_name("q");
  q.durable = false;
  q.auto_delete = true;
  broker::Topology t;
  t.queues.push_back(q);
  t.bindings.push_back({q.name, broker::kEventsExchange, "identity.config.*"});
  consumer.declare(t);
  std::mutex mu;
  std::vector<std::pair<std::string, std::string>> seen;  // type, body
  broker::ConsumeOptions opts;
  opts.retry.enabled = false;
  consumer.consume(q, opts, [&](const broker::Delivery& d) {
    std::lock_guard lock(mu);
    seen.emplace_back(d.message.type, d.message.body);
  });
  auto ann = login(acme(), "ann");
  const auto key = uid("feature");
  auto r = command(ann.access, "identity", "set_config",
                   R"({"key":")" + key + R"(","value":{"enabled":true,"limit":5}})");
  ASSERT_TRUE(r.status == 200 || r.status == 201) << r.body;
  auto saw = [&](const std::string& type) {
    std::lock_guard lock(mu);
    for (const auto& [ty, body] : seen) {
      if (ty == type && body.find(key) != std::string::npos) return body;
    }
    return std::string();
  };
  ASSERT_TRUE(tst::wait_until([&] { return !saw("identity.config.set").empty(); }, 10s));
  const auto body = saw("identity.config.set");
  EXPECT_NE(body.find("\"tenant\":\"" + acme() + "\""), std::string::npos) << body;
  EXPECT_NE(body.find("\"limit\":5"), std::string::npos) << body;
  r = command(ann.access, "identity", "unset_config", R"({"key":")" + key + R"("})");
  ASSERT_TRUE(r.status == 200 || r.status == 201) << r.body;
  EXPECT_TRUE(tst::wait_until([&] { return !saw("identity.config.unset").empty(); }, 10s));
  // Another tenant's admin neither reads it nor sees it in its own config.
  auto gus = login(globex(), "gus");
  Http h(stack_->edge_port);
  EXPECT_EQ(h.get("/api/identity/config/" + key, bearer(gus.access)).status, 404);
}
