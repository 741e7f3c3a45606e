// Operator endpoints (issue 7): who may call them, and the parsing and
// validation of their paths, queries and replay bodies; the OpenAPI document
// lists them.
#include <gtest/gtest.h>

#include <functional>

#include "switchboard/edge/admin_api.hpp"
#include "switchboard/edge/api_docs.hpp"
#include "switchboard/registry/route_table.hpp"
#include "switchboard/shared/json.hpp"

using namespace sb::edge;

namespace {

struct Outcome {
  int status = 0;
  std::string code;
  std::string details;
};

Outcome outcome(const std::function<void()>& f) {
  try {
    f();
  } catch (const HttpError& e) {
    return {e.status(), e.code(), e.details()};
  }
  return {};
}

sb::auth::Principal principal(std::string tenant, std::vector<std::string> roles) {
  sb::auth::Principal p;
  p.subject = "s";
  p.tenant = std::move(tenant);
  p.roles = std::move(roles);
  return p;
}

const Operator kRoot{true, std::nullopt, "user:root"};
const Operator kAcmeAdmin{false, std::string("acme"), "user:a"};

}  // namespace

TEST(AdminApi, OnlyOperatorsPass) {
  EXPECT_EQ(outcome([] { require_operator(principal("", {"super_admin"})); }).status, 0);
  EXPECT_EQ(outcome([] { require_operator(principal("acme", {"tenant_admin"})); }).status, 0);
  auto o = outcome([] { require_operator(principal("acme", {"user"})); });
  EXPECT_EQ(o.status, 403);
  EXPECT_EQ(o.code, "forbidden");
  EXPECT_EQ(outcome([] { require_operator(principal("acme", {})); }).status, 403);
}

TEST(AdminApi, KnowsItsPaths) {
  for (const char* p : {"subscriptions", "subscriptions/g1/parked", "subscriptions/g1/parked/retry",
                        "projections", "replays", "replays/abc"}) {
    EXPECT_TRUE(is_admin_path(p)) << p;
  }
  for (const char* p : {"events", "events/stream", "streams/x", "services", "subscriptionsx",
                        "replaysx", "catalog"}) {
    EXPECT_FALSE(is_admin_path(p)) << p;
  }
}

TEST(AdminApi, GroupNamesAreStrict) {
  EXPECT_EQ(parse_group("orders.mailer"), "orders.mailer");
  EXPECT_EQ(parse_group("g-1_x"), "g-1_x");
  EXPECT_EQ(parse_group("a%2Eb"), "a.b");  // percent-decoded, then checked
  for (const char* bad :
       {"", "Orders", ".x", "-x", "a b", "a%20b", "a/b", "a%2Fb", "a%", "a*", "sub.#", "%00"}) {
    auto o = outcome([&] { parse_group(bad); });
    EXPECT_EQ(o.status, 400) << bad;
    EXPECT_EQ(o.code, "invalid_group") << bad;
  }
  EXPECT_EQ(outcome([] { parse_group(std::string(101, 'a')); }).status, 400);
  EXPECT_EQ(parse_group(std::string(100, 'a')).size(), 100u);
}

TEST(AdminApi, ParkedQueryLimitsAndMessageId) {
  AdminApiOptions o;
  auto q = parse_parked_query("", o);
  EXPECT_EQ(q.limit, o.parked_default_limit);
  EXPECT_FALSE(q.message_id);
  q = parse_parked_query("limit=5&message_id=abc-1", o);
  EXPECT_EQ(q.limit, 5u);
  EXPECT_EQ(q.message_id, "abc-1");
  EXPECT_EQ(parse_parked_query("limit=100000", o).limit, o.parked_max_limit);
  for (const char* bad : {"limit=0", "limit=-1", "limit=x", "limit=", "limit=5x",
                          "message_id=", "message_id=a%20b", "message_id=a%0Ab"}) {
    auto r = outcome([&] { parse_parked_query(bad, o); });
    EXPECT_EQ(r.status, 400) << bad;
    EXPECT_NE(r.details.find("parameter"), std::string::npos) << bad;
  }
  EXPECT_EQ(outcome([&] { parse_parked_query("message_id=" + std::string(201, 'x'), o); }).status,
            400);
}

TEST(AdminApi, ReplayBodyParses) {
  auto s = parse_replay_body(
      R"({"group":"mailer","from_position":10,"to_position":20,"types":["orders.*","a.b.c"],)"
      R"("tenant":"globex"})",
      kRoot);
  EXPECT_EQ(s.group, "mailer");
  EXPECT_EQ(s.from_position, 10);
  EXPECT_EQ(s.to_position, 20);
  EXPECT_EQ(s.types, (std::vector<std::string>{"orders.*", "a.b.c"}));
  EXPECT_EQ(s.tenant, "globex");
  // Optional parts: no upper bound (the head), every type, every tenant.
  s = parse_replay_body(R"({"group":"mailer","from_position":1,"to_position":null})", kRoot);
  EXPECT_FALSE(s.to_position);
  EXPECT_TRUE(s.types.empty());
  EXPECT_FALSE(s.tenant);
  EXPECT_EQ(
      parse_replay_body(R"({"group":"m","from_position":5,"to_position":5})", kRoot).to_position,
      5);
}

TEST(AdminApi, ReplayOfAScopedCallerIsForcedToItsTenant) {
  auto s = parse_replay_body(R"({"group":"mailer","from_position":1})", kAcmeAdmin);
  EXPECT_EQ(s.tenant, "acme");
  s = parse_replay_body(R"({"group":"mailer","from_position":1,"tenant":"acme"})", kAcmeAdmin);
  EXPECT_EQ(s.tenant, "acme");
  auto o = outcome([] {
    parse_replay_body(R"({"group":"mailer","from_position":1,"tenant":"globex"})", kAcmeAdmin);
  });
  EXPECT_EQ(o.status, 403);
  EXPECT_EQ(o.code, "forbidden");
}

TEST(AdminApi, BadReplayBodiesAre400NamingTheField) {
  struct Case {
    const char* body;
    const char* field;
  };
  for (const auto& c : std::vector<Case>{
           {R"({"from_position":1})", "group"},
           {R"({"group":5,"from_position":1})", "group"},
           {R"({"group":"Bad Group","from_position":1})", "group"},
           {R"({"group":"sub.#","from_position":1})", "group"},
           {R"({"group":"g"})", "from_position"},
           {R"({"group":"g","from_position":0})", "from_position"},
           {R"({"group":"g","from_position":"1"})", "from_position"},
           {R"({"group":"g","from_position":1.5})", "from_position"},
           {R"({"group":"g","from_position":5,"to_position":4})", "to_position"},
           {R"({"group":"g","from_position":1,"to_position":"x"})", "to_position"},
           {R"({"group":"g","from_position":1,"types":"a.b"})", "types"},
           {R"({"group":"g","from_position":1,"types":[1]})", "types/0"},
           {R"({"group":"g","from_position":1,"types":["a.b","Bad..x"]})", "types/1"},
           {R"({"group":"g","from_position":1,"tenant":7})", "tenant"},
           {R"({"group":"g","from_position":1,"tenant":"Not A Tenant"})", "tenant"},
           {R"({"group":"g","from_position":1,"extra":true})", "extra"},
       }) {
    auto o = outcome([&] { parse_replay_body(c.body, kRoot); });
    EXPECT_EQ(o.status, 400) << c.body;
    EXPECT_EQ(o.code, "invalid_request") << c.body;
    EXPECT_NE(o.details.find(std::string("\"") + c.field + "\""), std::string::npos)
        << c.body << " -> " << o.details;
  }
  auto o = outcome([] { parse_replay_body("{not json", kRoot); });
  EXPECT_EQ(o.status, 400);
  EXPECT_EQ(o.code, "malformed_json");
  EXPECT_EQ(outcome([] { parse_replay_body("[1]", kRoot); }).status, 400);
  EXPECT_EQ(outcome([] { parse_replay_body("", kRoot); }).status, 400);
}

TEST(AdminApi, SubscriptionResetIsForSuperAdminsWithAValidBody) {
  auto r = parse_reset_body(R"({"subscription":"projection.x_items.g1","position":7})", kRoot);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->subscription, "projection.x_items.g1");
  EXPECT_EQ(r->position, 7);
  EXPECT_FALSE(parse_reset_body(R"({"group":"g","from_position":1})", kRoot));
  EXPECT_EQ(
      outcome([] { parse_reset_body(R"({"subscription":"s","position":-1})", kRoot); }).status,
      400);
  EXPECT_EQ(outcome([] { parse_reset_body(R"({"subscription":"s"})", kRoot); }).status, 400);
  EXPECT_EQ(
      outcome([] { parse_reset_body(R"({"subscription":"s","position":1,"x":1})", kRoot); }).status,
      400);
  EXPECT_EQ(outcome([] {
              parse_reset_body(R"({"subscription":"Bad Name","position":1})", kRoot);
            }).status,
            400);
  Operator admin;
  admin.tenant = "acme";
  EXPECT_EQ(
      outcome([&] { parse_reset_body(R"({"subscription":"s","position":1})", admin); }).status,
      403);
}

TEST(AdminApi, ReplayIdsAreHex) {
  const std::string id(32, 'a');
  EXPECT_EQ(parse_replay_id(id), id);
  for (const std::string& bad : {std::string(""), std::string(31, 'a'), std::string(32, 'g'),
                                 std::string(32, 'A'), std::string(33, 'a')}) {
    EXPECT_EQ(outcome([&] { parse_replay_id(bad); }).status, 404) << bad;
  }
}

TEST(AdminApi, OpenApiCoversEventsAndOperatorEndpoints) {
  sb::registry::RouteTable t;
  auto doc = sb::json::parse(openapi_json(t, "{}"));
  const auto& paths = doc["paths"];
  const std::vector<std::pair<const char*, const char*>> expected = {
      {"/api/v1/events", "get"},
      {"/api/v1/events/stream", "get"},
      {"/api/v1/streams/{id}", "get"},
      {"/api/v1/correlations/{id}", "get"},
      {"/api/v1/subscriptions", "get"},
      {"/api/v1/projections", "get"},
      {"/api/v1/subscriptions/{group}/parked", "get"},
      {"/api/v1/subscriptions/{group}/parked", "delete"},
      {"/api/v1/subscriptions/{group}/parked/retry", "post"},
      {"/api/v1/replays", "post"},
      {"/api/v1/replays/{id}", "get"},
  };
  for (const auto& [path, method] : expected) {
    ASSERT_TRUE(paths.HasMember(path)) << path;
    ASSERT_TRUE(paths[path].HasMember(method)) << path << " " << method;
    EXPECT_TRUE(paths[path][method].HasMember("responses")) << path;
  }
  EXPECT_TRUE(paths["/api/v1/replays"]["post"].HasMember("requestBody"));
  EXPECT_TRUE(paths["/api/v1/replays"]["post"]["responses"].HasMember("202"));
  EXPECT_TRUE(paths["/api/v1/subscriptions"]["get"].HasMember("x-roles"));
  // Path parameters are declared.
  const auto& params = paths["/api/v1/subscriptions/{group}/parked"]["get"]["parameters"];
  bool group = false;
  for (const auto& p : params.GetArray()) {
    if (std::string(p["name"].GetString()) == "group") group = true;
  }
  EXPECT_TRUE(group);
}
