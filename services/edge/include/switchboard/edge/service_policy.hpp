#pragma once
// Services enabled per tenant (docs/protocol.md 11.1, 11.5): a tenant's
// policy (`services`, `disabled`) from identity.tenant.created /
// services_changed. `identity` is always enabled; a tenant the identity
// service never created has no policy and every service is enabled for it.

#include <string_view>

namespace sb::edge {

class IdentityView;

/// Throws HttpError 403 `service_not_enabled` when `tenant`'s policy does
/// not enable `service`. An empty tenant (an anonymous call) is not checked.
void require_service_enabled(const IdentityView& view, std::string_view tenant,
                             std::string_view service);

}  // namespace sb::edge
