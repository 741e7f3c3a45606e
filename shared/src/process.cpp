#include "switchboard/shared/process.hpp"

#include <hiredis/hiredis.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fcntl.h>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <pqxx/pqxx>

#include "switchboard/shared/log.hpp"

namespace sb::app {
namespace {

struct HostPort {
  std::string host;
  std::string port;
  std::string password;
};

// scheme://[user][:password]@host:port/...  (enough for the probes)
HostPort parse_authority(const std::string& url, const std::string& default_port) {
  HostPort hp;
  auto start = url.find("://");
  start = start == std::string::npos ? 0 : start + 3;
  auto end = url.find('/', start);
  std::string auth = url.substr(start, end == std::string::npos ? std::string::npos : end - start);
  if (auto at = auth.rfind('@'); at != std::string::npos) {
    std::string cred = auth.substr(0, at);
    if (auto colon = cred.find(':'); colon != std::string::npos)
      hp.password = cred.substr(colon + 1);
    auth = auth.substr(at + 1);
  }
  if (auto colon = auth.rfind(':'); colon != std::string::npos) {
    hp.host = auth.substr(0, colon);
    hp.port = auth.substr(colon + 1);
  } else {
    hp.host = auth;
    hp.port = default_port;
  }
  return hp;
}

Health tcp_probe(const HostPort& hp, int timeout_ms) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(hp.host.c_str(), hp.port.c_str(), &hints, &res); rc != 0) {
    return {HealthState::failed, std::string("resolve: ") + gai_strerror(rc)};
  }
  int fd = ::socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK, res->ai_protocol);
  Health h{HealthState::failed, "connect failed"};
  if (fd >= 0) {
    int rc = ::connect(fd, res->ai_addr, res->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      rc = ::poll(&p, 1, timeout_ms) == 1 ? 0 : -1;
      int err = 0;
      socklen_t len = sizeof err;
      if (rc == 0 && (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0)) rc = -1;
      if (rc != 0) h.detail = err != 0 ? std::strerror(err) : "connect timed out";
    }
    if (rc == 0) h = {HealthState::ok, ""};
    ::close(fd);
  }
  freeaddrinfo(res);
  return h;
}

Health postgres_probe(const std::string& url) {
  try {
    std::string conn = url + (url.find('?') == std::string::npos ? "?" : "&") + "connect_timeout=2";
    pqxx::connection c(conn);
    pqxx::nontransaction tx(c);
    tx.exec("SET statement_timeout = 2000");
    tx.exec("SELECT 1");
    return {};
  } catch (const std::exception& e) {
    return {HealthState::failed, e.what()};
  }
}

Health redis_probe(const std::string& url) {
  auto hp = parse_authority(url, "6379");
  timeval tv{2, 0};
  redisContext* c = redisConnectWithTimeout(hp.host.c_str(), std::stoi(hp.port), tv);
  if (c == nullptr) return {HealthState::failed, "cannot allocate redis context"};
  Health h;
  if (c->err != 0) {
    h = {HealthState::failed, c->errstr};
  } else {
    redisSetTimeout(c, tv);
    if (!hp.password.empty()) {
      auto* r = static_cast<redisReply*>(redisCommand(c, "AUTH %s", hp.password.c_str()));
      if (r == nullptr || r->type == REDIS_REPLY_ERROR) h = {HealthState::failed, "AUTH failed"};
      if (r != nullptr) freeReplyObject(r);
    }
    if (h.state == HealthState::ok) {
      auto* r = static_cast<redisReply*>(redisCommand(c, "PING"));
      if (r == nullptr || r->type != REDIS_REPLY_STATUS) {
        h = {HealthState::failed, r == nullptr ? c->errstr : "unexpected PING reply"};
      }
      if (r != nullptr) freeReplyObject(r);
    }
  }
  redisFree(c);
  return h;
}

}  // namespace

config::Schema common_schema(std::string_view service) {
  config::Schema s;
  s.optional("log.level", config::Type::string, "info", "trace|debug|info|warn|error")
      .optional("log.json", config::Type::boolean, "true", "JSON lines (false: plain text)")
      .optional("log.file", config::Type::string, "", "log file (empty: stderr)")
      .optional("drain_timeout", config::Type::duration, "10s",
                "how long SIGTERM waits for in-flight work")
      .optional("mode", config::Type::string, "development", "development | production")
      .optional("instance", config::Type::string, "", "instance id (empty: random)")
      .optional("service_name", config::Type::string, std::string(service), "service name in logs")
      .add({"postgres.url", config::Type::string, false, std::nullopt, "PostgreSQL URL", true})
      .add({"redis.url", config::Type::string, false, std::nullopt, "Redis URL", true})
      .add({"rabbitmq.url", config::Type::string, false, std::nullopt, "RabbitMQ URL", true});
  return s;
}

std::vector<Probe> dependency_probes(const config::Config& cfg) {
  std::vector<Probe> probes;
  if (cfg.has("postgres.url")) {
    probes.push_back(
        {"postgres", [url = cfg.get_string("postgres.url")] { return postgres_probe(url); }});
  }
  if (cfg.has("redis.url")) {
    probes.push_back({"redis", [url = cfg.get_string("redis.url")] { return redis_probe(url); }});
  }
  if (cfg.has("rabbitmq.url")) {
    probes.push_back({"rabbitmq", [hp = parse_authority(cfg.get_string("rabbitmq.url"), "5672")] {
                        return tcp_probe(hp, 2000);
                      }});
  }
  return probes;
}

int run_process(std::string_view service, const config::Schema& schema, int argc,
                const char* const* argv, const BuildFn& build) {
  // Before any thread exists: SIGTERM/SIGINT are taken by Lifecycle::run().
  block_termination_signals();
  config::Config cfg;
  try {
    cfg = config::Config::load_for_process(schema, argc, argv);
    if (cfg.get_string("mode") != "development" && cfg.get_string("mode") != "production") {
      throw config::Error("mode", "must be development or production");
    }
    log::init({.service = cfg.get_string("service_name"),
               .instance = cfg.get_string("instance"),
               .level = log::parse_level(cfg.get_string("log.level")),
               .json = cfg.get_bool("log.json"),
               .file = cfg.get_string("log.file")});
  } catch (const std::exception& e) {
    std::cerr << "sb-" << service << ": " << e.what() << "\n";
    return 2;
  }
  Lifecycle lifecycle(cfg.get_duration("drain_timeout"));
  try {
    build(lifecycle, cfg);
  } catch (const std::exception& e) {
    log::critical("cannot build components", {{"error", e.what()}});
    return 1;
  }
  log::info("starting", {{"mode", cfg.get_string("mode")}});
  return lifecycle.run();
}

}  // namespace sb::app
