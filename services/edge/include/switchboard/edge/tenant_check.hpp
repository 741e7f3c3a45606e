#pragma once
// The tenant filter's second half (the first is resolve_tenant in
// filters.hpp): a suspended tenant is refused (docs/protocol.md 11.5).

#include <string_view>

#include "switchboard/shared/auth.hpp"

namespace sb::edge {

class IdentityView;

/// Throws HttpError 403 `tenant_suspended` when the credential's tenant or
/// the tenant the call acts for (`acting_tenant`, e.g. from X-Tenant) is
/// suspended. One exception: a super admin calling the identity service for
/// a suspended tenant (`service` = "identity"), or it could never reinstate it.
void require_tenant_active(const IdentityView& view, const auth::Principal& principal,
                           std::string_view acting_tenant, std::string_view service = {});

}  // namespace sb::edge
