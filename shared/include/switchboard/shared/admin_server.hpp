#pragma once
// The HTTP endpoints every process serves: /health (alive), /ready (started,
// not draining, every component and dependency probe healthy; 503 otherwise,
// with per-check detail) and /metrics (Prometheus text of the global
// registry). A Component: start() binds and serves on its own bounded thread
// pool; stop() stops accepting and finishes in-flight requests.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "switchboard/shared/lifecycle.hpp"

namespace sb::app {

struct AdminOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0: pick a free port (see AdminServer::port())
  int threads = 4;
};

/// A dependency check for /ready, e.g. "postgres" → SELECT 1 with a deadline.
struct Probe {
  std::string name;
  std::function<Health()> check;
};

/// The body of /ready ({"checks":{...},"ready":bool}); `ready` is set to
/// whether the lifecycle is ready and no probe failed. Probes run now.
std::string readiness_json(const Lifecycle& lifecycle, const std::vector<Probe>& probes,
                           bool& ready);

class AdminServer : public Component {
 public:
  AdminServer(AdminOptions options, const Lifecycle& lifecycle, std::vector<Probe> probes = {});
  ~AdminServer() override;
  std::string_view name() const override { return "admin-http"; }
  void start() override;
  void stop(Deadline deadline) noexcept override;
  Health health() const override;
  /// The bound port (after start()).
  int port() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sb::app
