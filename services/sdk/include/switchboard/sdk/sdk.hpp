#pragma once
// The plugin SDK: what a service needs to plug into Switchboard, in a
// declaration. A plugin states its name, version, transport, endpoints,
// command handlers, the event types it brings and the projections it runs;
// the SDK does the rest, as docs/protocol.md sections 8 and 9 require:
//
//   * registration (`service.instance.registered` through `store.append`,
//     an unknown outcome retried with the same event id), heartbeats on
//     sb.signals every interval, registering again when the registry asks
//     (`service.register_requested.<name>`), and on shutdown draining, then
//     `service.instance.deregistered`, then no more heartbeats;
//   * serving the edge (section 9) over AMQP RPC (queue
//     `rpc.<name>.<version>`, handlers on a bounded worker pool, never on the
//     broker's loop thread) or over HTTP upstream (a tuned cpp-httplib server
//     on a bounded pool), with the same Request/Response and the same
//     semantics either way;
//   * `X-Min-Position` waits on the checkpoint of the endpoint's projection
//     (504 min_position_not_reached at the deadline);
//   * commands: a CommandContext whose append() derives the event ids from
//     the command id, passes the caller's deadline on to the store and maps
//     the store's answer to the reply of section 9.2;
//   * config, JSON logs with correlation ids, Prometheus metrics, /health,
//     /ready and SIGTERM drain through run() (shared/process.hpp).
//
// A plugin's main is `return sb::sdk::run("orders", {}, build, argc, argv);`
// with build(config) returning the Plugin. Inside a test process the
// PluginHost is an app::Component like any other.
//
// Threads: handlers run on the transport's worker threads, several at once:
// they must be thread-safe. They may block (database, store appends) up to
// the request's deadline.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "switchboard/broker/permissions.hpp"
#include "switchboard/events/envelope.hpp"
#include "switchboard/events/subscription.hpp"
#include "switchboard/events/types.hpp"
#include "switchboard/shared/config.hpp"
#include "switchboard/shared/lifecycle.hpp"
#include "switchboard/shared/pg.hpp"

namespace sb::projections {
class Projection;
}

namespace sb::sdk {

using SystemTime = std::chrono::system_clock::time_point;

// ---------------------------------------------------------------------------
// Requests and responses, the same over both transports.

class StoreClient;

/// A routed request or a command as the edge forwarded it (section 9.1 /
/// 9.4). Header names are lower-case.
struct Request {
  enum class Kind { request, command };
  Kind kind = Kind::request;
  std::string method;                          // GET POST PUT PATCH DELETE (commands: POST)
  std::string path;                            // after /api/<service>, percent-encoding kept
  std::string route;                           // the endpoint's template that matched
  std::map<std::string, std::string> params;   // the template's, decoded
  std::string query;                           // raw, without '?'
  std::map<std::string, std::string> headers;  // the caller's other headers
  std::string body;
  std::string content_type;
  std::string tenant;              // empty for anonymous calls of public endpoints
  std::string actor;               // user:<sub>, key:<id> or anonymous
  std::vector<std::string> roles;  // of the caller
  std::string client_address;      // the caller's address as the edge saw it
  std::string request_id;
  std::string correlation_id;
  std::string traceparent;
  std::optional<std::int64_t> min_position;  // X-Min-Position
  SystemTime deadline{};                     // do not start work after it
  std::string command;                       // commands: the catalog name, e.g. "orders.place"
  std::string command_id;                    // commands: the Idempotency-Key or a fresh id
  /// Reactions: the id of the event reacted to (the appended events' causation
  /// id); empty: the command id.
  std::string causation_id;
  /// Set by the host for routed requests and commands: an endpoint that
  /// must append (a login starting a session) builds a CommandContext on
  /// it. Valid for the handler's call only; null outside a running host.
  StoreClient* store = nullptr;

  /// The header's value, "" when absent (name in any case).
  std::string header(std::string_view name) const;
  /// A query parameter, decoded; nullopt when absent.
  std::optional<std::string> query_param(std::string_view name) const;
  bool has_role(std::string_view role) const;
  /// Time left until the deadline (0 when past).
  std::chrono::milliseconds remaining() const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::map<std::string, std::string> headers;  // passed back to the caller
  std::string body;

  /// A JSON body (the text must be JSON).
  static Response json(std::string body, int status = 200);
  /// The platform's error body {"error":{"code","message","details"}};
  /// `details_json` must be a JSON object.
  static Response error(int status, std::string_view code, std::string_view message,
                        std::string details_json = "{}");
};

using RequestHandler = std::function<Response(const Request&)>;

struct RateLimit {
  double per_second = 0;
  std::optional<std::int64_t> burst;
};

struct Endpoint {
  std::string method;  // GET POST PUT PATCH DELETE
  std::string path;    // template, e.g. /items/{id}
  RequestHandler handler;
  std::vector<std::string> roles;  // empty: any authenticated caller
  bool is_public = false;          // callable without authentication
  /// The projection (one of Plugin::projections) this endpoint reads: an
  /// X-Min-Position waits for its checkpoint. Empty: the header is ignored.
  std::string projection;
  std::optional<RateLimit> rate_limit;
};

// ---------------------------------------------------------------------------
// Commands.

/// An event a command handler appends.
struct NewEvent {
  std::string type;         // e.g. "orders.order.placed"
  std::string data = "{}";  // JSON object
  std::string meta = "{}";  // JSON object
  int schema = 1;
};

/// What came of CommandContext::append.
struct AppendOutcome {
  bool ok = false;
  bool duplicate = false;     // every event was stored before (a retried command)
  bool created = false;       // the append started the stream (its first event is version 0)
  std::int64_t position = 0;  // of the last event
  std::vector<std::int64_t> positions;
  std::vector<std::string> event_ids;
  std::string stream;
  std::int64_t version = -1;  // the stream's last version
  // On failure: the status and error of the reply (section 9.2).
  int status = 0;
  std::string code;
  std::string message;
  std::string details = "{}";  // JSON object; wrong_expected_version: current_version

  /// The reply of section 9.2: 201 (created) or 200 with
  /// {"position","event_ids","stream","version"}, or the error.
  Response response() const;
};

/// How the SDK reaches `store.append`; a fake in unit tests.
class StoreClient {
 public:
  struct Call {
    std::string body;  // a store.append request (docs/protocol.md 7.1)
    SystemTime deadline{};
    std::string correlation_id;
    std::string causation_id;
    std::string traceparent;
    std::string actor;
  };
  struct Reply {
    enum class Kind {
      reply,     // body holds the store's reply
      unknown,   // timeout or lost connection: the outcome is unknown, retry with the same ids
      no_route,  // no store serving (failing over): nothing was stored
      closed,    // the client is shutting down
    };
    Kind kind = Kind::reply;
    std::string body;
    std::string message;
  };
  virtual ~StoreClient() = default;
  /// One attempt, bounded by call.deadline.
  virtual Reply append(const Call& call) = 0;
};

/// What a command handler gets: who asks, the body, and an append that makes
/// a retried command idempotent.
class CommandContext {
 public:
  CommandContext(const Request& request, StoreClient& store);

  const Request& request() const noexcept { return request_; }
  const std::string& command() const noexcept { return request_.command; }
  const std::string& body() const noexcept { return request_.body; }
  const std::string& tenant() const noexcept { return request_.tenant; }
  const std::string& actor() const noexcept { return request_.actor; }
  const std::string& command_id() const noexcept { return request_.command_id; }
  const std::string& correlation_id() const noexcept { return request_.correlation_id; }
  SystemTime deadline() const noexcept { return request_.deadline; }

  /// Appends to `stream` in the caller's tenant with event ids
  /// derive_event_id(tenant, command_id, i), i counting every event this
  /// command appends (across calls), the caller's deadline, correlation id
  /// and actor, and the command id as causation. Retries an unknown outcome
  /// (and a store failing over) with the same ids until the deadline.
  AppendOutcome append(std::string_view stream, events::ExpectedVersion expected,
                       const std::vector<NewEvent>& events);

  /// The index the next appended event's id derives from.
  std::uint32_t next_event_index() const noexcept { return next_index_; }
  /// Sets it back, e.g. after an append the store refused (nothing stored),
  /// so the retry uses the same ids (execute() in aggregate.hpp does this).
  void rewind_event_index(std::uint32_t index) noexcept { next_index_ = index; }
  /// derive_event_id(tenant, command_id, index); nullopt without a valid
  /// tenant or command id.
  std::optional<events::EventId> event_id(std::uint32_t index) const;

 private:
  const Request& request_;
  StoreClient& store_;
  std::uint32_t next_index_ = 0;
};

using CommandHandler = std::function<Response(CommandContext&)>;

struct Command {
  std::string name;                             // catalog name "<service>.<command>"
  std::string schema = R"({"type":"object"})";  // JSON Schema of the body
  std::vector<std::string> roles;               // empty: any authenticated caller
  CommandHandler handler;
  std::vector<std::string> emits;  // informational
  std::string description;
};

/// An event type the plugin brings (joins the catalog at registration, so
/// the store accepts it).
struct EventTypeDecl {
  std::string type;
  std::string schema = R"({"type":"object"})";  // JSON Schema of `data`
  int version = 1;
  std::string description;
};

// ---------------------------------------------------------------------------
// Reactions: subscriptions that run in the plugin process.

/// What a reaction handler gets: the event, the transaction it runs in (if
/// any) and an append whose event ids derive from the event, so handling the
/// same event again appends nothing twice: command id
/// "react:<reaction>:<event id>", tenant and correlation id of the event,
/// causation id = the event id, actor "service:<plugin>".
class ReactionContext {
 public:
  ReactionContext(const events::Event& event, std::string_view plugin, std::string_view reaction,
                  StoreClient& store, pg::Transaction* transaction, SystemTime deadline);
  ReactionContext(const ReactionContext&) = delete;
  ReactionContext& operator=(const ReactionContext&) = delete;

  const events::Event& event() const noexcept { return event_; }
  /// Checkpointed: the transaction that also writes the checkpoint (effects on
  /// the target database commit with it, exactly once). Push with a pool: the
  /// transaction that records the event id (deduplicated). Otherwise null.
  pg::Transaction* transaction() const noexcept { return transaction_; }
  /// For execute() (aggregate.hpp) and appends.
  CommandContext& commands() noexcept { return context_; }
  AppendOutcome append(std::string_view stream, events::ExpectedVersion expected,
                       const std::vector<NewEvent>& events) {
    return context_.append(stream, expected, events);
  }

 private:
  const events::Event& event_;
  pg::Transaction* transaction_;
  Request request_;
  CommandContext context_;  // after request_: refers to it
};

/// Throwing fails the event: a checkpointed reaction retries its page with
/// backoff and then parks (or skips and records, as declared); a push
/// reaction goes through the broker's retry queues, then parks.
using ReactionHandler = std::function<void(ReactionContext&)>;

enum class ReactionKind {
  /// events::CheckpointedSubscription "<plugin>.<name>": ordered per stream,
  /// exactly-once effect on the target database, one active owner per
  /// partition across replicas. For anything order-sensitive (sagas).
  checkpointed,
  /// events::PushSubscription group "<plugin>.<name>": at-least-once,
  /// unordered, competing consumers across replicas.
  push,
};

struct Reaction {
  std::string name;  // [a-z0-9][a-z0-9_-]*; the subscription is "<plugin>.<name>"
  ReactionKind kind = ReactionKind::checkpointed;
  std::vector<std::string> event_types;  // exact types or patterns (`shop.order.*`)
  ReactionHandler handler;
  /// The store's database (events table). Checkpointed: required. Push:
  /// optional; with it deliveries are deduplicated (processed_events) and
  /// overflow is caught up from the store.
  std::shared_ptr<pg::Pool> store;
  /// Checkpointed: where the checkpoints and the transaction go; null: store.
  std::shared_ptr<pg::Pool> target;
  int partitions = 1;                                              // checkpointed
  events::FailurePolicy on_failure = events::FailurePolicy::park;  // checkpointed
  std::size_t workers = 4;                                         // push
};

/// A read model the plugin runs: a ProjectionRunner on these databases.
struct ProjectionDecl {
  std::shared_ptr<projections::Projection> projection;
  std::shared_ptr<pg::Pool> store;   // the events table
  std::shared_ptr<pg::Pool> target;  // its tables and checkpoints; null: store
  int partitions = 1;
};

/// An extra route of the process's admin HTTP server (next to /health,
/// /ready, /metrics); only with run().
struct AdminRoute {
  std::string method;
  std::string path;  // a template, like endpoints
  RequestHandler handler;
};

enum class TransportKind { amqp, http };

struct Transport {
  TransportKind kind = TransportKind::amqp;
  // http only:
  std::string host = "127.0.0.1";  // listen address
  int port = 0;                    // 0: any free port
  std::string advertise_host;      // host in the registered base_url; empty: host
  int threads = 64;                // worker threads (each keep-alive connection holds one)
  /// An idle keep-alive connection is closed after this long; it also
  /// bounds how long a drain waits for idle connections to go.
  std::chrono::seconds keep_alive{5};
};

struct Plugin {
  std::string name;         // [a-z0-9][a-z0-9_-]*, at most 63
  std::string version;      // e.g. "1.4.2"
  std::string instance_id;  // empty: a fresh UUID
  Transport transport;
  std::vector<Endpoint> endpoints;
  std::vector<Command> commands;
  std::vector<EventTypeDecl> event_types;
  std::vector<ProjectionDecl> projections;
  std::vector<Reaction> reactions;  // listed in the registration's `subscriptions`
  std::vector<AdminRoute> admin_routes;
  std::string metadata = "{}";  // JSON object registered as metadata
  /// Called first when the plugin stops (before draining).
  std::vector<std::function<void()>> on_stop;
  /// Called at the end of start() (registration is under way, so the
  /// plugin's event types may not be accepted by the store yet) with the
  /// store client, e.g. to seed streams from a background thread. Must not
  /// block; stop such work in an on_stop hook.
  std::vector<std::function<void(std::shared_ptr<StoreClient>)>> on_start;

  Plugin& get(std::string path, RequestHandler handler, std::vector<std::string> roles = {});
  Plugin& post(std::string path, RequestHandler handler, std::vector<std::string> roles = {});
  Plugin& endpoint(Endpoint endpoint);
  Plugin& command(std::string command_name, std::string schema, CommandHandler handler,
                  std::vector<std::string> roles = {});
  Plugin& event_type(std::string type, std::string schema);
  /// A checkpointed reaction on the store's database `store`.
  Plugin& react(std::string reaction_name, std::vector<std::string> types,
                std::shared_ptr<pg::Pool> store, ReactionHandler handler, int partitions = 1);
};

// ---------------------------------------------------------------------------
// Running a plugin.

struct Options {
  std::string rabbitmq_url;
  std::chrono::milliseconds heartbeat_interval{2000};
  /// AMQP transport: handler threads and requests taken but not yet answered.
  std::size_t rpc_workers = 16;
  std::uint16_t rpc_prefetch = 32;
  /// Deadline of a request that carries none.
  std::chrono::milliseconds default_deadline{30000};
  /// Deadline of each registration / deregistration append attempt.
  std::chrono::milliseconds store_timeout{5000};
  /// How long registration keeps retrying before the plugin reports failed
  /// health (it keeps retrying after that too).
  std::chrono::milliseconds register_patience{60000};
  /// Deadline of the appends of one reaction to one event.
  std::chrono::milliseconds reaction_deadline{30000};
  /// Where command appends go; null: `store.append` over RPC (tests pass a fake).
  std::shared_ptr<StoreClient> store_client;
  /// Broker users whose events push reactions handle (protocol §10.1,
  /// §11.6): the store's (it alone publishes sb.events) and the edge's
  /// (replays, requeued parked messages); the login user of rabbitmq_url is
  /// added (see push_trusted_publishers). Anything else is parked unhandled.
  /// Empty: no check at all (not recommended).
  std::vector<std::string> trusted_publishers{broker::platform_user(broker::PlatformService::store),
                                              broker::platform_user(broker::PlatformService::edge)};
};

/// What push reactions get as events::PushSubscriptionOptions::
/// trusted_publishers: `options.trusted_publishers` plus the user
/// `options.rabbitmq_url` logs in as (percent-decoded; "guest" when the URL
/// names none, as rabbitmq-c does), so messages this process moved to its own
/// retry queues, and in a test harness where every process shares one user,
/// everything, pass. Empty when `options.trusted_publishers` is (check off).
std::vector<std::string> push_trusted_publishers(const Options& options);

struct Stats {
  std::uint64_t requests = 0;  // routed requests answered
  std::uint64_t commands = 0;  // commands answered
  std::uint64_t registrations = 0;
  std::uint64_t heartbeats = 0;
  std::int64_t in_flight = 0;
};

/// The running plugin: a Component that starts its projections, serves its
/// transport, registers and heartbeats; stop() drains, deregisters and
/// stops heartbeating.
class PluginHost : public app::Component {
 public:
  /// Throws std::invalid_argument for an invalid declaration.
  PluginHost(Plugin plugin, Options options);
  ~PluginHost() override;
  PluginHost(const PluginHost&) = delete;
  PluginHost& operator=(const PluginHost&) = delete;

  std::string_view name() const override { return "plugin"; }
  void start() override;
  void stop(Deadline deadline) noexcept override;
  app::Health health() const override;

  const std::string& instance_id() const;
  /// http transport: the registered base URL and port (after start()).
  std::string base_url() const;
  int http_port() const;
  /// Position of the last registration appended (0: none yet).
  std::int64_t registration_position() const;
  bool wait_registered(std::chrono::milliseconds timeout) const;
  Stats stats() const;

  /// Handles a request or command as the transports do (tests, other
  /// transports).
  Response handle(Request request) const;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

/// Process-level keys besides app::common_schema: http.host, http.port
/// (admin HTTP), plugin.transport ("" = as declared, amqp, http),
/// plugin.http_host, plugin.http_port, plugin.advertise_host,
/// plugin.http_threads, plugin.rpc_workers, plugin.heartbeat_interval,
/// plugin.instance_id, rabbitmq.store_user and rabbitmq.edge_user (the
/// trusted publishers of push reactions; both empty: no check).
config::Schema config_schema(std::string_view service);
Options options_from_config(const config::Config& cfg);
/// A pool on postgres.url (throws config::Error when it is not set).
std::shared_ptr<pg::Pool> database(const config::Config& cfg, std::size_t max_size = 8);
/// The same, sized for checkpointed reactions over `partitions` partitions:
/// a reaction's page holds a connection while its handler loads a stream on
/// another, so two per partition, plus eight for the endpoints.
std::shared_ptr<pg::Pool> reaction_database(const config::Config& cfg, std::int64_t partitions);

using BuildFn = std::function<Plugin(const config::Config&)>;

/// The whole process: config (`extra_keys` merged into config_schema),
/// logging, admin HTTP, the plugin; returns on SIGTERM/SIGINT after
/// draining (exit code 0), 2 on bad config, 1 when start-up failed.
int run(std::string_view service, const config::Schema& extra_keys, const BuildFn& build, int argc,
        const char* const* argv);
/// The same for a plugin that needs no config of its own.
int run(Plugin plugin, int argc, const char* const* argv);

}  // namespace sb::sdk
