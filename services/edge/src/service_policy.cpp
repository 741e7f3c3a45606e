#include "switchboard/edge/service_policy.hpp"

#include "switchboard/edge/http.hpp"
#include "switchboard/edge/identity_view.hpp"
#include "switchboard/shared/json.hpp"

namespace sb::edge {

void require_service_enabled(const IdentityView& view, std::string_view tenant,
                             std::string_view service) {
  if (tenant.empty() || view.service_enabled(tenant, service)) return;
  throw HttpError(
      403, "service_not_enabled", "the service is not enabled for this tenant",
      "{\"tenant\":" + json::quoted(tenant) + ",\"service\":" + json::quoted(service) + "}");
}

}  // namespace sb::edge
