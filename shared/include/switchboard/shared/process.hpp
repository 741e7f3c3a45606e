#pragma once
// What every Switchboard process does the same way: common config keys
// (logging, drain timeout, dependency URLs, mode), dependency probes for
// /ready, and run_process(), which turns argv + environment into a running,
// signal-driven Lifecycle. A service's main() is one call to run_process.

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "switchboard/shared/admin_server.hpp"
#include "switchboard/shared/config.hpp"
#include "switchboard/shared/lifecycle.hpp"

namespace sb::app {

/// log.level, log.json, log.file, drain_timeout, mode (development |
/// production), and the optional dependency URLs postgres.url, redis.url,
/// rabbitmq.url.
config::Schema common_schema(std::string_view service);

/// One probe per configured dependency URL: postgres (connect + SELECT 1),
/// redis (AUTH + PING), rabbitmq (TCP connect to the AMQP port: the broker
/// library adds a protocol-level check). Each has a 2 s deadline.
std::vector<Probe> dependency_probes(const config::Config& cfg);

using BuildFn = std::function<void(Lifecycle&, const config::Config&)>;

/// Loads config (errors go to stderr, exit code 2), initialises logging,
/// builds the components and runs them until SIGTERM/SIGINT.
int run_process(std::string_view service, const config::Schema& schema, int argc,
                const char* const* argv, const BuildFn& build);

}  // namespace sb::app
