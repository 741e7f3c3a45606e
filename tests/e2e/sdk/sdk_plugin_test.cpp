// The plugin SDK end to end: the real sb-store, a registry in this process,
// and sb-test-plugin over AMQP RPC and over HTTP upstream. Requests and
// commands are built here exactly as section 9 of docs/protocol.md says the
// edge sends them, and both transports must answer alike.
#include <httplib.h>

#include <future>

#include "../../integration/registry/support.hpp"
#include "switchboard/registry/route_table.hpp"
#include "switchboard/sdk/sdk.hpp"

namespace sb::sdktest {
namespace {

using namespace std::chrono_literals;
using namespace sb::regtest;

struct Reply {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
  rapidjson::Document json() const { return json::parse(body); }
  std::string code() const {
    auto d = json();
    return d.HasMember("error") ? d["error"]["code"].GetString() : "";
  }
};

/// One call as the edge would make it.
struct Call {
  bool command = false;
  std::string method = "GET";
  std::string path;
  std::string route;
  std::string params = "{}";
  std::string query;
  std::string body;
  std::string command_name;
  std::string command_id;
  std::optional<std::int64_t> min_position;
  std::chrono::milliseconds timeout{10s};
  std::map<std::string, std::string> headers;
  std::string tenant = "acme";
  std::string actor = "user:u1";
  std::string roles = "user";
};

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

class Target {
 public:
  virtual ~Target() = default;
  virtual Reply send(const Call& c) = 0;
  virtual std::string name() const = 0;
};

/// Section 9.1: RPC to `<name>.<version>` with the x-sb-* headers.
class AmqpTarget final : public Target {
 public:
  AmqpTarget(broker::RpcClient& rpc, std::string key) : rpc_(rpc), key_(std::move(key)) {}
  std::string name() const override { return "amqp"; }
  Reply send(const Call& c) override {
    broker::Message m;
    m.body = c.body;
    m.content_type = c.command ? "application/json" : "text/plain";
    auto& h = m.headers;
    h["x-sb-kind"] = std::string(c.command ? "command" : "request");
    h["x-sb-deadline"] = regtest::now_ms() + c.timeout.count();
    h["x-sb-request-id"] = broker::new_id();
    h["x-correlation-id"] = std::string("corr-") + broker::new_id();
    h["traceparent"] = broker::child_traceparent("");
    h["x-sb-tenant"] = c.tenant;
    h["x-sb-actor"] = c.actor;
    h["x-sb-roles"] = c.roles;
    if (c.command) {
      h["x-sb-command"] = c.command_name;
      h["x-sb-command-id"] = c.command_id;
    } else {
      if (c.min_position) h["x-sb-min-position"] = *c.min_position;
      h["x-sb-method"] = c.method;
      h["x-sb-path"] = c.path;
      h["x-sb-route"] = c.route;
      h["x-sb-params"] = c.params;
      h["x-sb-query"] = c.query;
      std::string hh = "{";
      for (const auto& [k, v] : c.headers) {
        if (hh.size() > 1) hh += ',';
        hh += json::quoted(k) + ":" + json::quoted(v);
      }
      h["x-sb-http-headers"] = hh + "}";
    }
    Reply r;
    try {
      auto reply = rpc_.call(key_, std::move(m), c.timeout + 5s).get();
      r.status = static_cast<int>(reply.header_int("x-sb-status").value_or(200));
      r.body = reply.body;
      if (const auto* hh = reply.header_string("x-sb-http-headers")) {
        auto d = json::parse(*hh);
        for (const auto& kv : d.GetObject())
          r.headers[lower(kv.name.GetString())] = kv.value.GetString();
      }
    } catch (const broker::RpcError& e) {
      r.status = e.code() == broker::RpcErrorCode::no_route ? 503 : 502;
      r.body = e.what();
    }
    return r;
  }

 private:
  broker::RpcClient& rpc_;
  std::string key_;
};

/// Section 9.4: plain HTTP to the registered base URL with X-SB-* headers.
class HttpTarget final : public Target {
 public:
  explicit HttpTarget(std::string base_url) {
    const auto hostport = base_url.substr(std::string("http://").size());
    host_ = hostport.substr(0, hostport.find(':'));
    port_ = std::stoi(hostport.substr(hostport.find(':') + 1));
  }
  std::string name() const override { return "http"; }
  Reply send(const Call& c) override {
    httplib::Client cli(host_, port_);
    cli.set_read_timeout(c.timeout + 5s);
    cli.set_connection_timeout(5s);
    httplib::Headers h{{"X-SB-Tenant", c.tenant},
                       {"X-SB-Actor", c.actor},
                       {"X-SB-Roles", c.roles},
                       {"X-SB-Request-Id", broker::new_id()},
                       {"X-SB-Deadline", std::to_string(regtest::now_ms() + c.timeout.count())},
                       {"X-Correlation-Id", "corr-" + broker::new_id()},
                       {"traceparent", broker::child_traceparent("")}};
    for (const auto& [k, v] : c.headers) h.emplace(k, v);
    httplib::Result res{nullptr, httplib::Error::Unknown};
    if (c.command) {
      h.emplace("X-SB-Command", c.command_name);
      h.emplace("X-SB-Command-Id", c.command_id);
      res = cli.Post(("/_sb/commands/" + c.command_name).c_str(), h, c.body, "application/json");
    } else {
      h.emplace("X-SB-Route", c.route);
      if (c.min_position) h.emplace("X-Min-Position", std::to_string(*c.min_position));
      const auto target = c.path + (c.query.empty() ? "" : "?" + c.query);
      res = c.method == "GET" ? cli.Get(target.c_str(), h)
                              : cli.Post(target.c_str(), h, c.body, "text/plain");
    }
    Reply r;
    if (!res) {
      r.status = 502;
      r.body = httplib::to_string(res.error());
      return r;
    }
    r.status = res->status;
    r.body = res->body;
    for (const auto& [k, v] : res->headers) r.headers[lower(k)] = v;
    return r;
  }

 private:
  std::string host_;
  int port_ = 0;
};

class PluginProcess {
 public:
  PluginProcess(const std::string& db, const std::string& vhost, const std::string& name,
                const std::string& transport)
      : admin_port_(tst::free_port()),
        child_(tst::built_binary("tests/support/plugin/sb-test-plugin"), {},
               {{"SB_POSTGRES_URL", db},
                {"SB_RABBITMQ_URL", vhost},
                {"SB_HTTP_PORT", std::to_string(admin_port_)},
                {"SB_PLUGIN_NAME", name},
                {"SB_PLUGIN_TRANSPORT", transport},
                {"SB_LOG_LEVEL", "warn"},
                {"SB_CONFIG", ""}}) {}
  tst::ChildProcess& child() { return child_; }
  Reply admin(const std::string& method, const std::string& path) {
    httplib::Client cli("127.0.0.1", admin_port_);
    cli.set_read_timeout(5s);
    auto res = method == "GET" ? cli.Get(path.c_str()) : cli.Post(path.c_str(), "", "text/plain");
    Reply r;
    if (res) {
      r.status = res->status;
      r.body = res->body;
    }
    return r;
  }
  bool ready() { return admin("GET", "/ready").status == 200; }

 private:
  int admin_port_;
  tst::ChildProcess child_;
};

class Routes {
 public:
  explicit Routes(broker::RpcClient& rpc) : rpc_(rpc) {}
  registry::RouteTable get() {
    broker::Message m;
    m.body = "{}";
    return registry::route_table_from_json(
        rpc_.call(std::string(registry::kRoutesRpc), m, 5s).get().body);
  }
  /// The live instance of `service` (empty when none).
  std::optional<registry::RouteInstance> instance(const std::string& service) {
    for (const auto& s : get().services) {
      if (s.name != service) continue;
      for (const auto& v : s.versions) {
        if (!v.instances.empty()) return v.instances.front();
      }
    }
    return std::nullopt;
  }
  bool has_endpoint(const std::string& service, const std::string& method,
                    const std::string& path) {
    for (const auto& s : get().services) {
      if (s.name != service) continue;
      for (const auto& v : s.versions) {
        for (const auto& e : v.endpoints) {
          if (e.method == method && e.path == path) return true;
        }
      }
    }
    return false;
  }

 private:
  broker::RpcClient& rpc_;
};

Call command(const std::string& name, const std::string& cmd, const std::string& id,
             std::string body) {
  Call c;
  c.command = true;
  c.method = "POST";
  c.command_name = name + "." + cmd;
  c.command_id = id;
  c.body = std::move(body);
  return c;
}

Call get_item(const std::string& id, std::optional<std::int64_t> min_position) {
  Call c;
  c.path = "/items/" + id;
  c.route = "/items/{id}";
  c.params = R"({"id":")" + id + "\"}";
  c.min_position = min_position;
  return c;
}

std::string str(const rapidjson::Value& v, const char* key) {
  return v.HasMember(key) && v[key].IsString() ? v[key].GetString() : "<missing>";
}

// Everything the test plugin does, over one transport. Returns the echo
// answer without "service" for comparison across transports.
std::string exercise(Target& t, PluginProcess& p, const std::string& name) {
  SCOPED_TRACE(t.name());
  // Streams (item-<id>) and derived event ids are per tenant: keep this
  // run's apart from the other transport's.
  const std::string x = t.name() + "-";
  // Echo: every field of the request comes through.
  Call echo;
  echo.path = "/echo/abc%20d";
  echo.route = "/echo/{id}";
  echo.params = R"({"id":"abc d"})";
  echo.query = "x=1&y=2";
  echo.roles = "user,admin";
  echo.headers = {{"x-test", "hello"}};
  auto r = t.send(echo);
  EXPECT_EQ(r.status, 200) << r.body;
  auto d = r.json();
  EXPECT_EQ(str(d, "service"), name);
  EXPECT_EQ(str(d, "version"), "1.0.0");
  EXPECT_EQ(str(d, "id"), "abc d");
  EXPECT_EQ(str(d, "method"), "GET");
  EXPECT_EQ(str(d, "path"), "/echo/abc%20d");
  EXPECT_EQ(str(d, "route"), "/echo/{id}");
  EXPECT_EQ(str(d, "query"), "x=1&y=2");
  EXPECT_EQ(str(d, "tenant"), "acme");
  EXPECT_EQ(str(d, "actor"), "user:u1");
  EXPECT_EQ(json::to_string(d["roles"]), R"(["user","admin"])");
  EXPECT_EQ(str(d, "body"), "");
  EXPECT_EQ(str(d, "x_test"), "hello");
  EXPECT_FALSE(r.headers["x-instance"].empty());
  d.RemoveMember("service");
  const auto echoed = json::to_string(d);

  Call post = echo;
  post.method = "POST";
  post.path = "/echo/7";
  post.params = R"({"id":"7"})";
  post.query = "";
  post.body = "payload";
  post.headers.clear();
  r = t.send(post);
  EXPECT_EQ(r.status, 200) << r.body;
  d = r.json();
  EXPECT_EQ(str(d, "method"), "POST");
  EXPECT_EQ(str(d, "body"), "payload");
  EXPECT_EQ(str(d, "x_test"), "");
  EXPECT_EQ(str(d, "id"), "7");

  Call ping;
  ping.path = "/public/ping";
  ping.route = "/public/ping";
  ping.tenant = "";
  ping.actor = "anonymous";
  ping.roles = "";
  r = t.send(ping);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, R"({"pong":true,"version":"1.0.0"})");

  Call admin;
  admin.path = "/admin/only";
  admin.route = "/admin/only";
  admin.roles = "admin";
  r = t.send(admin);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, R"({"ok":true})");

  Call nope;
  nope.path = "/nope";
  r = t.send(nope);
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.code(), "unknown_route");

  // create_item: the store knows the type once the registry appended the
  // plugin's catalog change, so the first tries may be refused (nothing is
  // stored then, and a retry with the same command id is safe).
  auto create =
      command(name, "create_item", x + "cmd-a1", R"({"id":")" + x + R"(a1","title":"First"})");
  EXPECT_TRUE(tst::wait_until(
      [&] {
        r = t.send(create);
        return r.status != 500;
      },
      30s, 100ms))
      << r.body;
  EXPECT_EQ(r.status, 201) << r.body;
  d = r.json();
  const auto p1 = d["position"].GetInt64();
  EXPECT_EQ(str(d, "stream"), "item-" + x + "a1");
  EXPECT_EQ(d["version"].GetInt64(), 0);
  EXPECT_EQ(d["event_ids"].Size(), 1u);
  if (d["event_ids"].Size() != 1u) return "";
  const std::string event_id = d["event_ids"][0].GetString();

  // The same command again (same Idempotency-Key) stores nothing new.
  r = t.send(create);
  EXPECT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.json()["position"].GetInt64(), p1);
  EXPECT_EQ(std::string(r.json()["event_ids"][0].GetString()), event_id);
  // Another command creating the same item conflicts.
  r = t.send(command(name, "create_item", x + "cmd-a1-again",
                     R"({"id":")" + x + R"(a1","title":"Again"})"));
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(r.code(), "wrong_expected_version");
  EXPECT_EQ(r.json()["error"]["details"]["current_version"].GetInt64(), 0);

  // Read-your-writes.
  r = t.send(get_item(x + "a1", p1));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body,
            R"({"id":")" + x + R"(a1","title":"First","position":)" + std::to_string(p1) + "}");
  auto other_tenant = get_item(x + "a1", p1);
  other_tenant.tenant = "other";
  r = t.send(other_tenant);
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.code(), "not_found");

  r = t.send(command(name, "reject", "cmd-r", "{}"));
  EXPECT_EQ(r.status, 422);
  EXPECT_EQ(r.code(), "rule_violated");
  r = t.send(command(name, "create_item", "cmd-bad", R"({"id":"A B","title":"x"})"));
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.code(), "schema_violation");

  // Paused projection: a min-position read waits, and gives up at its
  // deadline; resumed, it answers.
  EXPECT_EQ(p.admin("POST", "/control/pause").status, 200);
  r = t.send(
      command(name, "create_item", x + "cmd-a2", R"({"id":")" + x + R"(a2","title":"Second"})"));
  EXPECT_EQ(r.status, 201) << r.body;
  const auto p2 = r.json()["position"].GetInt64();
  auto short_wait = get_item(x + "a2", p2);
  short_wait.timeout = 700ms;
  r = t.send(short_wait);
  EXPECT_EQ(r.status, 504) << r.body;
  EXPECT_EQ(r.code(), "min_position_not_reached");
  EXPECT_EQ(r.json()["error"]["details"]["min_position"].GetInt64(), p2);
  EXPECT_LT(r.json()["error"]["details"]["checkpoint"].GetInt64(), p2);
  auto waiting = std::async(std::launch::async, [&] {
    auto c = get_item(x + "a2", p2);
    c.timeout = 30s;
    return t.send(c);
  });
  EXPECT_EQ(p.admin("POST", "/control/resume").status, 200);
  r = waiting.get();
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(str(r.json(), "title"), "Second");

  // A command still running when its deadline passes is not stored.
  auto slow = command(name, "slow_create", x + "cmd-s1",
                      R"({"id":")" + x + R"(s1","title":"Slow","ms":800})");
  slow.timeout = 300ms;
  r = t.send(slow);
  EXPECT_EQ(r.status, 504) << r.body;
  EXPECT_EQ(r.code(), "deadline_exceeded");
  r = t.send(
      command(name, "create_item", x + "cmd-a3", R"({"id":")" + x + R"(a3","title":"Third"})"));
  EXPECT_EQ(r.status, 201) << r.body;
  const auto p3 = r.json()["position"].GetInt64();
  r = t.send(get_item(x + "s1", p3));
  EXPECT_EQ(r.status, 404) << r.body;

  Call slow_get;
  slow_get.path = "/slow";
  slow_get.route = "/slow";
  slow_get.query = "ms=20";
  r = t.send(slow_get);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, R"({"slept":20})");

  r = p.admin("GET", "/control/stats");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.json()["commands_executed"].GetInt64(), 3) << r.body;  // a1, a2, a3
  // echo x2, ping, admin, items x4, slow: the 504 never reached the handler.
  EXPECT_EQ(r.json()["requests"].GetInt64(), 9) << r.body;
  return echoed;
}

TEST(SdkPlugin, BothTransportsRegisterServeAndDeregister) {
  const auto db = tst::fresh_database("sdk");
  const auto vhost = tst::fresh_vhost("sdk");
  StoreProcess store(db, vhost);
  registry::Registry reg(registry_options(db, vhost, "r1"));
  reg.start();

  PluginProcess amqp_plugin(db, vhost, "amqpsvc", "amqp");
  PluginProcess http_plugin(db, vhost, "httpsvc", "http");
  ASSERT_TRUE(
      tst::wait_until([&] { return amqp_plugin.ready() && http_plugin.ready(); }, 60s, 50ms))
      << amqp_plugin.child().output() << http_plugin.child().output();

  broker::RpcClientOptions o;
  o.connection = amqp(vhost, "sdk-test-rpc");
  broker::RpcClient rpc(o);
  Routes routes(rpc);
  ASSERT_TRUE(tst::wait_until(
      [&] { return routes.instance("amqpsvc") && routes.instance("httpsvc"); }, 15s, 50ms));
  const auto a = *routes.instance("amqpsvc");
  const auto h = *routes.instance("httpsvc");
  EXPECT_EQ(a.transport.kind, registry::Transport::Kind::amqp);
  EXPECT_EQ(h.transport.kind, registry::Transport::Kind::http);
  EXPECT_TRUE(routes.has_endpoint("amqpsvc", "GET", "/items/{id}"));
  EXPECT_TRUE(routes.has_endpoint("httpsvc", "POST", "/echo/{id}"));

  AmqpTarget amqp_target(rpc, "amqpsvc.1.0.0");
  HttpTarget http_target(h.transport.base_url);
  const auto via_amqp = exercise(amqp_target, amqp_plugin, "amqpsvc");
  const auto via_http = exercise(http_target, http_plugin, "httpsvc");
  EXPECT_EQ(via_amqp, via_http);

  // SIGTERM: drained, deregistered, exit 0, gone from the route table.
  amqp_plugin.child().signal(SIGTERM);
  EXPECT_EQ(amqp_plugin.child().wait(20s), 0) << amqp_plugin.child().output();
  EXPECT_TRUE(tst::wait_until([&] { return !routes.instance("amqpsvc"); }, 5s, 50ms));
  // Gone at once, not after a TTL: deregistered, not expired.
  EXPECT_EQ(reg.stats().expiries_sent, 0u);
  http_plugin.child().signal(SIGTERM);
  EXPECT_EQ(http_plugin.child().wait(20s), 0) << http_plugin.child().output();
  EXPECT_TRUE(tst::wait_until([&] { return !routes.instance("httpsvc"); }, 5s, 50ms));
  EXPECT_EQ(reg.stats().expiries_sent, 0u);
  reg.stop(std::chrono::steady_clock::now() + 5s);
}

// The PluginHost is a Component: a test (or any process) can run a plugin
// in-process; it registers, serves, re-registers when asked, and leaves.
TEST(SdkPlugin, InProcessComponentRegistersAndLeaves) {
  const auto db = tst::fresh_database("sdkc");
  const auto vhost = tst::fresh_vhost("sdkc");
  StoreProcess store(db, vhost);
  registry::Registry reg(registry_options(db, vhost, "r1"));
  reg.start();

  sdk::Plugin p;
  p.name = "inproc";
  p.version = "2";
  p.get("/hello/{who}", [](const sdk::Request& r) {
    return sdk::Response::json("{\"hello\":" + json::quoted(r.params.at("who")) + "}");
  });
  sdk::Options opts;
  opts.rabbitmq_url = vhost;
  opts.heartbeat_interval = 500ms;
  sdk::PluginHost host(p, opts);
  host.start();
  ASSERT_TRUE(host.wait_registered(30s));

  broker::RpcClientOptions o;
  o.connection = amqp(vhost, "sdk-test-rpc");
  broker::RpcClient rpc(o);
  Routes routes(rpc);
  ASSERT_TRUE(tst::wait_until([&] { return routes.instance("inproc").has_value(); }, 15s, 50ms));
  EXPECT_EQ(routes.instance("inproc")->instance_id, host.instance_id());

  AmqpTarget target(rpc, "inproc.2");
  Call c;
  c.path = "/hello/world";
  auto r = target.send(c);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, R"({"hello":"world"})");

  // Asked to register again (as the registry does for an instance it lost).
  const auto first = host.registration_position();
  broker::PublisherOptions po;
  po.connection = amqp(vhost, "sdk-test-pub");
  po.topology = broker::platform_topology();
  broker::Publisher pub(po);
  broker::Message m;
  m.body = registry::register_requested_json("inproc", host.instance_id());
  m.persistent = false;
  broker::PublishOptions pubo;
  pubo.exchange = broker::kSignalsExchange;
  pubo.routing_key = registry::register_requested_key("inproc");
  ASSERT_TRUE(pub.publish(std::move(m), pubo).get().ok());
  EXPECT_TRUE(tst::wait_until([&] { return host.registration_position() > first; }, 10s));
  EXPECT_GE(host.stats().heartbeats, 1u);

  host.stop(std::chrono::steady_clock::now() + 10s);
  EXPECT_TRUE(tst::wait_until([&] { return !routes.instance("inproc"); }, 5s, 50ms));
  reg.stop(std::chrono::steady_clock::now() + 5s);
}

}  // namespace
}  // namespace sb::sdktest
