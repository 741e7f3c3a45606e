#include "switchboard/edge/rbac.hpp"

#include "switchboard/edge/http.hpp"
#include "switchboard/edge/identity_view.hpp"
#include "switchboard/shared/json.hpp"

namespace sb::edge {

namespace {

bool built_in(std::string_view role) {
  return role == "super_admin" || role == "tenant_admin" || role == "user";
}

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

bool permission_matches(std::string_view pattern, std::string_view key) {
  if (!pattern.empty() && pattern.back() == '*') {
    pattern.remove_suffix(1);
    return key.substr(0, pattern.size()) == pattern;
  }
  return pattern == key;
}

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

bool holds_role(const auth::Principal& p, std::string_view role) {
  if (p.has_role(role) || p.super_admin()) return true;
  return role == "user" && p.has_role("tenant_admin");
}

void require_scope(const auth::Principal& p, std::string_view key) {
  if (p.kind != auth::Principal::Kind::api_key) return;
  for (const auto& s : p.scopes) {
    if (permission_matches(s, key)) return;
  }
  throw HttpError(403, "forbidden", "the API key's scopes do not cover this call",
                  details({}, key));
}

void authorize(const IdentityView* view, const auth::Principal& p,
               const std::vector<std::string>& roles, std::string_view key) {
  bool passed = roles.empty();
  for (std::size_t i = 0; !passed && i < roles.size(); ++i) passed = holds_role(p, roles[i]);
  if (!passed && view) {
    for (const auto& r : p.roles) {
      if (built_in(r)) continue;
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
