// The section-9 shapes: what a service receives over AMQP and over HTTP, and
// how its answer becomes the HTTP response; plus the generated API docs.
#include <gtest/gtest.h>

#include "switchboard/broker/rpc.hpp"
#include "switchboard/edge/api_docs.hpp"
#include "switchboard/edge/forward.hpp"
#include "switchboard/shared/json.hpp"

using namespace sb::edge;

namespace {

CallContext context() {
  CallContext c;
  c.request_id = "r1";
  c.correlation_id = "c1";
  c.tenant = "acme";
  c.actor = "user:alice";
  c.roles = {"user", "admin"};
  c.min_position = 42;
  c.service_deadline =
      std::chrono::system_clock::time_point(std::chrono::milliseconds(1'800'000'000'000));
  return c;
}

Target target() {
  Target t;
  t.service = "orders";
  t.version = "1.2";
  t.endpoint = {"GET", "/orders/{id}", {}, false, std::nullopt};
  t.params = {{"id", "a b"}};
  return t;
}

HttpRequest request() {
  HttpRequest r;
  r.method = "GET";
  r.path = "/api/orders/orders/a%20b";
  r.query = "x=1";
  r.headers = {
      {"authorization", "Bearer secret"}, {"x-test", "yes"}, {"content-type", "text/plain"}};
  r.body = "hello";
  return r;
}

}  // namespace

TEST(Forward, RpcRequestCarriesTheDocumentedHeaders) {
  auto m = rpc_request(request(), "/orders/a%20b", target(), context());
  EXPECT_EQ(m.body, "hello");
  EXPECT_EQ(m.content_type, "text/plain");
  EXPECT_EQ(*m.header_string("x-sb-kind"), "request");
  EXPECT_EQ(*m.header_string("x-sb-method"), "GET");
  EXPECT_EQ(*m.header_string("x-sb-path"), "/orders/a%20b");
  EXPECT_EQ(*m.header_string("x-sb-route"), "/orders/{id}");
  EXPECT_EQ(*m.header_string("x-sb-params"), R"({"id":"a b"})");
  EXPECT_EQ(*m.header_string("x-sb-query"), "x=1");
  EXPECT_EQ(*m.header_string("x-sb-tenant"), "acme");
  EXPECT_EQ(*m.header_string("x-sb-actor"), "user:alice");
  EXPECT_EQ(*m.header_string("x-sb-roles"), "user,admin");
  EXPECT_EQ(*m.header_int("x-sb-min-position"), 42);
  EXPECT_EQ(*m.header_int(sb::broker::kDeadlineHeader), 1'800'000'000'000);
  const auto& hs = *m.header_string("x-sb-http-headers");
  EXPECT_NE(hs.find("\"x-test\":\"yes\""), std::string::npos) << hs;
  EXPECT_EQ(hs.find("secret"), std::string::npos) << "the credential must not be passed on";
}

TEST(Forward, CommandCarriesItsIdAndName) {
  auto m = rpc_command("orders.place", "k-1", R"({"sku":"a"})", context());
  EXPECT_EQ(*m.header_string("x-sb-kind"), "command");
  EXPECT_EQ(*m.header_string("x-sb-command"), "orders.place");
  EXPECT_EQ(*m.header_string("x-sb-command-id"), "k-1");
  EXPECT_EQ(m.body, R"({"sku":"a"})");
}

TEST(Forward, ReplyBecomesTheResponse) {
  sb::broker::Message reply;
  reply.headers["x-sb-status"] = std::int64_t{201};
  reply.headers["x-sb-http-headers"] = std::string(R"({"X-Instance":"i1","Content-Length":"9"})");
  reply.content_type = "application/json";
  reply.body = "{}";
  auto r = response_from_reply(reply);
  EXPECT_EQ(r.status, 201);
  ASSERT_NE(r.header("x-instance"), nullptr);
  EXPECT_EQ(*r.header("x-instance"), "i1");
  EXPECT_EQ(r.header("content-length"), nullptr);
  sb::broker::Message failed;
  failed.headers[std::string(sb::broker::kRpcErrorHeader)] = std::string("boom");
  EXPECT_EQ(response_from_reply(failed).status, 502);
  sb::broker::Message bad;
  bad.headers["x-sb-status"] = std::int64_t{42};
  EXPECT_EQ(response_from_reply(bad).status, 502);
}

TEST(Forward, UpstreamRequestsKeepThePathAndAddPlatformHeaders) {
  auto up = upstream_request(request(), "/orders/a%20b", target(), context());
  EXPECT_EQ(up.path, "/orders/a%20b");
  EXPECT_EQ(up.query, "x=1");
  EXPECT_EQ(*up.header("x-sb-tenant"), "acme");
  EXPECT_EQ(*up.header("x-min-position"), "42");
  EXPECT_EQ(*up.header("x-sb-route"), "/orders/{id}");
  EXPECT_EQ(up.header("authorization"), nullptr);
  auto cmd = upstream_command(request(), "orders.place", "k-1", context());
  EXPECT_EQ(cmd.method, "POST");
  EXPECT_EQ(cmd.path, "/_sb/commands/orders.place");
  EXPECT_EQ(*cmd.header("x-sb-command-id"), "k-1");
}

TEST(Forward, CommandAnswersGetTheCommandIdOrKeepTheirErrorShape) {
  HttpResponse ok;
  ok.status = 201;
  ok.body = R"({"position":9,"event_ids":["e"]})";
  auto r = command_response(ok, "k-1");
  EXPECT_EQ(r.status, 201);
  auto doc = sb::json::parse(r.body);
  EXPECT_EQ(std::string(doc["command_id"].GetString()), "k-1");
  EXPECT_EQ(doc["position"].GetInt64(), 9);
  HttpResponse conflict;
  conflict.status = 409;
  conflict.body = R"({"error":{"code":"wrong_expected_version","message":"m","details":{}}})";
  EXPECT_EQ(command_response(conflict, "k").body, conflict.body);
  HttpResponse junk;
  junk.status = 200;
  junk.body = "not json";
  EXPECT_EQ(command_response(junk, "k").status, 502);
  HttpResponse bare;
  bare.status = 500;
  EXPECT_EQ(command_response(bare, "k").status, 502);
}

TEST(ApiDocs, OpenApiListsPluginEndpointsAndCommands) {
  sb::registry::RouteTable t;
  t.version = 3;
  t.services.push_back({"orders",
                        {{"1.0",
                          100,
                          {{"i", {}}},
                          {{"GET", "/orders/{id}", {"user"}, false, std::nullopt},
                           {"GET", "/ping", {}, true, std::nullopt}}}}});
  const std::string catalog =
      R"({"version":2,"event_types":[{"type":"orders.order.placed","owner":"orders","transient":false,)"
      R"("current_version":1,"versions":[{"version":1,"schema":{"type":"object"},"upcaster":false}]}],)"
      R"("command_types":[{"name":"orders.place","owner":"orders","schema":{"type":"object"},"roles":["user"],"emits":[]}]})";
  auto doc = sb::json::parse(openapi_json(t, catalog));
  const auto& paths = doc["paths"];
  ASSERT_TRUE(paths.HasMember("/api/orders/orders/{id}"));
  EXPECT_TRUE(paths["/api/orders/orders/{id}"].HasMember("get"));
  EXPECT_TRUE(paths["/api/orders/ping"]["get"]["security"].Empty());
  ASSERT_TRUE(paths.HasMember("/api/v1/commands/orders/place"));
  EXPECT_TRUE(paths["/api/v1/commands/orders/place"]["post"].HasMember("requestBody"));
  auto async = sb::json::parse(asyncapi_json(catalog));
  EXPECT_EQ(std::string(async["asyncapi"].GetString()), "2.6.0");
  EXPECT_TRUE(async["channels"].HasMember("orders.order.placed"));
  EXPECT_TRUE(async["channels"].HasMember("command/orders.place"));
}
