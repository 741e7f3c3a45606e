// PluginHost: projections, the transport (AMQP RPC or HTTP upstream), the
// dispatcher both transports share, and the registration lifecycle.
#include <rapidjson/document.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <set>
#include <stdexcept>

#include "http_server.hpp"
#include "switchboard/broker/broker.hpp"
#include "switchboard/events/catalog.hpp"
#include "switchboard/events/head_signals.hpp"
#include "switchboard/events/platform_types.hpp"
#include "switchboard/events/push.hpp"
#include "switchboard/events/subscription.hpp"
#include "switchboard/events/uuid.hpp"
#include "switchboard/projections/runner.hpp"
#include "switchboard/registry/protocol.hpp"
#include "switchboard/sdk/routing.hpp"
#include "switchboard/sdk/sdk.hpp"
#include "switchboard/sdk/wire.hpp"
#include "switchboard/shared/json.hpp"
#include "switchboard/shared/log.hpp"
#include "switchboard/shared/loop_thread.hpp"
#include "switchboard/shared/metrics.hpp"

namespace sb::sdk {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

constexpr std::string_view kStoreAppend = "store.append";

bool valid_service_name(std::string_view n) {
  if (n.empty() || n.size() > 63) return false;
  auto ok_first = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!ok_first(n.front())) return false;
  for (char c : n) {
    if (!ok_first(c) && c != '_' && c != '-') return false;
  }
  return true;
}

broker::ConnectionOptions connection(const Options& o, std::string name) {
  broker::ConnectionOptions c;
  c.url = o.rabbitmq_url;
  c.name = std::move(name);
  c.heartbeat = 5s;
  c.connect_timeout = 5000ms;
  c.reconnect_min = 100ms;
  c.reconnect_max = 2000ms;
  return c;
}

/// `store.append` over RPC: one attempt per call, bounded by the deadline.
class RpcStoreClient final : public StoreClient {
 public:
  explicit RpcStoreClient(broker::RpcClient& rpc) : rpc_(rpc) {}

  Reply append(const Call& call) override {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        call.deadline - std::chrono::system_clock::now());
    if (left <= 0ms) return {Reply::Kind::no_route, "", "the deadline passed"};
    broker::Message m;
    m.body = call.body;
    m.persistent = false;
    m.headers[std::string(broker::kDeadlineHeader)] = to_epoch_ms(call.deadline);
    broker::set_trace(
        m, {broker::child_traceparent(call.traceparent), call.correlation_id, call.causation_id});
    try {
      return {Reply::Kind::reply,
              rpc_.call(std::string(kStoreAppend), std::move(m), left).get().body, ""};
    } catch (const broker::RpcError& e) {
      switch (e.code()) {
        case broker::RpcErrorCode::no_route:
        case broker::RpcErrorCode::overloaded:
          return {Reply::Kind::no_route, "", e.what()};
        case broker::RpcErrorCode::closed:
          return {Reply::Kind::closed, "", e.what()};
        case broker::RpcErrorCode::timeout:
        case broker::RpcErrorCode::connection_lost:
        case broker::RpcErrorCode::remote:
          return {Reply::Kind::unknown, "", e.what()};
      }
      return {Reply::Kind::unknown, "", e.what()};
    } catch (const std::exception& e) {
      return {Reply::Kind::unknown, "", e.what()};
    }
  }

 private:
  broker::RpcClient& rpc_;
};

std::string quoted_list(const std::vector<std::string>& items) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ',';
    json::append_quoted(out, items[i]);
  }
  return out + "]";
}

}  // namespace

std::vector<std::string> push_trusted_publishers(const Options& options) {
  auto users = options.trusted_publishers;
  if (users.empty()) return users;  // the check is off
  auto own = broker::login_user(options.rabbitmq_url);
  if (std::find(users.begin(), users.end(), own) == users.end()) users.push_back(std::move(own));
  return users;
}

class PluginHost::Impl : public std::enable_shared_from_this<PluginHost::Impl> {
 public:
  Impl(Plugin plugin, Options options)
      : plugin_(std::move(plugin)),
        options_(std::move(options)),
        catalog_(events::builtin_catalog()) {
    if (!valid_service_name(plugin_.name)) {
      throw std::invalid_argument("plugin name must match [a-z0-9][a-z0-9_-]{0,62}: " +
                                  plugin_.name);
    }
    if (plugin_.version.empty() || plugin_.version.find_first_of(" \t/#*") != std::string::npos) {
      throw std::invalid_argument("plugin version must be non-empty without spaces, '/', '#', '*'");
    }
    if (plugin_.instance_id.empty()) plugin_.instance_id = events::uuid_v4().to_string();
    if (!events::StreamId::is_valid(registry::instance_stream(plugin_.instance_id))) {
      throw std::invalid_argument("instance id does not make a valid stream id: " +
                                  plugin_.instance_id);
    }
    for (const auto& e : plugin_.endpoints) {
      if (!e.handler) throw std::invalid_argument("endpoint " + e.path + " has no handler");
      router_.add(e.method, e.path);
    }
    std::set<std::string> projection_names;
    for (const auto& p : plugin_.projections) {
      if (!p.projection || !p.store) {
        throw std::invalid_argument("a projection needs the projection and its store database");
      }
      projection_names.insert(std::string(p.projection->name()));
    }
    for (const auto& e : plugin_.endpoints) {
      if (!e.projection.empty() && projection_names.count(e.projection) == 0) {
        throw std::invalid_argument("endpoint " + e.path + " reads unknown projection " +
                                    e.projection);
      }
    }
    for (const auto& c : plugin_.commands) {
      if (!c.handler) throw std::invalid_argument("command " + c.name + " has no handler");
      events::CommandSpec spec{events::CommandName(c.name), plugin_.name, {}, {}, {}, {}};

      spec.json_schema = c.schema;
      spec.roles = c.roles;
      for (const auto& t : c.emits) spec.emits.emplace_back(t);
      spec.description = c.description;
      catalog_.register_command_type(std::move(spec));  // compiles the schema
      commands_.emplace(c.name, &c);
    }
    std::set<std::string> reaction_names;
    for (const auto& r : plugin_.reactions) {
      if (!valid_service_name(r.name) || !reaction_names.insert(r.name).second) {
        throw std::invalid_argument(
            "reaction names must be unique and match [a-z0-9][a-z0-9_-]*: " + r.name);
      }
      if (!r.handler) throw std::invalid_argument("reaction " + r.name + " has no handler");
      if (r.event_types.empty()) {
        throw std::invalid_argument("reaction " + r.name + " names no event types");
      }
      for (const auto& t : r.event_types) events::validate_type_pattern(t);
      if (r.kind == ReactionKind::checkpointed && !r.store) {
        throw std::invalid_argument("checkpointed reaction " + r.name +
                                    " needs the store's database");
      }
      if (r.partitions < 1) throw std::invalid_argument("reaction " + r.name + ": partitions < 1");
      events::validate_subscription_name(plugin_.name + "." + r.name);
    }
    registration_ = build_registration();
    store_ = options_.store_client;
    auto& m = metrics::Registry::global();
    const metrics::Labels l{{"service", plugin_.name}};
    in_flight_gauge_ = &m.gauge("sb_sdk_in_flight", "requests and commands being handled", l);
    registrations_ = &m.counter("sb_sdk_registrations_total", "registrations appended", l);
    heartbeats_ = &m.counter("sb_sdk_heartbeats_total", "heartbeats published", l);
    latency_request_ = &m.histogram("sb_sdk_request_seconds", "time to answer",
                                    {{"service", plugin_.name}, {"kind", "request"}});
    latency_command_ = &m.histogram("sb_sdk_request_seconds", "time to answer",
                                    {{"service", plugin_.name}, {"kind", "command"}});
  }

  ~Impl() { stop(SteadyClock::now() + 5s); }

  // ---------------------------------------------------------------- lifecycle

  void start() {
    started_attempted_ = true;
    started_at_ = SteadyClock::now();
    // Read models first, so endpoints that wait on them can answer.
    const bool checkpointed =
        std::any_of(plugin_.reactions.begin(), plugin_.reactions.end(),
                    [](const Reaction& r) { return r.kind == ReactionKind::checkpointed; });
    if (!plugin_.projections.empty() || checkpointed) {
      head_ = std::make_shared<events::HeadSignals>(connection(options_, plugin_.name + "-head"),
                                                    plugin_.name + "." + plugin_.instance_id);
      head_->start();
      for (const auto& p : plugin_.projections) {
        projections::RunnerOptions ro;
        ro.store = p.store;
        ro.target = p.target ? p.target : p.store;
        ro.signals = head_;
        ro.partitions = p.partitions;
        ro.owner = plugin_.instance_id;
        auto runner = std::make_unique<projections::ProjectionRunner>(p.projection, ro);
        runner->start();
        runners_.emplace(std::string(p.projection->name()), std::move(runner));
      }
    }
    broker::RpcClientOptions co;
    co.connection = connection(options_, plugin_.name + "-store");
    co.max_in_flight = 1024;
    rpc_ = std::make_unique<broker::RpcClient>(std::move(co));
    if (!store_) store_ = std::make_shared<RpcStoreClient>(*rpc_);
    start_reactions();

    // Serve before registering: once routed, requests must find us.
    if (plugin_.transport.kind == TransportKind::amqp) {
      broker::RpcServerOptions so;
      so.connection = connection(options_, plugin_.name + "-rpc");
      so.workers = options_.rpc_workers;
      so.prefetch = options_.rpc_prefetch;
      rpc_server_ = std::make_unique<broker::RpcServer>(std::move(so));
      rpc_server_->serve(
          rpc_service_key(plugin_.name, plugin_.version), [this](const broker::Delivery& d) {
            return amqp_reply(handle(request_from_amqp(d.message, options_.default_deadline)));
          });
    } else {
      detail::HttpServerOptions ho;
      ho.host = plugin_.transport.host;
      ho.port = plugin_.transport.port;
      ho.threads = static_cast<std::size_t>(std::max(1, plugin_.transport.threads));
      ho.keep_alive_timeout = plugin_.transport.keep_alive;
      ho.name = plugin_.name + "-upstream";
      http_ = std::make_unique<detail::HttpServer>(ho, [this](const detail::HttpRequest& r) {
        return handle(
            request_from_http(r.method, r.target, r.headers, r.body, options_.default_deadline));
      });
      http_->start();
      const auto host = plugin_.transport.advertise_host.empty() ? plugin_.transport.host
                                                                 : plugin_.transport.advertise_host;
      {
        std::lock_guard lk(mu_);
        base_url_ = "http://" + host + ":" + std::to_string(http_->port());
        registration_.transport = {registry::Transport::Kind::http, base_url_};
      }
    }

    broker::PublisherOptions po;
    po.connection = connection(options_, plugin_.name + "-signals");
    po.topology = broker::platform_topology();
    po.max_in_flight = 64;
    publisher_ = std::make_unique<broker::Publisher>(std::move(po));

    broker::ConsumerOptions cons;
    cons.connection = connection(options_, plugin_.name + "-control");
    cons.workers = 1;
    cons.topology = broker::platform_topology();
    consumer_ = std::make_unique<broker::Consumer>(std::move(cons));
    broker::QueueSpec q;
    q.name = "sb.regreq." + plugin_.instance_id;
    q.durable = false;
    q.exclusive = true;
    q.auto_delete = true;
    q.max_length = 100;
    q.overflow = broker::Overflow::drop_head;
    broker::Topology t;
    t.queues.push_back(q);
    t.bindings.push_back(
        {q.name, broker::kSignalsExchange, registry::register_requested_key(plugin_.name)});
    consumer_->declare(t);
    broker::ConsumeOptions copts;
    copts.prefetch = 10;
    copts.retry.enabled = false;
    consumer_->consume(q, copts, [this](const broker::Delivery& d) { on_register_requested(d); });

    {
      std::lock_guard lk(loop_.mutex());
      need_register_ = true;
    }
    loop_.start([this] { run_loop(); });
    started_ = true;
    for (const auto& f : plugin_.on_start) f(store_);
    log::info("plugin started", {{"service", plugin_.name},
                                 {"version", plugin_.version},
                                 {"instance", plugin_.instance_id},
                                 {"transport", plugin_.transport.kind == TransportKind::amqp
                                                   ? std::string_view("amqp")
                                                   : std::string_view("http")}});
  }

  void stop(Deadline deadline) noexcept {
    if (stopped_.exchange(true)) return;
    stopping_ = true;
    if (!started_attempted_) return;
    for (const auto& f : plugin_.on_stop) {
      try {
        f();
      } catch (const std::exception& e) {
        log::error("plugin on_stop hook failed", {{"error", e.what()}});
      }
    }
    // 1. Drain: stop taking requests, let those in flight finish.
    rpc_server_.reset();
    if (http_) http_->stop();
    // 2. Deregister, then stop heartbeating.
    loop_.stop();
    if (registration_position() > 0 && rpc_) deregister(deadline);
    consumer_.reset();
    if (publisher_)
      publisher_->flush(std::chrono::duration_cast<std::chrono::milliseconds>(
          std::max(deadline - SteadyClock::now(), SteadyClock::duration(0))));
    publisher_.reset();
    // 3. Reactions, read models and the rest.
    for (auto& c : reactions_) c->stop(deadline);
    for (auto& [name, r] : runners_) r->stop(deadline);
    if (head_) head_->stop(deadline);
    store_.reset();
    rpc_.reset();
    http_.reset();
    log::info("plugin stopped", {{"service", plugin_.name}, {"instance", plugin_.instance_id}});
  }

  app::Health health() const {
    if (stopping_) return {app::HealthState::stopping, "draining"};
    if (!started_) return {app::HealthState::starting, "starting"};
    for (const auto& [name, r] : runners_) {
      auto h = r->health();
      if (h.state == app::HealthState::failed)
        return {app::HealthState::degraded, name + ": " + h.detail};
    }
    for (const auto& c : reactions_) {
      auto h = c->health();
      if (h.state == app::HealthState::failed || h.state == app::HealthState::degraded)
        return {app::HealthState::degraded, std::string(c->name()) + ": " + h.detail};
    }
    if (registration_position() == 0) {
      if (SteadyClock::now() - started_at_ > options_.register_patience) {
        return {app::HealthState::failed, "not registered: " + last_register_error()};
      }
      return {app::HealthState::starting, "registering"};
    }
    return {};
  }

  // ---------------------------------------------------------------- dispatch

  Response handle(Request r) {
    const auto started = SteadyClock::now();
    log::CorrelationScope scope(r.correlation_id);
    in_flight_.fetch_add(1);
    in_flight_gauge_->add(1);
    const bool is_command = r.kind == Request::Kind::command;
    Response out;
    try {
      out = is_command ? handle_command(r) : handle_request(r);
    } catch (const std::exception& e) {
      log::error("handler failed", {{"path", r.path}, {"error", e.what()}});
      out = Response::error(500, "internal_error", e.what());
    }
    in_flight_.fetch_sub(1);
    in_flight_gauge_->add(-1);
    const double secs = std::chrono::duration<double>(SteadyClock::now() - started).count();
    (is_command ? latency_command_ : latency_request_)->observe(secs);
    metrics::Registry::global()
        .counter("sb_sdk_requests_total", "requests and commands answered, by status",
                 {{"service", plugin_.name},
                  {"kind", is_command ? "command" : "request"},
                  {"status", std::to_string(out.status)}})
        .inc();
    (is_command ? commands_answered_ : requests_answered_).fetch_add(1);
    if (out.status >= 500) {
      log::warn("answered with an error", {{"path", r.path}, {"status", out.status}});
    }
    return out;
  }

  Response handle_request(Request& r) {
    if (std::chrono::system_clock::now() > r.deadline) {
      return Response::error(504, "deadline_exceeded", "the deadline passed before it ran");
    }
    auto m = router_.match(r.method, r.path, r.route);
    if (!m) {
      if (router_.matches_other_method(r.method, r.path)) {
        return Response::error(405, "method_not_allowed", r.method + " " + r.path);
      }
      return Response::error(404, "unknown_route", "no endpoint for " + r.method + " " + r.path);
    }
    const auto& ep = plugin_.endpoints[m->index];
    r.store = store_.get();
    r.route = m->route;
    if (r.params.empty()) r.params = std::move(m->params);
    if (!ep.projection.empty() && r.min_position && *r.min_position > 0) {
      auto& runner = *runners_.at(ep.projection);
      const auto until = SteadyClock::now() + r.remaining();
      if (!runner.wait_for_position(events::Position(*r.min_position), until)) {
        const auto checkpoint = runner.status().position.value();
        return Response::error(504, "min_position_not_reached",
                               "the read model did not reach the position in time",
                               "{\"min_position\":" + std::to_string(*r.min_position) +
                                   ",\"checkpoint\":" + std::to_string(checkpoint) + "}");
      }
    }
    return ep.handler(r);
  }

  Response handle_command(Request& r) {
    if (std::chrono::system_clock::now() > r.deadline) {
      return Response::error(504, "deadline_exceeded", "the deadline passed before it ran");
    }
    auto it = commands_.find(r.command);
    if (it == commands_.end() && r.command.find('.') == std::string::npos) {
      it = commands_.find(plugin_.name + "." + r.command);
    }
    if (it == commands_.end()) {
      return Response::error(404, "unknown_command", "no command " + r.command);
    }
    const Command& c = *it->second;
    r.command = c.name;
    rapidjson::Document body;
    try {
      body = json::parse(r.body.empty() ? std::string_view("{}") : std::string_view(r.body));
    } catch (const json::Error& e) {
      return Response::error(400, "malformed_json", e.what(),
                             "{\"offset\":" + std::to_string(e.offset()) + "}");
    }
    auto v = catalog_.validate_command(events::CommandName(c.name), body);
    if (!v.ok()) {
      return Response::error(400, "schema_violation", v.message,
                             "{\"path\":" + json::quoted(v.instance_path) + "}");
    }
    if (r.command_id.empty()) r.command_id = events::uuid_v4().to_string();
    if (!store_) return Response::error(503, "unavailable", "the plugin is not started");
    r.store = store_.get();
    CommandContext ctx(r, *store_);
    return c.handler(ctx);
  }

  // ---------------------------------------------------------------- reactions

  void start_reactions() {
    for (const auto& r : plugin_.reactions) {
      const std::string sub = plugin_.name + "." + r.name;
      if (r.kind == ReactionKind::checkpointed) {
        for (int p = 0; p < r.partitions; ++p) {
          events::CheckpointedSubscriptionOptions o;
          o.name = sub;
          o.partition = {p, r.partitions};
          o.filter.types = r.event_types;
          o.store = r.store;
          o.target = r.target ? r.target : r.store;
          o.signals = head_;
          o.owner = plugin_.instance_id;
          o.on_failure = r.on_failure;
          o.page_size = 100;
          const Reaction* decl = &r;
          auto handler =
              events::make_handler([this, decl](pg::Transaction& tx, const events::Event& e) {
                react(*decl, e, &tx);
                return events::HandleResult::handled;
              });
          auto c = std::make_unique<events::CheckpointedSubscription>(std::move(o), handler);
          c->start();
          reactions_.push_back(std::move(c));
        }
      } else {
        events::PushSubscriptionOptions o;
        o.group = sub;
        o.topics = r.event_types;
        o.connection = connection(options_, sub);
        o.workers = std::max<std::size_t>(1, r.workers);
        o.pool = r.store;
        o.trusted_publishers = push_trusted_publishers(options_);
        const Reaction* decl = &r;
        if (r.store) {
          o.tx_handler = [this, decl](pg::Transaction& tx, const events::Event& e) {
            react(*decl, e, &tx);
          };
        } else {
          o.handler = [this, decl](const events::Event& e) { react(*decl, e, nullptr); };
        }
        auto c = std::make_unique<events::PushSubscription>(std::move(o));
        c->start();
        reactions_.push_back(std::move(c));
      }
    }
  }

  void react(const Reaction& r, const events::Event& e, pg::Transaction* tx) {
    log::CorrelationScope scope(e.correlation_id.value());
    auto store = store_;
    if (!store) throw std::runtime_error("the plugin is stopping");
    ReactionContext ctx(e, plugin_.name, r.name, *store, tx,
                        std::chrono::system_clock::now() + options_.reaction_deadline);
    r.handler(ctx);
  }

  // ---------------------------------------------------------------- registration

  registry::Registration build_registration() const {
    registry::Registration reg;
    reg.name = plugin_.name;
    reg.version = plugin_.version;
    reg.instance_id = plugin_.instance_id;
    for (const auto& e : plugin_.endpoints) {
      registry::Endpoint re;
      re.method = e.method;
      re.path = e.path;
      re.roles = e.roles;
      re.is_public = e.is_public;
      if (e.rate_limit)
        re.rate_limit = registry::RateLimit{e.rate_limit->per_second, e.rate_limit->burst};
      reg.endpoints.push_back(std::move(re));
    }
    std::map<std::string, std::vector<const EventTypeDecl*>> by_type;
    for (const auto& t : plugin_.event_types) by_type[t.type].push_back(&t);
    for (auto& [type, decls] : by_type) {
      std::sort(decls.begin(), decls.end(), [](const EventTypeDecl* a, const EventTypeDecl* b) {
        return a->version < b->version;
      });
      std::string j = "{\"type\":" + json::quoted(type);
      if (!decls.front()->description.empty()) {
        j += ",\"description\":" + json::quoted(decls.front()->description);
      }
      j += ",\"versions\":[";
      for (std::size_t i = 0; i < decls.size(); ++i) {
        if (i > 0) j += ',';
        j += "{\"version\":" + std::to_string(decls[i]->version) +
             ",\"schema\":" + json::to_string(json::parse(decls[i]->schema)) + "}";
      }
      reg.event_types.push_back(j + "]}");
    }
    for (const auto& c : plugin_.commands) {
      std::string j = "{\"name\":" + json::quoted(c.name) +
                      ",\"schema\":" + json::to_string(json::parse(c.schema)) +
                      ",\"roles\":" + quoted_list(c.roles) + ",\"emits\":" + quoted_list(c.emits);
      if (!c.description.empty()) j += ",\"description\":" + json::quoted(c.description);
      reg.command_types.push_back(j + "}");
    }
    for (const auto& r : plugin_.reactions) {
      reg.subscriptions.push_back({plugin_.name + "." + r.name,
                                   r.kind == ReactionKind::checkpointed ? "checkpointed" : "push",
                                   r.event_types});
    }
    auto meta = json::parse(plugin_.metadata);
    if (!meta.IsObject()) throw std::invalid_argument("plugin metadata must be a JSON object");
    auto& alloc = meta.GetAllocator();
    meta.RemoveMember(registry::kHeartbeatIntervalMetadata.data());
    meta.AddMember(rapidjson::Value(registry::kHeartbeatIntervalMetadata.data(), alloc),
                   rapidjson::Value(static_cast<std::int64_t>(options_.heartbeat_interval.count())),
                   alloc);
    reg.metadata = json::to_string(meta);
    return reg;
  }

  void on_register_requested(const broker::Delivery& d) {
    try {
      auto doc = json::parse(d.message.body);
      if (!doc.IsObject() || json::optional_string(doc, "instance_id") != plugin_.instance_id) {
        return;
      }
    } catch (const std::exception& e) {
      log::warn("unreadable register_requested signal", {{"error", e.what()}});
      return;
    }
    log::info("registry asked to register again", {{"instance", plugin_.instance_id}});
    {
      std::lock_guard lk(loop_.mutex());
      need_register_ = true;
    }
    loop_.notify();
  }

  // The registration loop: (re-)register when needed, heartbeat on time.
  void run_loop() {
    auto backoff = 100ms;
    auto next_beat = SteadyClock::now();
    std::string event_id;  // of the registration being appended (same id on retry)
    while (!loop_.stopping()) {
      bool must_register = false;
      {
        std::lock_guard lk(loop_.mutex());
        must_register = need_register_;
      }
      if (must_register) {
        if (event_id.empty()) event_id = events::new_event_id().value();
        if (auto pos = append_registration(event_id)) {
          event_id.clear();
          backoff = 100ms;
          {
            std::lock_guard lk(loop_.mutex());
            need_register_ = false;
          }
          registration_position_.store(*pos);
          registrations_->inc();
          next_beat = SteadyClock::now();
          loop_.notify();
        } else {
          loop_.wait_for(backoff);
          backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
          continue;
        }
      }
      const auto now = SteadyClock::now();
      if (registration_position_.load() > 0 && now >= next_beat) {
        heartbeat();
        next_beat += options_.heartbeat_interval;
        if (next_beat < now) next_beat = now + options_.heartbeat_interval;
      }
      const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::max(next_beat - SteadyClock::now(), SteadyClock::duration(1ms)));
      loop_.wait_for(wait, [this] { return need_register_; });
    }
  }

  // One attempt; the position on success.
  std::optional<std::int64_t> append_registration(const std::string& event_id) {
    registry::Registration reg;
    {
      std::lock_guard lk(mu_);
      reg = registration_;
    }
    registry::AppendOne a{registry::instance_stream(plugin_.instance_id),
                          std::string(registry::kPlatformTenant),
                          "any",
                          event_id,
                          std::string(events::kServiceInstanceRegistered),
                          registry::to_json(reg)};
    auto position = platform_append(registry::append_request_json(a), options_.store_timeout);
    if (position) {
      log::info(
          "registered",
          {{"service", plugin_.name}, {"instance", plugin_.instance_id}, {"position", *position}});
    }
    return position;
  }

  std::optional<std::int64_t> platform_append(const std::string& body,
                                              std::chrono::milliseconds timeout) {
    broker::Message m;
    m.body = body;
    m.persistent = false;
    m.headers[std::string(broker::kDeadlineHeader)] =
        to_epoch_ms(std::chrono::system_clock::now() + timeout);
    std::string error;
    try {
      auto reply = rpc_->call(std::string(kStoreAppend), std::move(m), timeout).get();
      auto o = outcome_from_store_reply(reply.body, "", {"x"});
      if (o.ok) return o.position;
      error = o.code + ": " + o.message;
    } catch (const std::exception& e) {
      error = e.what();
    }
    log::warn("platform append failed; retrying", {{"error", error}});
    std::lock_guard lk(mu_);
    last_register_error_ = error;
    return std::nullopt;
  }

  void heartbeat() {
    registry::Heartbeat h;
    h.name = plugin_.name;
    h.instance_id = plugin_.instance_id;
    h.version = plugin_.version;
    h.in_flight = in_flight_.load();
    broker::Message m;
    m.body = registry::to_json(h);
    m.persistent = false;
    broker::PublishOptions po;
    po.exchange = broker::kSignalsExchange;
    po.routing_key = std::string(registry::kHeartbeatKey);
    po.deadline = SteadyClock::now() + options_.heartbeat_interval;
    publisher_->publish(std::move(m), po, [](const broker::PublishOutcome&) {});
    heartbeats_->inc();
    heartbeats_sent_.fetch_add(1);
  }

  void deregister(Deadline deadline) {
    const std::string id = events::new_event_id().value();
    registry::AppendOne a{
        registry::instance_stream(plugin_.instance_id),
        std::string(registry::kPlatformTenant),
        "any",
        id,
        std::string(events::kServiceInstanceDeregistered),
        registry::to_json(registry::Deregistration{plugin_.name, plugin_.instance_id, "SIGTERM"})};
    const auto body = registry::append_request_json(a);
    // Retries use the same id, so at most one deregistration is stored.
    while (true) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::min(deadline, SteadyClock::now() + options_.store_timeout) - SteadyClock::now());
      if (left < 50ms) {
        log::error("deregistration not confirmed before the drain deadline",
                   {{"instance", plugin_.instance_id}});
        return;
      }
      if (platform_append(body, left)) {
        log::info("deregistered", {{"instance", plugin_.instance_id}});
        return;
      }
      std::this_thread::sleep_for(std::min(left / 4, std::chrono::milliseconds(200)));
    }
  }

  // ---------------------------------------------------------------- accessors

  std::int64_t registration_position() const { return registration_position_.load(); }
  std::string last_register_error() const {
    std::lock_guard lk(mu_);
    return last_register_error_;
  }
  std::string base_url() const {
    std::lock_guard lk(mu_);
    return base_url_;
  }
  int http_port() const { return http_ ? http_->port() : 0; }
  const std::string& instance_id() const { return plugin_.instance_id; }
  Stats stats() const {
    return {requests_answered_.load(), commands_answered_.load(),
            static_cast<std::uint64_t>(registrations_->value()), heartbeats_sent_.load(),
            in_flight_.load()};
  }
  bool wait_registered(std::chrono::milliseconds timeout) {
    const auto until = SteadyClock::now() + timeout;
    while (registration_position_.load() == 0) {
      if (SteadyClock::now() >= until) return false;
      std::unique_lock lk(loop_.mutex());
      loop_wait_.wait_for(lk, 10ms);
    }
    return true;
  }

 private:
  Plugin plugin_;
  Options options_;
  events::Catalog catalog_;  // the plugin's command schemas
  Router router_;
  std::map<std::string, const Command*> commands_;
  registry::Registration registration_;  // guarded by mu_ once started

  std::shared_ptr<events::HeadSignals> head_;
  std::map<std::string, std::unique_ptr<projections::ProjectionRunner>> runners_;
  std::vector<std::unique_ptr<app::Component>> reactions_;
  std::unique_ptr<broker::RpcClient> rpc_;
  std::shared_ptr<StoreClient> store_;
  std::unique_ptr<broker::RpcServer> rpc_server_;
  std::unique_ptr<detail::HttpServer> http_;
  std::unique_ptr<broker::Publisher> publisher_;
  std::unique_ptr<broker::Consumer> consumer_;

  mutable std::mutex mu_;
  std::string base_url_;
  std::string last_register_error_;
  std::atomic<std::int64_t> registration_position_{0};
  std::atomic<std::int64_t> in_flight_{0};
  std::atomic<std::uint64_t> requests_answered_{0};
  std::atomic<std::uint64_t> commands_answered_{0};
  std::atomic<std::uint64_t> heartbeats_sent_{0};
  std::atomic<bool> started_{false};
  std::atomic<bool> started_attempted_{false};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> stopped_{false};
  SteadyClock::time_point started_at_ = SteadyClock::now();
  bool need_register_ = false;  // guarded by loop_.mutex()
  std::condition_variable loop_wait_;

  metrics::Gauge* in_flight_gauge_ = nullptr;
  metrics::Counter* registrations_ = nullptr;
  metrics::Counter* heartbeats_ = nullptr;
  metrics::Histogram* latency_request_ = nullptr;
  metrics::Histogram* latency_command_ = nullptr;

  app::LoopThread loop_;  // last: joined first
};

PluginHost::PluginHost(Plugin plugin, Options options)
    : impl_(std::make_shared<Impl>(std::move(plugin), std::move(options))) {}
PluginHost::~PluginHost() = default;
void PluginHost::start() {
  impl_->start();
}
void PluginHost::stop(Deadline deadline) noexcept {
  impl_->stop(deadline);
}
app::Health PluginHost::health() const {
  return impl_->health();
}
const std::string& PluginHost::instance_id() const {
  return impl_->instance_id();
}
std::string PluginHost::base_url() const {
  return impl_->base_url();
}
int PluginHost::http_port() const {
  return impl_->http_port();
}
std::int64_t PluginHost::registration_position() const {
  return impl_->registration_position();
}
bool PluginHost::wait_registered(std::chrono::milliseconds timeout) const {
  return impl_->wait_registered(timeout);
}
Stats PluginHost::stats() const {
  return impl_->stats();
}
Response PluginHost::handle(Request request) const {
  return impl_->handle(std::move(request));
}

}  // namespace sb::sdk
