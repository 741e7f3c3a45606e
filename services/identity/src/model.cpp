// Names, formats and patterns of the identity service (model.hpp).
#include "switchboard/identity/model.hpp"

#include <algorithm>
#include <cctype>

#include "switchboard/events/uuid.hpp"
#include "switchboard/shared/auth.hpp"

namespace sb::identity {
namespace {

bool lower_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}
bool hex_digit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}
bool b64url(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

/// `[a-z0-9][a-z0-9_-]{0,62}` (first character also '_' when allowed).
bool name_syntax(std::string_view s, bool underscore_first) {
  if (s.empty() || s.size() > 63) return false;
  if (!lower_alnum(s[0]) && !(underscore_first && s[0] == '_')) return false;
  return std::all_of(s.begin() + 1, s.end(),
                     [](char c) { return lower_alnum(c) || c == '_' || c == '-'; });
}

}  // namespace

// ---------------------------------------------------------------- names

bool valid_tenant(std::string_view tenant) {
  return name_syntax(tenant, true);
}

bool valid_username(std::string_view username) {
  if (username.empty() || username.size() > 64) return false;
  return std::all_of(username.begin(), username.end(),
                     [](char c) { return c >= 0x20 && c < 0x7f; });
}

std::string normalize_username(std::string_view username) {
  std::string out(username);
  std::transform(out.begin(), out.end(), out.begin(), [](char c) {
    return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  });
  return out;
}

bool valid_password(std::string_view password) {
  return password.size() >= 8 && password.size() <= 256;
}

bool valid_service(std::string_view service) {
  return service == "*" || name_syntax(service, false);
}

bool valid_custom_role(std::string_view role) {
  if (role.empty() || role.size() > 63 || auth::builtin_role(role)) return false;
  if (role[0] < 'a' || role[0] > 'z') return false;
  return std::all_of(role.begin(), role.end(),
                     [](char c) { return lower_alnum(c) || c == '_' || c == '.' || c == '-'; });
}

bool valid_role(std::string_view role) {
  return auth::builtin_role(role) || valid_custom_role(role);
}

std::string user_id(std::string_view tenant, std::string_view username) {
  return events::uuid_v5(events::kEventIdNamespace,
                         std::string(tenant) + "/" + normalize_username(username))
      .to_string();
}

std::string tenant_stream(std::string_view t) {
  return "tenant-" + std::string(t);
}
std::string user_stream(std::string_view id) {
  return "user-" + std::string(id);
}
std::string role_stream(std::string_view t, std::string_view role) {
  return "role-" + std::string(t) + "." + std::string(role);
}
std::string apikey_stream(std::string_view id) {
  return "apikey-" + std::string(id);
}
std::string session_stream(std::string_view sid) {
  return "session-" + std::string(sid);
}
std::string config_stream(std::string_view t) {
  return "config-" + std::string(t);
}
std::string plugin_credentials_stream(std::string_view plugin) {
  return "plugin-credentials-" + std::string(plugin);
}

// ---------------------------------------------------------------- credentials

RefreshToken new_refresh_token() {
  return {events::uuid_v4().to_string(), auth::random_token(32)};
}

std::optional<RefreshToken> parse_refresh_token(std::string_view text) {
  const auto dot = text.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot > 64) return std::nullopt;
  const auto sid = text.substr(0, dot);
  const auto secret = text.substr(dot + 1);
  if (!std::all_of(sid.begin(), sid.end(), [](char c) { return hex_digit(c) || c == '-'; })) {
    return std::nullopt;
  }
  if (secret.size() != 43 || !std::all_of(secret.begin(), secret.end(), b64url)) {
    return std::nullopt;
  }
  return RefreshToken{std::string(sid), std::string(secret)};
}

std::string secret_hash(std::string_view secret) {
  return auth::sha256_hex(secret);
}

std::string invitation_token(std::string_view key, std::string_view tenant,
                             std::string_view user_id, std::string_view registered_event_id) {
  std::string data = "sb-invitation\n";
  data += tenant;
  data += '\n';
  data += user_id;
  data += '\n';
  data += registered_event_id;
  return auth::base64url_encode(auth::hmac_sha256(key, data));
}

// ---------------------------------------------------------------- broker users

std::string vhost_of(std::string_view url) {
  auto scheme = url.find("://");
  std::string_view rest = scheme == std::string_view::npos ? url : url.substr(scheme + 3);
  const auto slash = rest.find('/');
  if (slash == std::string_view::npos) return "/";
  auto path = rest.substr(slash + 1);
  if (const auto q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);
  if (path.empty()) return "/";
  std::string out;
  for (std::size_t i = 0; i < path.size(); ++i) {
    if (path[i] == '%' && i + 2 < path.size() &&
        std::isxdigit(static_cast<unsigned char>(path[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(path[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(path.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += path[i];
    }
  }
  return out;
}

}  // namespace sb::identity
