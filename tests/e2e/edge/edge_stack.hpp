#pragma once
// The real platform for the edge's end-to-end tests: sb-store, sb-registry,
// sb-edge and sb-test-plugin processes on a fresh database and vhost of the
// harness's servers, plus an HTTP client and a token minter.

#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "switchboard/shared/auth.hpp"
#include "switchboard/shared/json.hpp"
#include "switchboard/testing/process.hpp"
#include "switchboard/testing/servers.hpp"

namespace sb::edgetest {

using namespace std::chrono_literals;
namespace tst = sb::testing;

inline const std::string kJwtSecret = "e2e-test-signing-key-0123456789abcdef-0123";

struct Response {
  int status = 0;
  std::string body;
  std::multimap<std::string, std::string> headers;
  /// The first header of that name, compared case-insensitively as HTTP says.
  std::string header(const std::string& name) const {
    for (const auto& [k, v] : headers) {
      if (k.size() == name.size() &&
          std::equal(k.begin(), k.end(), name.begin(), [](char a, char b) {
            return std::tolower(static_cast<unsigned char>(a)) ==
                   std::tolower(static_cast<unsigned char>(b));
          })) {
        return v;
      }
    }
    return "";
  }
  rapidjson::Document json() const { return sb::json::parse(body); }
  std::string error_code() const {
    try {
      auto d = json();
      return d["error"]["code"].GetString();
    } catch (...) {
      return "";
    }
  }
};

/// One keep-alive connection to a port.
class Http {
 public:
  explicit Http(int port) : client_("127.0.0.1", port) {
    client_.set_keep_alive(true);
    client_.set_tcp_nodelay(true);
    client_.set_read_timeout(30, 0);
    client_.set_connection_timeout(5, 0);
  }
  Response send(const std::string& method, const std::string& path,
                const std::map<std::string, std::string>& headers = {},
                const std::string& body = "",
                const std::string& content_type = "application/json") {
    httplib::Request req;
    req.method = method;
    req.path = path;
    for (const auto& [k, v] : headers) req.headers.emplace(k, v);
    if (!body.empty() || method == "POST" || method == "PUT") {
      req.body = body;
      req.headers.emplace("Content-Type", content_type);
    }
    httplib::Response res;
    httplib::Error err = httplib::Error::Success;
    Response out;
    if (!client_.send(req, res, err)) {
      out.status = -1;
      out.body = httplib::to_string(err);
      return out;
    }
    out.status = res.status;
    out.body = res.body;
    for (const auto& [k, v] : res.headers) out.headers.emplace(k, v);
    return out;
  }
  Response get(const std::string& path, const std::map<std::string, std::string>& h = {}) {
    return send("GET", path, h);
  }
  Response post(const std::string& path, const std::string& body,
                const std::map<std::string, std::string>& h = {}) {
    return send("POST", path, h, body);
  }

 private:
  httplib::Client client_;
};

inline std::string token(const std::string& subject, const std::string& tenant,
                         std::vector<std::string> roles, std::int64_t ttl_s = 3600) {
  auth::JwtOptions o;
  o.secrets = {kJwtSecret};
  auth::JwtVerifier v(o);
  auth::Principal p;
  p.subject = subject;
  p.tenant = tenant;
  p.roles = std::move(roles);
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  p.expires_at = now + ttl_s;
  return v.sign(p, now);
}

inline std::map<std::string, std::string> bearer(const std::string& t) {
  return {{"Authorization", "Bearer " + t}};
}

/// A process of ours that says what went wrong when it died early.
class Proc {
 public:
  Proc(std::string label, const std::string& binary, std::map<std::string, std::string> env)
      : label_(std::move(label)) {
    env["SB_CONFIG"] = "";
    if (!env.count("SB_LOG_LEVEL")) env["SB_LOG_LEVEL"] = "warn";
    child_ = std::make_unique<tst::ChildProcess>(tst::built_binary(binary),
                                                 std::vector<std::string>{}, env);
  }
  ~Proc() {
    if (!child_) return;
    if (!child_->running()) {
      if (!killed_) {
        const auto out = child_->output();
        std::fprintf(stderr, "---- %s exited early; output tail ----\n%s\n----\n", label_.c_str(),
                     out.substr(out.size() > 4000 ? out.size() - 4000 : 0).c_str());
      }
      return;
    }
    child_->signal(SIGTERM);
    if (!child_->wait(10s)) child_->signal(SIGKILL);
  }
  void kill9() {
    killed_ = true;
    child_->signal(SIGKILL);
    child_->wait(10s);
  }
  void term() {
    killed_ = true;
    child_->signal(SIGTERM);
    child_->wait(15s);
  }
  bool running() { return child_->running(); }
  std::string output() { return child_->output(); }

 private:
  std::string label_;
  std::unique_ptr<tst::ChildProcess> child_;
  bool killed_ = false;
};

struct Plugin {
  std::string name;
  std::string version;
  std::string transport;
  int admin_port = 0;
  std::unique_ptr<Proc> proc;
};

/// store + registry + edge on a fresh database and vhost.
class Stack {
 public:
  Stack() {
    db = tst::fresh_database("edge");
    amqp = tst::fresh_vhost("edge");
    store_port = tst::free_port();
    store = std::make_unique<Proc>(
        "sb-store", "services/store/sb-store",
        std::map<std::string, std::string>{{"SB_POSTGRES_URL", db},
                                           {"SB_RABBITMQ_URL", amqp},
                                           {"SB_HTTP_PORT", std::to_string(store_port)}});
    registry = std::make_unique<Proc>(
        "sb-registry", "services/registry/sb-registry",
        std::map<std::string, std::string>{
            {"SB_POSTGRES_URL", db}, {"SB_RABBITMQ_URL", amqp}, {"SB_HTTP_PORT", "0"}});
    edge_port = tst::free_port();
    edge = std::make_unique<Proc>(
        "sb-edge", "services/edge/sb-edge",
        std::map<std::string, std::string>{{"SB_RABBITMQ_URL", amqp},
                                           {"SB_POSTGRES_URL", db},
                                           {"SB_SSE_PING", "1s"},
                                           {"SB_REDIS_URL", tst::servers().redis_url},
                                           {"SB_HTTP_PORT", std::to_string(edge_port)},
                                           {"SB_AUTH_JWT_SECRET", kJwtSecret},
                                           {"SB_EDGE_ROUTES_POLL", "500ms"}});
    EXPECT_TRUE(
        tst::wait_until([&] { return tst::http_get(edge_port, "/ready").status == 200; }, 30s))
        << edge->output();
  }

  /// Starts sb-test-plugin and waits until the edge routes to it.
  Plugin& plugin(const std::string& name, const std::string& version,
                 const std::string& transport) {
    auto p = std::make_unique<Plugin>();
    p->name = name;
    p->version = version;
    p->transport = transport;
    p->admin_port = tst::free_port();
    p->proc = std::make_unique<Proc>(
        "sb-test-plugin " + name + " " + version, "tests/support/plugin/sb-test-plugin",
        std::map<std::string, std::string>{{"SB_POSTGRES_URL", db},
                                           {"SB_RABBITMQ_URL", amqp},
                                           {"SB_HTTP_PORT", std::to_string(p->admin_port)},
                                           {"SB_PLUGIN_NAME", name},
                                           {"SB_PLUGIN_VERSION", version},
                                           {"SB_PLUGIN_TRANSPORT", transport},
                                           {"SB_PLUGIN_HTTP_PORT", "0"}});
    const bool routed = tst::wait_until([&] { return routes_to(name, version); }, 20s, 50ms);
    EXPECT_TRUE(routed) << name << " " << version << " never appeared in the edge's routes\n"
                        << p->proc->output();
    plugins.push_back(std::move(p));
    return *plugins.back();
  }

  /// Whether the edge's route table has a live instance of name@version.
  bool routes_to(const std::string& name, const std::string& version) {
    Http h(edge_port);
    auto r = h.get("/api/v1/services", bearer(admin_token()));
    if (r.status != 200) return false;
    auto d = r.json();
    for (const auto& s : d["services"].GetArray()) {
      if (name != s["name"].GetString()) continue;
      for (const auto& v : s["versions"].GetArray()) {
        if (version == v["version"].GetString() && !v["instances"].GetArray().Empty()) return true;
      }
    }
    return false;
  }

  std::string admin_token() const { return token("root", "", {"super_admin"}); }

  std::string db;
  std::string amqp;
  int store_port = 0;
  int edge_port = 0;
  std::unique_ptr<Proc> store;
  std::unique_ptr<Proc> registry;
  std::unique_ptr<Proc> edge;
  std::vector<std::unique_ptr<Plugin>> plugins;
};

}  // namespace sb::edgetest
