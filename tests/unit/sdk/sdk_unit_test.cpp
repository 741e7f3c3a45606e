// The SDK without servers: route templates, the wire mapping of section 9,
// store replies to command answers, the command context's append against a
// fake store, and the dispatcher both transports share.
#include <gtest/gtest.h>

#include <deque>

#include "switchboard/events/uuid.hpp"
#include "switchboard/sdk/routing.hpp"
#include "switchboard/sdk/sdk.hpp"
#include "switchboard/sdk/wire.hpp"
#include "switchboard/shared/json.hpp"

namespace sb::sdk {
namespace {

using namespace std::chrono_literals;

// ------------------------------------------------------------------ routing

TEST(RouteTemplate, MatchesLiteralsAndDecodesParameters) {
  RouteTemplate t("/items/{id}/notes/{note}");
  auto p = t.match("/items/a%20b/notes/7");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->at("id"), "a b");
  EXPECT_EQ(p->at("note"), "7");
  EXPECT_FALSE(t.match("/items/a/notes"));
  EXPECT_FALSE(t.match("/items//notes/7"));
  EXPECT_FALSE(t.match("/items/a/other/7"));
  EXPECT_FALSE(t.match("items/a/notes/7"));
}

TEST(RouteTemplate, RootAndInvalidTemplates) {
  EXPECT_TRUE(RouteTemplate("/").match("/"));
  EXPECT_FALSE(RouteTemplate("/").match("/x"));
  EXPECT_THROW(RouteTemplate("items"), std::invalid_argument);
  EXPECT_THROW(RouteTemplate("/items/{}"), std::invalid_argument);
  EXPECT_THROW(RouteTemplate("/items/{id"), std::invalid_argument);
  EXPECT_THROW(RouteTemplate("/a/{id}/b/{id}"), std::invalid_argument);
  EXPECT_THROW(RouteTemplate("/a{b}"), std::invalid_argument);
}

TEST(Router, MostSpecificWinsThenTheLaterOne) {
  Router r;
  r.add("GET", "/items/{id}");
  r.add("GET", "/items/new");
  r.add("post", "/items/{id}");
  r.add("GET", "/items/{key}");
  auto m = r.match("GET", "/items/new");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->index, 1u);
  m = r.match("GET", "/items/42");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->index, 3u);  // equally specific: the later one
  EXPECT_EQ(m->params.at("key"), "42");
  m = r.match("POST", "/items/42");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->route, "/items/{id}");
  // The caller's route hint picks among the matches.
  m = r.match("GET", "/items/42", "/items/{id}");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->index, 0u);
  EXPECT_EQ(m->params.at("id"), "42");
  EXPECT_FALSE(r.match("DELETE", "/items/42"));
  EXPECT_TRUE(r.matches_other_method("DELETE", "/items/42"));
  EXPECT_FALSE(r.matches_other_method("DELETE", "/nothing"));
}

TEST(Wire, PercentDecodeAndRoles) {
  EXPECT_EQ(percent_decode("a%2Fb%zz+c"), "a/b%zz+c");
  EXPECT_EQ(percent_decode("a+b%2", true), "a b%2");
  EXPECT_EQ(split_roles(" user, admin,,x "), (std::vector<std::string>{"user", "admin", "x"}));
  EXPECT_TRUE(split_roles("").empty());
  EXPECT_EQ(rpc_service_key("orders", "1.4.2"), "orders.1.4.2");
}

// ------------------------------------------------------------------ requests

broker::Message amqp_request() {
  broker::Message m;
  m.body = "hello";
  m.content_type = "text/plain";
  m.headers["x-sb-kind"] = std::string("request");
  m.headers["x-sb-deadline"] = std::int64_t{1800000000000};
  m.headers["x-sb-request-id"] = std::string("req-1");
  m.headers["x-correlation-id"] = std::string("corr-1");
  m.headers["traceparent"] = std::string("00-0123456789abcdef0123456789abcdef-0123456789abcdef-01");
  m.headers["x-sb-tenant"] = std::string("acme");
  m.headers["x-sb-actor"] = std::string("user:u1");
  m.headers["x-sb-roles"] = std::string("user,admin");
  m.headers["x-sb-min-position"] = std::int64_t{42};
  m.headers["x-sb-method"] = std::string("post");
  m.headers["x-sb-path"] = std::string("/echo/a%20b");
  m.headers["x-sb-route"] = std::string("/echo/{id}");
  m.headers["x-sb-params"] = std::string(R"({"id":"a b"})");
  m.headers["x-sb-query"] = std::string("x=1&y=a%20b");
  m.headers["x-sb-http-headers"] = std::string(R"({"X-Test":"t1","accept":"*/*"})");
  return m;
}

TEST(Wire, AmqpRequestMapsEveryHeader) {
  auto r = request_from_amqp(amqp_request(), 30s);
  EXPECT_EQ(r.kind, Request::Kind::request);
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.path, "/echo/a%20b");
  EXPECT_EQ(r.route, "/echo/{id}");
  EXPECT_EQ(r.params.at("id"), "a b");
  EXPECT_EQ(r.query, "x=1&y=a%20b");
  EXPECT_EQ(r.query_param("y"), "a b");
  EXPECT_FALSE(r.query_param("z"));
  EXPECT_EQ(r.header("X-TEST"), "t1");
  EXPECT_EQ(r.header("x-absent"), "");
  EXPECT_EQ(r.body, "hello");
  EXPECT_EQ(r.content_type, "text/plain");
  EXPECT_EQ(r.tenant, "acme");
  EXPECT_EQ(r.actor, "user:u1");
  EXPECT_EQ(r.roles, (std::vector<std::string>{"user", "admin"}));
  EXPECT_TRUE(r.has_role("admin"));
  EXPECT_EQ(r.request_id, "req-1");
  EXPECT_EQ(r.correlation_id, "corr-1");
  EXPECT_EQ(r.min_position, 42);
  EXPECT_EQ(to_epoch_ms(r.deadline), 1800000000000);
}

TEST(Wire, AmqpCommandAndDefaults) {
  broker::Message m;
  m.body = R"({"id":"a"})";
  m.headers["x-sb-kind"] = std::string("command");
  m.headers["x-sb-command"] = std::string("orders.place");
  m.headers["x-sb-command-id"] = std::string("k-1");
  m.headers["x-sb-request-id"] = std::string("req-2");
  m.headers["x-sb-http-headers"] = std::string("not json");
  const auto before = std::chrono::system_clock::now();
  auto r = request_from_amqp(m, 5s);
  EXPECT_EQ(r.kind, Request::Kind::command);
  EXPECT_EQ(r.command, "orders.place");
  EXPECT_EQ(r.command_id, "k-1");
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.correlation_id, "req-2");  // defaults to the request id
  EXPECT_TRUE(r.headers.empty());
  EXPECT_GE(r.deadline, before + 5s);
  EXPECT_FALSE(r.min_position);
}

TEST(Wire, AmqpReplyCarriesStatusTypeAndHeaders) {
  Response resp = Response::json(R"({"a":1})", 201);
  resp.headers["X-Instance"] = "i-1";
  auto m = amqp_reply(resp);
  EXPECT_EQ(m.header_int("x-sb-status"), 201);
  EXPECT_EQ(m.content_type, "application/json");
  EXPECT_EQ(m.body, R"({"a":1})");
  ASSERT_NE(m.header_string("x-sb-http-headers"), nullptr);
  EXPECT_EQ(*m.header_string("x-sb-http-headers"), R"({"X-Instance":"i-1"})");
  EXPECT_EQ(amqp_reply(Response::json("{}")).header_string("x-sb-http-headers"), nullptr);
}

TEST(Wire, HttpRequestMapsTheSameFields) {
  std::vector<std::pair<std::string, std::string>> h{{"X-SB-Tenant", "acme"},
                                                     {"X-SB-Actor", "user:u1"},
                                                     {"X-SB-Roles", "user,admin"},
                                                     {"X-SB-Request-Id", "req-1"},
                                                     {"X-SB-Deadline", "1800000000000"},
                                                     {"X-SB-Route", "/echo/{id}"},
                                                     {"X-Correlation-Id", "corr-1"},
                                                     {"X-Min-Position", "42"},
                                                     {"X-Test", "t1"},
                                                     {"Content-Type", "text/plain"}};
  auto r = request_from_http("post", "/echo/a%20b?x=1&y=a%20b", h, "hello", 30s);
  auto a = request_from_amqp(amqp_request(), 30s);
  EXPECT_EQ(r.kind, a.kind);
  EXPECT_EQ(r.method, a.method);
  EXPECT_EQ(r.path, a.path);
  EXPECT_EQ(r.route, a.route);
  EXPECT_EQ(r.query, a.query);
  EXPECT_EQ(r.body, a.body);
  EXPECT_EQ(r.content_type, a.content_type);
  EXPECT_EQ(r.tenant, a.tenant);
  EXPECT_EQ(r.actor, a.actor);
  EXPECT_EQ(r.roles, a.roles);
  EXPECT_EQ(r.request_id, a.request_id);
  EXPECT_EQ(r.correlation_id, a.correlation_id);
  EXPECT_EQ(r.min_position, a.min_position);
  EXPECT_EQ(r.deadline, a.deadline);
  EXPECT_EQ(r.header("x-test"), "t1");
  EXPECT_TRUE(r.params.empty());  // filled by the router
}

TEST(Wire, HttpCommandPath) {
  auto r = request_from_http("POST", "/_sb/commands/orders.place",
                             {{"X-SB-Command-Id", "k-1"}, {"X-SB-Tenant", "acme"}}, "{}", 30s);
  EXPECT_EQ(r.kind, Request::Kind::command);
  EXPECT_EQ(r.command, "orders.place");
  EXPECT_EQ(r.command_id, "k-1");
  auto named = request_from_http("POST", "/_sb/commands/place", {{"X-SB-Command", "orders.place"}},
                                 "{}", 30s);
  EXPECT_EQ(named.command, "orders.place");
  EXPECT_EQ(request_from_http("GET", "/_sb/commands/x", {}, "", 30s).kind, Request::Kind::request);
}

// ------------------------------------------------------------------ store replies

TEST(Wire, StoreRepliesMapToCommandAnswers) {
  auto o = outcome_from_store_reply(R"({"result":"appended","positions":[7,8],"last_version":1})",
                                    "item-a", {"e1", "e2"});
  ASSERT_TRUE(o.ok);
  EXPECT_TRUE(o.created);
  EXPECT_EQ(o.position, 8);
  auto resp = o.response();
  EXPECT_EQ(resp.status, 201);
  EXPECT_EQ(resp.body, R"({"position":8,"event_ids":["e1","e2"],"stream":"item-a","version":1})");

  o = outcome_from_store_reply(R"({"result":"duplicate","positions":[9],"last_version":4})", "s",
                               {"e"});
  EXPECT_TRUE(o.ok);
  EXPECT_TRUE(o.duplicate);
  EXPECT_FALSE(o.created);
  EXPECT_EQ(o.response().status, 200);

  o = outcome_from_store_reply(
      R"({"error":{"code":"wrong_expected_version","message":"m","details":{"current_version":0}}})",
      "s", {"e"});
  EXPECT_FALSE(o.ok);
  resp = o.response();
  EXPECT_EQ(resp.status, 409);
  auto doc = json::parse(resp.body);
  EXPECT_EQ(std::string(doc["error"]["code"].GetString()), "wrong_expected_version");
  EXPECT_EQ(doc["error"]["details"]["current_version"].GetInt(), 0);

  EXPECT_EQ(
      outcome_from_store_reply(R"({"error":{"code":"deadline_exceeded","message":""}})", "s", {})
          .response()
          .status,
      504);
  EXPECT_EQ(outcome_from_store_reply("not json", "s", {}).response().status, 502);
  EXPECT_EQ(outcome_from_store_reply(R"({"result":7})", "s", {}).response().status, 502);
  EXPECT_EQ(status_for_store_error("unavailable"), 503);
  EXPECT_EQ(status_for_store_error("stream_not_found"), 404);
  EXPECT_EQ(status_for_store_error("partial_duplicate"), 409);
  EXPECT_EQ(status_for_store_error("too_large"), 413);
  EXPECT_EQ(status_for_store_error("schema_violation"), 500);
  EXPECT_EQ(status_for_store_error("unknown_event_type"), 500);
}

TEST(Wire, ErrorBodyShape) {
  EXPECT_EQ(error_body("c", "m \"q\"", R"({"a":1})"),
            R"({"error":{"code":"c","message":"m \"q\"","details":{"a":1}}})");
  EXPECT_EQ(error_body("c", "m", "[1]"), R"({"error":{"code":"c","message":"m","details":{}}})");
}

// ------------------------------------------------------------------ commands

class FakeStore : public StoreClient {
 public:
  std::deque<Reply> replies;
  std::vector<Call> calls;
  Reply append(const Call& call) override {
    calls.push_back(call);
    if (replies.empty()) return {Reply::Kind::unknown, "", "no reply scripted"};
    auto r = replies.front();
    replies.pop_front();
    return r;
  }
};

Request command_request(std::chrono::milliseconds left = 5s) {
  Request r;
  r.kind = Request::Kind::command;
  r.method = "POST";
  r.command = "shop.create";
  r.command_id = "key-1";
  r.tenant = "acme";
  r.actor = "user:u1";
  r.correlation_id = "corr-1";
  r.body = R"({"id":"a"})";
  r.deadline = std::chrono::system_clock::now() + left;
  return r;
}

TEST(CommandContext, DerivesIdsAndRetriesAnUnknownOutcomeWithTheSameBody) {
  FakeStore store;
  store.replies.push_back({StoreClient::Reply::Kind::unknown, "", "timeout"});
  store.replies.push_back({StoreClient::Reply::Kind::no_route, "", "failing over"});
  store.replies.push_back({StoreClient::Reply::Kind::reply,
                           R"({"result":"appended","positions":[5],"last_version":0})", ""});
  store.replies.push_back({StoreClient::Reply::Kind::reply,
                           R"({"result":"appended","positions":[6,7],"last_version":2})", ""});
  const auto req = command_request();
  CommandContext ctx(req, store);
  auto o = ctx.append("item-a", events::ExpectedVersion::no_stream(),
                      {{"shop.item.created", R"({"id":"a"})"}});
  ASSERT_TRUE(o.ok) << o.message;
  ASSERT_EQ(store.calls.size(), 3u);
  EXPECT_EQ(store.calls[0].body, store.calls[2].body);
  const auto id0 = events::derive_event_id(events::TenantId("acme"), events::CommandId("key-1"), 0);
  EXPECT_EQ(o.event_ids, std::vector<std::string>{id0.value()});
  EXPECT_EQ(store.calls[0].deadline, req.deadline);
  EXPECT_EQ(store.calls[0].correlation_id, "corr-1");
  EXPECT_EQ(store.calls[0].causation_id, "key-1");
  auto body = json::parse(store.calls[0].body);
  EXPECT_EQ(std::string(body["stream"].GetString()), "item-a");
  EXPECT_EQ(std::string(body["expected_version"].GetString()), "no_stream");
  EXPECT_EQ(std::string(body["tenant"].GetString()), "acme");
  EXPECT_EQ(std::string(body["events"][0]["id"].GetString()), id0.value());
  EXPECT_EQ(std::string(body["events"][0]["actor"].GetString()), "user:u1");
  EXPECT_EQ(std::string(body["events"][0]["correlation_id"].GetString()), "corr-1");
  EXPECT_EQ(o.response().status, 201);

  // A second append of the same command continues the index.
  o = ctx.append("item-a", events::ExpectedVersion::exact(events::StreamVersion(0)),
                 {{"shop.item.renamed", "{}"}, {"shop.item.renamed", "{}"}});
  ASSERT_TRUE(o.ok);
  EXPECT_EQ(
      o.event_ids[0],
      events::derive_event_id(events::TenantId("acme"), events::CommandId("key-1"), 1).value());
  EXPECT_EQ(
      o.event_ids[1],
      events::derive_event_id(events::TenantId("acme"), events::CommandId("key-1"), 2).value());
  body = json::parse(store.calls.back().body);
  EXPECT_EQ(body["expected_version"].GetInt(), 0);
  EXPECT_EQ(o.response().status, 200);
}

TEST(CommandContext, GivesUpAtTheDeadlineAndRefusesBadInput) {
  FakeStore store;  // answers nothing: every attempt is an unknown outcome
  auto req = command_request(150ms);
  CommandContext ctx(req, store);
  auto o = ctx.append("s", events::ExpectedVersion::any(), {{"shop.item.created", "{}"}});
  EXPECT_FALSE(o.ok);
  EXPECT_EQ(o.status, 504);
  EXPECT_EQ(o.code, "deadline_exceeded");
  EXPECT_FALSE(store.calls.empty());

  auto past = command_request(-1ms);
  FakeStore untouched;
  CommandContext late(past, untouched);
  EXPECT_EQ(late.append("s", events::ExpectedVersion::any(), {{"a.b.c", "{}"}}).status, 504);
  EXPECT_TRUE(untouched.calls.empty());

  auto anonymous = command_request();
  anonymous.tenant = "";
  CommandContext no_tenant(anonymous, untouched);
  EXPECT_EQ(no_tenant.append("s", events::ExpectedVersion::any(), {{"a.b.c", "{}"}}).status, 400);
  CommandContext bad_data(req, untouched);
  auto fresh = command_request();
  CommandContext ctx2(fresh, untouched);
  EXPECT_EQ(ctx2.append("s", events::ExpectedVersion::any(), {{"a.b.c", "[1]"}}).status, 500);
  EXPECT_TRUE(untouched.calls.empty());
}

// ------------------------------------------------------------------ dispatcher

Plugin test_plugin() {
  Plugin p;
  p.name = "shop";
  p.version = "1.0.0";
  p.get("/items/{id}", [](const Request& r) {
    return Response::json("{\"id\":" + json::quoted(r.params.at("id")) +
                          ",\"route\":" + json::quoted(r.route) + "}");
  });
  p.get("/boom", [](const Request&) -> Response { throw std::runtime_error("boom"); });
  p.command("shop.create",
            R"({"type":"object","required":["id"],"properties":{"id":{"type":"string"}}})",
            [](CommandContext& ctx) {
              return ctx
                  .append("item-x", events::ExpectedVersion::no_stream(),
                          {{"shop.item.created", ctx.body()}})
                  .response();
            });
  return p;
}

TEST(Dispatcher, RoutesRequestsAndMapsFailures) {
  PluginHost host(test_plugin(), Options{});
  Request r;
  r.method = "GET";
  r.path = "/items/a%2Fb";
  r.deadline = std::chrono::system_clock::now() + 5s;
  auto resp = host.handle(r);
  EXPECT_EQ(resp.status, 200);
  EXPECT_EQ(resp.body, R"({"id":"a/b","route":"/items/{id}"})");

  r.path = "/nothing";
  resp = host.handle(r);
  EXPECT_EQ(resp.status, 404);
  EXPECT_EQ(std::string(json::parse(resp.body)["error"]["code"].GetString()), "unknown_route");
  r.path = "/items/a";
  r.method = "DELETE";
  EXPECT_EQ(host.handle(r).status, 405);
  r.method = "GET";
  r.path = "/boom";
  resp = host.handle(r);
  EXPECT_EQ(resp.status, 500);
  EXPECT_EQ(std::string(json::parse(resp.body)["error"]["code"].GetString()), "internal_error");
  r.path = "/items/a";
  r.deadline = std::chrono::system_clock::now() - 1ms;
  EXPECT_EQ(host.handle(r).status, 504);
  EXPECT_EQ(host.stats().requests, 5u);
}

TEST(Dispatcher, ValidatesCommandsAndAppendsThroughTheStore) {
  auto store = std::make_shared<FakeStore>();
  store->replies.push_back({StoreClient::Reply::Kind::reply,
                            R"({"result":"appended","positions":[3],"last_version":0})", ""});
  store->replies.push_back(
      {StoreClient::Reply::Kind::reply,
       R"({"error":{"code":"wrong_expected_version","message":"exists","details":{"current_version":0}}})",
       ""});
  Options o;
  o.store_client = store;
  PluginHost host(test_plugin(), o);
  auto req = command_request();
  auto resp = host.handle(req);
  EXPECT_EQ(resp.status, 201) << resp.body;
  EXPECT_EQ(host.handle(req).status, 409);

  req.command = "create";  // the short name works too
  req.body = R"({"id":7})";
  resp = host.handle(req);
  EXPECT_EQ(resp.status, 400);
  EXPECT_EQ(std::string(json::parse(resp.body)["error"]["code"].GetString()), "schema_violation");
  req.body = "{";
  resp = host.handle(req);
  EXPECT_EQ(resp.status, 400);
  EXPECT_EQ(std::string(json::parse(resp.body)["error"]["code"].GetString()), "malformed_json");
  req.command = "shop.unknown";
  EXPECT_EQ(host.handle(req).status, 404);
  EXPECT_EQ(store->calls.size(), 2u);
}

TEST(Dispatcher, RejectsInvalidDeclarations) {
  auto p = test_plugin();
  p.name = "Bad Name";
  EXPECT_THROW(PluginHost(p, Options{}), std::invalid_argument);
  p = test_plugin();
  p.endpoints[0].projection = "missing";
  EXPECT_THROW(PluginHost(p, Options{}), std::invalid_argument);
  p = test_plugin();
  p.endpoints.push_back({});
  EXPECT_THROW(PluginHost(p, Options{}), std::invalid_argument);
}

}  // namespace
}  // namespace sb::sdk
