// Identity enforcement at the edge on the real stack (docs/protocol.md
// 11.4-11.5). There is no identity service here: the test appends the
// identity.* events straight through store.append (after registering their
// types in the store's catalog as a plugin's registration would), and checks
// that the edge follows them: revoked sessions, API keys, suspended tenants,
// disabled services, rate limits, redaction.
#include <chrono>

#include "edge_stack.hpp"
#include "switchboard/broker/rpc.hpp"
#include "switchboard/events/time.hpp"
#include "switchboard/events/uuid.hpp"

using namespace sb;
using namespace sb::edgetest;

namespace {

std::int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string uid(const char* prefix) {
  auto n = tst::unique_name(prefix);
  for (auto& c : n) {
    if (c == '_') c = '-';
  }
  return n;
}

class EdgeIdentity : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    stack_ = new Stack();
    stack_->plugin("testsvc", "1.0.0", "amqp");
    broker::RpcClientOptions ro;
    ro.connection.url = stack_->amqp;
    ro.connection.name = "e2e-identity";
    rpc_ = new broker::RpcClient(ro);
    // What the identity service's registration would bring.
    int version = 1000;
    for (const char* type :
         {"identity.tenant.created", "identity.tenant.services_changed",
          "identity.tenant.suspended", "identity.tenant.reinstated", "identity.session.revoked",
          "identity.apikey.issued", "identity.apikey.revoked", "identity.user.deactivated"}) {
      append("catalog-" + std::string(type), "_platform", "catalog.type.registered",
             R"({"kind":"event_type_added","name":")" + std::string(type) +
                 R"(","owner":"identity","catalog_version":)" + std::to_string(++version) +
                 R"(,"schema_version":1,"transient":false,"schema":{"type":"object"}})");
    }
  }
  static void TearDownTestSuite() {
    delete rpc_;
    rpc_ = nullptr;
    delete stack_;
    stack_ = nullptr;
  }

  static void append(const std::string& stream, const std::string& tenant, const std::string& type,
                     const std::string& data) {
    broker::Message m;
    m.body = R"({"stream":")" + stream + R"(","tenant":")" + tenant + R"(","events":[{"id":")" +
             events::uuid_v4().to_string() + R"(","type":")" + type + R"(","occurred_at":")" +
             events::format_rfc3339_ms(events::now_ms()) + R"(","data":)" + data + "}]}";
    auto reply = rpc_->call("store.append", m, std::chrono::seconds(10)).get();
    ASSERT_NE(reply.body.find("\"appended\""), std::string::npos) << reply.body;
  }

  static std::string session_token(const std::string& sub, const std::string& tenant,
                                   const std::string& sid) {
    auth::JwtOptions o;
    o.secrets = {kJwtSecret};
    auth::Principal p;
    p.subject = sub;
    p.tenant = tenant;
    p.roles = {"user"};
    p.session_id = sid;
    p.expires_at = now_s() + 900;
    return auth::JwtVerifier(o).sign(p, now_s());
  }

  static Stack* stack_;
  static broker::RpcClient* rpc_;
};
Stack* EdgeIdentity::stack_ = nullptr;
broker::RpcClient* EdgeIdentity::rpc_ = nullptr;

}  // namespace

TEST_F(EdgeIdentity, RevokedSessionsTokenIsRefusedSoonAfterTheEventIsStored) {
  const auto tenant = "t" + uid("s").substr(2, 8);
  const auto sid = uid("sid");
  const auto t = session_token("u-" + sid, tenant, sid);
  Http h(stack_->edge_port);
  ASSERT_EQ(h.get("/api/testsvc/echo/1", bearer(t)).status, 200);
  append("session-" + sid, tenant, "identity.session.revoked",
         R"({"session_id":")" + sid + R"(","user_id":"u","reason":"logout","access_expires_at":)" +
             std::to_string(now_s() + 900) + "}");
  const auto stored = std::chrono::steady_clock::now();
  Response last;
  ASSERT_TRUE(tst::wait_until(
      [&] {
        last = h.get("/api/testsvc/echo/1", bearer(t));
        return last.status == 401;
      },
      5s))
      << last.status << " " << last.body;
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - stored);
  std::fprintf(stderr, "revocation enforced %lld ms after the append was confirmed\n",
               static_cast<long long>(took.count()));
  EXPECT_NE(last.body.find("revoked"), std::string::npos) << last.body;
  EXPECT_EQ(h.get("/api/testsvc/echo/1", bearer(session_token("u2", tenant, uid("sid")))).status,
            200)
      << "another session still works";
}

TEST_F(EdgeIdentity, ApiKeyIsAcceptedWithinItsScopesThenRefusedAfterRevocation) {
  const auto tenant = "t" + uid("k").substr(2, 8);
  const auto key_id = uid("key");
  std::string prefix;
  const auto hex = events::uuid_v4().to_string();
  for (char c : hex) {
    if (c != '-' && prefix.size() < 12) prefix += c;
  }
  const auto api_key = "sbk_" + prefix + "_" + auth::random_token(32);
  append(
      "apikey-" + key_id, tenant, "identity.apikey.issued",
      R"({"key_id":")" + key_id + R"(","prefix":")" + prefix + R"(","key_hash":")" +
          auth::sha256_hex(api_key) +
          R"(","name":"ci","owner":"u1","roles":["user"],"scopes":["route:testsvc:GET:*","platform:events:read"],"expires_at":0})");
  Http h(stack_->edge_port);
  const std::map<std::string, std::string> with_key{{"X-API-Key", api_key}};
  Response last;
  ASSERT_TRUE(tst::wait_until(
      [&] {
        last = h.get("/api/testsvc/echo/1", with_key);
        return last.status == 200;
      },
      5s))
      << last.status << " " << last.body;
  auto echo = last.json();
  EXPECT_EQ(std::string(echo["actor"].GetString()), "key:" + key_id);
  EXPECT_EQ(std::string(echo["tenant"].GetString()), tenant);

  // Out of scope: a command, and a POST.
  auto cmd = h.post("/api/v1/commands/testsvc/create_item", R"({"id":"x","title":"t"})", with_key);
  EXPECT_EQ(cmd.status, 403) << cmd.body;
  EXPECT_EQ(cmd.error_code(), "forbidden");
  EXPECT_EQ(h.send("POST", "/api/testsvc/echo/1", with_key, "{}").status, 403);
  // Wrong secret, both credentials.
  auto wrong = api_key;
  wrong.back() = wrong.back() == 'A' ? 'B' : 'A';
  EXPECT_EQ(h.get("/api/testsvc/echo/1", {{"X-API-Key", wrong}}).status, 401);
  auto both = bearer(token("u", tenant, {"user"}));
  both["X-API-Key"] = api_key;
  EXPECT_EQ(h.get("/api/testsvc/echo/1", both).status, 400);

  // The key's own issue event is readable with it, its hash redacted.
  auto ev = h.get("/api/v1/streams/apikey-" + key_id, with_key);
  ASSERT_EQ(ev.status, 200) << ev.body;
  EXPECT_EQ(ev.body.find(auth::sha256_hex(api_key)), std::string::npos);
  EXPECT_NE(ev.body.find(R"("key_hash":"[redacted]")"), std::string::npos) << ev.body;

  append("apikey-" + key_id, tenant, "identity.apikey.revoked",
         R"({"key_id":")" + key_id + R"(","prefix":")" + prefix + R"("})");
  ASSERT_TRUE(tst::wait_until(
      [&] {
        last = h.get("/api/testsvc/echo/1", with_key);
        return last.status == 401;
      },
      5s))
      << last.status << " " << last.body;
  EXPECT_NE(last.body.find("revoked"), std::string::npos) << last.body;
}

TEST_F(EdgeIdentity, TightEndpointLimitAnswers429WithRetryAfter) {
  const auto t = token("rl-" + uid("u"), "acme", {"user"});
  Http h(stack_->edge_port);
  std::vector<Response> answers;
  // Burst 2 at 1/s: within a few quick calls one is refused.
  for (int i = 0; i < 10; ++i) {
    answers.push_back(h.get("/api/testsvc/limited", bearer(t)));
    if (answers.back().status == 429) break;
  }
  ASSERT_EQ(answers.front().status, 200) << answers.front().body;
  EXPECT_EQ(answers.front().header("ratelimit-limit"), "2");
  EXPECT_EQ(answers.front().header("ratelimit-remaining"), "1");
  const auto& refused = answers.back();
  ASSERT_EQ(refused.status, 429) << refused.body;
  EXPECT_EQ(refused.error_code(), "rate_limited");
  EXPECT_GE(std::stoi(refused.header("retry-after")), 1);
  EXPECT_EQ(refused.header("ratelimit-limit"), "2");
  EXPECT_EQ(refused.header("ratelimit-remaining"), "0");
  // Another credential has its own bucket.
  EXPECT_EQ(h.get("/api/testsvc/limited", bearer(token("rl-" + uid("v"), "acme", {"user"}))).status,
            200);
  // The refused caller may call again once a token is back.
  ASSERT_TRUE(tst::wait_until(
      [&] { return h.get("/api/testsvc/limited", bearer(t)).status == 200; }, 5s, 200ms));
}

TEST_F(EdgeIdentity, SuspendedTenantIs403UntilReinstated) {
  const auto tenant = "t" + uid("p").substr(2, 8);
  append("tenant-" + tenant, tenant, "identity.tenant.created",
         R"({"name":"x","services":["*"],"disabled":[]})");
  const auto t = token("u", tenant, {"user"});
  Http h(stack_->edge_port);
  ASSERT_TRUE(
      tst::wait_until([&] { return h.get("/api/testsvc/echo/1", bearer(t)).status == 200; }, 5s));
  append("tenant-" + tenant, tenant, "identity.tenant.suspended", R"({"reason":"unpaid"})");
  Response last;
  ASSERT_TRUE(tst::wait_until(
      [&] {
        last = h.get("/api/testsvc/echo/1", bearer(t));
        return last.status == 403;
      },
      5s));
  EXPECT_EQ(last.error_code(), "tenant_suspended");
  auto cmd = h.post("/api/v1/commands/testsvc/create_item", R"({"id":"x","title":"t"})", bearer(t));
  EXPECT_EQ(cmd.error_code(), "tenant_suspended");
  auto admin = bearer(stack_->admin_token());
  admin["X-Tenant"] = tenant;
  EXPECT_EQ(h.get("/api/testsvc/echo/1", admin).error_code(), "tenant_suspended")
      << "a super admin acting for it too";
  append("tenant-" + tenant, tenant, "identity.tenant.reinstated", R"({"reason":"paid"})");
  EXPECT_TRUE(
      tst::wait_until([&] { return h.get("/api/testsvc/echo/1", bearer(t)).status == 200; }, 5s));
}

TEST_F(EdgeIdentity, ServiceNotEnabledForTheTenantIs403) {
  const auto tenant = "t" + uid("d").substr(2, 8);
  append("tenant-" + tenant, tenant, "identity.tenant.created",
         R"({"name":"x","services":["*"],"disabled":["testsvc"]})");
  const auto t = token("u", tenant, {"user"});
  Http h(stack_->edge_port);
  Response last;
  ASSERT_TRUE(tst::wait_until(
      [&] {
        last = h.get("/api/testsvc/echo/1", bearer(t));
        return last.status == 403;
      },
      5s))
      << last.status << " " << last.body;
  EXPECT_EQ(last.error_code(), "service_not_enabled");
  auto cmd = h.post("/api/v1/commands/testsvc/create_item", R"({"id":"x","title":"t"})", bearer(t));
  EXPECT_EQ(cmd.status, 403);
  EXPECT_EQ(cmd.error_code(), "service_not_enabled");
  // A tenant the identity service never created has no policy.
  EXPECT_EQ(h.get("/api/testsvc/echo/1", bearer(token("u", "devtenant", {"user"}))).status, 200);
  append("tenant-" + tenant, tenant, "identity.tenant.services_changed",
         R"({"services":["testsvc"],"disabled":[]})");
  EXPECT_TRUE(
      tst::wait_until([&] { return h.get("/api/testsvc/echo/1", bearer(t)).status == 200; }, 5s));
}
