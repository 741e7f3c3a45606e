#pragma once
// What the edge does with one HTTP request, behind the HTTP server: the
// filter chain, commands, routed requests and the platform views. The HTTP
// server (edge.cpp) converts to and from HttpRequest/HttpResponse and calls
// handle() on one of its worker threads.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "switchboard/broker/options.hpp"
#include "switchboard/edge/admin_api.hpp"
#include "switchboard/edge/events_api.hpp"
#include "switchboard/edge/filters.hpp"
#include "switchboard/edge/http.hpp"
#include "switchboard/edge/idempotency.hpp"
#include "switchboard/edge/identity_view.hpp"
#include "switchboard/edge/rate_limit.hpp"
#include "switchboard/edge/router.hpp"
#include "switchboard/edge/sse.hpp"
#include "switchboard/edge/upstream.hpp"
#include "switchboard/shared/auth.hpp"
#include "switchboard/shared/lifecycle.hpp"

namespace sb::broker {
class RpcClient;
}

namespace sb::edge {

struct GatewayOptions {
  Limits limits;
  std::size_t max_in_flight = 1024;
  std::chrono::milliseconds command_timeout{10000};
  std::chrono::milliseconds request_timeout{30000};
  std::chrono::milliseconds max_timeout{60000};
  /// A command's service deadline is this much before the edge's own: an
  /// append that entered a commit just before it is still answered in time.
  std::chrono::milliseconds commit_margin{250};
  std::chrono::milliseconds idempotency_ttl{24 * 3600 * 1000};
  std::chrono::milliseconds status_ttl{24 * 3600 * 1000};
  /// Commands answered 202 (Prefer: respond-async) run on this many threads,
  /// with at most `async_queue` waiting.
  std::size_t async_workers = 4;
  std::size_t async_queue = 1024;
  /// The edge's default bucket per credential (`edge.rate_limit.*`; 0: off).
  RateLimitDefaults rate_limit;
  /// handle_async runs what may block (database reads, Redis, commands) on
  /// this many threads, with at most `blocking_queue` waiting (then 503).
  std::size_t blocking_workers = 128;
  std::size_t blocking_queue = 256;
};

/// The latest catalog the registry gave (docs/protocol.md 8.9).
class CatalogView;

class Gateway {
 public:
  struct Dependencies {
    std::shared_ptr<Router> router;
    std::shared_ptr<const auth::JwtVerifier> jwt;
    std::vector<std::shared_ptr<broker::RpcClient>> rpc;  // round-robin
    std::shared_ptr<Upstreams> upstreams;
    std::shared_ptr<IdempotencyStore> idempotency;
    std::shared_ptr<KeyValue> status;
    /// Events over HTTP; null when the edge has no database (503).
    std::shared_ptr<EventsApi> events;
    std::shared_ptr<SseHub> sse;
    /// Operator endpoints (subscriptions, parked messages, replays); null
    /// when the edge has no database (503).
    std::shared_ptr<AdminApi> admin;
    /// The catalog's JSON (Catalog::to_json) and its version; refreshed by
    /// the route source.
    std::function<std::shared_ptr<const CatalogView>()> catalog;
    /// What the edge knows of identity (docs/protocol.md 11.5). Null: an
    /// empty view, loaded (an edge without a database: no revocations, no
    /// API keys, no tenant policies, no custom roles).
    std::shared_ptr<const IdentityView> identity;
    /// Token buckets (null: no rate limits).
    std::shared_ptr<RateLimiter> rate_limiter;
    /// /ready's body and whether ready.
    std::function<std::string(bool& ready)> readiness;
    /// A non-blocking HTTP upstream call from the thread handle_async runs
    /// on (the edge's event loop): `done` runs later on that same thread.
    /// Null: handle_async hands requests to HTTP upstreams to the blocking pool.
    using AsyncUpstream = std::function<void(
        const std::string& instance_id, const std::string& base_url, HttpRequest request,
        std::chrono::steady_clock::time_point deadline, std::function<void(UpstreamResult)> done)>;
    AsyncUpstream async_upstream;
    /// The RPC client of the event loop handle_async runs on (null: none,
    /// or not on a loop): routed AMQP calls go through it, with no hop
    /// between threads. Blocking paths always use `rpc`.
    std::function<broker::RpcClient*()> loop_rpc;
  };

  Gateway(GatewayOptions options, Dependencies deps);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  /// Answers on the calling thread (it may block on I/O).
  HttpResponse handle(const HttpRequest& request);
  /// Answers through `done`, exactly once, from any thread; never blocks the
  /// caller. A routed request whose filters need no network call runs its
  /// filters here and is forwarded without waiting (AMQP through the RPC
  /// client's callback, HTTP through Dependencies::async_upstream);
  /// everything else runs handle() on the bounded blocking pool.
  void handle_async(HttpRequest request, std::function<void(HttpResponse)> done);
  /// Stops taking async commands and blocking work; waits for what runs.
  void drain();

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

/// The catalog as the edge validates commands against it.
class CatalogView {
 public:
  /// Parses Catalog::to_json(); throws sb::json::Error / events errors.
  static std::shared_ptr<const CatalogView> from_json(const std::string& json);
  CatalogView();
  ~CatalogView();

  struct Command {
    std::string name;
    std::string owner;
    std::vector<std::string> roles;
    std::string schema;  // JSON
  };
  /// `<service>.<command>`, else `<command>` when `service` owns it.
  const Command* find(const std::string& service, const std::string& command) const;
  /// Validates a parsed command body; throws HttpError 400 schema_violation.
  void validate(const Command& command, const std::string& body) const;
  std::uint64_t version() const noexcept { return version_; }
  const std::string& json() const noexcept { return json_; }
  const std::vector<Command>& commands() const noexcept { return commands_; }

  struct Impl;

 private:
  std::uint64_t version_ = 0;
  std::string json_ = R"({"version":0,"event_types":[],"command_types":[]})";
  std::vector<Command> commands_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sb::edge
