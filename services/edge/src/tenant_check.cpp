#include "switchboard/edge/tenant_check.hpp"

#include "switchboard/edge/http.hpp"
#include "switchboard/edge/identity_view.hpp"
#include "switchboard/shared/json.hpp"

namespace sb::edge {

namespace {

HttpError suspended(std::string_view tenant) {
  return HttpError(403, "tenant_suspended", "the tenant is suspended",
                   "{\"tenant\":" + json::quoted(tenant) + "}");
}

}  // namespace

void require_tenant_active(const IdentityView& view, const auth::Principal& principal,
                           std::string_view acting_tenant, std::string_view service) {
  if (!principal.tenant.empty() && view.tenant_suspended(principal.tenant)) {
    throw suspended(principal.tenant);
  }
  if (acting_tenant.empty() || acting_tenant == principal.tenant) return;
  if (principal.super_admin() && service == "identity") return;
  if (view.tenant_suspended(acting_tenant)) throw suspended(acting_tenant);
}

}  // namespace sb::edge
