#include "switchboard/edge/gateway.hpp"

#include <rapidjson/document.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
#include <system_error>
#include <thread>

#include "switchboard/broker/rpc.hpp"
#include "switchboard/edge/api_docs.hpp"
#include "switchboard/edge/forward.hpp"
#include "switchboard/edge/rbac.hpp"
#include "switchboard/edge/service_policy.hpp"
#include "switchboard/edge/tenant_check.hpp"
#include "switchboard/events/catalog.hpp"
#include "switchboard/events/uuid.hpp"
#include "switchboard/registry/route_table.hpp"
#include "switchboard/shared/json.hpp"
#include "switchboard/shared/log.hpp"
#include "switchboard/shared/metrics.hpp"

namespace sb::edge {

using Clock = std::chrono::steady_clock;
using SysClock = std::chrono::system_clock;

// ---------------------------------------------------------------- catalog

struct CatalogView::Impl {
  events::Catalog catalog;
};

CatalogView::CatalogView() : impl_(std::make_unique<Impl>()) {}
CatalogView::~CatalogView() = default;

std::shared_ptr<const CatalogView> CatalogView::from_json(const std::string& text) {
  auto view = std::make_shared<CatalogView>();
  auto doc = json::parse(text);
  if (!doc.IsObject()) throw json::Error("the catalog is not a JSON object", "");
  view->version_ = static_cast<std::uint64_t>(json::require_int64(doc, "version"));
  view->json_ = text;
  const auto& commands = json::require(doc, "command_types");
  if (!commands.IsArray()) throw json::Error("command_types is not an array", "/command_types");
  for (const auto& c : commands.GetArray()) {
    auto owner = json::require_string(c, "owner");
    auto spec = events::command_spec_from_json(c, std::string(owner));
    Command cmd{spec.name.value(), spec.owner, spec.roles, spec.json_schema};
    view->impl_->catalog.register_command_type(std::move(spec));
    view->commands_.push_back(std::move(cmd));
  }
  return view;
}

const CatalogView::Command* CatalogView::find(const std::string& service,
                                              const std::string& command) const {
  const auto qualified = service + "." + command;
  for (const auto& c : commands_) {
    if (c.name == qualified && c.owner == service) return &c;
  }
  for (const auto& c : commands_) {
    if (c.name == command && c.owner == service) return &c;
  }
  return nullptr;
}

void CatalogView::validate(const Command& command, const std::string& body) const {
  rapidjson::Document d;
  d.Parse(body.data(), body.size());
  if (d.HasParseError()) {
    throw HttpError(400, "malformed_json", "the body is not JSON",
                    "{\"offset\":" + std::to_string(d.GetErrorOffset()) + "}");
  }
  auto r = impl_->catalog.validate_command(events::CommandName(command.name), d);
  if (r.ok()) return;
  std::string details = "{\"path\":";
  json::append_quoted(details, r.instance_path);
  details += ",\"keyword\":";
  json::append_quoted(details, r.keyword);
  details += ",\"schema_path\":";
  json::append_quoted(details, r.schema_path);
  details += '}';
  throw HttpError(
      400,
      r.kind == events::ValidationResult::Kind::too_large ? "body_too_large" : "schema_violation",
      r.message, details);
}

// ---------------------------------------------------------------- helpers

namespace {

struct Metrics {
  metrics::Registry& r = metrics::Registry::global();
  metrics::Counter* by_class[3][6];
  metrics::Histogram* latency[3];
  metrics::Counter& overloaded =
      r.counter("sb_edge_overloaded_total", "Requests refused with 503 for too many in flight");
  metrics::Gauge& in_flight = r.gauge("sb_edge_in_flight", "Requests being handled");
  Metrics() {
    const char* kinds[3] = {"route", "command", "platform"};
    for (int k = 0; k < 3; ++k) {
      for (int c = 1; c <= 5; ++c) {
        by_class[k][c] = &r.counter("sb_edge_requests_total", "HTTP requests answered",
                                    {{"kind", kinds[k]}, {"code", std::to_string(c) + "xx"}});
      }
      latency[k] =
          &r.histogram("sb_edge_request_seconds", "Time to answer a request", {{"kind", kinds[k]}});
    }
  }
};

Metrics& m() {
  static Metrics metrics;
  return metrics;
}

enum Kind { kRoute = 0, kCommand = 1, kPlatform = 2 };

double draw() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

std::int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(SysClock::now().time_since_epoch())
      .count();
}

HttpResponse json_response(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

HttpError route_error(const RouteResult& r, std::string_view service) {
  std::string details = "{\"service\":" + json::quoted(service);
  if (!r.allowed.empty()) {
    details += ",\"allowed\":[";
    for (std::size_t i = 0; i < r.allowed.size(); ++i) {
      if (i) details += ',';
      json::append_quoted(details, r.allowed[i]);
    }
    details += ']';
  }
  details += '}';
  switch (r.error) {
    case RouteError::unknown_service:
      return HttpError(404, "unknown_service", "no such service", details);
    case RouteError::unknown_route:
      return HttpError(404, "unknown_route", "the service has no such endpoint", details);
    case RouteError::method_not_allowed:
      return HttpError(405, "method_not_allowed", "the endpoint does not take this method",
                       details);
    case RouteError::unknown_version:
      return HttpError(404, "unknown_version", "no live instance has this version", details);
    case RouteError::no_live_instance:
      return HttpError(503, "no_live_instance", "no live instance of the service", details);
  }
  return HttpError(500, "internal_error", "unexpected routing outcome");
}

HttpError rpc_failure(const broker::RpcError& e) {
  switch (e.code()) {
    case broker::RpcErrorCode::no_route:
      return HttpError(503, "no_live_instance", "no live instance took the call");
    case broker::RpcErrorCode::timeout:
      return HttpError(504, "deadline_exceeded", "the service did not answer within the deadline");
    case broker::RpcErrorCode::overloaded:
      return HttpError(503, "overloaded", "too many calls in flight");
    case broker::RpcErrorCode::remote:
      return HttpError(502, "upstream_error", e.what());
    case broker::RpcErrorCode::connection_lost:
    case broker::RpcErrorCode::closed:
      return HttpError(502, "upstream_error", "the broker connection failed during the call",
                       "{\"outcome\":\"unknown\"}");
  }
  return HttpError(502, "upstream_error", e.what());
}

// A bounded pool for commands answered 202: refuses (false) when full.
class AsyncRunner {
 public:
  // Threads start on demand, up to `workers`, and stay.
  AsyncRunner(std::size_t workers, std::size_t capacity)
      : workers_(std::max<std::size_t>(1, workers)), capacity_(capacity) {}
  ~AsyncRunner() { drain(); }
  bool submit(std::function<void()> f) {
    std::lock_guard lock(mu_);
    if (stopping_ || queue_.size() >= capacity_) return false;
    if (idle_ <= queue_.size() && threads_.size() < workers_) {
      try {
        threads_.emplace_back([this] { run(); });
      } catch (const std::system_error& e) {
        // No new thread: the ones running take it, or with none, refuse.
        log::error("cannot start a worker thread", {{"error", e.what()}});
        if (threads_.empty()) return false;
      }
    }
    queue_.push_back(std::move(f));
    cv_.notify_one();
    return true;
  }
  void drain() {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      stopping_ = true;
      cv_.notify_all();
    }
    for (auto& t : threads_) t.join();
  }

 private:
  void run() {
    while (true) {
      std::function<void()> f;
      {
        std::unique_lock lock(mu_);
        ++idle_;
        cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        --idle_;
        if (queue_.empty()) return;  // stopping, and everything queued has run
        f = std::move(queue_.front());
        queue_.pop_front();
      }
      try {
        f();
      } catch (const std::exception& e) {
        log::error("async command failed", {{"error", e.what()}});
      }
    }
  }
  std::size_t workers_;
  std::size_t capacity_;
  std::size_t idle_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

// A routed request's filters would need a network call (a Redis rate-limit
// bucket): handle_async hands the request to the blocking pool instead.
struct NeedsBlocking {};

// The in-flight count a request holds until it is answered.
class InFlightTicket {
 public:
  InFlightTicket() = default;
  InFlightTicket(const InFlightTicket&) = delete;
  InFlightTicket& operator=(const InFlightTicket&) = delete;
  ~InFlightTicket() { release(); }
  bool admit(std::atomic<std::size_t>& counter, std::size_t max) {
    n_ = &counter;
    const auto before = counter.fetch_add(1);
    m().in_flight.set(static_cast<double>(before + 1));
    return before < max;
  }
  void release() {
    if (!n_) return;
    m().in_flight.set(static_cast<double>(n_->fetch_sub(1) - 1));
    n_ = nullptr;
  }

 private:
  std::atomic<std::size_t>* n_ = nullptr;
};

// What every answer gets on its way out: the filters' extra headers, the
// request id, the metrics.
void finish_answer(HttpResponse& res, Kind kind, const std::string& request_id,
                   std::vector<Header>& extra, Clock::time_point started) {
  for (auto& h : extra) {
    if (!res.header(h.name)) res.set_header(h.name, std::move(h.value));
  }
  res.set_header("x-request-id", request_id);
  const int cls = std::clamp(res.status / 100, 1, 5);
  m().by_class[kind][cls]->inc();
  if (!res.error_code.empty()) {
    // Only the edge's own codes (string literals at every error_response), a
    // small fixed set: the label cannot grow with input.
    metrics::Registry::global()
        .counter("sb_edge_errors_total", "Requests the edge answered with its own error, by code",
                 {{"code", res.error_code}})
        .inc();
  }
  m().latency[kind]->observe(std::chrono::duration<double>(Clock::now() - started).count());
}

HttpResponse error_answer(const HttpError& e) {
  auto res = e.response();
  if (e.status() == 401) res.set_header("www-authenticate", "Bearer");
  if (e.code() == "identity_unavailable") res.set_header("retry-after", "1");
  return res;
}

// A routed request answered asynchronously: shared by the callbacks that
// carry it; answered once, by complete().
struct AsyncCall {
  HttpRequest req;
  std::function<void(HttpResponse)> done;
  CallContext ctx;
  std::vector<Header> extra;
  Clock::time_point started;
  InFlightTicket ticket;
  std::string service;
  std::string path;
  RouteResult result;
  std::chrono::milliseconds timeout{0};
  Clock::time_point deadline;
  int attempt = 0;
};

void complete(const std::shared_ptr<AsyncCall>& c, HttpResponse res) {
  finish_answer(res, kRoute, c->ctx.request_id, c->extra, c->started);
  c->ticket.release();
  auto done = std::move(c->done);
  if (done) done(std::move(res));
}

}  // namespace

// ---------------------------------------------------------------- gateway

class Gateway::Impl {
 public:
  Impl(GatewayOptions o, Dependencies d)
      : options_(std::move(o)),
        deps_(std::move(d)),
        async_(options_.async_workers, options_.async_queue),
        blocking_(options_.blocking_workers, options_.blocking_queue) {
    if (!deps_.identity) {
      auto empty = std::make_shared<IdentityView>();
      empty->mark_loaded();
      deps_.identity = std::move(empty);
    }
  }

  HttpResponse handle(const HttpRequest& req) {
    const auto started = Clock::now();
    Kind kind = kPlatform;
    CallContext ctx;
    ctx.request_id = broker::new_id();
    HttpResponse res;
    std::vector<Header> extra;  // added to the answer (RateLimit-*)
    InFlightTicket ticket;
    const bool admitted = ticket.admit(in_flight_, options_.max_in_flight);
    try {
      if (!admitted) {
        m().overloaded.inc();
        res = error_response(503, "overloaded", "too many requests in flight");
        res.set_header("retry-after", "1");
      } else if (auto limited = check_limits(req, options_.limits)) {
        res = std::move(*limited);
      } else {
        res = dispatch(req, ctx, kind, extra);
      }
    } catch (const HttpError& e) {
      res = error_answer(e);
    } catch (const std::exception& e) {
      log::error("edge request failed",
                 {{"error", e.what()}, {"path", req.path}, {"request_id", ctx.request_id}});
      res = error_response(500, "internal_error", "the edge failed to handle the request");
    }
    finish_answer(res, kind, ctx.request_id, extra, started);
    return res;
  }

  void handle_async(HttpRequest req, std::function<void(HttpResponse)> done) {
    const std::string_view path = req.path;
    if (path == "/health") {
      done(handle(req));  // liveness never waits behind the blocking pool
      return;
    }
    constexpr std::string_view kApi = "/api/";
    if (path.rfind(kApi, 0) != 0 || path.rfind("/api/v1/", 0) == 0) {
      blocking(std::move(req), std::move(done));
      return;
    }
    auto c = std::make_shared<AsyncCall>();
    c->started = Clock::now();
    c->ctx.request_id = broker::new_id();
    c->done = std::move(done);
    c->req = std::move(req);
    try {
      if (!c->ticket.admit(in_flight_, options_.max_in_flight)) {
        m().overloaded.inc();
        auto res = error_response(503, "overloaded", "too many requests in flight");
        res.set_header("retry-after", "1");
        complete(c, std::move(res));
        return;
      }
      if (auto limited = check_limits(c->req, options_.limits)) {
        complete(c, std::move(*limited));
        return;
      }
      const std::string_view rest = std::string_view(c->req.path).substr(kApi.size());
      if (auto answer = prepare_routed(c->req, rest, c->ctx, c->extra, *c, false)) {
        complete(c, std::move(*answer));
        return;
      }
      forward_async(c);
    } catch (const NeedsBlocking&) {
      c->ticket.release();
      blocking(std::move(c->req), std::move(c->done));
    } catch (const HttpError& e) {
      complete(c, error_answer(e));
    } catch (const std::exception& e) {
      log::error("edge request failed",
                 {{"error", e.what()}, {"path", c->req.path}, {"request_id", c->ctx.request_id}});
      complete(c, error_response(500, "internal_error", "the edge failed to handle the request"));
    }
  }

  void drain() {
    async_.drain();
    blocking_.drain();
    if (deps_.admin) deps_.admin->drain();
  }

 private:
  // ------------------------------------------------------------ dispatch
  HttpResponse dispatch(const HttpRequest& req, CallContext& ctx, Kind& kind,
                        std::vector<Header>& extra) {
    const std::string_view path = req.path;
    if (path == "/health" && req.method == "GET") {
      return json_response(200, "{\"status\":\"ok\"}");
    }
    if (path == "/ready" && req.method == "GET") {
      bool ready = false;
      auto body = deps_.readiness ? deps_.readiness(ready) : std::string("{}");
      return json_response(ready ? 200 : 503, std::move(body));
    }
    constexpr std::string_view kV1 = "/api/v1/";
    if (path.rfind(kV1, 0) == 0) {
      auto rest = path.substr(kV1.size());
      if (rest.rfind("commands/", 0) == 0) {
        kind = kCommand;
        return commands(req, rest.substr(9), ctx, extra);
      }
      return platform(req, rest, extra);
    }
    constexpr std::string_view kApi = "/api/";
    if (path.rfind(kApi, 0) == 0) {
      kind = kRoute;
      return routed(req, path.substr(kApi.size()), ctx, extra);
    }
    auto principal = authenticated(req);
    require_tenant_active(*deps_.identity, principal, principal.tenant);
    if (path == "/metrics" && req.method == "GET") {
      require_scope(principal, platform_permission("metrics", false));
      if (auto r = limit("platform:metrics", std::nullopt, &principal, req, extra)) return *r;
      HttpResponse r;
      r.content_type = "text/plain; version=0.0.4";
      r.body = metrics::Registry::global().render();
      return r;
    }
    if (path == "/openapi.json" && req.method == "GET") {
      require_scope(principal, platform_permission("catalog", false));
      if (auto r = limit("platform:catalog", std::nullopt, &principal, req, extra)) return *r;
      return json_response(200, openapi_json(*deps_.router->table(), catalog()->json()));
    }
    throw HttpError(404, "unknown_route", "no such endpoint");
  }

  // The platform's own endpoints under /api/v1/ (but commands).
  HttpResponse platform(const HttpRequest& req, std::string_view rest, std::vector<Header>& extra) {
    auto principal = authenticated(req);
    const auto tenant = resolve_tenant(principal, req);
    require_tenant_active(*deps_.identity, principal, tenant);
    Scope scope;
    const auto* named = req.header("x-tenant");
    if (!principal.super_admin() || (named && !named->empty())) scope.tenant = tenant;
    // Roles and scopes (11.4): operator areas keep their roles (tenant_admin
    // and up) and admit custom roles granting the area; reads of events and
    // the registry need any authenticated caller. API keys need a scope.
    const bool write = req.method != "GET";
    auto check = [&](std::string_view area, bool operators) {
      const auto key = platform_permission(area, write);
      if (operators) {
        authorize(deps_.identity.get(), principal, {"tenant_admin"}, key);
      } else {
        require_scope(principal, key);
      }
      return limit("platform:" + std::string(area), std::nullopt, &principal, req, extra);
    };
    if (req.method == "GET" && rest == "services") {
      if (auto r = check("services", false)) return *r;
      return services();
    }
    if (is_admin_path(rest)) {
      const std::string_view area = rest.rfind("subscriptions", 0) == 0 ? "subscriptions"
                                    : rest.rfind("projections", 0) == 0 ? "projections"
                                                                        : "replays";
      if (auto r = check(area, true)) return *r;
      if (!deps_.admin) {
        throw HttpError(503, "events_unavailable", "this edge has no event database configured");
      }
      return deps_.admin->handle(
          req, rest, Operator{principal.super_admin(), scope.tenant, principal.actor()});
    }
    if (rest == "events/stream") {
      if (req.method != "GET") {
        throw HttpError(405, "method_not_allowed", "read-only", "{\"allowed\":[\"GET\"]}");
      }
      if (auto r = check("events", false)) return *r;
      if (!deps_.sse) {
        throw HttpError(503, "events_unavailable", "this edge has no event database configured");
      }
      auto q = parse_event_query(req.query, scope, EventsApiOptions{});
      return deps_.sse->open(q.filter, deps_.sse->resume_point(req));
    }
    if (rest == "events" || rest.rfind("streams/", 0) == 0 || rest.rfind("correlations/", 0) == 0) {
      if (req.method != "GET") {
        throw HttpError(405, "method_not_allowed", "read-only", "{\"allowed\":[\"GET\"]}");
      }
      if (auto r = check("events", false)) return *r;
      if (!deps_.events) {
        throw HttpError(503, "events_unavailable", "this edge has no event database configured");
      }
      if (rest == "events") return deps_.events->list(req, scope);
      const auto slash = rest.find('/');
      auto id = percent_decode(rest.substr(slash + 1));
      if (!id || id->empty()) throw HttpError(400, "invalid_request", "malformed id in the path");
      if (rest.rfind("streams/", 0) == 0) return deps_.events->stream(req, scope, *id);
      return deps_.events->correlation(req, scope, *id);
    }
    if (req.method == "GET" && rest == "catalog") {
      if (auto r = check("catalog", false)) return *r;
      return json_response(200, asyncapi_json(catalog()->json()));
    }
    throw HttpError(404, "unknown_route", "no such platform endpoint");
  }

  // ------------------------------------------------------------ filters
  // Authentication (authentication.hpp); until the identity view has loaded,
  // a credential cannot be checked against revocations: 503, retry.
  void require_identity_loaded(const HttpRequest& req) const {
    if (!deps_.identity->loaded() && (req.header("authorization") || req.header("x-api-key"))) {
      throw HttpError(503, "identity_unavailable",
                      "the edge has not loaded the identity state yet; retry shortly");
    }
  }
  std::optional<auth::Principal> credential(const HttpRequest& req) {
    require_identity_loaded(req);
    return authenticate_optional(*deps_.jwt, deps_.identity.get(), req, now_s());
  }
  auth::Principal authenticated(const HttpRequest& req) {
    require_identity_loaded(req);
    return authenticate(*deps_.jwt, deps_.identity.get(), req, now_s());
  }

  // Rate limits (rate_limit.hpp): nullopt to go on, else the 429.
  std::optional<HttpResponse> limit(std::string_view key,
                                    const std::optional<registry::RateLimit>& endpoint,
                                    const auth::Principal* principal, const HttpRequest& req,
                                    std::vector<Header>& extra) {
    if (!deps_.rate_limiter) return std::nullopt;
    auto buckets = rate_buckets(key, endpoint, principal, req.remote_addr, options_.rate_limit);
    return check_rate_limits(deps_.rate_limiter.get(), buckets, extra);
  }

  std::shared_ptr<const CatalogView> catalog() const {
    auto c = deps_.catalog ? deps_.catalog() : nullptr;
    if (!c) c = std::make_shared<CatalogView>();
    return c;
  }

  HttpResponse services() const {
    return json_response(200, registry::to_json(*deps_.router->table()));
  }

  void fill_context(CallContext& ctx, const HttpRequest& req,
                    const std::optional<auth::Principal>& p, const std::string& tenant,
                    std::chrono::milliseconds service_time) {
    const auto* corr = req.header("x-correlation-id");
    ctx.correlation_id = corr && !corr->empty() && corr->size() <= 200 ? *corr : ctx.request_id;
    const auto* tp = req.header("traceparent");
    ctx.traceparent = broker::child_traceparent(tp ? *tp : std::string_view());
    ctx.tenant = tenant;
    ctx.actor = p ? p->actor() : "anonymous";
    if (p) ctx.roles = p->roles;
    ctx.client_address = req.remote_addr;
    ctx.service_deadline = SysClock::now() + service_time;
  }

  std::shared_ptr<broker::RpcClient> rpc() {
    const auto i = next_rpc_.fetch_add(1, std::memory_order_relaxed);
    return deps_.rpc[i % deps_.rpc.size()];
  }

  Router::Health healthy() const {
    auto up = deps_.upstreams;
    return [up](const std::string& id) { return up->healthy(id); };
  }

  // ------------------------------------------------------------ routed
  // The filters of a routed request: an answer when one of them answers,
  // else nullopt with the target, path and deadline in `plan`. With
  // may_block false, a rate-limit bucket (a Redis call) throws NeedsBlocking.
  std::optional<HttpResponse> prepare_routed(const HttpRequest& req, std::string_view rest,
                                             CallContext& ctx, std::vector<Header>& extra,
                                             AsyncCall& plan, bool may_block) {
    const auto slash = rest.find('/');
    plan.service = std::string(rest.substr(0, slash));
    plan.path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
    const auto& service = plan.service;
    const auto& path = plan.path;
    std::optional<std::string_view> version;
    if (const auto* v = req.header("x-service-version")) version = *v;

    auto& result = plan.result;
    result = deps_.router->route(service, req.method, path, version, draw(), healthy());
    std::optional<auth::Principal> principal;
    if (!result.target || !result.target->endpoint.is_public) {
      principal = authenticated(req);
    } else {
      principal = credential(req);
    }
    if (!result.target) throw route_error(result, service);
    const auto& endpoint = result.target->endpoint;
    const auto key = route_permission(service, req.method, endpoint.path);
    std::string tenant;
    if (principal) {
      tenant = resolve_tenant(*principal, req);
      require_tenant_active(*deps_.identity, *principal, tenant, service);
      require_service_enabled(*deps_.identity, tenant, service);
      if (!endpoint.is_public) authorize(deps_.identity.get(), *principal, endpoint.roles, key);
    }
    if (deps_.rate_limiter) {
      auto buckets = rate_buckets(key, endpoint.rate_limit, principal ? &*principal : nullptr,
                                  req.remote_addr, options_.rate_limit);
      if (!buckets.empty() && !may_block) throw NeedsBlocking{};
      if (auto limited = check_rate_limits(deps_.rate_limiter.get(), buckets, extra)) {
        return limited;
      }
    }
    ctx.min_position = min_position(req);
    plan.timeout = request_timeout(req, options_.request_timeout, options_.max_timeout);
    fill_context(ctx, req, principal, tenant, plan.timeout);
    plan.deadline = Clock::now() + plan.timeout;
    return std::nullopt;
  }

  HttpResponse routed(const HttpRequest& req, std::string_view rest, CallContext& ctx,
                      std::vector<Header>& extra) {
    AsyncCall plan;
    if (auto answer = prepare_routed(req, rest, ctx, extra, plan, true)) return std::move(*answer);
    const auto& service = plan.service;
    const auto& path = plan.path;
    auto& result = plan.result;
    const auto timeout = plan.timeout;
    const auto deadline = plan.deadline;
    for (int attempt = 0;; ++attempt) {
      const auto& target = *result.target;
      if (target.transport.kind == registry::Transport::Kind::amqp) {
        return call_rpc(target.rpc_key(), rpc_request(req, path, target, ctx), timeout);
      }
      auto up = upstream_request(req, path, target, ctx);
      auto r = deps_.upstreams->call(target.instance_id, target.transport.base_url, up, deadline);
      if (r.kind == UpstreamResult::Kind::response) return std::move(r.response);
      if (Clock::now() >= deadline) {
        throw HttpError(504, "deadline_exceeded", "the service did not answer within the deadline");
      }
      if (r.kind == UpstreamResult::Kind::unreachable && attempt == 0) {
        // Nothing was sent: another instance of the same version may take it.
        result = deps_.router->route(service, req.method, path, target.version, draw(), healthy());
        if (result.target) continue;
        throw route_error(result, service);
      }
      throw HttpError(502, "upstream_error", "the service instance failed: " + r.error);
    }
  }

  // Forwards without waiting; the answer comes through complete().
  void forward_async(const std::shared_ptr<AsyncCall>& c) {
    const auto& target = *c->result.target;
    if (target.transport.kind == registry::Transport::Kind::amqp) {
      // The callback runs on the RPC client's loop — this event loop when it
      // has its own client, else the shared client's thread: it touches only
      // the call.
      auto on_reply = [c](broker::RpcClient::Result r) {
        if (r.reply) {
          complete(c, response_from_reply(*r.reply));
        } else {
          complete(c, error_answer(rpc_failure(*r.error)));
        }
      };
      auto* client = deps_.loop_rpc ? deps_.loop_rpc() : nullptr;
      if (client == nullptr) client = rpc().get();  // owned by deps_.rpc
      client->call(target.rpc_key(), rpc_request(c->req, c->path, target, c->ctx), c->timeout,
                   std::move(on_reply));
      return;
    }
    // No event loop client to call from: the whole request goes to the pool.
    if (!deps_.async_upstream) throw NeedsBlocking{};
    deps_.async_upstream(target.instance_id, target.transport.base_url,
                         upstream_request(c->req, c->path, target, c->ctx), c->deadline,
                         [this, c](UpstreamResult r) { on_upstream(c, std::move(r)); });
  }

  // Runs where the upstream call ended (the event loop that made it).
  void on_upstream(const std::shared_ptr<AsyncCall>& c, UpstreamResult r) {
    try {
      if (r.kind == UpstreamResult::Kind::response) {
        complete(c, std::move(r.response));
        return;
      }
      if (Clock::now() >= c->deadline) {
        throw HttpError(504, "deadline_exceeded", "the service did not answer within the deadline");
      }
      if (r.kind == UpstreamResult::Kind::unreachable && c->attempt == 0) {
        // Nothing was sent: another instance of the same version may take it.
        ++c->attempt;
        auto version = c->result.target->version;
        c->result =
            deps_.router->route(c->service, c->req.method, c->path, version, draw(), healthy());
        if (!c->result.target) throw route_error(c->result, c->service);
        forward_async(c);
        return;
      }
      throw HttpError(502, "upstream_error", "the service instance failed: " + r.error);
    } catch (const HttpError& e) {
      complete(c, error_answer(e));
    } catch (const std::exception& e) {
      complete(c, error_response(500, "internal_error", e.what()));
    }
  }

  // Runs handle() on the blocking pool; 503 when it is full.
  void blocking(HttpRequest req, std::function<void(HttpResponse)> done) {
    auto job = std::make_shared<std::pair<HttpRequest, std::function<void(HttpResponse)>>>(
        std::move(req), std::move(done));
    if (blocking_.submit([this, job] { job->second(handle(job->first)); })) return;
    m().overloaded.inc();
    auto res = error_response(503, "overloaded", "too many requests waiting");
    res.set_header("retry-after", "1");
    std::vector<Header> none;
    finish_answer(res, kPlatform, broker::new_id(), none, Clock::now());
    job->second(std::move(res));
  }

  HttpResponse call_rpc(const std::string& key, broker::Message msg,
                        std::chrono::milliseconds timeout) {
    try {
      auto reply = rpc()->call(key, std::move(msg), timeout).get();
      return response_from_reply(reply);
    } catch (const broker::RpcError& e) {
      throw rpc_failure(e);
    }
  }

  // ------------------------------------------------------------ commands
  HttpResponse commands(const HttpRequest& req, std::string_view rest, CallContext& ctx,
                        std::vector<Header>& extra) {
    auto principal = authenticated(req);
    const auto tenant = resolve_tenant(principal, req);
    const auto slash = rest.find('/');
    if (slash == std::string_view::npos) {
      require_tenant_active(*deps_.identity, principal, tenant);
      if (req.method != "GET") {
        throw HttpError(405, "method_not_allowed", "GET a command's status",
                        "{\"allowed\":[\"GET\"]}");
      }
      return command_status(tenant, std::string(rest));
    }
    if (req.method != "POST") {
      throw HttpError(405, "method_not_allowed", "commands are POSTed", "{\"allowed\":[\"POST\"]}");
    }
    const std::string service(rest.substr(0, slash));
    const std::string name(rest.substr(slash + 1));
    require_tenant_active(*deps_.identity, principal, tenant, service);
    if (!deps_.router->knows(service)) {
      throw HttpError(404, "unknown_service", "no such service",
                      "{\"service\":" + json::quoted(service) + "}");
    }
    require_service_enabled(*deps_.identity, tenant, service);
    auto cat = catalog();
    const auto* command = cat->find(service, name);
    if (!command) {
      throw HttpError(
          404, "unknown_command", "the service has no such command",
          "{\"service\":" + json::quoted(service) + ",\"command\":" + json::quoted(name) + "}");
    }
    const auto permission = command_permission(command->name);
    authorize(deps_.identity.get(), principal, command->roles, permission);
    if (auto limited = limit(permission, std::nullopt, &principal, req, extra)) {
      return std::move(*limited);
    }
    cat->validate(*command, req.body);

    std::string command_id;
    std::string idem_key;
    std::string fingerprint;
    if (const auto* key = req.header("idempotency-key")) {
      if (!valid_idempotency_key(*key)) {
        throw HttpError(400, "invalid_request",
                        "Idempotency-Key must be 1 to 200 printable ASCII characters",
                        "{\"header\":\"Idempotency-Key\"}");
      }
      command_id = *key;
      idem_key = idempotency_redis_key(tenant, *key);
      fingerprint = request_fingerprint(req);
    } else {
      command_id = events::uuid_v4().to_string();
    }

    std::optional<std::string_view> version;
    if (const auto* v = req.header("x-service-version")) version = *v;
    auto picked = deps_.router->pick(service, version, draw(), healthy());
    if (!picked.target) throw route_error(picked, service);

    if (!idem_key.empty()) {
      IdempotencyStore::Begin b;
      try {
        b = deps_.idempotency->begin(idem_key, fingerprint,
                                     options_.max_timeout + std::chrono::seconds(5));
      } catch (const std::exception& e) {
        throw HttpError(503, "idempotency_unavailable",
                        std::string("cannot check the Idempotency-Key: ") + e.what());
      }
      switch (b.outcome) {
        case IdempotencyStore::Outcome::started:
          break;
        case IdempotencyStore::Outcome::replay:
          b.response.set_header("idempotent-replayed", "true");
          return std::move(b.response);
        case IdempotencyStore::Outcome::in_progress: {
          auto e = error_response(409, "idempotency_key_in_use",
                                  "a request with this Idempotency-Key is still running");
          e.set_header("retry-after", "1");
          return e;
        }
        case IdempotencyStore::Outcome::mismatch:
          throw HttpError(422, "idempotency_key_reused",
                          "this Idempotency-Key was used for a different request");
      }
    }

    auto timeout = request_timeout(req, options_.command_timeout, options_.max_timeout);
    auto service_time = timeout - options_.commit_margin;
    if (service_time < timeout / 2) service_time = timeout / 2;
    fill_context(ctx, req, principal, tenant, service_time);

    struct Job {
      HttpRequest req;
      Target target;
      std::string command;
      std::string command_id;
      std::string tenant;
      std::string service;
      std::string idem_key;
      std::string fingerprint;
      CallContext ctx;
      std::chrono::milliseconds timeout;
    };
    auto job = std::make_shared<Job>(Job{req, *picked.target, command->name, command_id, tenant,
                                         service, idem_key, fingerprint, ctx, timeout});
    auto run = [this, job]() {
      auto r = execute_command(job->req, job->target, job->command, job->command_id, job->ctx,
                               job->timeout);
      finish_command(job->tenant, job->service, job->command, job->command_id, job->idem_key,
                     job->fingerprint, r);
      return r;
    };

    const auto* prefer = req.header("prefer");
    if (prefer && prefer->find("respond-async") != std::string::npos) {
      put_status(tenant, command_id, service, command->name, "pending", 0, "null");
      if (!async_.submit([run] { run(); })) {
        if (!idem_key.empty()) release(idem_key);
        auto e = error_response(503, "overloaded", "too many asynchronous commands waiting");
        e.set_header("retry-after", "1");
        return e;
      }
      auto res = json_response(202, "{\"command_id\":" + json::quoted(command_id) +
                                        ",\"status\":\"pending\",\"status_url\":" +
                                        json::quoted("/api/v1/commands/" + command_id) + "}");
      res.set_header("location", "/api/v1/commands/" + command_id);
      return res;
    }
    return run();
  }

  HttpResponse execute_command(const HttpRequest& req, const Target& target,
                               const std::string& command, const std::string& command_id,
                               const CallContext& ctx, std::chrono::milliseconds timeout) {
    try {
      HttpResponse from_service;
      if (target.transport.kind == registry::Transport::Kind::amqp) {
        from_service =
            call_rpc(target.rpc_key(), rpc_command(command, command_id, req.body, ctx), timeout);
      } else {
        auto up = upstream_command(req, command, command_id, ctx);
        auto r = deps_.upstreams->call(target.instance_id, target.transport.base_url, up,
                                       Clock::now() + timeout);
        if (r.kind == UpstreamResult::Kind::unreachable) {
          throw HttpError(503, "no_live_instance", "the service instance is unreachable");
        }
        if (r.kind == UpstreamResult::Kind::failed) {
          throw HttpError(504, "deadline_exceeded",
                          "the service did not answer within the deadline: " + r.error);
        }
        from_service = std::move(r.response);
      }
      return command_response(from_service, command_id);
    } catch (const HttpError& e) {
      auto r = e.response();
      return r;
    }
  }

  void finish_command(const std::string& tenant, const std::string& service,
                      const std::string& command, const std::string& command_id,
                      const std::string& idem_key, const std::string& fingerprint,
                      const HttpResponse& r) {
    const bool final_outcome = r.status < 500;
    if (!idem_key.empty()) {
      try {
        if (final_outcome) {
          deps_.idempotency->complete(idem_key, fingerprint, r, options_.idempotency_ttl);
        } else {
          deps_.idempotency->release(idem_key);
        }
      } catch (const std::exception& e) {
        log::error("cannot record the Idempotency-Key outcome",
                   {{"command_id", command_id}, {"error", e.what()}});
      }
    }
    const char* status = r.status < 300 ? "succeeded" : r.status < 500 ? "failed" : "not_applied";
    put_status(tenant, command_id, service, command, status, r.status, r.body);
  }

  void release(const std::string& key) {
    try {
      deps_.idempotency->release(key);
    } catch (const std::exception& e) {
      log::warn("cannot release an Idempotency-Key", {{"error", e.what()}});
    }
  }

  static std::string status_key(const std::string& tenant, const std::string& id) {
    return "sb:cmd:" + tenant + ":" + id;
  }

  void put_status(const std::string& tenant, const std::string& id, const std::string& service,
                  const std::string& command, const char* status, int http_status,
                  const std::string& body) {
    if (!deps_.status) return;
    std::string v = "{\"command_id\":" + json::quoted(id) +
                    ",\"service\":" + json::quoted(service) +
                    ",\"command\":" + json::quoted(command) + ",\"status\":\"" + status + "\"";
    if (http_status) v += ",\"http_status\":" + std::to_string(http_status);
    rapidjson::Document d;
    d.Parse(body.data(), body.size());
    v += ",\"response\":";
    v += d.HasParseError() ? json::quoted(body) : body;
    v += '}';
    try {
      deps_.status->put(status_key(tenant, id), v, options_.status_ttl);
    } catch (const std::exception& e) {
      log::warn("cannot record a command's status", {{"command_id", id}, {"error", e.what()}});
    }
  }

  HttpResponse command_status(const std::string& tenant, const std::string& id) {
    if (!deps_.status) throw HttpError(404, "unknown_command_id", "no such command");
    std::optional<std::string> v;
    try {
      v = deps_.status->get(status_key(tenant, id));
    } catch (const std::exception& e) {
      throw HttpError(503, "status_unavailable",
                      std::string("cannot read the status: ") + e.what());
    }
    if (!v) {
      throw HttpError(404, "unknown_command_id", "no such command (or its status expired)",
                      "{\"command_id\":" + json::quoted(id) + "}");
    }
    return json_response(200, std::move(*v));
  }

  GatewayOptions options_;
  Dependencies deps_;
  std::atomic<std::size_t> in_flight_{0};
  std::atomic<std::uint64_t> next_rpc_{0};
  AsyncRunner async_;
  AsyncRunner blocking_;
};

Gateway::Gateway(GatewayOptions options, Dependencies deps)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(deps))) {}
Gateway::~Gateway() = default;

HttpResponse Gateway::handle(const HttpRequest& request) {
  return impl_->handle(request);
}

void Gateway::handle_async(HttpRequest request, std::function<void(HttpResponse)> done) {
  impl_->handle_async(std::move(request), std::move(done));
}

void Gateway::drain() {
  impl_->drain();
}

}  // namespace sb::edge
