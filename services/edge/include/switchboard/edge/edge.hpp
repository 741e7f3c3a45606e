#pragma once
// The edge process: the platform's only HTTP entry (DESIGN.md "Edge",
// docs/protocol.md section 9). One HTTP server (cpp-httplib, tuned: no
// Nagle, a bounded worker pool that answers 503 instead of queueing without
// end, long keep-alive) in front of the Gateway; the route table and the
// catalog are pushed from the registry (RouteSource).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "switchboard/broker/options.hpp"
#include "switchboard/edge/gateway.hpp"
#include "switchboard/edge/identity_feed.hpp"
#include "switchboard/edge/route_source.hpp"
#include "switchboard/edge/upstream.hpp"
#include "switchboard/shared/admin_server.hpp"
#include "switchboard/shared/auth.hpp"
#include "switchboard/shared/config.hpp"
#include "switchboard/shared/lifecycle.hpp"
#include "switchboard/shared/pg.hpp"

namespace sb::edge {

struct EdgeOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port
  /// Event loops serving connections (each its own thread and listener).
  int loops = 2;
  /// Open client connections at once; beyond it new ones get 503.
  std::size_t max_connections = 10000;
  /// Workers for requests that wait on I/O (commands, events API, ...).
  int threads = 128;
  /// Such requests waiting for a worker; beyond it they get 503.
  std::size_t accept_queue = 256;
  std::chrono::seconds keep_alive{30};
  std::chrono::seconds read_timeout{10};
  /// Proxies whose X-Forwarded-For is believed (filters.hpp client_address):
  /// addresses or IPv4 CIDR blocks. Empty: the socket's peer is the client.
  std::vector<std::string> trusted_proxies;
  GatewayOptions gateway;
  auth::JwtOptions jwt;
  broker::ConnectionOptions broker;
  std::size_t rpc_connections = 1;
  std::size_t rpc_max_in_flight = 4096;
  std::string redis_url;
  RouteSourceOptions routes;
  UpstreamOptions upstream;
  /// The events table (read-only role), for /api/v1/events and friends;
  /// empty url: those answer 503.
  pg::ConnectOptions events_database;
  std::size_t events_pool_size = 8;
  SseOptions sse;
  /// How the identity view follows the store (with events_database only).
  IdentityFeedOptions identity;
  std::vector<app::Probe> probes;
};

class Edge : public app::Component {
 public:
  Edge(EdgeOptions options, const app::Lifecycle& lifecycle);
  ~Edge() override;
  std::string_view name() const override { return "edge-http"; }
  void start() override;
  void stop(Deadline deadline) noexcept override;
  app::Health health() const override;
  /// The bound port (after start()).
  int port() const noexcept;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

/// Every key the edge understands (unknown keys are errors).
config::Schema config_schema();

/// Adds the edge's components to `lifecycle`, configured from `cfg`.
/// Refuses to start without a JWT signing key (there is no default).
void build(app::Lifecycle& lifecycle, const config::Config& cfg);

/// The whole process: config from argv/env, logging, components, run; or
/// `sb-edge token --sub S [--tenant T] [--roles a,b] [--ttl 3600]` to print
/// a token signed with the configured key (development and tests).
int main(int argc, const char* const* argv);

}  // namespace sb::edge
