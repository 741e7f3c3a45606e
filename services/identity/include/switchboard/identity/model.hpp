#pragma once
// The identity service's vocabulary (docs/protocol.md section 11): names and
// their syntax, stream names, event types and the credential formats. The
// role hierarchy, permission patterns and the API-key format are the edge's
// too (shared/auth.hpp); a plugin's broker permissions are the broker
// library's (broker/permissions.hpp). Everything here is pure: no I/O,
// unit-tested without servers.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "switchboard/shared/auth.hpp"

namespace sb::identity {

// ---------------------------------------------------------------- event types

inline constexpr std::string_view kTenantCreated = "identity.tenant.created";
inline constexpr std::string_view kTenantServicesChanged = "identity.tenant.services_changed";
inline constexpr std::string_view kTenantSuspended = "identity.tenant.suspended";
inline constexpr std::string_view kTenantReinstated = "identity.tenant.reinstated";
inline constexpr std::string_view kUserRegistered = "identity.user.registered";
inline constexpr std::string_view kUserInvitationAccepted = "identity.user.invitation_accepted";
inline constexpr std::string_view kUserRolesChanged = "identity.user.roles_changed";
inline constexpr std::string_view kUserPasswordChanged = "identity.user.password_changed";
inline constexpr std::string_view kUserDeactivated = "identity.user.deactivated";
inline constexpr std::string_view kUserReactivated = "identity.user.reactivated";
inline constexpr std::string_view kRoleDefined = "identity.role.defined";
inline constexpr std::string_view kRoleRemoved = "identity.role.removed";
inline constexpr std::string_view kApiKeyIssued = "identity.apikey.issued";
inline constexpr std::string_view kApiKeyRevoked = "identity.apikey.revoked";
inline constexpr std::string_view kSessionStarted = "identity.session.started";
inline constexpr std::string_view kSessionRefreshed = "identity.session.refreshed";
inline constexpr std::string_view kSessionRevoked = "identity.session.revoked";
inline constexpr std::string_view kConfigSet = "identity.config.set";
inline constexpr std::string_view kConfigUnset = "identity.config.unset";
inline constexpr std::string_view kPluginCredentialsIssued = "identity.plugin.credentials_issued";

struct EventTypeSchema {
  std::string_view type;
  std::string_view schema;  // JSON Schema of `data`
  std::string_view description;
};
/// Every event type the service brings, with the JSON Schema of its data.
const std::vector<EventTypeSchema>& event_types();

// ---------------------------------------------------------------- names

inline constexpr std::string_view kPlatformTenant = "_platform";
using auth::kSuperAdmin;
using auth::kTenantAdmin;
using auth::kUser;

/// `[a-z0-9_][a-z0-9_-]{0,62}`: the edge's tenant syntax (so `_platform`
/// is one).
bool valid_tenant(std::string_view tenant);
/// 1–64 printable ASCII characters (no control characters).
bool valid_username(std::string_view username);
/// Usernames compare lower-cased.
std::string normalize_username(std::string_view username);
/// Passwords are 8–256 bytes.
bool valid_password(std::string_view password);
/// A service name (`[a-z0-9][a-z0-9_-]{0,62}`, or "*").
bool valid_service(std::string_view service);
/// A custom role name: `[a-z][a-z0-9_.-]{0,62}`, not a built-in one.
bool valid_custom_role(std::string_view role);
/// Built-in or a syntactically valid custom role.
bool valid_role(std::string_view role);

/// uuid_v5(ns, "<tenant>/<lower(username)>") as text.
std::string user_id(std::string_view tenant, std::string_view username);

std::string tenant_stream(std::string_view tenant);
std::string user_stream(std::string_view user_id);
std::string role_stream(std::string_view tenant, std::string_view role);
std::string apikey_stream(std::string_view key_id);
std::string session_stream(std::string_view session_id);
std::string config_stream(std::string_view tenant);
std::string plugin_credentials_stream(std::string_view plugin);

// ---------------------------------------------------------------- credentials

inline constexpr std::int64_t kAccessTokenSeconds = 15 * 60;
inline constexpr std::int64_t kRefreshTokenSeconds = 7 * 24 * 3600;
inline constexpr std::int64_t kInvitationSeconds = 7 * 24 * 3600;

/// A refresh token `<session_id>.<43 base64url chars>`, split.
struct RefreshToken {
  std::string session_id;
  std::string secret;
  std::string text() const { return session_id + "." + secret; }
};
/// A fresh session id and secret (32 random bytes).
RefreshToken new_refresh_token();
/// nullopt unless the text has the format (a session id of 1–64
/// `[0-9a-f-]` and a 43-character base64url secret).
std::optional<RefreshToken> parse_refresh_token(std::string_view text);

/// SHA-256 hex of a high-entropy secret (refresh tokens, API keys: the text
/// of an auth::ApiKey).
std::string secret_hash(std::string_view secret);

/// An invitation token: HMAC-SHA256 (base64url) under `key` of the tenant,
/// the user id and the id of the event that registered the invitation.
/// Nothing about it is stored: accepting recomputes it from the user's
/// stream, and the first acceptance makes it useless.
std::string invitation_token(std::string_view key, std::string_view tenant,
                             std::string_view user_id, std::string_view registered_event_id);

// ---------------------------------------------------------------- broker users

/// The vhost an amqp:// URL selects ("/" when the path is empty),
/// percent-decoded.
std::string vhost_of(std::string_view amqp_url);

}  // namespace sb::identity
