// The edge on the real stack (issue 6, "Done when"): commands stored,
// published and seen; read-your-writes across a paused projection; 404 / 503
// / 504 honestly; AMQP and HTTP upstream answering alike; Idempotency-Key
// applying once; canary weights; closed by default.
#include <future>
#include <thread>

#include "edge_stack.hpp"
#include "switchboard/broker/broker.hpp"
#include "switchboard/registry/protocol.hpp"
#include "switchboard/shared/pg.hpp"

using namespace sb;
using namespace sb::edgetest;

namespace {

class EdgeE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    stack_ = new Stack();
    stack_->plugin("testsvc", "1.0.0", "amqp");
  }
  static void TearDownTestSuite() {
    delete stack_;
    stack_ = nullptr;
  }
  Stack& stack() { return *stack_; }
  Http http() { return Http(stack_->edge_port); }
  std::map<std::string, std::string> user(std::map<std::string, std::string> extra = {}) {
    auto h = bearer(token("alice", "acme", {"user"}));
    h.insert(extra.begin(), extra.end());
    return h;
  }
  std::int64_t count_events(const std::string& stream) {
    pg::ConnectOptions o;
    o.url = stack_->db;
    pg::Connection c(o);
    auto tx = c.begin();
    return tx.exec("SELECT count(*) FROM events WHERE stream = $1", {stream})
        .one()[0]
        .get<std::int64_t>();
  }
  static Stack* stack_;
};
Stack* EdgeE2E::stack_ = nullptr;

std::string item(const std::string& id, const std::string& title = "a thing") {
  return R"({"id":")" + id + R"(","title":")" + title + R"("})";
}

std::string unique_id(const char* prefix) {
  auto n = tst::unique_name(prefix);
  for (auto& c : n) {
    if (c == '_') c = '-';
  }
  return n;
}

}  // namespace

TEST_F(EdgeE2E, CommandIsStoredPublishedAndSeenByASubscriber) {
  // A test subscriber on sb.events.
  broker::ConsumerOptions co;
  co.connection.url = stack().amqp;
  co.connection.name = "e2e-subscriber";
  broker::Consumer consumer(co);
  broker::QueueSpec q;
  q.name = "e2e-sub-" + tst::unique_name("q");
  q.durable = false;
  q.auto_delete = true;
  broker::Topology t;
  t.queues.push_back(q);
  t.bindings.push_back({q.name, broker::kEventsExchange, "testsvc.item.created"});
  consumer.declare(t);
  std::mutex mu;
  std::vector<std::string> seen;
  broker::ConsumeOptions opts;
  opts.retry.enabled = false;
  consumer.consume(q, opts, [&](const broker::Delivery& d) {
    std::lock_guard lock(mu);
    seen.push_back(d.message.body);
  });

  auto h = http();
  const auto id = unique_id("c");
  auto r = h.post("/api/v1/commands/testsvc/create_item", item(id), user());
  ASSERT_EQ(r.status, 201) << r.body;
  auto d = r.json();
  ASSERT_TRUE(d.HasMember("command_id")) << r.body;
  ASSERT_TRUE(d.HasMember("position")) << r.body;
  ASSERT_EQ(d["event_ids"].Size(), 1u) << r.body;
  const std::string event_id = d["event_ids"][0].GetString();
  EXPECT_EQ(count_events("item-" + id), 1);
  ASSERT_TRUE(tst::wait_until(
      [&] {
        std::lock_guard lock(mu);
        for (const auto& b : seen) {
          if (b.find(event_id) != std::string::npos) return true;
        }
        return false;
      },
      10s))
      << "the subscriber never saw event " << event_id;
  std::lock_guard lock(mu);
  for (const auto& b : seen) {
    if (b.find(event_id) == std::string::npos) continue;
    EXPECT_NE(b.find("\"tenant\":\"acme\""), std::string::npos) << b;
    EXPECT_NE(b.find("\"actor\":\"user:alice\""), std::string::npos) << b;
  }
}

TEST_F(EdgeE2E, MinPositionWaitsForAPausedProjectionAndAnswersWhenItResumes) {
  auto& p = *stack().plugins.front();
  Http admin(p.admin_port);
  ASSERT_EQ(admin.post("/control/pause", "{}").status, 200);
  auto h = http();
  const auto id = unique_id("m");
  auto r = h.post("/api/v1/commands/testsvc/create_item", item(id, "paused"), user());
  ASSERT_EQ(r.status, 201) << r.body;
  const auto position = r.json()["position"].GetInt64();

  auto query = std::async(std::launch::async, [&] {
    Http q(stack().edge_port);
    return q.get("/api/testsvc/items/" + id, user({{"X-Min-Position", std::to_string(position)},
                                                   {"X-Request-Timeout", "20000"}}));
  });
  // While paused it must not answer (and certainly not with "not found").
  EXPECT_EQ(query.wait_for(1500ms), std::future_status::timeout)
      << "answered while the projection was paused: " << query.get().body;
  ASSERT_EQ(admin.post("/control/resume", "{}").status, 200);
  ASSERT_EQ(query.wait_for(15s), std::future_status::ready);
  auto answer = query.get();
  ASSERT_EQ(answer.status, 200) << answer.body;
  EXPECT_EQ(std::string(answer.json()["title"].GetString()), "paused");
  // Without X-Min-Position the read model answers at once.
  EXPECT_EQ(h.get("/api/testsvc/items/" + id, user()).status, 200);
}

TEST_F(EdgeE2E, UnknownServiceRouteAndCommandAre404) {
  auto h = http();
  EXPECT_EQ(h.get("/api/nosuchsvc/anything", user()).error_code(), "unknown_service");
  auto r = h.get("/api/testsvc/no/such/path", user());
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.error_code(), "unknown_route");
  r = h.post("/api/v1/commands/nosuchsvc/do", "{}", user());
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.error_code(), "unknown_service");
  r = h.post("/api/v1/commands/testsvc/nosuch", "{}", user());
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.error_code(), "unknown_command");
}

TEST_F(EdgeE2E, BadBodiesAreRefusedByTheEdgeWithTheFailingPath) {
  auto h = http();
  auto r = h.post("/api/v1/commands/testsvc/create_item", "{not json", user());
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.error_code(), "malformed_json");
  r = h.post("/api/v1/commands/testsvc/create_item", R"({"id":"BAD ID","title":"x"})", user());
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.error_code(), "schema_violation");
  EXPECT_NE(r.body.find("\"path\":\"/id\""), std::string::npos) << r.body;
  r = h.post("/api/v1/commands/testsvc/create_item", std::string((1 << 20) + 1024, 'x'), user());
  EXPECT_EQ(r.status, 413) << r.body;
  EXPECT_EQ(r.error_code(), "body_too_large");
  r = h.get("/api/testsvc/echo/1", user({{"X-Big-1", std::string(6000, 'h')},
                                         {"X-Big-2", std::string(6000, 'h')},
                                         {"X-Big-3", std::string(6000, 'h')}}));
  EXPECT_EQ(r.status, 431) << r.body;
  r = h.post("/api/v1/commands/testsvc/reject", "{}", user());
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_EQ(r.error_code(), "rule_violated");
  const auto id = unique_id("d");
  ASSERT_EQ(h.post("/api/v1/commands/testsvc/create_item", item(id), user()).status, 201);
  r = h.post("/api/v1/commands/testsvc/create_item", item(id), user());
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(r.error_code(), "wrong_expected_version");
}

TEST_F(EdgeE2E, SlowCommandIs504AtTheDeadlineAndNeverApplies) {
  auto h = http();
  const auto id = unique_id("s");
  const auto started = std::chrono::steady_clock::now();
  auto r = h.post("/api/v1/commands/testsvc/slow_create",
                  R"({"id":")" + id + R"(","title":"late","ms":2500})",
                  user({{"X-Request-Timeout", "1000"}}));
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(r.status, 504) << r.body;
  EXPECT_EQ(r.error_code(), "deadline_exceeded");
  EXPECT_LT(took, 2500ms) << "the edge waited for the slow handler instead of its deadline";
  // The handler wakes up after 2.5 s and tries to append: the store refuses
  // it as late. Wait for that refusal, then check nothing was stored.
  auto late = [&] {
    auto m = tst::http_get(stack().store_port, "/metrics");
    auto at = m.body.find("\nsb_store_late_appends_total ");
    return at != std::string::npos && m.body.substr(at + 30, 1) != "0";
  };
  ASSERT_TRUE(tst::wait_until(late, 15s)) << "the store never refused the late append";
  EXPECT_EQ(count_events("item-" + id), 0);
  // The item was never created: a normal create of the same id works.
  EXPECT_EQ(h.post("/api/v1/commands/testsvc/create_item", item(id), user()).status, 201);
}

TEST_F(EdgeE2E, RetriedCommandWithTheSameIdempotencyKeyAppliesOnce) {
  auto h = http();
  const auto id = unique_id("i");
  const auto key = unique_id("key");
  auto first =
      h.post("/api/v1/commands/testsvc/create_item", item(id), user({{"Idempotency-Key", key}}));
  ASSERT_EQ(first.status, 201) << first.body;
  auto again =
      h.post("/api/v1/commands/testsvc/create_item", item(id), user({{"Idempotency-Key", key}}));
  EXPECT_EQ(again.status, 201) << again.body;
  EXPECT_EQ(again.body, first.body);
  EXPECT_EQ(again.header("idempotent-replayed"), "true");
  EXPECT_EQ(count_events("item-" + id), 1);
  EXPECT_EQ(std::string(first.json()["command_id"].GetString()), key);
  auto other = h.post("/api/v1/commands/testsvc/create_item", item(id, "other"),
                      user({{"Idempotency-Key", key}}));
  EXPECT_EQ(other.status, 422) << other.body;
  EXPECT_EQ(other.error_code(), "idempotency_key_reused");
  // Another tenant's same key is another command.
  auto globex = bearer(token("bob", "globex", {"user"}));
  globex["Idempotency-Key"] = key;
  EXPECT_EQ(h.post("/api/v1/commands/testsvc/create_item", item(unique_id("g")), globex).status,
            201);
  // The command's status is readable by its id, by its tenant only.
  auto st = h.get("/api/v1/commands/" + key, user());
  ASSERT_EQ(st.status, 200) << st.body;
  EXPECT_EQ(std::string(st.json()["status"].GetString()), "succeeded");
}

TEST_F(EdgeE2E, AsyncCommandAnswers202AndItsStatusFollows) {
  auto h = http();
  auto r = h.post("/api/v1/commands/testsvc/create_item", item(unique_id("a")),
                  user({{"Prefer", "respond-async"}}));
  ASSERT_EQ(r.status, 202) << r.body;
  const std::string id = r.json()["command_id"].GetString();
  ASSERT_TRUE(tst::wait_until(
      [&] {
        auto st = h.get("/api/v1/commands/" + id, user());
        return st.status == 200 && st.body.find("\"succeeded\"") != std::string::npos;
      },
      10s));
  EXPECT_EQ(h.get("/api/v1/commands/" + id, bearer(token("bob", "globex", {"user"}))).status, 404);
}

TEST_F(EdgeE2E, AmqpAndHttpUpstreamGiveTheSameAnswers) {
  stack().plugin("echo", "1.0.0", "amqp");
  stack().plugin("echo", "2.0.0", "http");
  auto h = http();
  auto strip = [](std::string body) {
    auto d = json::parse(body);
    d.RemoveMember("version");
    return json::to_string(d);
  };
  for (const auto& [method, path, body] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"GET", "/api/echo/echo/a%20b?x=1&y=two", ""},
           {"POST", "/api/echo/echo/42", R"({"hello":"world"})"},
           {"GET", "/api/echo/public/ping", ""}}) {
    auto via_amqp =
        h.send(method, path, user({{"X-Service-Version", "1.0.0"}, {"X-Test", "t1"}}), body);
    auto via_http =
        h.send(method, path, user({{"X-Service-Version", "2.0.0"}, {"X-Test", "t1"}}), body);
    ASSERT_EQ(via_amqp.status, 200) << path << " " << via_amqp.body;
    ASSERT_EQ(via_http.status, 200) << path << " " << via_http.body;
    EXPECT_EQ(strip(via_amqp.body), strip(via_http.body)) << path;
  }
  auto e = h.get("/api/echo/echo/a%20b", user({{"X-Service-Version", "2.0.0"}}));
  EXPECT_EQ(std::string(e.json()["id"].GetString()), "a b");
  EXPECT_EQ(std::string(e.json()["tenant"].GetString()), "acme");
  // Commands too, over both transports.
  for (const auto* v : {"1.0.0", "2.0.0"}) {
    const auto id = unique_id("e");
    auto r =
        h.post("/api/v1/commands/echo/create_item", item(id), user({{"X-Service-Version", v}}));
    EXPECT_EQ(r.status, 201) << v << " " << r.body;
    r = h.post("/api/v1/commands/echo/create_item", item(id), user({{"X-Service-Version", v}}));
    EXPECT_EQ(r.status, 409) << v << " " << r.body;
    r = h.post("/api/v1/commands/echo/reject", "{}", user({{"X-Service-Version", v}}));
    EXPECT_EQ(r.status, 422) << v << " " << r.body;
  }
  // Roles from the route metadata.
  EXPECT_EQ(h.get("/api/echo/admin/only", user()).status, 403);
  EXPECT_EQ(h.get("/api/echo/admin/only", bearer(token("ann", "acme", {"admin"}))).status, 200);
}

TEST_F(EdgeE2E, StoppedServiceIs503WithinItsTtl) {
  auto& p = stack().plugin("stopsvc", "1.0.0", "amqp");
  auto h = http();
  ASSERT_EQ(h.get("/api/stopsvc/echo/1", user()).status, 200);
  p.proc->kill9();
  const auto killed = std::chrono::steady_clock::now();
  // A call caught in flight when the instance died can only time out (its
  // outcome is unknown): poll with a short deadline of its own.
  auto probe = [&] {
    return h.get("/api/stopsvc/echo/1", user({{"X-Request-Timeout", "500"}})).status;
  };
  ASSERT_TRUE(tst::wait_until([&] { return probe() == 503; }, 6s, 50ms))
      << "still routed "
      << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               killed)
             .count()
      << " ms after kill -9";
  EXPECT_EQ(h.get("/api/stopsvc/echo/1", user()).error_code(), "no_live_instance");
}

TEST_F(EdgeE2E, CanaryWeightsSendTheirShare) {
  stack().plugin("canary", "1.0.0", "amqp");
  stack().plugin("canary", "2.0.0", "amqp");
  broker::RpcClientOptions ro;
  ro.connection.url = stack().amqp;
  ro.connection.name = "e2e-weights";
  broker::RpcClient rpc(ro);
  broker::Message m;
  m.body = R"({"service":"canary","weights":{"1.0.0":90,"2.0.0":10}})";
  auto reply = rpc.call(std::string(registry::kSetWeightsRpc), m, 10s).get();
  ASSERT_NE(reply.body.find("positions"), std::string::npos) << reply.body;
  auto h = http();
  ASSERT_TRUE(tst::wait_until(
      [&] {
        auto s = h.get("/api/v1/services", bearer(stack().admin_token()));
        auto at = s.body.find(R"("name":"canary")");
        return at != std::string::npos &&
               s.body.find(R"("version":"1.0.0","weight":90,)", at) != std::string::npos &&
               s.body.find(R"("version":"2.0.0","weight":10,)", at) != std::string::npos;
      },
      10s));
  int v2 = 0;
  for (int i = 0; i < 2000; ++i) {
    auto r = h.get("/api/canary/public/ping");
    ASSERT_EQ(r.status, 200) << r.body;
    if (r.body.find("\"2.0.0\"") != std::string::npos) ++v2;
  }
  std::printf("canary: %d of 2000 calls went to 2.0.0 (%.1f %%)\n", v2, v2 / 20.0);
  EXPECT_GE(v2, 140);
  EXPECT_LE(v2, 260);
}

TEST_F(EdgeE2E, ClosedByDefault) {
  auto h = http();
  for (const auto& [method, path] : std::vector<std::pair<std::string, std::string>>{
           {"GET", "/metrics"},
           {"GET", "/openapi.json"},
           {"GET", "/api/v1/services"},
           {"GET", "/api/v1/catalog"},
           {"GET", "/api/v1/commands/some-id"},
           {"POST", "/api/v1/commands/testsvc/create_item"},
           {"GET", "/api/testsvc/echo/1"},
           {"POST", "/api/testsvc/echo/1"},
           {"GET", "/api/nosuchsvc/x"},
           {"GET", "/whatever"},
           {"DELETE", "/api/testsvc/echo/1"}}) {
    auto r = h.send(method, path, {}, method == "POST" ? "{}" : "");
    EXPECT_EQ(r.status, 401) << method << " " << path << " " << r.body;
    EXPECT_EQ(r.error_code(), "unauthenticated") << path;
    // An expired or forged token is no better.
    r = h.send(method, path, bearer(token("alice", "acme", {"user"}, -120)),
               method == "POST" ? "{}" : "");
    EXPECT_EQ(r.status, 401) << method << " " << path;
  }
  EXPECT_EQ(h.get("/health").status, 200);
  EXPECT_EQ(h.get("/ready").status, 200);
  EXPECT_EQ(h.get("/api/testsvc/public/ping").status, 200);
  // Acting for another tenant takes a super admin.
  EXPECT_EQ(h.get("/api/testsvc/echo/1", user({{"X-Tenant", "globex"}})).status, 403);
  auto as_admin = bearer(stack().admin_token());
  as_admin["X-Tenant"] = "globex";
  auto r = h.get("/api/testsvc/echo/1", as_admin);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(std::string(r.json()["tenant"].GetString()), "globex");
}

TEST_F(EdgeE2E, PlatformViewsDescribeThePluggedInServices) {
  auto h = http();
  auto admin = bearer(stack().admin_token());
  auto openapi = h.get("/openapi.json", admin);
  ASSERT_EQ(openapi.status, 200);
  auto d = openapi.json();
  EXPECT_TRUE(d["paths"].HasMember("/api/testsvc/items/{id}")) << openapi.body.substr(0, 2000);
  EXPECT_TRUE(d["paths"].HasMember("/api/v1/commands/testsvc/create_item"));
  auto catalog = h.get("/api/v1/catalog", admin);
  ASSERT_EQ(catalog.status, 200);
  EXPECT_TRUE(catalog.json()["channels"].HasMember("testsvc.item.created"))
      << catalog.body.substr(0, 2000);
  // The edge's own errors are counted by code.
  EXPECT_EQ(h.get("/api/v1/no-such-view", admin).status, 404);
  auto metrics = h.get("/metrics", admin);
  ASSERT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("sb_edge_requests_total"), std::string::npos);
  EXPECT_NE(metrics.body.find("sb_edge_errors_total{code=\"unknown_route\"}"), std::string::npos)
      << metrics.body.substr(0, 4000);
}
