#include "switchboard/edge/edge.hpp"

#include <atomic>
#include <iostream>
#include <stdexcept>

#include "loop_server.hpp"
#include "loop_upstream.hpp"
#include "switchboard/broker/rpc.hpp"
#include "switchboard/edge/identity_feed.hpp"
#include "switchboard/events/head_signals.hpp"
#include "switchboard/shared/json.hpp"
#include "switchboard/shared/log.hpp"
#include "switchboard/shared/metrics.hpp"
#include "switchboard/shared/pg.hpp"
#include "switchboard/shared/process.hpp"
#include "switchboard/shared/text.hpp"

namespace sb::edge {

namespace {

// The clients of the event loop this thread runs: made on it by the loop
// server's on_loop_start, destroyed on it by on_loop_stop (their handles are
// on that loop; calls in flight are answered "closed"). The RPC client goes
// first.
struct LoopClients {
  std::unique_ptr<LoopUpstream> upstream;
  std::unique_ptr<broker::RpcClient> rpc;
};
thread_local std::unique_ptr<LoopClients> t_loop;

}  // namespace

struct Edge::Impl {
  EdgeOptions options;
  const app::Lifecycle& lifecycle;
  std::shared_ptr<Router> router = std::make_shared<Router>();
  std::vector<std::shared_ptr<broker::RpcClient>> rpc;
  std::shared_ptr<RouteSource> routes;
  std::shared_ptr<events::HeadSignals> signals;
  std::shared_ptr<SseHub> sse;
  std::shared_ptr<IdentityView> identity = std::make_shared<IdentityView>();
  std::unique_ptr<IdentityFeed> identity_feed;
  std::unique_ptr<Gateway> gateway;
  std::shared_ptr<Upstreams> upstreams;
  std::unique_ptr<LoopServer> server;
  std::atomic<int> port{0};
  std::atomic<bool> serving{false};
  std::atomic<bool> stopped{false};

  Impl(EdgeOptions o, const app::Lifecycle& lc) : options(std::move(o)), lifecycle(lc) {}
};

Edge::Edge(EdgeOptions options, const app::Lifecycle& lifecycle)
    : impl_(std::make_unique<Impl>(std::move(options), lifecycle)) {}

Edge::~Edge() {
  stop(Deadline::clock::now());
}

void Edge::start() {
  auto& o = impl_->options;
  auto jwt = std::make_shared<const auth::JwtVerifier>(o.jwt);  // throws without a key
  for (std::size_t i = 0; i < std::max<std::size_t>(1, o.rpc_connections); ++i) {
    broker::RpcClientOptions ro;
    ro.connection = o.broker;
    ro.connection.name = o.broker.name + "-rpc-" + std::to_string(i);
    ro.max_in_flight = o.rpc_max_in_flight;
    impl_->rpc.push_back(std::make_shared<broker::RpcClient>(std::move(ro)));
  }
  impl_->routes = std::make_shared<RouteSource>(o.routes, impl_->router, impl_->rpc.front());
  impl_->routes->start();

  RedisPoolOptions redis;
  redis.url = o.redis_url;
  Gateway::Dependencies deps;
  deps.router = impl_->router;
  deps.jwt = jwt;
  deps.rpc = impl_->rpc;
  impl_->upstreams = std::make_shared<Upstreams>(o.upstream);
  deps.upstreams = impl_->upstreams;
  deps.async_upstream = [](const std::string& instance_id, const std::string& base_url,
                           HttpRequest request, std::chrono::steady_clock::time_point deadline,
                           std::function<void(UpstreamResult)> done) {
    if (!t_loop) {
      UpstreamResult r;
      r.kind = UpstreamResult::Kind::unreachable;
      r.error = "not called from an event loop";
      done(std::move(r));
      return;
    }
    t_loop->upstream->call(instance_id, base_url, std::move(request), deadline, std::move(done));
  };
  if (!o.redis_url.empty()) {
    deps.idempotency = make_redis_idempotency(redis);
    deps.status = make_redis_key_value(redis);
    deps.rate_limiter = make_redis_rate_limiter(redis);
  }
  if (!o.events_database.url.empty()) {
    pg::PoolOptions po;
    po.connection = o.events_database;
    po.max_size = o.events_pool_size;
    auto pool = std::make_shared<pg::Pool>(po);
    deps.events = std::make_shared<EventsApi>(pool);
    auto admin_broker = o.broker;
    admin_broker.name = o.broker.name + "-admin";
    deps.admin = std::make_shared<AdminApi>(pool, admin_broker);
    pg::PoolOptions tail;
    tail.connection = o.events_database;
    tail.max_size = 4;
    impl_->signals = std::make_shared<events::HeadSignals>(o.broker, "edge");
    impl_->signals->start();
    impl_->sse = std::make_shared<SseHub>(std::make_shared<pg::Pool>(tail), o.sse, impl_->signals);
    impl_->sse->start();
    deps.sse = impl_->sse;
    // The identity view's own connection: its catch-up never waits behind
    // requests for a pooled one.
    pg::PoolOptions ipo;
    ipo.connection = o.events_database;
    ipo.max_size = 1;
    impl_->identity_feed = std::make_unique<IdentityFeed>(
        std::make_shared<pg::Pool>(ipo), impl_->identity, impl_->signals, o.identity);
    impl_->identity_feed->start();
  } else {
    // No database, no identity events: an empty view (no revocations, API
    // keys, tenant policies or custom roles).
    impl_->identity->mark_loaded();
  }
  deps.identity = impl_->identity;
  deps.loop_rpc = [] { return t_loop ? t_loop->rpc.get() : nullptr; };
  auto routes = impl_->routes;
  deps.catalog = [routes] { return routes->catalog(); };
  auto* impl = impl_.get();
  deps.readiness = [impl](bool& ready) {
    return app::readiness_json(impl->lifecycle, impl->options.probes, ready);
  };
  if (!deps.idempotency) {
    throw std::invalid_argument("the edge needs redis.url (idempotency keys, command status)");
  }
  auto gopts = o.gateway;
  gopts.blocking_workers = static_cast<std::size_t>(std::max(1, o.threads));
  gopts.blocking_queue = o.accept_queue;
  impl_->gateway = std::make_unique<Gateway>(gopts, std::move(deps));

  LoopServerOptions so;
  so.host = o.host;
  so.port = o.port;
  so.loops = std::max(1, o.loops);
  so.max_connections = o.max_connections;
  so.max_header_bytes = o.gateway.limits.max_header_bytes;
  so.max_headers = o.gateway.limits.max_headers;
  // Bodies a little over the limit are read and answered 413 by the gateway
  // (the connection stays usable); far larger ones are refused from their
  // Content-Length before reading, and the connection is closed.
  so.max_body_bytes = o.gateway.limits.max_body_bytes * 2;
  so.keep_alive = o.keep_alive;
  so.read_timeout = o.read_timeout;
  so.write_timeout = o.read_timeout;
  so.max_streams = (impl_->sse ? o.sse.max_clients : 0) + 64;
  auto* im = impl_.get();
  so.on_loop_start = [im](std::size_t index, uv_loop_t* loop) {
    auto clients = std::make_unique<LoopClients>();
    clients->upstream = std::make_unique<LoopUpstream>(loop, im->options.upstream, im->upstreams);
    broker::RpcClientOptions ro;
    ro.connection = im->options.broker;
    ro.connection.name = im->options.broker.name + "-loop-" + std::to_string(index);
    ro.max_in_flight = im->options.rpc_max_in_flight;
    ro.uv_loop = loop;
    clients->rpc = std::make_unique<broker::RpcClient>(std::move(ro));
    t_loop = std::move(clients);
  };
  so.on_loop_stop = [](std::size_t) { t_loop.reset(); };
  impl_->server = std::make_unique<LoopServer>(std::move(so), [im](HttpRequest req, Reply reply) {
    req.remote_addr =
        client_address(req.remote_addr, req.header("x-forwarded-for"), im->options.trusted_proxies);
    im->gateway->handle_async(std::move(req),
                              [reply](HttpResponse res) { reply.send(std::move(res)); });
  });
  const int port = impl_->server->start();
  impl_->port = port;
  impl_->serving = true;
  log::info("edge listening", {{"host", o.host}, {"port", port}, {"loops", std::max(1, o.loops)}});
}

void Edge::stop(Deadline deadline) noexcept {
  if (!impl_) return;
  if (impl_->sse) impl_->sse->stop();  // ends live streams, which hold workers
  impl_->stopped = true;
  if (impl_->serving.exchange(false)) {
    impl_->server->stop(deadline);  // stops accepting; in-flight requests finish
  }
  if (impl_->gateway) impl_->gateway->drain();
  if (impl_->identity_feed) impl_->identity_feed->stop();
  if (impl_->routes) impl_->routes->stop(deadline);
  if (impl_->signals) impl_->signals->stop(deadline);
  impl_->rpc.clear();
}

app::Health Edge::health() const {
  if (!impl_->serving) {
    if (impl_->stopped) return {app::HealthState::stopping, "not serving"};
    return {app::HealthState::starting, "not serving yet"};
  }
  app::Health routes;
  if (impl_->routes) routes = impl_->routes->health();
  if (impl_->identity_feed) {
    // Not ready before the identity view has loaded (credentials could not
    // be checked against revocations).
    auto identity = impl_->identity_feed->health();
    if (identity.state == app::HealthState::starting) return identity;
    if (routes.state == app::HealthState::ok && identity.state != app::HealthState::ok) {
      return identity;
    }
  }
  return routes;
}

int Edge::port() const noexcept {
  return impl_->port;
}

// ------------------------------------------------------------------ process

config::Schema config_schema() {
  config::Schema s = app::common_schema("edge");
  s.optional("http.host", config::Type::string, "127.0.0.1", "address the edge listens on")
      .optional("http.port", config::Type::integer, "8080", "port the edge listens on (0: any)")
      .optional("http.loops", config::Type::integer, "2",
                "event-loop threads serving HTTP connections (about one per core)")
      .optional("http.max_connections", config::Type::integer, "10000",
                "open client connections; beyond it new ones get 503 and are closed")
      .optional("http.threads", config::Type::integer, "128",
                "worker threads for requests that wait on I/O (commands, events API, "
                "rate-limited routes); routed requests are forwarded from the event loops")
      .optional("http.accept_queue", config::Type::integer, "256",
                "requests waiting for a worker before new ones get 503")
      .optional("http.keep_alive", config::Type::duration, "30s", "idle keep-alive timeout")
      .optional("edge.max_in_flight", config::Type::integer, "1024",
                "requests handled at once before 503 overloaded")
      .optional("edge.max_body_bytes", config::Type::integer, "1048576", "413 above this")
      .optional("edge.trusted_proxies", config::Type::string, "",
                "comma-separated proxy addresses / IPv4 CIDRs whose X-Forwarded-For names the "
                "client (rate limits, login lockout); empty: the socket's peer")
      .optional("edge.max_header_bytes", config::Type::integer, "16384", "431 above this")
      .optional("edge.max_headers", config::Type::integer, "100", "431 above this many headers")
      .optional("edge.command_timeout", config::Type::duration, "10s",
                "deadline of a command without X-Request-Timeout")
      .optional("edge.request_timeout", config::Type::duration, "30s",
                "deadline of a routed request without X-Request-Timeout")
      .optional("edge.max_timeout", config::Type::duration, "60s", "cap on X-Request-Timeout")
      .optional("edge.commit_margin", config::Type::duration, "250ms",
                "a command's service deadline is this much before the edge's")
      .optional("edge.rpc_connections", config::Type::integer, "1",
                "AMQP connections for RPC calls (round-robin); each has its own thread, and on "
                "2 cores one gives more calls/s than two (fewer wake-ups, larger batches)")
      .optional("edge.routes_poll", config::Type::duration, "2s",
                "route table re-read interval besides the registry's signal")
      .optional(
          "edge.upstream_eject", config::Type::duration, "5s",
          "ejection of an HTTP upstream instance after 3 failures in a row (doubles, max 60 s)")
      .optional("sse.max_clients", config::Type::integer, "128",
                "live event streams per edge (each holds a worker; 503 beyond)")
      .optional("sse.ping", config::Type::duration, "15s", "ping interval of live streams")
      .optional("edge.rate_limit.per_second", config::Type::number, "0",
                "default token bucket per credential, requests per second (0: off)")
      .optional("edge.rate_limit.burst", config::Type::integer, "0",
                "its capacity (0: ceil(per_second))")
      .optional("edge.identity_poll", config::Type::duration, "1s",
                "identity events re-read interval besides the store's head signal")
      .optional("edge.idempotency_ttl", config::Type::duration, "24h",
                "how long a command's response is kept for its Idempotency-Key")
      .add({"auth.jwt_secret", config::Type::string, false, std::nullopt,
            "HS256 signing key, at least 32 bytes (required: there is no default)", true})
      .add({"auth.jwt_previous_secret", config::Type::string, false, std::nullopt,
            "a retired key still accepted during a rotation", true})
      .optional("auth.jwt_issuer", config::Type::string, "", "required `iss` (empty: any)")
      .optional("auth.jwt_audience", config::Type::string, "", "required `aud` (empty: any)");
  return s;
}

namespace {

auth::JwtOptions jwt_options(const config::Config& cfg) {
  if (!cfg.has("auth.jwt_secret") || cfg.get_string("auth.jwt_secret").empty()) {
    throw config::Error("auth.jwt_secret", "required: the edge has no default signing key");
  }
  auth::JwtOptions j;
  j.secrets.push_back(cfg.get_string("auth.jwt_secret"));
  if (j.secrets.front().size() < 32) {
    throw config::Error("auth.jwt_secret", "must have at least 32 bytes");
  }
  if (cfg.has("auth.jwt_previous_secret") && !cfg.get_string("auth.jwt_previous_secret").empty()) {
    j.secrets.push_back(cfg.get_string("auth.jwt_previous_secret"));
  }
  j.issuer = cfg.get_string("auth.jwt_issuer");
  j.audience = cfg.get_string("auth.jwt_audience");
  return j;
}

}  // namespace

void build(app::Lifecycle& lifecycle, const config::Config& cfg) {
  if (!cfg.has("rabbitmq.url")) throw config::Error("rabbitmq.url", "required by the edge");
  if (!cfg.has("redis.url")) throw config::Error("redis.url", "required by the edge");
  EdgeOptions o;
  o.host = cfg.get_string("http.host");
  const auto proxies = cfg.get_string("edge.trusted_proxies");
  for (auto proxy : text::split_list(proxies)) {
    o.trusted_proxies.emplace_back(proxy);
  }
  o.port = static_cast<int>(cfg.get_int("http.port"));
  o.loops = static_cast<int>(cfg.get_int("http.loops"));
  o.max_connections = static_cast<std::size_t>(cfg.get_int("http.max_connections"));
  if (o.loops < 1 || o.loops > 64) throw config::Error("http.loops", "must be 1 to 64");
  o.threads = static_cast<int>(cfg.get_int("http.threads"));
  o.accept_queue = static_cast<std::size_t>(cfg.get_int("http.accept_queue"));
  o.keep_alive =
      std::chrono::duration_cast<std::chrono::seconds>(cfg.get_duration("http.keep_alive"));
  auto& g = o.gateway;
  g.max_in_flight = static_cast<std::size_t>(cfg.get_int("edge.max_in_flight"));
  g.limits.max_body_bytes = static_cast<std::size_t>(cfg.get_int("edge.max_body_bytes"));
  g.limits.max_header_bytes = static_cast<std::size_t>(cfg.get_int("edge.max_header_bytes"));
  g.limits.max_headers = static_cast<std::size_t>(cfg.get_int("edge.max_headers"));
  g.command_timeout = cfg.get_duration("edge.command_timeout");
  g.request_timeout = cfg.get_duration("edge.request_timeout");
  g.max_timeout = cfg.get_duration("edge.max_timeout");
  g.commit_margin = cfg.get_duration("edge.commit_margin");
  g.idempotency_ttl = cfg.get_duration("edge.idempotency_ttl");
  g.rate_limit.per_second = cfg.get_number("edge.rate_limit.per_second");
  g.rate_limit.burst = cfg.get_int("edge.rate_limit.burst");
  if (g.rate_limit.per_second < 0 || g.rate_limit.burst < 0) {
    throw config::Error("edge.rate_limit", "must not be negative");
  }
  o.identity.poll = cfg.get_duration("edge.identity_poll");
  o.jwt = jwt_options(cfg);
  o.broker.url = cfg.get_string("rabbitmq.url");
  o.broker.name = "edge-" + log::instance_id();
  o.broker.heartbeat = std::chrono::seconds(5);
  o.broker.reconnect_max = std::chrono::milliseconds(1000);
  o.rpc_connections = static_cast<std::size_t>(cfg.get_int("edge.rpc_connections"));
  o.redis_url = cfg.get_string("redis.url");
  o.routes.broker = o.broker;
  o.routes.replica = log::instance_id();
  o.routes.poll = cfg.get_duration("edge.routes_poll");
  o.upstream.eject_base = cfg.get_duration("edge.upstream_eject");
  o.sse.max_clients = static_cast<std::size_t>(cfg.get_int("sse.max_clients"));
  o.sse.ping = cfg.get_duration("sse.ping");
  if (cfg.has("postgres.url")) {
    o.events_database.url = cfg.get_string("postgres.url");
    o.events_database.application_name = "sb-edge";
  }
  o.probes = app::dependency_probes(cfg);
  lifecycle.emplace<Edge>(std::move(o), lifecycle);
}

namespace {

int token_command(int argc, const char* const* argv) {
  std::string sub;
  std::string tenant;
  std::string roles;
  std::int64_t ttl = 3600;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string_view k = argv[i];
    std::string v = argv[i + 1];
    if (k == "--sub") {
      sub = v;
    } else if (k == "--tenant") {
      tenant = v;
    } else if (k == "--roles") {
      roles = v;
    } else if (k == "--ttl") {
      ttl = std::stoll(v);
    } else {
      std::cerr << "sb-edge token: unknown option " << k << "\n";
      return 2;
    }
  }
  if (sub.empty()) {
    std::cerr << "usage: sb-edge token --sub SUBJECT [--tenant T] [--roles a,b] [--ttl SECONDS]\n";
    return 2;
  }
  try {
    const char* none[] = {argv[0]};
    auto cfg = config::Config::load_for_process(config_schema(), 1, none);
    auth::JwtVerifier jwt(jwt_options(cfg));
    auth::Principal p;
    p.subject = sub;
    p.tenant = tenant;
    std::size_t start = 0;
    while (start < roles.size()) {
      auto comma = roles.find(',', start);
      auto r = roles.substr(start, comma == std::string::npos ? comma : comma - start);
      if (!r.empty()) p.roles.push_back(r);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    p.expires_at = now + ttl;
    std::cout << jwt.sign(p, now) << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "sb-edge token: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace

int main(int argc, const char* const* argv) {
  if (argc >= 2 && std::string_view(argv[1]) == "token") return token_command(argc, argv);
  return app::run_process("edge", config_schema(), argc, argv, build);
}

}  // namespace sb::edge
