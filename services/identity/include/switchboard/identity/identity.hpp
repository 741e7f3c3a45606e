#pragma once
// The identity service (docs/protocol.md section 11) as an SDK plugin:
// tenants, users, roles, API keys, sessions and tenant config as
// event-sourced aggregates, their read model, login/refresh/logout, and the
// bootstrap of the platform's super admin. `sb-identity`'s main is
// `sdk::run("identity", extra_keys(), make_plugin, argc, argv)`.

#include <chrono>
#include <cstdint>
#include <string>

#include "switchboard/sdk/sdk.hpp"
#include "switchboard/shared/auth.hpp"
#include "switchboard/shared/config.hpp"

namespace sb::identity {

/// The settings the service runs with, checked: production mode refuses a
/// password cost under OWASP's minimum and a bootstrap password under 12
/// bytes; every mode refuses a missing or short auth.jwt_secret.
struct Settings {
  bool production = false;
  auth::JwtOptions jwt;
  auth::PasswordCost password_cost;
  std::string bootstrap_username;
  std::string bootstrap_password;
  std::size_t verify_slots = 4;
  std::chrono::milliseconds verify_wait{250};
  std::string redis_url;  // empty: no failed-login counting
  std::int64_t user_failure_limit = 5;
  std::int64_t address_failure_limit = 20;
  std::chrono::seconds failure_window{15 * 60};
  std::string rabbitmq_url;
  std::string management_url;
  std::string management_user;
  std::string management_password;
};

/// The service's own config keys (identity.*, auth.*, rabbitmq.management_*).
config::Schema extra_keys();
/// Throws config::Error naming the offending key.
Settings settings_from_config(const config::Config& cfg);
sdk::Plugin make_plugin(const config::Config& cfg);

}  // namespace sb::identity
