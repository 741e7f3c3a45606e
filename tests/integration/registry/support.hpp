#pragma once
// Helpers of the registry tests: the real sb-store process, a registry in
// this process, and a fleet of simulated service instances that register
// through the store and heartbeat on sb.signals like the plugin SDK does.

#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "switchboard/broker/broker.hpp"
#include "switchboard/events/platform_types.hpp"
#include "switchboard/events/uuid.hpp"
#include "switchboard/registry/protocol.hpp"
#include "switchboard/registry/registry.hpp"
#include "switchboard/shared/json.hpp"
#include "switchboard/shared/pg.hpp"
#include "switchboard/testing/process.hpp"
#include "switchboard/testing/servers.hpp"

namespace sb::regtest {

using namespace std::chrono_literals;
namespace tst = sb::testing;
using registry::Registration;

inline std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline broker::ConnectionOptions amqp(const std::string& url, const std::string& name) {
  broker::ConnectionOptions o;
  o.url = url;
  o.name = name;
  o.heartbeat = std::chrono::seconds(2);
  o.connect_timeout = 2000ms;
  o.reconnect_min = 100ms;
  o.reconnect_max = 1000ms;
  return o;
}

/// The real store binary on the test's database and vhost.
class StoreProcess {
 public:
  StoreProcess(std::string db, std::string amqp_url) {
    child_ = std::make_unique<tst::ChildProcess>(
        tst::built_binary("services/store/sb-store"), std::vector<std::string>{},
        std::map<std::string, std::string>{{"SB_POSTGRES_URL", db},
                                           {"SB_RABBITMQ_URL", amqp_url},
                                           {"SB_HTTP_PORT", "0"},
                                           {"SB_LOG_LEVEL", "warn"},
                                           {"SB_CONFIG", ""}});
  }
  ~StoreProcess() {
    if (!child_->running()) {
      // Died under the test: say how (a signal shows as 128 + signal).
      const auto status = child_->wait(0ms);
      const auto out = child_->output();
      std::fprintf(stderr, "---- sb-store exited early (status %d); output tail ----\n%s\n----\n",
                   status ? *status : -1,
                   out.substr(out.size() > 6000 ? out.size() - 6000 : 0).c_str());
      return;
    }
    child_->signal(SIGTERM);
    if (!child_->wait(10s)) child_->signal(SIGKILL);
  }
  tst::ChildProcess& child() { return *child_; }

 private:
  std::unique_ptr<tst::ChildProcess> child_;
};

inline registry::RegistryOptions registry_options(const std::string& db, const std::string& vhost,
                                                  const std::string& replica) {
  registry::RegistryOptions o;
  o.database.url = db;
  o.broker = amqp(vhost, "registry");
  o.replica = replica;
  return o;
}

/// Simulated instances: register through store.append, heartbeat every
/// interval from one thread (spread over the interval), stop at will.
class Fleet {
 public:
  explicit Fleet(const std::string& vhost)
      : rpc_([&] {
          broker::RpcClientOptions o;
          o.connection = amqp(vhost, "fleet-rpc");
          return o;
        }()),
        pub_([&] {
          broker::PublisherOptions o;
          o.connection = amqp(vhost, "fleet-heartbeats");
          o.topology = broker::platform_topology();
          return o;
        }()) {}
  ~Fleet() {
    running_ = false;
    if (thread_.joinable()) thread_.join();
  }

  /// Appends the registration (retrying an unknown outcome with the same id)
  /// and starts heartbeating. Returns the store's reply.
  std::string add(const Registration& r, std::chrono::milliseconds interval = 2000ms) {
    const auto id = events::new_event_id().value();
    registry::AppendOne a{registry::instance_stream(r.instance_id),
                          std::string(registry::kPlatformTenant),
                          "any",
                          id,
                          std::string(events::kServiceInstanceRegistered),
                          registry::to_json(r)};
    std::string reply;
    for (int attempt = 0; attempt < 20; ++attempt) {
      try {
        broker::Message m;
        m.body = registry::append_request_json(a);
        reply = rpc_.call("store.append", m, 5s).get().body;
        break;
      } catch (const std::exception&) {
        std::this_thread::sleep_for(250ms);
      }
    }
    std::lock_guard lock(mu_);
    auto& i = instances_[r.instance_id];
    i.registration = r;
    i.interval = interval;
    i.running = true;
    i.next = std::chrono::steady_clock::now();
    if (!thread_.joinable()) thread_ = std::thread([this] { beat(); });
    return reply;
  }

  /// Appends a deregistration and stops heartbeating.
  void deregister(const std::string& instance_id) {
    stop(instance_id);
    Registration r;
    {
      std::lock_guard lock(mu_);
      r = instances_.at(instance_id).registration;
    }
    registry::AppendOne a{registry::instance_stream(instance_id),
                          std::string(registry::kPlatformTenant),
                          "any",
                          events::new_event_id().value(),
                          std::string(events::kServiceInstanceDeregistered),
                          registry::to_json(registry::Deregistration{r.name, instance_id, "test"})};
    broker::Message m;
    m.body = registry::append_request_json(a);
    rpc_.call("store.append", m, 5s).get();
  }

  /// Stops heartbeating without deregistering (a crash); returns the time
  /// of the last heartbeat sent (epoch ms).
  std::int64_t stop(const std::string& instance_id) {
    std::lock_guard lock(mu_);
    auto& i = instances_.at(instance_id);
    i.running = false;
    return i.last_sent;
  }
  std::int64_t last_sent(const std::string& instance_id) const {
    std::lock_guard lock(mu_);
    return instances_.at(instance_id).last_sent;
  }
  std::set<std::string> running() const {
    std::lock_guard lock(mu_);
    std::set<std::string> out;
    for (const auto& [id, i] : instances_) {
      if (i.running) out.insert(id);
    }
    return out;
  }
  /// A heartbeat from an instance that never registered.
  void heartbeat_unregistered(const std::string& name, const std::string& instance_id) {
    send({name, instance_id, "1", std::nullopt, std::nullopt});
  }

 private:
  struct Instance {
    Registration registration;
    std::chrono::milliseconds interval{2000};
    bool running = false;
    std::chrono::steady_clock::time_point next;
    std::int64_t last_sent = 0;
  };

  void send(const registry::Heartbeat& h) {
    broker::Message m;
    m.body = registry::to_json(h);
    m.persistent = false;
    broker::PublishOptions po;
    po.exchange = broker::kSignalsExchange;
    po.routing_key = std::string(registry::kHeartbeatKey);
    po.deadline = std::chrono::steady_clock::now() + 1500ms;
    pub_.publish(std::move(m), po, [](const broker::PublishOutcome&) {});
  }

  void beat() {
    while (running_) {
      std::vector<registry::Heartbeat> due;
      {
        std::lock_guard lock(mu_);
        const auto now = std::chrono::steady_clock::now();
        for (auto& [id, i] : instances_) {
          if (!i.running || i.next > now) continue;
          due.push_back({i.registration.name, id, i.registration.version, 0, std::nullopt});
          i.last_sent = now_ms();
          i.next += i.interval;
          if (i.next < now) i.next = now + i.interval;
        }
      }
      for (const auto& h : due) send(h);
      std::this_thread::sleep_for(20ms);
    }
  }

  broker::RpcClient rpc_;
  broker::Publisher pub_;
  mutable std::mutex mu_;
  std::map<std::string, Instance> instances_;
  std::atomic<bool> running_{true};
  std::thread thread_;
};

/// A registration of `service` with two endpoints.
inline Registration make_registration(const std::string& service, const std::string& version,
                                      const std::string& instance_id, bool http) {
  Registration r;
  r.name = service;
  r.version = version;
  r.instance_id = instance_id;
  if (http) r.transport = {registry::Transport::Kind::http, "http://127.0.0.1:9/" + instance_id};
  r.endpoints = {{"GET", "/" + service + "/{id}", {"user"}, false, registry::RateLimit{100, 20}},
                 {"POST", "/" + service, {}, true, std::nullopt}};
  r.subscriptions = {{service + "-group", "push", {"shop.thing.*"}}};
  r.metadata = R"({"test":true})";
  return r;
}

/// instance id -> (service, version) of every instance in the route table.
inline std::map<std::string, std::pair<std::string, std::string>> routed(
    const registry::RouteTable& t) {
  std::map<std::string, std::pair<std::string, std::string>> out;
  for (const auto& s : t.services) {
    for (const auto& v : s.versions) {
      for (const auto& i : v.instances) out[i.instance_id] = {s.name, v.version};
    }
  }
  return out;
}

inline std::set<std::string> routed_ids(const registry::RouteTable& t) {
  std::set<std::string> out;
  for (const auto& [id, sv] : routed(t)) out.insert(id);
  return out;
}

}  // namespace sb::regtest
