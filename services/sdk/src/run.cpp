// run(): a plugin as a process — config, logging, admin HTTP (with the
// plugin's admin routes), the PluginHost, SIGTERM drain.
#include <algorithm>
#include <stdexcept>

#include "http_server.hpp"
#include "switchboard/sdk/routing.hpp"
#include "switchboard/sdk/sdk.hpp"
#include "switchboard/sdk/wire.hpp"
#include "switchboard/shared/json.hpp"
#include "switchboard/shared/log.hpp"
#include "switchboard/shared/metrics.hpp"
#include "switchboard/shared/process.hpp"

namespace sb::sdk {
namespace {

/// /health, /ready, /metrics (as app::AdminServer serves them) plus the
/// plugin's admin routes.
class AdminHttp final : public app::Component {
 public:
  AdminHttp(detail::HttpServerOptions options, const app::Lifecycle& lifecycle,
            std::vector<app::Probe> probes, std::vector<AdminRoute> routes)
      : lifecycle_(lifecycle), probes_(std::move(probes)), routes_(std::move(routes)) {
    for (const auto& r : routes_) router_.add(r.method, r.path);
    options.name = "admin-http";
    options.threads = 4;
    options.queue = 64;
    server_ = std::make_unique<detail::HttpServer>(
        options, [this](const detail::HttpRequest& r) { return handle(r); });
  }
  std::string_view name() const override { return "admin-http"; }
  void start() override { server_->start(); }
  void stop(Deadline) noexcept override { server_->stop(); }
  app::Health health() const override {
    return server_->serving() ? app::Health{}
                              : app::Health{app::HealthState::stopping, "not serving"};
  }

 private:
  Response handle(const detail::HttpRequest& http) {
    auto req = request_from_http(http.method, http.target, http.headers, http.body,
                                 std::chrono::seconds(30));
    if (req.method == "GET" && req.path == "/health") {
      return Response::json(std::string("{\"status\":\"") +
                            (lifecycle_.running() ? "ok" : "stopping") +
                            "\",\"instance\":" + json::quoted(log::instance_id()) + "}");
    }
    if (req.method == "GET" && req.path == "/ready") return ready();
    if (req.method == "GET" && req.path == "/metrics") {
      Response r;
      r.content_type = "text/plain; version=0.0.4";
      r.body = metrics::Registry::global().render();
      return r;
    }
    auto m = router_.match(req.method, req.path);
    if (!m) return Response::error(404, "unknown_route", req.method + " " + req.path);
    req.route = m->route;
    req.params = m->params;
    return routes_[m->index].handler(req);
  }

  Response ready() const {
    bool ok = lifecycle_.ready();
    std::string body = "{\"checks\":{";
    bool first = true;
    auto add = [&](const std::string& name, const app::Health& h) {
      if (!first) body += ',';
      first = false;
      json::append_quoted(body, name);
      body += ":{\"state\":";
      json::append_quoted(body, app::to_string(h.state));
      if (!h.detail.empty()) {
        body += ",\"detail\":";
        json::append_quoted(body, h.detail);
      }
      body += '}';
    };
    for (const auto& [name, h] : lifecycle_.health()) {
      // A plugin still registering is not ready either.
      if (h.state == app::HealthState::starting) ok = false;
      add(name, h);
    }
    for (const auto& p : probes_) {
      app::Health h;
      try {
        h = p.check();
      } catch (const std::exception& e) {
        h = {app::HealthState::failed, e.what()};
      }
      if (h.state == app::HealthState::failed) ok = false;
      add(p.name, h);
    }
    body += std::string("},\"ready\":") + (ok ? "true}" : "false}");
    return Response::json(std::move(body), ok ? 200 : 503);
  }

  const app::Lifecycle& lifecycle_;
  std::vector<app::Probe> probes_;
  std::vector<AdminRoute> routes_;
  Router router_;
  std::unique_ptr<detail::HttpServer> server_;
};

}  // namespace

config::Schema config_schema(std::string_view service) {
  auto s = app::common_schema(service);
  s.optional("http.host", config::Type::string, "127.0.0.1", "admin HTTP address")
      .optional("http.port", config::Type::integer, "0", "admin HTTP port (0: any free port)")
      .optional("plugin.transport", config::Type::string, "",
                "amqp | http (empty: as the plugin declares)")
      .optional("plugin.http_host", config::Type::string, "127.0.0.1",
                "http transport: listen address")
      .optional("plugin.http_port", config::Type::integer, "0",
                "http transport: port (0: any free port)")
      .optional("plugin.advertise_host", config::Type::string, "",
                "http transport: host in the registered base_url (empty: plugin.http_host)")
      .optional("plugin.http_threads", config::Type::integer, "64",
                "http transport: worker threads")
      .optional("plugin.http_keep_alive", config::Type::duration, "5s",
                "http transport: idle keep-alive connections close after this")
      .optional("plugin.rpc_workers", config::Type::integer, "16",
                "amqp transport: handler threads")
      .optional("plugin.rpc_prefetch", config::Type::integer, "32",
                "amqp transport: requests taken and not yet answered")
      .optional("plugin.heartbeat_interval", config::Type::duration, "2s", "heartbeat interval")
      .optional("plugin.default_deadline", config::Type::duration, "30s",
                "deadline of a request that states none")
      .optional("plugin.instance_id", config::Type::string, "", "instance id (empty: a fresh UUID)")
      .optional("rabbitmq.store_user", config::Type::string,
                broker::platform_user(broker::PlatformService::store),
                "the store's broker user: push reactions handle events it published (empty: "
                "none; with rabbitmq.edge_user empty too, push reactions check no publisher)")
      .optional("rabbitmq.edge_user", config::Type::string,
                broker::platform_user(broker::PlatformService::edge),
                "the edge's broker user: push reactions handle the replays and requeues it "
                "published (empty: none)");
  return s;
}

Options options_from_config(const config::Config& cfg) {
  if (!cfg.has("rabbitmq.url")) throw config::Error("rabbitmq.url", "required by a plugin");
  Options o;
  o.rabbitmq_url = cfg.get_string("rabbitmq.url");
  o.heartbeat_interval = cfg.get_duration("plugin.heartbeat_interval");
  o.rpc_workers =
      static_cast<std::size_t>(std::max<std::int64_t>(1, cfg.get_int("plugin.rpc_workers")));
  o.rpc_prefetch = static_cast<std::uint16_t>(
      std::clamp<std::int64_t>(cfg.get_int("plugin.rpc_prefetch"), 1, 65535));
  o.default_deadline = cfg.get_duration("plugin.default_deadline");
  o.trusted_publishers.clear();
  for (const auto* key : {"rabbitmq.store_user", "rabbitmq.edge_user"}) {
    if (auto user = cfg.get_string(key); !user.empty()) o.trusted_publishers.push_back(user);
  }
  if (o.heartbeat_interval < std::chrono::milliseconds(100)) {
    throw config::Error("plugin.heartbeat_interval", "must be at least 100ms");
  }
  return o;
}

std::shared_ptr<pg::Pool> database(const config::Config& cfg, std::size_t max_size) {
  if (!cfg.has("postgres.url")) throw config::Error("postgres.url", "required by this plugin");
  pg::PoolOptions o;
  o.connection.url = cfg.get_string("postgres.url");
  o.connection.application_name = "sb-plugin";
  o.max_size = max_size;
  return std::make_shared<pg::Pool>(std::move(o));
}

std::shared_ptr<pg::Pool> reaction_database(const config::Config& cfg, std::int64_t partitions) {
  return database(cfg, static_cast<std::size_t>(8 + 2 * std::max<std::int64_t>(partitions, 1)));
}

int run(std::string_view service, const config::Schema& extra_keys, const BuildFn& build, int argc,
        const char* const* argv) {
  auto schema = config_schema(service);
  for (const auto& k : extra_keys.keys()) schema.add(k);
  return app::run_process(
      service, schema, argc, argv, [&](app::Lifecycle& lifecycle, const config::Config& cfg) {
        Plugin plugin = build(cfg);
        const auto transport = cfg.get_string("plugin.transport");
        if (transport == "amqp") {
          plugin.transport.kind = TransportKind::amqp;
        } else if (transport == "http") {
          plugin.transport.kind = TransportKind::http;
        } else if (!transport.empty()) {
          throw config::Error("plugin.transport", "must be amqp or http");
        }
        plugin.transport.host = cfg.get_string("plugin.http_host");
        plugin.transport.port = static_cast<int>(cfg.get_int("plugin.http_port"));
        plugin.transport.advertise_host = cfg.get_string("plugin.advertise_host");
        plugin.transport.threads = static_cast<int>(cfg.get_int("plugin.http_threads"));
        plugin.transport.keep_alive = std::chrono::duration_cast<std::chrono::seconds>(
            cfg.get_duration("plugin.http_keep_alive"));
        if (!cfg.get_string("plugin.instance_id").empty()) {
          plugin.instance_id = cfg.get_string("plugin.instance_id");
        }
        auto options = options_from_config(cfg);
        detail::HttpServerOptions admin;
        admin.host = cfg.get_string("http.host");
        admin.port = static_cast<int>(cfg.get_int("http.port"));
        auto routes = plugin.admin_routes;
        lifecycle.add(std::make_shared<AdminHttp>(admin, lifecycle, app::dependency_probes(cfg),
                                                  std::move(routes)));
        lifecycle.emplace<PluginHost>(std::move(plugin), options);
      });
}

int run(Plugin plugin, int argc, const char* const* argv) {
  const std::string name = plugin.name;
  return run(
      name, config::Schema{},
      [plugin = std::move(plugin)](const config::Config&) { return plugin; }, argc, argv);
}

}  // namespace sb::sdk
