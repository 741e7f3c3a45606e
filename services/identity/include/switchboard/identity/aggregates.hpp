#pragma once
// The identity aggregates, the Eventuous way: a state struct, a pure fold
// (`apply`) and decide functions that check invariants and emit events. No
// I/O: password hashing, randomness and the clock are the caller's, passed
// in. Handlers run them through sdk::execute (plugin.cpp).
//
// Tenant isolation: handlers fold through in_tenant(), which skips events of
// another tenant, so a stream of another tenant folds to a state that does
// not exist (404 to the caller).

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "switchboard/events/envelope.hpp"
#include "switchboard/sdk/aggregate.hpp"

namespace sb::identity {

/// JSON of a list of strings.
std::string json_strings(const std::vector<std::string>& items);

/// A fold that applies only the events of `tenant`.
template <class State>
auto in_tenant(std::string tenant) {
  return [tenant = std::move(tenant)](State& state, const events::Event& event) {
    if (event.tenant.value() == tenant) apply(state, event);
  };
}

// ---------------------------------------------------------------- tenant

struct Tenant {
  bool exists = false;
  std::string tenant;
  std::string name;
  std::vector<std::string> services;  // ["*"] = every service
  std::vector<std::string> disabled;
  bool suspended = false;
};
void apply(Tenant& state, const events::Event& event);

sdk::Decision create_tenant(const Tenant& state, std::string_view name,
                            const std::vector<std::string>& services);
sdk::Decision enable_service(const Tenant& state, std::string_view service);
sdk::Decision disable_service(const Tenant& state, std::string_view service);
sdk::Decision suspend_tenant(const Tenant& state, std::string_view reason);
sdk::Decision reinstate_tenant(const Tenant& state, std::string_view reason);

// ---------------------------------------------------------------- user

struct User {
  bool exists = false;
  std::string tenant;
  std::string user_id;
  std::string username;
  std::string email;
  std::vector<std::string> roles;
  std::string password_hash;  // empty while invited
  bool invited = false;       // invitation not accepted yet
  bool active = true;
  std::int64_t security_version = 0;
  std::string registered_event_id;  // an invitation token is bound to it
  std::int64_t registered_at_epoch_s = 0;
};
void apply(User& state, const events::Event& event);

struct NewUser {
  std::string user_id;
  std::string username;  // as given (compared lower-cased)
  std::string email;
  std::vector<std::string> roles;
  std::string password_hash;  // empty: an invitation
};
/// 409 username_taken when the user exists.
sdk::Decision register_user(const User& state, const NewUser& user);
/// 401 invalid_invitation unless the user is an open invitation, the token
/// matches (`token_ok`) and it is younger than 7 days.
sdk::Decision accept_invitation(const User& state, bool token_ok, std::int64_t now_epoch_s,
                                std::string_view password_hash);
sdk::Decision change_roles(const User& state, const std::vector<std::string>& roles);
/// 401 invalid_credentials when `current_ok(state.password_hash)` is false.
sdk::Decision change_password(const User& state,
                              const std::function<bool(std::string_view hash)>& current_ok,
                              std::string_view new_hash);
sdk::Decision deactivate_user(const User& state);
sdk::Decision reactivate_user(const User& state);

// ---------------------------------------------------------------- role

struct Role {
  bool exists = false;
  std::string role;
  std::vector<std::string> permissions;
};
void apply(Role& state, const events::Event& event);

sdk::Decision define_role(const Role& state, std::string_view role,
                          const std::vector<std::string>& permissions);
sdk::Decision remove_role(const Role& state, std::string_view role);

// ---------------------------------------------------------------- API key

struct ApiKeyState {
  bool exists = false;
  std::string key_id;
  std::string prefix;
  std::string owner;
  bool revoked = false;
};
void apply(ApiKeyState& state, const events::Event& event);

struct NewApiKey {
  std::string key_id;
  std::string prefix;
  std::string key_hash;
  std::string name;
  std::string owner;
  std::vector<std::string> roles;
  std::vector<std::string> scopes;
  std::int64_t expires_at = 0;
};
sdk::Decision issue_api_key(const ApiKeyState& state, const NewApiKey& key);
sdk::Decision revoke_api_key(const ApiKeyState& state);

// ---------------------------------------------------------------- session

struct Session {
  bool exists = false;
  std::string tenant;
  std::string session_id;
  std::string user_id;
  std::string refresh_hash;                 // the current one
  std::vector<std::string> rotated_hashes;  // every earlier one
  std::int64_t expires_at = 0;
  bool revoked = false;
};
void apply(Session& state, const events::Event& event);

sdk::Decision start_session(const Session& state, std::string_view session_id,
                            std::string_view user_id, std::string_view refresh_hash,
                            std::int64_t expires_at);

/// What presenting a refresh token to a session comes to.
enum class RefreshVerdict { rotate, reuse, invalid };
RefreshVerdict judge_refresh(const Session& state, std::string_view presented_hash,
                             std::int64_t now_epoch_s);
/// rotate: identity.session.refreshed; reuse: identity.session.revoked
/// (reason reuse) — the caller answers 401 after appending it; invalid:
/// 401 invalid_refresh_token.
sdk::Decision refresh_session(const Session& state, std::string_view presented_hash,
                              std::string_view new_hash, std::int64_t now_epoch_s);
/// Logout by the session's owner with its current refresh token: revoked
/// (reason logout); nothing when already revoked; 401 otherwise.
sdk::Decision logout_session(const Session& state, std::string_view caller_user_id,
                             std::string_view presented_hash, std::int64_t now_epoch_s);

// ---------------------------------------------------------------- config

struct TenantConfig {
  std::map<std::string, std::string> values;  // key -> JSON text
};
void apply(TenantConfig& state, const events::Event& event);

/// `value_json` is compact JSON; nothing when already that value.
sdk::Decision set_config(const TenantConfig& state, std::string_view key,
                         std::string_view value_json);
sdk::Decision unset_config(const TenantConfig& state, std::string_view key);
/// `[A-Za-z0-9_.-]{1,128}`.
bool valid_config_key(std::string_view key);

}  // namespace sb::identity
