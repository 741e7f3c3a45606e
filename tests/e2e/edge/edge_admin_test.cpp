// Operator endpoints on the real stack (issue 7): targeted replay to one push
// group only, tenant scoping of replays and parked messages, 403 for plain
// users, the checkpointed subscription and projection the test plugin runs,
// and parked messages listed, retried and dropped.
#include <atomic>
#include <mutex>
#include <set>

#include "edge_stack.hpp"
#include "switchboard/broker/consumer.hpp"
#include "switchboard/events/push.hpp"

using namespace sb;
using namespace sb::edgetest;

namespace {

std::string uid(const char* prefix) {
  auto n = tst::unique_name(prefix);
  for (auto& c : n) {
    if (c == '_') c = '-';
  }
  return n;
}

/// A push group in this process: records what its handler saw, in order
/// (one worker, so handling order is delivery order). Its topic matches no
/// stored event, so only replays (and requeued messages) reach it.
class Group {
 public:
  Group(const std::string& amqp, std::string name) : name_(std::move(name)) {
    events::PushSubscriptionOptions o;
    o.group = name_;
    o.topics = {"nothing.matches.this"};
    o.connection.url = amqp;
    o.connection.name = "e2e-" + name_;
    o.workers = 1;
    o.prefetch = 1;
    o.migrate = false;
    o.handler = [this](const events::Event& e) {
      if (fail_.load()) throw broker::PermanentError("refused by the test: " + e.id.value());
      std::lock_guard lock(mu_);
      seen_.push_back({e.id.value(), e.tenant.value()});
    };
    sub_ = std::make_unique<events::PushSubscription>(std::move(o));
    sub_->start();
  }
  ~Group() { sub_->stop(std::chrono::steady_clock::now() + 5s); }
  const std::string& name() const { return name_; }
  void fail(bool on) { fail_ = on; }
  std::vector<std::pair<std::string, std::string>> seen() {
    std::lock_guard lock(mu_);
    return seen_;
  }
  std::vector<std::string> ids() {
    std::vector<std::string> out;
    for (const auto& [id, tenant] : seen()) out.push_back(id);
    return out;
  }
  bool saw(const std::string& id) {
    for (const auto& got : ids()) {
      if (got == id) return true;
    }
    return false;
  }

 private:
  std::string name_;
  std::atomic<bool> fail_{false};
  std::mutex mu_;
  std::vector<std::pair<std::string, std::string>> seen_;
  std::unique_ptr<events::PushSubscription> sub_;
};

struct Created {
  std::string event_id;
  std::int64_t position = 0;
};

class EdgeAdmin : public ::testing::Test {
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
  static std::map<std::string, std::string> user(const std::string& tenant) {
    return bearer(token("u-" + tenant, tenant, {"user"}));
  }
  static std::map<std::string, std::string> tenant_admin(const std::string& tenant) {
    return bearer(token("ta-" + tenant, tenant, {"tenant_admin"}));
  }
  std::map<std::string, std::string> root() { return bearer(stack_->admin_token()); }

  Created create(const std::string& tenant) {
    Http h(stack_->edge_port);
    auto r = h.post("/api/v1/commands/testsvc/create_item",
                    R"({"id":")" + uid("i") + R"(","title":"t"})", user(tenant));
    EXPECT_EQ(r.status, 201) << r.body;
    auto d = r.json();
    return {d["event_ids"][0].GetString(), d["position"].GetInt64()};
  }

  std::string replay_body(const std::string& group, std::int64_t from, std::int64_t to,
                          const std::string& extra = "") {
    return R"({"group":")" + group + R"(","from_position":)" + std::to_string(from) +
           R"(,"to_position":)" + std::to_string(to) + R"(,"types":["testsvc.item.created"])" +
           extra + "}";
  }

  /// Starts a replay and waits until it is no longer running; returns its status.
  rapidjson::Document replay(const std::string& body,
                             const std::map<std::string, std::string>& as) {
    Http h(stack_->edge_port);
    auto r = h.post("/api/v1/replays", body, as);
    EXPECT_EQ(r.status, 202) << r.body;
    if (r.status != 202) return sb::json::parse("{}");
    const std::string url = r.json()["status_url"].GetString();
    EXPECT_EQ(url, "/api/v1/replays/" + std::string(r.json()["replay_id"].GetString()));
    std::string last;
    const bool finished = tst::wait_until(
        [&] {
          auto s = h.get(url, as);
          if (s.status != 200) return false;
          last = s.body;
          return std::string(s.json()["status"].GetString()) != "running";
        },
        30s, 20ms);
    EXPECT_TRUE(finished) << last;
    auto d = sb::json::parse(last);
    EXPECT_EQ(std::string(d["status"].GetString()), "done") << last;
    return d;
  }

  static Stack* stack_;
};
Stack* EdgeAdmin::stack_ = nullptr;

}  // namespace

TEST_F(EdgeAdmin, ReplayReachesThatGroupOnly) {
  Group a(stack().amqp, uid("ga"));
  Group b(stack().amqp, uid("gb"));
  std::vector<Created> items;
  for (int i = 0; i < 3; ++i) items.push_back(create("acme"));
  auto status =
      replay(replay_body(a.name(), items.front().position, items.back().position), root());
  EXPECT_EQ(status["progress"]["published"].GetInt64(), 3);
  EXPECT_EQ(status["progress"]["total"].GetInt64(), 3);
  EXPECT_EQ(status["eta_s"].GetDouble(), 0.0);
  ASSERT_TRUE(tst::wait_until([&] { return a.ids().size() >= 3; }, 20s));
  EXPECT_EQ(a.ids(),
            (std::vector<std::string>{items[0].event_id, items[1].event_id, items[2].event_id}));
  // A marker replayed to B afterwards is the first and only thing B handles:
  // nothing of A's replay reached B's queue (one worker: in queue order).
  replay(replay_body(b.name(), items[2].position, items[2].position), root());
  ASSERT_TRUE(tst::wait_until([&] { return !b.ids().empty(); }, 20s));
  EXPECT_EQ(b.ids(), std::vector<std::string>{items[2].event_id});
  EXPECT_EQ(a.ids().size(), 3u);
}

TEST_F(EdgeAdmin, TenantAdminReplaysAndSeesOnlyItsTenant) {
  Group g(stack().amqp, uid("gt"));
  auto a1 = create("acme");
  auto b1 = create("globex");
  auto a2 = create("acme");
  Http h(stack().edge_port);
  // Naming another tenant is refused; so are plain users.
  auto r = h.post("/api/v1/replays",
                  replay_body(g.name(), a1.position, a2.position, R"(,"tenant":"globex")"),
                  tenant_admin("acme"));
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_EQ(r.error_code(), "forbidden");
  r = h.post("/api/v1/replays", replay_body(g.name(), a1.position, a2.position), user("acme"));
  EXPECT_EQ(r.status, 403) << r.body;
  // The range holds globex's event too: the tenant filter is forced.
  auto status = replay(replay_body(g.name(), a1.position, a2.position), tenant_admin("acme"));
  EXPECT_EQ(std::string(status["tenant"].GetString()), "acme");
  EXPECT_EQ(status["progress"]["published"].GetInt64(), 2);
  ASSERT_TRUE(tst::wait_until([&] { return g.saw(a2.event_id); }, 20s));
  // In queue order: globex's event would have come before a2.
  EXPECT_EQ(g.ids(), (std::vector<std::string>{a1.event_id, a2.event_id}));
  EXPECT_FALSE(g.saw(b1.event_id));
  // The replay's status is visible to its tenant's admins and super admins only.
  const std::string url = "/api/v1/replays/" + std::string(status["replay_id"].GetString());
  EXPECT_EQ(h.get(url, tenant_admin("acme")).status, 200);
  EXPECT_EQ(h.get(url, root()).status, 200);
  EXPECT_EQ(h.get(url, tenant_admin("globex")).status, 404);
  EXPECT_EQ(h.get(url, user("acme")).status, 403);
  EXPECT_EQ(h.get("/api/v1/replays/" + std::string(32, '0'), root()).status, 404);
  // Nor does a tenant admin read another tenant's events.
  EXPECT_EQ(h.get("/api/v1/events?tenant=globex", tenant_admin("acme")).status, 403);
  auto mine = h.get("/api/v1/events?type=testsvc.item.created&limit=1000", tenant_admin("acme"));
  ASSERT_EQ(mine.status, 200);
  EXPECT_EQ(mine.body.find(b1.event_id), std::string::npos);
}

TEST_F(EdgeAdmin, BadRequestsGetHonestStatuses) {
  Http h(stack().edge_port);
  auto r = h.post("/api/v1/replays", R"({"subscription":"projection.testsvc_items.g1"})", root());
  EXPECT_EQ(r.status, 400) << r.body;  // no position
  r = h.post("/api/v1/replays", R"({"subscription":"no.such.sub","position":0})", root());
  EXPECT_EQ(r.status, 404) << r.body;
  r = h.post("/api/v1/replays", R"({"group":"Bad Group","from_position":1})", root());
  EXPECT_EQ(r.status, 400) << r.body;
  r = h.post("/api/v1/replays", "{oops", root());
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.error_code(), "malformed_json");
  r = h.post("/api/v1/replays", replay_body(uid("nogroup"), 1, 2), root());
  EXPECT_EQ(r.status, 404) << r.body;
  EXPECT_EQ(r.error_code(), "group_not_found");
  EXPECT_EQ(h.get("/api/v1/replays", root()).status, 405);
  EXPECT_EQ(h.get("/api/v1/subscriptions/" + uid("nogroup") + "/parked", root()).status, 404);
  r = h.get("/api/v1/subscriptions/Bad%20Group/parked", root());
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.error_code(), "invalid_group");
  EXPECT_EQ(h.send("PUT", "/api/v1/subscriptions/g/parked", root(), "{}").status, 405);
  EXPECT_EQ(h.get("/api/v1/subscriptions", {}).status, 401);
  for (const char* p :
       {"/api/v1/subscriptions", "/api/v1/projections", "/api/v1/subscriptions/g/parked"}) {
    r = h.get(p, user("acme"));
    EXPECT_EQ(r.status, 403) << p;
    EXPECT_EQ(r.error_code(), "forbidden") << p;
  }
}

TEST_F(EdgeAdmin, SubscriptionsShowThePluginsProjection) {
  const auto item = create("acme");
  Http h(stack().edge_port);
  const std::string name = "projection.testsvc_items.g1";
  std::string last;
  const bool caught_up = tst::wait_until(
      [&] {
        auto r = h.get("/api/v1/subscriptions", tenant_admin("acme"));
        if (r.status != 200) return false;
        last = r.body;
        auto d = r.json();
        for (const auto& s : d["subscriptions"].GetArray()) {
          if (name == s["name"].GetString() && s["position"].GetInt64() >= item.position) {
            return true;
          }
        }
        return false;
      },
      30s, 50ms);
  ASSERT_TRUE(caught_up) << last;
  auto d = sb::json::parse(last);
  EXPECT_GE(d["head"].GetInt64(), item.position);
  for (const auto& s : d["subscriptions"].GetArray()) {
    if (name != s["name"].GetString()) continue;
    EXPECT_EQ(s["partitions"].GetInt(), 1);
    EXPECT_EQ(std::string(s["state"].GetString()), "running");
    ASSERT_EQ(s["by_partition"].Size(), 1u);
    const auto& p = s["by_partition"][0];
    EXPECT_EQ(p["partition"].GetInt(), 0);
    EXPECT_GE(p["lag_events"].GetInt64(), 0);
    EXPECT_GE(p["lag_ms"].GetInt64(), 0);
    EXPECT_TRUE(p["last_error"].IsNull());
    EXPECT_TRUE(p["owner"].IsString());
    EXPECT_TRUE(p["updated_at"].IsString());
    EXPECT_TRUE(p.HasMember("rate"));
    EXPECT_TRUE(p.HasMember("failed_position"));
    EXPECT_TRUE(p.HasMember("last_error_at"));
  }
  EXPECT_TRUE(d["push_groups"].IsArray());
  auto pr = h.get("/api/v1/projections", root());
  ASSERT_EQ(pr.status, 200) << pr.body;
  auto pd = pr.json();
  bool found = false;
  for (const auto& p : pd["projections"].GetArray()) {
    if (std::string(p["name"].GetString()) != "testsvc_items") continue;
    found = true;
    EXPECT_EQ(p["serving"]["generation"].GetInt(), 1);
    EXPECT_EQ(std::string(p["serving"]["subscription"].GetString()), name);
    EXPECT_GE(p["serving"]["position"].GetInt64(), item.position);
    EXPECT_TRUE(p["rebuilding"].IsNull());
  }
  EXPECT_TRUE(found) << pr.body;
}

TEST_F(EdgeAdmin, ParkedMessagesAreListedRetriedAndDropped) {
  Group g(stack().amqp, uid("gp"));
  g.fail(true);
  auto a = create("acme");
  auto b = create("globex");
  replay(replay_body(g.name(), a.position, b.position), root());
  Http h(stack().edge_port);
  const std::string parked = "/api/v1/subscriptions/" + g.name() + "/parked";
  std::string last;
  ASSERT_TRUE(tst::wait_until(
      [&] {
        auto r = h.get(parked, root());
        last = r.body;
        return r.status == 200 && r.json()["count"].GetInt() == 2;
      },
      20s, 20ms))
      << last;
  auto d = sb::json::parse(last);
  const auto& first = d["messages"][0];
  EXPECT_EQ(std::string(first["message_id"].GetString()), a.event_id);
  EXPECT_EQ(std::string(first["tenant"].GetString()), "acme");
  EXPECT_EQ(first["position"].GetInt64(), a.position);
  EXPECT_TRUE(first["permanent"].GetBool());
  EXPECT_TRUE(first["replay"].GetBool());
  EXPECT_NE(std::string(first["error"].GetString()).find("refused by the test"), std::string::npos);
  EXPECT_EQ(std::string(first["event"]["id"].GetString()), a.event_id);
  EXPECT_EQ(h.get(parked + "?limit=1", root()).json()["count"].GetInt(), 1);
  EXPECT_EQ(h.get(parked + "?limit=0", root()).status, 400);
  // A tenant admin sees its tenant's parked message only, and acts on it by id.
  auto mine = h.get(parked, tenant_admin("acme"));
  ASSERT_EQ(mine.status, 200) << mine.body;
  EXPECT_EQ(mine.json()["count"].GetInt(), 1);
  EXPECT_EQ(mine.body.find(b.event_id), std::string::npos);
  EXPECT_EQ(h.post(parked + "/retry", "", tenant_admin("acme")).status, 403);
  EXPECT_EQ(h.send("DELETE", parked, tenant_admin("acme")).status, 403);
  EXPECT_EQ(h.post(parked + "/retry?message_id=" + b.event_id, "", tenant_admin("acme")).status,
            404);
  EXPECT_EQ(h.send("DELETE", parked + "?message_id=" + b.event_id, tenant_admin("acme")).status,
            404);
  EXPECT_EQ(h.get(parked, user("acme")).status, 403);
  // Retried once the handler works again: handled, no longer parked.
  g.fail(false);
  auto r = h.post(parked + "/retry?message_id=" + a.event_id, "", tenant_admin("acme"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["requeued"].GetInt(), 1);
  ASSERT_TRUE(tst::wait_until([&] { return g.saw(a.event_id); }, 20s));
  d = h.get(parked, root()).json();
  ASSERT_EQ(d["count"].GetInt(), 1);
  EXPECT_EQ(std::string(d["messages"][0]["message_id"].GetString()), b.event_id);
  // Dropped: gone, never handled.
  r = h.send("DELETE", parked, root());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["dropped"].GetInt(), 1);
  EXPECT_EQ(h.get(parked, root()).json()["count"].GetInt(), 0);
  EXPECT_EQ(h.send("DELETE", parked + "?message_id=" + b.event_id, root()).status, 404);
  r = h.post(parked + "/retry", "", root());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["requeued"].GetInt(), 0);
  EXPECT_FALSE(g.saw(b.event_id));
}

TEST_F(EdgeAdmin, LagAndRateOfAPausedProjection) {
  const std::string name = "projection.testsvc_items.g1";
  Http h(stack().edge_port);
  // The partition of the plugin's projection in GET /api/v1/subscriptions.
  auto partition = [&](std::string& body) -> std::optional<rapidjson::Document> {
    auto r = h.get("/api/v1/subscriptions", root());
    body = r.body;
    if (r.status != 200) return std::nullopt;
    auto d = r.json();
    for (auto& s : d["subscriptions"].GetArray()) {
      if (name != s["name"].GetString()) continue;
      rapidjson::Document p;
      p.CopyFrom(s["by_partition"][0], p.GetAllocator());
      return p;
    }
    return std::nullopt;
  };
  auto& plugin = *stack().plugins.front();
  Http admin(plugin.admin_port);
  ASSERT_EQ(admin.post("/control/pause", "{}").status, 200);
  const auto item = create("acme");
  std::string last;
  // Behind by at least that event, and for longer than 0 ms as time passes.
  const bool lagging = tst::wait_until(
      [&] {
        auto p = partition(last);
        return p && (*p)["position"].GetInt64() < item.position &&
               (*p)["lag_events"].GetInt64() >= 1 && (*p)["lag_ms"].GetInt64() > 0;
      },
      20s, 20ms);
  EXPECT_TRUE(lagging) << last;
  ASSERT_EQ(admin.post("/control/resume", "{}").status, 200);
  const bool caught_up = tst::wait_until(
      [&] {
        auto p = partition(last);
        return p && (*p)["position"].GetInt64() >= item.position &&
               (*p)["lag_events"].GetInt64() == 0 && (*p)["lag_ms"].GetInt64() == 0;
      },
      20s, 20ms);
  EXPECT_TRUE(caught_up) << last;
  // The rate needs two samples at least rate_min_interval (1 s) apart.
  const bool rated = tst::wait_until(
      [&] {
        auto p = partition(last);
        return p && (*p)["rate"].IsNumber() && (*p)["rate"].GetDouble() >= 0;
      },
      20s, 100ms);
  EXPECT_TRUE(rated) << last;
}

TEST_F(EdgeAdmin, ASuperAdminResetsACheckpointedSubscription) {
  Http h(stack().edge_port);
  const std::string name = "projection.testsvc_items.g1";
  auto position_of = [&]() -> std::int64_t {
    auto subs = h.get("/api/v1/subscriptions", root());
    if (subs.status != 200) return -1;
    auto d = subs.json();
    for (const auto& s : d["subscriptions"].GetArray()) {
      if (name == s["name"].GetString()) return s["position"].GetInt64();
    }
    return -1;
  };
  ASSERT_TRUE(tst::wait_until([&] { return position_of() >= 0; }, 10s));
  // Forward to the head (a reset back would re-apply events this test
  // plugin's projection does not expect twice).
  auto head = h.get("/api/v1/subscriptions", root()).json()["head"].GetInt64();
  const auto body = R"({"subscription":")" + name + R"(","position":)" + std::to_string(head) + "}";
  EXPECT_EQ(h.post("/api/v1/replays", body, tenant_admin("acme")).status, 403);
  auto r = h.post("/api/v1/replays", body, root());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_GE(r.json()["partitions"].GetInt(), 1);
  EXPECT_TRUE(tst::wait_until([&] { return position_of() >= head; }, 10s));
}
