#include "switchboard/shared/admin_server.hpp"

#include <httplib.h>

#include <atomic>
#include <stdexcept>
#include <thread>

#include "switchboard/shared/http_bind.hpp"
#include "switchboard/shared/json.hpp"
#include "switchboard/shared/log.hpp"
#include "switchboard/shared/metrics.hpp"

namespace sb::app {

std::string readiness_json(const Lifecycle& lifecycle, const std::vector<Probe>& probes,
                           bool& ready) {
  ready = lifecycle.ready();
  std::string body = "{\"checks\":{";
  bool first = true;
  auto add = [&](const std::string& name, const Health& h) {
    if (!first) body += ',';
    first = false;
    json::append_quoted(body, name);
    body += ":{\"state\":";
    json::append_quoted(body, to_string(h.state));
    if (!h.detail.empty()) {
      body += ",\"detail\":";
      json::append_quoted(body, h.detail);
    }
    body += '}';
  };
  for (const auto& [name, h] : lifecycle.health()) add(name, h);
  for (const auto& p : probes) {
    Health h;
    try {
      h = p.check();
    } catch (const std::exception& e) {
      h = {HealthState::failed, e.what()};
    }
    if (h.state == HealthState::failed) ready = false;
    add(p.name, h);
  }
  body += "},\"ready\":";
  body += ready ? "true}" : "false}";
  return body;
}

struct AdminServer::Impl {
  AdminOptions options;
  const Lifecycle& lifecycle;
  std::vector<Probe> probes;
  httplib::Server server;
  std::thread thread;
  std::atomic<int> port{0};
  std::atomic<bool> serving{false};

  Impl(AdminOptions o, const Lifecycle& lc, std::vector<Probe> p)
      : options(std::move(o)), lifecycle(lc), probes(std::move(p)) {}

  std::string ready_body(bool& ready) const { return readiness_json(lifecycle, probes, ready); }
};

AdminServer::AdminServer(AdminOptions options, const Lifecycle& lifecycle,
                         std::vector<Probe> probes)
    : impl_(std::make_unique<Impl>(std::move(options), lifecycle, std::move(probes))) {}

AdminServer::~AdminServer() {
  stop(Deadline::clock::now());
}

void AdminServer::start() {
  auto& s = impl_->server;
  auto threads = static_cast<std::size_t>(impl_->options.threads);
  s.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  s.set_tcp_nodelay(true);
  s.set_read_timeout(5, 0);
  s.set_write_timeout(5, 0);
  s.set_keep_alive_max_count(1000);
  s.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::string("{\"status\":\"") +
                        (impl_->lifecycle.running() ? "ok" : "stopping") +
                        "\",\"instance\":" + json::quoted(log::instance_id()) + "}",
                    "application/json");
  });
  s.Get("/ready", [this](const httplib::Request&, httplib::Response& res) {
    bool ready = false;
    auto body = impl_->ready_body(ready);
    res.status = ready ? 200 : 503;
    res.set_content(body, "application/json");
  });
  s.Get("/metrics", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics::Registry::global().render(), "text/plain; version=0.0.4");
  });
  const int port = http::bind_server(s, impl_->options.host, impl_->options.port, "admin http");
  impl_->port = port;
  impl_->serving = true;
  impl_->thread = std::thread([this] { impl_->server.listen_after_bind(); });
  log::info("http listening", {{"host", impl_->options.host}, {"port", port}});
}

void AdminServer::stop(Deadline) noexcept {
  if (!impl_ || !impl_->serving.exchange(false)) return;
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

Health AdminServer::health() const {
  return impl_->serving ? Health{} : Health{HealthState::stopping, "not serving"};
}

int AdminServer::port() const noexcept {
  return impl_->port;
}

}  // namespace sb::app
