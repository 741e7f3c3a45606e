#pragma once
// Runs the real sb-store binary for end-to-end tests.

#include <signal.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "switchboard/broker/rpc.hpp"
#include "switchboard/shared/json.hpp"
#include "switchboard/testing/process.hpp"

namespace sb::testing {

class StoreProcess {
 public:
  StoreProcess(std::string db, std::string amqp) : db_(std::move(db)), amqp_(std::move(amqp)) {
    start();
  }
  void start() {
    child_ = std::make_unique<ChildProcess>(
        built_binary("services/store/sb-store"), std::vector<std::string>{},
        std::map<std::string, std::string>{{"SB_POSTGRES_URL", db_},
                                           {"SB_RABBITMQ_URL", amqp_},
                                           {"SB_STORE_CATALOG_TEST_TYPES", "true"},
                                           {"SB_HTTP_PORT", "0"},
                                           {"SB_LOG_LEVEL", "warn"},
                                           {"SB_CONFIG", ""}});
  }
  void kill() {
    child_->signal(SIGKILL);
    child_->wait(std::chrono::seconds(10));
  }
  ChildProcess& child() { return *child_; }

 private:
  std::string db_;
  std::string amqp_;
  std::unique_ptr<ChildProcess> child_;
};

/// Calls a store RPC and parses the reply. As docs/protocol.md tells
/// clients: no route (no store serving yet) and a timeout (outcome unknown)
/// are retried with the same body, so the same event ids — safe, because
/// appends are idempotent by id. Bounded: about 60 s in all.
inline rapidjson::Document call_store(broker::RpcClient& rpc, const std::string& service,
                                      const std::string& body) {
  broker::Message m;
  m.body = body;
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  std::string last;
  while (std::chrono::steady_clock::now() < until) {
    try {
      return json::parse(rpc.call(service, m, std::chrono::seconds(5)).get().body);
    } catch (const broker::RpcError& e) {
      if (e.code() != broker::RpcErrorCode::no_route && e.code() != broker::RpcErrorCode::timeout) {
        throw;
      }
      last = e.what();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  throw std::runtime_error("no store answered " + service + ": " + last);
}

/// The error code of a store reply, "" when it succeeded.
inline std::string error_code(const rapidjson::Value& reply) {
  return reply.HasMember("error") ? std::string(reply["error"]["code"].GetString()) : std::string();
}

}  // namespace sb::testing
