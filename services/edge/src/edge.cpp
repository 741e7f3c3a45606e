#include "switchboard/edge/edge.hpp"

#include <httplib.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <iostream>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>

#include "switchboard/broker/rpc.hpp"
#include "switchboard/edge/identity_feed.hpp"
#include "switchboard/events/head_signals.hpp"
#include "switchboard/shared/http_bind.hpp"
#include "switchboard/shared/json.hpp"
#include "switchboard/shared/log.hpp"
#include "switchboard/shared/metrics.hpp"
#include "switchboard/shared/pg.hpp"
#include "switchboard/shared/process.hpp"
#include "switchboard/shared/text.hpp"

namespace sb::edge {

namespace {

thread_local bool t_refuse = false;  // this connection is over the limit: answer 503

// cpp-httplib's pool queues without end: this one holds `capacity`
// connections waiting for a worker; past that, connections are served by
// one "refuser" thread that answers each request 503 and closes.
class BoundedPool final : public httplib::TaskQueue {
 public:
  BoundedPool(std::size_t threads, std::size_t capacity) : capacity_(capacity) {
    for (std::size_t i = 0; i < threads; ++i) workers_.emplace_back([this] { work(false); });
    refuser_ = std::thread([this] { work(true); });
  }
  ~BoundedPool() override { shutdown(); }

  void enqueue(std::function<void()> fn) override {
    std::unique_lock lock(mu_);
    if (queue_.size() < capacity_) {
      queue_.push_back(std::move(fn));
      work_cv_.notify_one();
      return;
    }
    if (refused_.size() < capacity_) {
      refused_.push_back(std::move(fn));
      refuse_cv_.notify_one();
      return;
    }
    // Everything is full: serve the refusal on the accepting thread, which
    // slows accepting down — the backlog then pushes back on clients.
    lock.unlock();
    m_refused().inc();
    t_refuse = true;
    fn();
    t_refuse = false;
  }

  void shutdown() override {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      stopping_ = true;
      work_cv_.notify_all();
      refuse_cv_.notify_all();
    }
    for (auto& t : workers_) t.join();
    refuser_.join();
  }

 private:
  static metrics::Counter& m_refused() {
    static auto& c = metrics::Registry::global().counter(
        "sb_edge_connections_refused_total", "Connections answered 503: no worker free");
    return c;
  }

  void work(bool refuse) {
    t_refuse = refuse;
    while (true) {
      std::function<void()> fn;
      {
        std::unique_lock lock(mu_);
        auto& q = refuse ? refused_ : queue_;
        // One condition variable per queue: a notify_one meant for a worker
        // must never be spent on the refuser (a lost wake-up leaves an
        // accepted connection waiting for the next one).
        (refuse ? refuse_cv_ : work_cv_).wait(lock, [&] { return stopping_ || !q.empty(); });
        if (q.empty()) return;
        fn = std::move(q.front());
        q.pop_front();
      }
      if (refuse) m_refused().inc();
      fn();
    }
  }

  std::size_t capacity_;
  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable refuse_cv_;
  std::deque<std::function<void()>> queue_;
  std::deque<std::function<void()>> refused_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
  std::thread refuser_;
};

// The headers the client sent, names lower-case.
std::vector<Header> client_headers(const httplib::Request& req) {
  std::vector<Header> out;
  out.reserve(req.headers.size());
  for (const auto& [name, value] : req.headers) {
    auto n = lower(name);
    // cpp-httplib adds these itself; they were not sent by the client.
    if (n == "remote_addr" || n == "remote_port" || n == "local_addr" || n == "local_port") {
      continue;
    }
    out.push_back({std::move(n), value});
  }
  return out;
}

HttpRequest convert(const httplib::Request& req, const std::vector<std::string>& trusted_proxies) {
  HttpRequest r;
  r.method = req.method;
  const auto& target = req.target.empty() ? req.path : req.target;
  const auto q = target.find('?');
  r.path = target.substr(0, q);
  if (q != std::string::npos) r.query = target.substr(q + 1);
  r.headers = client_headers(req);
  r.body = req.body;
  r.remote_addr = client_address(req.remote_addr, r.header("x-forwarded-for"), trusted_proxies);
  return r;
}

void write(const HttpResponse& from, httplib::Response& to) {
  to.status = from.status;
  for (const auto& h : from.headers) to.set_header(h.name.c_str(), h.value);
  if (from.stream) {
    auto produce = from.stream;
    to.set_chunked_content_provider(
        from.content_type.empty() ? "application/octet-stream" : from.content_type,
        [produce](std::size_t, httplib::DataSink& sink) {
          produce([&sink](std::string_view data) {
            return sink.is_writable() && sink.write(data.data(), data.size());
          });
          sink.done();
          return true;
        });
    return;
  }
  if (!from.body.empty() || !from.content_type.empty()) {
    to.set_content(from.body, from.content_type.empty() ? "application/octet-stream"
                                                        : from.content_type.c_str());
  }
}

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
  httplib::Server server;
  std::thread thread;
  std::atomic<int> port{0};
  std::atomic<bool> serving{false};

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
  deps.upstreams = std::make_shared<Upstreams>(o.upstream);
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
  auto routes = impl_->routes;
  deps.catalog = [routes] { return routes->catalog(); };
  auto* impl = impl_.get();
  deps.readiness = [impl](bool& ready) {
    return app::readiness_json(impl->lifecycle, impl->options.probes, ready);
  };
  if (!deps.idempotency) {
    throw std::invalid_argument("the edge needs redis.url (idempotency keys, command status)");
  }
  impl_->gateway = std::make_unique<Gateway>(o.gateway, std::move(deps));

  auto& s = impl_->server;
  // SSE clients each hold a worker while connected: room for them on top.
  const auto threads =
      static_cast<std::size_t>(std::max(1, o.threads)) + (impl_->sse ? o.sse.max_clients : 0);
  const auto queue = o.accept_queue;
  s.new_task_queue = [threads, queue] { return new BoundedPool(threads, queue); };
  s.set_tcp_nodelay(true);
  s.set_keep_alive_max_count(100000);
  s.set_keep_alive_timeout(o.keep_alive.count());
  s.set_read_timeout(o.read_timeout.count(), 0);
  s.set_write_timeout(o.read_timeout.count(), 0);
  // Bodies a little over the limit are read and answered 413 on a clean
  // connection (the Gateway checks); far larger ones are refused from their
  // Content-Length before reading, and the connection is closed.
  auto limits = o.gateway.limits;
  limits.max_body_bytes *= 2;
  s.set_payload_max_length(limits.max_body_bytes);
  s.set_pre_routing_handler([limits](const httplib::Request& req, httplib::Response& res) {
    if (t_refuse) {
      write(error_response(503, "overloaded", "no worker free; retry later"), res);
      res.set_header("Retry-After", "1");
      res.set_header("Connection", "close");
      return httplib::Server::HandlerResponse::Handled;
    }
    // Before the body is read: refuse what is far too large without reading it.
    HttpRequest head;
    head.headers = client_headers(req);
    if (auto refused = check_limits(head, limits)) {
      write(*refused, res);
      res.set_header("Connection", "close");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  auto handler = [this](const httplib::Request& req, httplib::Response& res) {
    write(impl_->gateway->handle(convert(req, impl_->options.trusted_proxies)), res);
  };
  const char* any = R"(/.*)";
  s.Get(any, handler);
  s.Post(any, handler);
  s.Put(any, handler);
  s.Patch(any, handler);
  s.Delete(any, handler);
  s.Options(any, handler);
  s.set_error_handler(httplib::Server::HandlerWithResponse(
      [](const httplib::Request&, httplib::Response& res) -> httplib::Server::HandlerResponse {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        const char* code = res.status == 413   ? "body_too_large"
                           : res.status == 414 ? "uri_too_long"
                           : res.status == 431 ? "headers_too_large"
                           : res.status == 404 ? "unknown_route"
                           : res.status == 405 ? "method_not_allowed"
                                               : "invalid_request";
        write(error_response(res.status, code, "the request was refused by the HTTP layer"), res);
        return httplib::Server::HandlerResponse::Handled;
      }));

  const int port = http::bind_server(s, o.host, o.port, "edge");
  impl_->port = port;
  impl_->serving = true;
  impl_->thread = std::thread([this] { impl_->server.listen_after_bind(); });
  log::info("edge listening", {{"host", o.host}, {"port", port}});
}

void Edge::stop(Deadline deadline) noexcept {
  if (!impl_) return;
  if (impl_->sse) impl_->sse->stop();  // ends live streams, which hold workers
  if (impl_->serving.exchange(false)) {
    impl_->server.stop();  // stops accepting; in-flight requests finish
    if (impl_->thread.joinable()) impl_->thread.join();
  }
  if (impl_->gateway) impl_->gateway->drain();
  if (impl_->identity_feed) impl_->identity_feed->stop();
  if (impl_->routes) impl_->routes->stop(deadline);
  if (impl_->signals) impl_->signals->stop(deadline);
  impl_->rpc.clear();
}

app::Health Edge::health() const {
  if (!impl_->serving) return {app::HealthState::stopping, "not serving"};
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
      .optional("http.threads", config::Type::integer, "128",
                "HTTP worker threads; each open keep-alive connection holds one")
      .optional("http.accept_queue", config::Type::integer, "256",
                "connections waiting for a worker before new ones get 503")
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
      .optional("edge.rpc_connections", config::Type::integer, "2",
                "AMQP connections for RPC calls (round-robin)")
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
