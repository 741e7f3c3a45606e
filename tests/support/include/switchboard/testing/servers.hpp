#pragma once
// Access to the real RabbitMQ, PostgreSQL and Redis that the test harness
// (scripts/test-servers.sh, a ctest fixture) started for this test run, plus
// helpers that keep tests independent of each other's data: every test gets
// its own database and its own RabbitMQ vhost.

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace sb::testing {

struct Servers {
  std::string dir;                // the harness's temp folder
  std::string rabbitmq_url;       // amqp://user:pass@127.0.0.1:port/
  std::string rabbitmq_mgmt_url;  // http://127.0.0.1:port
  std::string rabbitmq_user;
  std::string rabbitmq_password;
  std::string postgres_url;  // postgresql://user:pass@127.0.0.1:port/switchboard
  std::string redis_url;     // redis://:pass@127.0.0.1:port/0

  /// Server control for failure tests (tests that use these are SERIAL).
  /// name: "rabbitmq", "postgres" or "redis". Each blocks until done.
  void start(std::string_view name) const;
  void stop(std::string_view name) const;
  void restart(std::string_view name) const;
  void freeze(std::string_view name) const;  // SIGSTOP
  void thaw(std::string_view name) const;    // SIGCONT
};

/// The servers of this run. Throws std::runtime_error when the test was not
/// started by ctest with the sb_servers fixture.
const Servers& servers();

/// prefix + "_" + 12 random hex digits.
std::string unique_name(std::string_view prefix);

/// Creates an empty PostgreSQL database; returns its URL.
std::string fresh_database(std::string_view prefix = "t");

/// Creates an empty RabbitMQ vhost (full permissions for the harness user);
/// returns an amqp:// URL that selects it.
std::string fresh_vhost(std::string_view prefix = "t");

/// Topic permissions on one topic exchange (routing-key regexes).
struct BrokerTopicPermission {
  std::string exchange;
  std::string write;
  std::string read;
};

/// Creates (or resets) the RabbitMQ user `user` with a random password and
/// exactly these permissions (regexes) on the vhost of `vhost_url` (a URL
/// from fresh_vhost), through the management API; returns an amqp:// URL that
/// logs in as that user on that vhost. Users are global to the broker: use a
/// name of your own (unique_name) unless the test needs a fixed one.
std::string broker_user(std::string_view vhost_url, std::string_view user,
                        std::string_view configure, std::string_view write, std::string_view read,
                        const std::vector<BrokerTopicPermission>& topics = {});

/// Polls pred every `poll` until it is true or the deadline passes; returns
/// whether it became true. The way to wait in tests: never sleep-and-hope.
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds deadline,
                std::chrono::milliseconds poll = std::chrono::milliseconds(10));

/// Runs a shell command; returns its exit status (throws if it cannot run).
int run_command(const std::string& command);

}  // namespace sb::testing
