#include "switchboard/edge/identity_view.hpp"

#include <mutex>

#include "switchboard/edge/rbac.hpp"
#include "switchboard/shared/json.hpp"

namespace sb::edge {

namespace {

std::vector<std::string> string_list(const rapidjson::Value& data, std::string_view key) {
  std::vector<std::string> out;
  const auto* v = json::find(data, key);
  if (!v) return out;
  if (!v->IsArray()) throw json::Error("must be an array of strings", "/" + std::string(key));
  for (const auto& s : v->GetArray()) {
    if (!s.IsString()) throw json::Error("must be an array of strings", "/" + std::string(key));
    out.emplace_back(s.GetString(), s.GetStringLength());
  }
  return out;
}

/// The id after `<prefix>-` in a stream id (`user-<id>`), or empty.
std::string_view stream_suffix(std::string_view stream, std::string_view prefix) {
  if (stream.size() <= prefix.size() + 1 || stream.substr(0, prefix.size()) != prefix ||
      stream[prefix.size()] != '-') {
    return {};
  }
  return stream.substr(prefix.size() + 1);
}

std::string role_key(std::string_view tenant, std::string_view role) {
  std::string k;
  k.reserve(tenant.size() + role.size() + 1);
  k += tenant;
  k += '/';
  k += role;
  return k;
}

std::int64_t epoch_s(events::Timestamp t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

}  // namespace

bool TenantPolicy::enables(std::string_view service) const {
  if (service == "identity") return true;
  for (const auto& d : disabled) {
    if (d == service) return false;
  }
  for (const auto& s : services) {
    if (s == "*" || s == service) return true;
  }
  return false;
}

std::string_view to_string(TokenDenial denial) {
  switch (denial) {
    case TokenDenial::none:
      return "";
    case TokenDenial::session_revoked:
      return "the session was revoked";
    case TokenDenial::stale_user_version:
      return "the token predates a change to the user (roles, password or status)";
    case TokenDenial::user_deactivated:
      return "the user is deactivated";
  }
  return "";
}

const std::vector<std::string>& identity_event_patterns() {
  // Not session.started/refreshed (the bulk of identity traffic): the edge
  // needs only revocations.
  static const std::vector<std::string> patterns = {"identity.tenant.*", "identity.user.*",
                                                    "identity.role.*", "identity.apikey.*",
                                                    "identity.session.revoked"};
  return patterns;
}

IdentityView::IdentityView(std::int64_t session_leeway_s) : session_leeway_s_(session_leeway_s) {}

bool IdentityView::apply(const events::Event& e) {
  const std::string& type = e.type.value();
  constexpr std::string_view kPrefix = "identity.";
  std::unique_lock lock(mu_);
  if (e.position.value() <= position_) return false;
  position_ = e.position.value();
  if (type.size() <= kPrefix.size() || type.compare(0, kPrefix.size(), kPrefix) != 0) {
    return false;
  }
  std::string_view rest(type);
  rest.remove_prefix(kPrefix.size());
  const auto dot = rest.find('.');
  if (dot == std::string_view::npos) return false;
  const auto kind = rest.substr(0, dot);
  const auto what = rest.substr(dot + 1);
  if (kind == "tenant") {
    apply_tenant(e, what);
  } else if (kind == "user") {
    apply_user(e, what);
  } else if (kind == "role") {
    apply_role(e, what);
  } else if (kind == "apikey") {
    apply_apikey(e, what);
  } else if (kind == "session") {
    apply_session(e, what);
  } else {
    return false;
  }
  return true;
}

void IdentityView::apply_tenant(const events::Event& e, std::string_view what) {
  const auto& data = e.data.value();
  const auto& id = e.tenant.value();
  if (what == "created" || what == "services_changed") {
    auto& t = tenants_[id];
    t.services = string_list(data, "services");
    t.disabled = string_list(data, "disabled");
    if (what == "created") t.suspended = false;
  } else if (what == "suspended") {
    tenants_[id].suspended = true;
  } else if (what == "reinstated") {
    tenants_[id].suspended = false;
  }
}

void IdentityView::apply_user(const events::Event& e, std::string_view what) {
  const auto& data = e.data.value();
  std::string user_id(stream_suffix(e.stream.value(), "user"));
  if (auto id = json::optional_string(data, "user_id")) user_id = *id;
  if (user_id.empty()) throw json::Error("no user id in the event or its stream", "/user_id");
  auto& u = users_[user_id];
  if (auto sv = json::optional_int64(data, "security_version")) {
    u.security_version = std::max(u.security_version, *sv);
  }
  if (what == "deactivated") u.deactivated = true;
  if (what == "reactivated") u.deactivated = false;
}

void IdentityView::apply_role(const events::Event& e, std::string_view what) {
  const auto& data = e.data.value();
  auto role = json::require_string(data, "role");
  auto key = role_key(e.tenant.value(), role);
  if (what == "defined") {
    roles_[key] = string_list(data, "permissions");
  } else if (what == "removed") {
    roles_.erase(key);
  }
}

void IdentityView::apply_apikey(const events::Event& e, std::string_view what) {
  const auto& data = e.data.value();
  if (what == "issued") {
    ApiKeyRecord k;
    k.key_id = json::require_string(data, "key_id");
    k.prefix = json::require_string(data, "prefix");
    k.key_hash = json::require_string(data, "key_hash");
    k.tenant = e.tenant.value();
    k.owner = json::optional_string(data, "owner").value_or("");
    k.roles = string_list(data, "roles");
    k.scopes = string_list(data, "scopes");
    k.expires_at = json::optional_int64(data, "expires_at").value_or(0);
    key_prefix_by_id_[k.key_id] = k.prefix;
    auto prefix = k.prefix;
    keys_[prefix] = std::move(k);
  } else if (what == "revoked") {
    std::string prefix = json::optional_string(data, "prefix").value_or("");
    if (prefix.empty()) {
      auto id = json::require_string(data, "key_id");
      if (auto it = key_prefix_by_id_.find(id); it != key_prefix_by_id_.end()) prefix = it->second;
    }
    if (auto it = keys_.find(prefix); it != keys_.end()) it->second.revoked = true;
  }
}

void IdentityView::apply_session(const events::Event& e, std::string_view what) {
  if (what != "revoked") return;
  const auto& data = e.data.value();
  auto sid = json::require_string(data, "session_id");
  // Without access_expires_at: as long as any access token could live.
  auto until =
      json::optional_int64(data, "access_expires_at").value_or(epoch_s(e.recorded_at) + 24 * 3600);
  auto& kept = revoked_sessions_[sid];
  kept = std::max(kept, until + session_leeway_s_);
}

std::size_t IdentityView::prune(std::int64_t now) {
  std::unique_lock lock(mu_);
  return std::erase_if(revoked_sessions_, [now](const auto& kv) { return kv.second < now; });
}

TokenDenial IdentityView::check_token(std::string_view user_id, std::string_view session_id,
                                      std::int64_t user_version) const {
  std::shared_lock lock(mu_);
  if (!session_id.empty() && revoked_sessions_.find(session_id) != revoked_sessions_.end()) {
    return TokenDenial::session_revoked;
  }
  if (auto it = users_.find(user_id); it != users_.end()) {
    if (it->second.deactivated) return TokenDenial::user_deactivated;
    if (user_version < it->second.security_version) return TokenDenial::stale_user_version;
  }
  return TokenDenial::none;
}

std::optional<ApiKeyRecord> IdentityView::api_key(std::string_view prefix) const {
  std::shared_lock lock(mu_);
  auto it = keys_.find(prefix);
  if (it == keys_.end()) return std::nullopt;
  return it->second;
}

std::optional<TenantPolicy> IdentityView::tenant(std::string_view tenant) const {
  std::shared_lock lock(mu_);
  auto it = tenants_.find(tenant);
  if (it == tenants_.end()) return std::nullopt;
  return it->second;
}

bool IdentityView::tenant_suspended(std::string_view tenant) const {
  std::shared_lock lock(mu_);
  auto it = tenants_.find(tenant);
  return it != tenants_.end() && it->second.suspended;
}

bool IdentityView::service_enabled(std::string_view tenant, std::string_view service) const {
  std::shared_lock lock(mu_);
  auto it = tenants_.find(tenant);
  return it == tenants_.end() || it->second.enables(service);
}

std::vector<std::string> IdentityView::role_permissions(std::string_view tenant,
                                                        std::string_view role) const {
  const auto key = role_key(tenant, role);
  std::shared_lock lock(mu_);
  auto it = roles_.find(key);
  if (it == roles_.end()) return {};
  return it->second;
}

bool IdentityView::role_grants(std::string_view tenant, std::string_view role,
                               std::string_view permission) const {
  const auto key = role_key(tenant, role);
  std::shared_lock lock(mu_);
  auto it = roles_.find(key);
  if (it == roles_.end()) return false;
  for (const auto& p : it->second) {
    if (auth::permission_matches(p, permission)) return true;
  }
  return false;
}

std::optional<UserState> IdentityView::user(std::string_view user_id) const {
  std::shared_lock lock(mu_);
  auto it = users_.find(user_id);
  if (it == users_.end()) return std::nullopt;
  return it->second;
}

bool IdentityView::session_revoked(std::string_view session_id) const {
  std::shared_lock lock(mu_);
  return revoked_sessions_.find(session_id) != revoked_sessions_.end();
}

std::int64_t IdentityView::position() const {
  std::shared_lock lock(mu_);
  return position_;
}

std::size_t IdentityView::revoked_sessions() const {
  std::shared_lock lock(mu_);
  return revoked_sessions_.size();
}

std::size_t IdentityView::api_keys() const {
  std::shared_lock lock(mu_);
  return keys_.size();
}

}  // namespace sb::edge
