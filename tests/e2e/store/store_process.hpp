#pragma once
// Runs the real sb-store binary for end-to-end tests.

#include <signal.h>

#include <memory>
#include <string>

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

}  // namespace sb::testing
