// The identity aggregates (aggregates.hpp): folds and decisions, no I/O.
#include "switchboard/identity/aggregates.hpp"

#include <rapidjson/document.h>

#include <algorithm>
#include <cctype>

#include "switchboard/identity/model.hpp"
#include "switchboard/shared/auth.hpp"
#include "switchboard/shared/json.hpp"

namespace sb::identity {
namespace {

std::vector<std::string> strings(const rapidjson::Value& data, const char* key) {
  std::vector<std::string> out;
  const auto* v = json::find(data, key);
  if (v == nullptr || !v->IsArray()) return out;
  for (const auto& s : v->GetArray()) {
    if (s.IsString()) out.emplace_back(s.GetString(), s.GetStringLength());
  }
  return out;
}

std::string str(const rapidjson::Value& data, const char* key) {
  return json::optional_string(data, key).value_or("");
}

std::int64_t num(const rapidjson::Value& data, const char* key) {
  return json::optional_int64(data, key).value_or(0);
}

bool contains(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

sdk::NewEvent event(std::string_view type, std::string data) {
  sdk::NewEvent e;
  e.type = std::string(type);
  e.data = std::move(data);
  return e;
}

std::string policy_json(const std::vector<std::string>& services,
                        const std::vector<std::string>& disabled) {
  return "{\"services\":" + json_strings(services) + ",\"disabled\":" + json_strings(disabled) +
         "}";
}

sdk::Decision no_tenant() {
  return sdk::Decision::refuse(404, "not_found", "no such tenant");
}
sdk::Decision no_user() {
  return sdk::Decision::refuse(404, "not_found", "no such user");
}

std::string sv_json(std::int64_t v) {
  return "{\"security_version\":" + std::to_string(v) + "}";
}

}  // namespace

std::string json_strings(const std::vector<std::string>& items) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += ',';
    json::append_quoted(out, items[i]);
  }
  return out + "]";
}

// ---------------------------------------------------------------- tenant

void apply(Tenant& s, const events::Event& e) {
  const auto& d = e.data.value();
  const auto& type = e.type.value();
  if (type == kTenantCreated) {
    s.exists = true;
    s.tenant = e.tenant.value();
    s.name = str(d, "name");
    s.services = strings(d, "services");
    s.disabled = strings(d, "disabled");
  } else if (type == kTenantServicesChanged) {
    s.services = strings(d, "services");
    s.disabled = strings(d, "disabled");
  } else if (type == kTenantSuspended) {
    s.suspended = true;
  } else if (type == kTenantReinstated) {
    s.suspended = false;
  }
}

sdk::Decision create_tenant(const Tenant& s, std::string_view name,
                            const std::vector<std::string>& services) {
  if (s.exists) return sdk::Decision::refuse(409, "tenant_exists", "the tenant exists");
  std::vector<std::string> policy = services.empty() ? std::vector<std::string>{"*"} : services;
  return sdk::Decision::emit(
      {event(kTenantCreated, "{\"name\":" + json::quoted(name) +
                                 ",\"services\":" + json_strings(policy) + ",\"disabled\":[]}")});
}

sdk::Decision enable_service(const Tenant& s, std::string_view service) {
  if (!s.exists) return no_tenant();
  auto services = s.services;
  auto disabled = s.disabled;
  std::erase(disabled, std::string(service));
  if (!contains(services, "*") && !contains(services, service)) services.emplace_back(service);
  if (services == s.services && disabled == s.disabled) return sdk::Decision::none();
  return sdk::Decision::emit({event(kTenantServicesChanged, policy_json(services, disabled))});
}

sdk::Decision disable_service(const Tenant& s, std::string_view service) {
  if (!s.exists) return no_tenant();
  if (service == "identity") {
    return sdk::Decision::refuse(422, "identity_always_enabled",
                                 "the identity service cannot be disabled",
                                 "{\"field\":\"service\"}");
  }
  auto services = s.services;
  auto disabled = s.disabled;
  std::erase(services, std::string(service));
  if (!contains(disabled, service)) disabled.emplace_back(service);
  if (services == s.services && disabled == s.disabled) return sdk::Decision::none();
  return sdk::Decision::emit({event(kTenantServicesChanged, policy_json(services, disabled))});
}

sdk::Decision suspend_tenant(const Tenant& s, std::string_view reason) {
  if (!s.exists) return no_tenant();
  if (s.tenant == kPlatformTenant) {
    return sdk::Decision::refuse(422, "platform_tenant", "the platform tenant cannot be suspended");
  }
  if (s.suspended) return sdk::Decision::none();
  return sdk::Decision::emit(
      {event(kTenantSuspended, "{\"reason\":" + json::quoted(reason) + "}")});
}

sdk::Decision reinstate_tenant(const Tenant& s, std::string_view reason) {
  if (!s.exists) return no_tenant();
  if (!s.suspended) return sdk::Decision::none();
  return sdk::Decision::emit(
      {event(kTenantReinstated, "{\"reason\":" + json::quoted(reason) + "}")});
}

// ---------------------------------------------------------------- user

void apply(User& s, const events::Event& e) {
  const auto& d = e.data.value();
  const auto& type = e.type.value();
  if (type == kUserRegistered) {
    s.exists = true;
    s.tenant = e.tenant.value();
    s.user_id = str(d, "user_id");
    s.username = str(d, "username");
    s.email = str(d, "email");
    s.roles = strings(d, "roles");
    s.password_hash = str(d, "password_hash");
    const auto* invited = json::find(d, "invited");
    s.invited = invited != nullptr && invited->IsBool() && invited->GetBool();
    s.registered_event_id = e.id.value();
    s.registered_at_epoch_s =
        std::chrono::duration_cast<std::chrono::seconds>(e.recorded_at.time_since_epoch()).count();
  } else if (type == kUserInvitationAccepted) {
    s.password_hash = str(d, "password_hash");
    s.invited = false;
  } else if (type == kUserRolesChanged) {
    s.roles = strings(d, "roles");
    s.security_version = num(d, "security_version");
  } else if (type == kUserPasswordChanged) {
    s.password_hash = str(d, "password_hash");
    s.security_version = num(d, "security_version");
  } else if (type == kUserDeactivated) {
    s.active = false;
    s.security_version = num(d, "security_version");
  } else if (type == kUserReactivated) {
    s.active = true;
    s.security_version = num(d, "security_version");
  }
}

sdk::Decision register_user(const User& s, const NewUser& u) {
  if (s.exists) {
    return sdk::Decision::refuse(409, "username_taken", "the username is taken in this tenant",
                                 "{\"field\":\"username\"}");
  }
  std::string data = "{\"user_id\":" + json::quoted(u.user_id) +
                     ",\"username\":" + json::quoted(u.username) +
                     ",\"email\":" + json::quoted(u.email) + ",\"roles\":" + json_strings(u.roles);
  if (!u.password_hash.empty()) data += ",\"password_hash\":" + json::quoted(u.password_hash);
  data += std::string(",\"invited\":") + (u.password_hash.empty() ? "true" : "false") + "}";
  return sdk::Decision::emit({event(kUserRegistered, std::move(data))});
}

sdk::Decision accept_invitation(const User& s, bool token_ok, std::int64_t now,
                                std::string_view password_hash) {
  if (!s.exists || !s.invited || !token_ok || !s.active ||
      now > s.registered_at_epoch_s + kInvitationSeconds) {
    return sdk::Decision::refuse(401, "invalid_invitation",
                                 "the invitation is unknown, used or expired");
  }
  return sdk::Decision::emit(
      {event(kUserInvitationAccepted, "{\"password_hash\":" + json::quoted(password_hash) + "}")});
}

sdk::Decision change_roles(const User& s, const std::vector<std::string>& roles) {
  if (!s.exists) return no_user();
  if (roles == s.roles) return sdk::Decision::none();
  return sdk::Decision::emit(
      {event(kUserRolesChanged, "{\"roles\":" + json_strings(roles) + ",\"security_version\":" +
                                    std::to_string(s.security_version + 1) + "}")});
}

sdk::Decision change_password(const User& s,
                              const std::function<bool(std::string_view hash)>& current_ok,
                              std::string_view new_hash) {
  if (!s.exists || s.invited || !s.active || !current_ok(s.password_hash)) {
    return sdk::Decision::refuse(401, "invalid_credentials", "the current password is wrong");
  }
  return sdk::Decision::emit(
      {event(kUserPasswordChanged,
             "{\"password_hash\":" + json::quoted(new_hash) +
                 ",\"security_version\":" + std::to_string(s.security_version + 1) + "}")});
}

sdk::Decision deactivate_user(const User& s) {
  if (!s.exists) return no_user();
  if (!s.active) return sdk::Decision::none();
  return sdk::Decision::emit({event(kUserDeactivated, sv_json(s.security_version + 1))});
}

sdk::Decision reactivate_user(const User& s) {
  if (!s.exists) return no_user();
  if (s.active) return sdk::Decision::none();
  return sdk::Decision::emit({event(kUserReactivated, sv_json(s.security_version + 1))});
}

// ---------------------------------------------------------------- role

void apply(Role& s, const events::Event& e) {
  const auto& d = e.data.value();
  if (e.type.value() == kRoleDefined) {
    s.exists = true;
    s.role = str(d, "role");
    s.permissions = strings(d, "permissions");
  } else if (e.type.value() == kRoleRemoved) {
    s.exists = false;
    s.permissions.clear();
  }
}

sdk::Decision define_role(const Role& s, std::string_view role,
                          const std::vector<std::string>& permissions) {
  if (s.exists && s.permissions == permissions) return sdk::Decision::none();
  return sdk::Decision::emit(
      {event(kRoleDefined, "{\"role\":" + json::quoted(role) +
                               ",\"permissions\":" + json_strings(permissions) + "}")});
}

sdk::Decision remove_role(const Role& s, std::string_view role) {
  if (!s.exists) return sdk::Decision::refuse(404, "not_found", "no such role");
  return sdk::Decision::emit({event(kRoleRemoved, "{\"role\":" + json::quoted(role) + "}")});
}

// ---------------------------------------------------------------- API key

void apply(ApiKeyState& s, const events::Event& e) {
  const auto& d = e.data.value();
  if (e.type.value() == kApiKeyIssued) {
    s.exists = true;
    s.key_id = str(d, "key_id");
    s.prefix = str(d, "prefix");
    s.owner = str(d, "owner");
  } else if (e.type.value() == kApiKeyRevoked) {
    s.revoked = true;
  }
}

sdk::Decision issue_api_key(const ApiKeyState& s, const NewApiKey& k) {
  if (s.exists) return sdk::Decision::refuse(409, "key_exists", "the key id is taken");
  return sdk::Decision::emit(
      {event(kApiKeyIssued,
             "{\"key_id\":" + json::quoted(k.key_id) + ",\"prefix\":" + json::quoted(k.prefix) +
                 ",\"key_hash\":" + json::quoted(k.key_hash) + ",\"name\":" + json::quoted(k.name) +
                 ",\"owner\":" + json::quoted(k.owner) + ",\"roles\":" + json_strings(k.roles) +
                 ",\"scopes\":" + json_strings(k.scopes) +
                 ",\"expires_at\":" + std::to_string(k.expires_at) + "}")});
}

sdk::Decision revoke_api_key(const ApiKeyState& s) {
  if (!s.exists) return sdk::Decision::refuse(404, "not_found", "no such API key");
  if (s.revoked) return sdk::Decision::none();
  return sdk::Decision::emit(
      {event(kApiKeyRevoked, "{\"key_id\":" + json::quoted(s.key_id) +
                                 ",\"prefix\":" + json::quoted(s.prefix) + "}")});
}

// ---------------------------------------------------------------- session

void apply(Session& s, const events::Event& e) {
  const auto& d = e.data.value();
  const auto& type = e.type.value();
  if (type == kSessionStarted) {
    s.exists = true;
    s.tenant = e.tenant.value();
    s.session_id = str(d, "session_id");
    s.user_id = str(d, "user_id");
    s.refresh_hash = str(d, "refresh_hash");
    s.expires_at = num(d, "expires_at");
  } else if (type == kSessionRefreshed) {
    s.rotated_hashes.push_back(s.refresh_hash);
    s.refresh_hash = str(d, "refresh_hash");
    s.expires_at = num(d, "expires_at");
  } else if (type == kSessionRevoked) {
    s.revoked = true;
  }
}

sdk::Decision start_session(const Session& s, std::string_view session_id, std::string_view user_id,
                            std::string_view refresh_hash, std::int64_t expires_at) {
  if (s.exists) return sdk::Decision::refuse(409, "session_exists", "the session id is taken");
  return sdk::Decision::emit(
      {event(kSessionStarted, "{\"session_id\":" + json::quoted(session_id) +
                                  ",\"user_id\":" + json::quoted(user_id) +
                                  ",\"refresh_hash\":" + json::quoted(refresh_hash) +
                                  ",\"expires_at\":" + std::to_string(expires_at) + "}")});
}

RefreshVerdict judge_refresh(const Session& s, std::string_view presented, std::int64_t now) {
  if (!s.exists || s.revoked || now >= s.expires_at) return RefreshVerdict::invalid;
  if (auth::constant_time_equal(presented, s.refresh_hash)) return RefreshVerdict::rotate;
  for (const auto& h : s.rotated_hashes) {
    if (auth::constant_time_equal(presented, h)) return RefreshVerdict::reuse;
  }
  return RefreshVerdict::invalid;
}

namespace {
sdk::NewEvent revoked(const Session& s, std::string_view reason, std::int64_t now) {
  return event(kSessionRevoked,
               "{\"session_id\":" + json::quoted(s.session_id) + ",\"user_id\":" +
                   json::quoted(s.user_id) + ",\"reason\":" + json::quoted(reason) +
                   ",\"access_expires_at\":" + std::to_string(now + kAccessTokenSeconds) + "}");
}
sdk::Decision invalid_refresh() {
  return sdk::Decision::refuse(401, "invalid_refresh_token",
                               "the refresh token is unknown, expired, revoked or reused");
}
}  // namespace

sdk::Decision refresh_session(const Session& s, std::string_view presented,
                              std::string_view new_hash, std::int64_t now) {
  switch (judge_refresh(s, presented, now)) {
    case RefreshVerdict::rotate:
      // The family keeps the session's start-based expiry (7 days from login).
      return sdk::Decision::emit(
          {event(kSessionRefreshed, "{\"session_id\":" + json::quoted(s.session_id) +
                                        ",\"refresh_hash\":" + json::quoted(new_hash) +
                                        ",\"previous_hash\":" + json::quoted(s.refresh_hash) +
                                        ",\"expires_at\":" + std::to_string(s.expires_at) + "}")});
    case RefreshVerdict::reuse:
      return sdk::Decision::emit({revoked(s, "reuse", now)});
    case RefreshVerdict::invalid:
      break;
  }
  return invalid_refresh();
}

sdk::Decision logout_session(const Session& s, std::string_view caller_user_id,
                             std::string_view presented, std::int64_t now) {
  if (!s.exists || s.user_id != caller_user_id) return invalid_refresh();
  if (s.revoked) return sdk::Decision::none();
  if (!auth::constant_time_equal(presented, s.refresh_hash)) return invalid_refresh();
  return sdk::Decision::emit({revoked(s, "logout", now)});
}

// ---------------------------------------------------------------- config

void apply(TenantConfig& s, const events::Event& e) {
  const auto& d = e.data.value();
  if (e.type.value() == kConfigSet) {
    const auto* v = json::find(d, "value");
    s.values[str(d, "key")] = v ? json::to_string(*v) : "null";
  } else if (e.type.value() == kConfigUnset) {
    s.values.erase(str(d, "key"));
  }
}

sdk::Decision set_config(const TenantConfig& s, std::string_view key, std::string_view value) {
  auto it = s.values.find(std::string(key));
  if (it != s.values.end() && it->second == value) return sdk::Decision::none();
  return sdk::Decision::emit({event(
      kConfigSet, "{\"key\":" + json::quoted(key) + ",\"value\":" + std::string(value) + "}")});
}

sdk::Decision unset_config(const TenantConfig& s, std::string_view key) {
  if (!s.values.count(std::string(key))) return sdk::Decision::none();
  return sdk::Decision::emit({event(kConfigUnset, "{\"key\":" + json::quoted(key) + "}")});
}

bool valid_config_key(std::string_view key) {
  if (key.empty() || key.size() > 128) return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  });
}

}  // namespace sb::identity
