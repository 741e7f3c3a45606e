#include "switchboard/registry/service.hpp"

#include "switchboard/registry/registry.hpp"
#include "switchboard/shared/log.hpp"
#include "switchboard/shared/process.hpp"

namespace sb::registry {

config::Schema config_schema() {
  auto s = app::common_schema("registry");
  s.optional("http.host", config::Type::string, "127.0.0.1", "admin HTTP address")
      .optional("http.port", config::Type::integer, "0", "admin HTTP port (0: any free port)")
      .optional("registry.store_postgres_url", config::Type::string, "",
                "database of the events table (empty: postgres.url)")
      .optional("registry.replica", config::Type::string, "",
                "replica name for queues and connections (empty: the log instance id)")
      .optional("registry.default_ttl", config::Type::duration, "6s",
                "TTL of instances that state no heartbeat interval (3 x 2 s)")
      .optional("registry.flush_interval", config::Type::duration, "500ms",
                "how often last-seen times are written")
      .optional("registry.sweep_interval", config::Type::duration, "250ms",
                "how often the sweeper looks for silent instances")
      .optional("registry.sweeper_lock_key", config::Type::integer, "96301183",
                "advisory lock of the one active sweeper")
      .optional("registry.rpc_workers", config::Type::integer, "4", "RPC handler threads");
  return s;
}

void build(app::Lifecycle& lifecycle, const config::Config& cfg) {
  if (!cfg.has("postgres.url")) throw config::Error("postgres.url", "required by the registry");
  if (!cfg.has("rabbitmq.url")) throw config::Error("rabbitmq.url", "required by the registry");
  RegistryOptions o;
  o.database.url = cfg.get_string("postgres.url");
  o.database.application_name = "sb-registry";
  o.store_database.url = cfg.get_string("registry.store_postgres_url");
  o.broker.url = cfg.get_string("rabbitmq.url");
  o.broker.heartbeat = std::chrono::seconds(5);
  o.broker.reconnect_max = std::chrono::milliseconds(1000);
  o.replica = cfg.get_string("registry.replica");
  if (o.replica.empty()) o.replica = log::instance_id();
  o.default_ttl = cfg.get_duration("registry.default_ttl");
  o.flush_interval = cfg.get_duration("registry.flush_interval");
  o.sweep_interval = cfg.get_duration("registry.sweep_interval");
  o.sweeper_lock_key = cfg.get_int("registry.sweeper_lock_key");
  o.rpc_workers = static_cast<std::size_t>(cfg.get_int("registry.rpc_workers"));

  app::AdminOptions http;
  http.host = cfg.get_string("http.host");
  http.port = static_cast<int>(cfg.get_int("http.port"));
  lifecycle.emplace<app::AdminServer>(http, lifecycle, app::dependency_probes(cfg));
  lifecycle.emplace<Registry>(std::move(o));
}

int main(int argc, const char* const* argv) {
  return app::run_process("registry", config_schema(), argc, argv, build);
}

}  // namespace sb::registry
