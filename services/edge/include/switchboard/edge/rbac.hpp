#pragma once
// Role and scope checks (docs/protocol.md 11.4), one filter of the chain.
//
// A call is named by a permission key: `command:<catalog name>`,
// `route:<service>:<METHOD>:<template>` or `platform:<area>:<read|write>`.
// A caller passes when it holds a role the endpoint or command lists — with
// the hierarchy super_admin ⊇ tenant_admin ⊇ user — or one of its custom
// roles (defined per tenant, from the identity view) has a pattern matching
// the key. An API key must in addition have a scope matching the key. The
// rules themselves (hierarchy, pattern syntax and matching) are shared with
// the identity service: shared/auth.hpp.

#include <string>
#include <string_view>
#include <vector>

#include "switchboard/shared/auth.hpp"

namespace sb::edge {

class IdentityView;

std::string command_permission(std::string_view command);
std::string route_permission(std::string_view service, std::string_view method,
                             std::string_view path_template);
std::string platform_permission(std::string_view area, bool write);

/// Throws HttpError 403 `forbidden` unless the principal passes the role
/// check for `roles` (empty: any authenticated caller) — directly, by the
/// hierarchy or by a custom role of its tenant granting `key` — and, for an
/// API key, one of its scopes matches `key`. `view` may be null (no custom
/// roles).
void authorize(const IdentityView* view, const auth::Principal& principal,
               const std::vector<std::string>& roles, std::string_view key);

/// Only the API-key scope half of authorize().
void require_scope(const auth::Principal& principal, std::string_view key);

}  // namespace sb::edge
