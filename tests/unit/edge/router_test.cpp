// Path templates, version choice by weight or header, instance choice and
// the routing errors.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "switchboard/edge/router.hpp"

using namespace sb::edge;
using sb::registry::Endpoint;
using sb::registry::RouteInstance;
using sb::registry::RouteService;
using sb::registry::RouteTable;
using sb::registry::RouteVersion;
using sb::registry::Transport;

namespace {

Endpoint ep(std::string method, std::string path, bool is_public = false) {
  return Endpoint{std::move(method), std::move(path), {}, is_public, std::nullopt};
}

RouteVersion version(std::string v, int weight, std::vector<RouteInstance> instances,
                     std::vector<Endpoint> endpoints) {
  return RouteVersion{std::move(v), weight, std::move(instances), std::move(endpoints)};
}

RouteInstance amqp(std::string id) {
  return {std::move(id), Transport{}};
}
RouteInstance http(std::string id, std::string url) {
  return {std::move(id), Transport{Transport::Kind::http, std::move(url)}};
}

RouteTable table(std::int64_t v, std::vector<RouteService> services) {
  return RouteTable{v, std::move(services)};
}

}  // namespace

TEST(PathTemplate, MatchesLiteralsAndDecodesParameters) {
  PathTemplate t("/orders/{id}/lines/{line}");
  Params p;
  ASSERT_TRUE(t.match("/orders/a%20b/lines/7", p));
  EXPECT_EQ(p, (Params{{"id", "a b"}, {"line", "7"}}));
  EXPECT_FALSE(t.match("/orders/a/lines", p));
  EXPECT_FALSE(t.match("/orders//lines/7", p));
  EXPECT_FALSE(t.match("/orders/a/items/7", p));
  EXPECT_FALSE(t.match("/orders/%zz/lines/7", p));
  EXPECT_TRUE(PathTemplate("/").match("/", p));
  EXPECT_THROW(PathTemplate("orders"), std::invalid_argument);
  EXPECT_THROW(PathTemplate("/orders/{}"), std::invalid_argument);
  EXPECT_THROW(PathTemplate("/orders/{id"), std::invalid_argument);
}

TEST(Router, LiteralSegmentsWinOverParameters) {
  Router r;
  r.update(table(1, {{"orders",
                      {version("1", 100, {amqp("i1")},
                               {ep("GET", "/orders/{id}"), ep("GET", "/orders/special")})}}}));
  auto res = r.route("orders", "GET", "/orders/special", std::nullopt, 0.5, {});
  ASSERT_TRUE(res.target);
  EXPECT_EQ(res.target->endpoint.path, "/orders/special");
  res = r.route("orders", "GET", "/orders/42", std::nullopt, 0.5, {});
  ASSERT_TRUE(res.target);
  EXPECT_EQ(res.target->endpoint.path, "/orders/{id}");
  EXPECT_EQ(res.target->params, (Params{{"id", "42"}}));
  EXPECT_EQ(res.target->rpc_key(), "orders.1");
}

TEST(Router, ErrorsSayWhatIsMissing) {
  Router r;
  r.update(table(1, {{"orders", {version("1", 100, {amqp("i1")}, {ep("GET", "/orders/{id}")})}},
                     {"billing", {}}}));
  EXPECT_EQ(r.route("nope", "GET", "/x", std::nullopt, 0.1, {}).error, RouteError::unknown_service);
  EXPECT_EQ(r.route("orders", "GET", "/x", std::nullopt, 0.1, {}).error, RouteError::unknown_route);
  auto res = r.route("orders", "DELETE", "/orders/1", std::nullopt, 0.1, {});
  EXPECT_EQ(res.error, RouteError::method_not_allowed);
  EXPECT_EQ(res.allowed, std::vector<std::string>{"GET"});
  EXPECT_EQ(r.route("orders", "GET", "/orders/1", "9", 0.1, {}).error, RouteError::unknown_version);
  // Registered once, nothing live now: 503, not 404.
  EXPECT_EQ(r.route("billing", "GET", "/x", std::nullopt, 0.1, {}).error,
            RouteError::no_live_instance);
  EXPECT_EQ(r.pick("billing", std::nullopt, 0.1, {}).error, RouteError::no_live_instance);
  EXPECT_TRUE(r.knows("billing"));
  EXPECT_FALSE(r.knows("nope"));
}

TEST(Router, WeightsSplitTrafficAndTheHeaderPicksAVersion) {
  Router r;
  r.update(table(3, {{"orders",
                      {version("1", 90, {amqp("a")}, {ep("GET", "/o")}),
                       version("2", 10, {amqp("b")}, {ep("GET", "/o")}),
                       version("3", 0, {amqp("c")}, {ep("GET", "/o")})}}}));
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(0, 1);
  std::map<std::string, int> seen;
  for (int i = 0; i < 10000; ++i) {
    ++seen[r.route("orders", "GET", "/o", std::nullopt, u(rng), {}).target->version];
  }
  EXPECT_NEAR(seen["2"], 1000, 150);
  EXPECT_EQ(seen["3"], 0);
  // Weight 0 still answers when asked for by name.
  EXPECT_EQ(r.route("orders", "GET", "/o", "3", 0.5, {}).target->version, "3");
  EXPECT_EQ(r.pick("orders", "2", 0.01, {}).target->version, "2");
}

TEST(Router, HttpInstancesRoundRobinAndEjectedOnesAreSkipped) {
  Router r;
  r.update(table(1, {{"orders",
                      {version("1", 100, {http("h1", "http://a:1"), http("h2", "http://b:2")},
                               {ep("GET", "/o")})}}}));
  std::map<std::string, int> seen;
  for (int i = 0; i < 10; ++i)
    ++seen[r.route("orders", "GET", "/o", std::nullopt, 0.5, {}).target->instance_id];
  EXPECT_EQ(seen["h1"], 5);
  EXPECT_EQ(seen["h2"], 5);
  auto only_h2 = [](const std::string& id) { return id == "h2"; };
  for (int i = 0; i < 5; ++i) {
    auto t = r.route("orders", "GET", "/o", std::nullopt, 0.5, only_h2).target;
    ASSERT_TRUE(t);
    EXPECT_EQ(t->transport.base_url, "http://b:2");
  }
  // All ejected: they are tried anyway (panic mode), not refused.
  auto none = [](const std::string&) { return false; };
  EXPECT_TRUE(r.route("orders", "GET", "/o", std::nullopt, 0.5, none).target);
}

TEST(Router, OlderTablesAreIgnored) {
  Router r;
  EXPECT_TRUE(r.update(table(5, {{"a", {}}})));
  EXPECT_FALSE(r.update(table(4, {{"b", {}}})));
  EXPECT_TRUE(r.knows("a"));
  EXPECT_EQ(r.version(), 5);
}
