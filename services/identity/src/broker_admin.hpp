#pragma once
// Creating a plugin's RabbitMQ user through the management HTTP API
// (docs/protocol.md 11.6). cpp-httplib stays in broker_admin.cpp.

#include <chrono>
#include <string>

#include "switchboard/broker/permissions.hpp"

namespace sb::identity {

struct BrokerAdminOptions {
  std::string management_url;  // http://host:port
  std::string user;
  std::string password;
  std::chrono::milliseconds timeout{5000};  // connect, read and write, each call
};

struct BrokerAdminResult {
  bool ok = false;
  std::string message;  // on failure: which call and what it answered
};

/// PUT /api/users/<user> (password, no tags),
/// PUT /api/permissions/<vhost>/<user> with the three regexes of
/// `permissions`, and PUT /api/topic-permissions/<vhost>/<user> for each of
/// its topic permissions. Idempotent: a second call sets a new password and
/// the same permissions.
BrokerAdminResult put_plugin_user(const BrokerAdminOptions& options, const std::string& user,
                                  const std::string& password, const std::string& vhost,
                                  const broker::Permissions& permissions);

}  // namespace sb::identity
