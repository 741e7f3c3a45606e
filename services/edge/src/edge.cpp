#include "switchboard/edge/edge.hpp"

#include <iostream>

#include "switchboard/shared/admin_server.hpp"
#include "switchboard/shared/log.hpp"
#include "switchboard/shared/process.hpp"

namespace sb::edge {

config::Schema config_schema() {
  config::Schema s = app::common_schema("edge");
  s.optional("http.host", config::Type::string, "127.0.0.1", "address the edge listens on")
      .optional("http.port", config::Type::integer, "8080", "port the edge listens on (0: any)")
      .optional("http.threads", config::Type::integer, "64", "HTTP worker threads (bounded)");
  return s;
}

void build(app::Lifecycle& lifecycle, const config::Config& cfg) {
  app::AdminOptions http;
  http.host = cfg.get_string("http.host");
  http.port = static_cast<int>(cfg.get_int("http.port"));
  http.threads = static_cast<int>(cfg.get_int("http.threads"));
  lifecycle.emplace<app::AdminServer>(http, lifecycle, app::dependency_probes(cfg));
}

int main(int argc, const char* const* argv) {
  return app::run_process("edge", config_schema(), argc, argv, build);
}

}  // namespace sb::edge
