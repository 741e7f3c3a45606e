#include "switchboard/edge/rbac.hpp"

#include "switchboard/edge/http.hpp"
#include "switchboard/edge/identity_view.hpp"
#include "switchboard/shared/json.hpp"

namespace sb::edge {

namespace {

std::string details(const std::vector<std::string>& roles, std::string_view key) {
  std::string d = "{\"permission\":";
  json::append_quoted(d, key);
  if (!roles.empty()) {
    d += ",\"required_roles\":[";
    for (std::size_t i = 0; i < roles.size(); ++i) {
      if (i) d += ',';
      json::append_quoted(d, roles[i]);
    }
    d += ']';
  }
  d += '}';
  return d;
}

}  // namespace

std::string command_permission(std::string_view command) {
  return "command:" + std::string(command);
}

std::string route_permission(std::string_view service, std::string_view method,
                             std::string_view path_template) {
  std::string k = "route:";
  k += service;
  k += ':';
  k += method;
  k += ':';
  k += path_template;
  return k;
}

std::string platform_permission(std::string_view area, bool write) {
  return "platform:" + std::string(area) + (write ? ":write" : ":read");
}

void require_scope(const auth::Principal& p, std::string_view key) {
  if (p.kind != auth::Principal::Kind::api_key) return;
  for (const auto& s : p.scopes) {
    if (auth::permission_matches(s, key)) return;
  }
  throw HttpError(403, "forbidden", "the API key's scopes do not cover this call",
                  details({}, key));
}

void authorize(const IdentityView* view, const auth::Principal& p,
               const std::vector<std::string>& roles, std::string_view key) {
  bool passed = auth::role_check_passes(p.roles, roles);
  if (!passed && view) {
    for (const auto& r : p.roles) {
      if (auth::builtin_role(r)) continue;
      if (view->role_grants(p.tenant, r, key)) {
        passed = true;
        break;
      }
    }
  }
  if (!passed) {
    throw HttpError(403, "forbidden", "the caller lacks the role this needs", details(roles, key));
  }
  require_scope(p, key);
}

}  // namespace sb::edge
