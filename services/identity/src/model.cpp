// Names, formats and patterns of the identity service (model.hpp).
#include "switchboard/identity/model.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <stdexcept>

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

// Permission keys (11.4), segment by segment. A pattern's last segment may be
// cut short (the part before a trailing '*').
bool catalog_name_char(char c) {
  return lower_alnum(c) || c == '_' || c == '-' || c == '.';
}
bool template_char(char c) {
  return c > 0x20 && c < 0x7f && c != '*' && c != '?' && c != '#' && c != ':';
}

bool is_prefix_of(std::string_view part, std::string_view whole) {
  return whole.substr(0, part.size()) == part;
}

constexpr std::array<std::string_view, 5> kMethods = {"GET", "POST", "PUT", "PATCH", "DELETE"};
constexpr std::array<std::string_view, 6> kAreas = {"events",        "services",    "catalog",
                                                    "subscriptions", "projections", "replays"};

template <std::size_t N>
bool one_of(std::string_view s, const std::array<std::string_view, N>& options, bool partial) {
  return std::any_of(options.begin(), options.end(),
                     [&](std::string_view o) { return partial ? is_prefix_of(s, o) : s == o; });
}

std::vector<std::string_view> split(std::string_view s, char sep, std::size_t max_parts) {
  std::vector<std::string_view> out;
  while (out.size() + 1 < max_parts) {
    const auto at = s.find(sep);
    if (at == std::string_view::npos) break;
    out.push_back(s.substr(0, at));
    s.remove_prefix(at + 1);
  }
  out.push_back(s);
  return out;
}

/// Whether `key` is a permission key, or (partial) the start of one.
bool key_syntax(std::string_view key, bool partial) {
  const auto colon = key.find(':');
  if (colon == std::string_view::npos) {
    // Only a pattern may stop inside the kind ("comm*").
    return partial && (is_prefix_of(key, "command") || is_prefix_of(key, "route") ||
                       is_prefix_of(key, "platform"));
  }
  const auto kind = key.substr(0, colon);
  const auto rest = key.substr(colon + 1);
  if (kind == "command") {
    if (rest.empty()) return partial;
    return std::all_of(rest.begin(), rest.end(), catalog_name_char) &&
           (partial || lower_alnum(rest.front()));
  }
  if (kind == "route") {
    auto parts = split(rest, ':', 3);  // service, METHOD, template (may hold no ':')
    if (parts.size() == 1) {
      return partial && std::all_of(parts[0].begin(), parts[0].end(),
                                    [](char c) { return lower_alnum(c) || c == '_' || c == '-'; });
    }
    if (!name_syntax(parts[0], false)) return false;
    const bool last_method = parts.size() == 2;
    if (!one_of(parts[1], kMethods, partial && last_method)) return false;
    if (last_method) return partial;
    const auto tpl = parts[2];
    if (tpl.empty()) return partial;
    if (tpl.front() != '/') return false;
    return std::all_of(tpl.begin(), tpl.end(), template_char);
  }
  if (kind == "platform") {
    auto parts = split(rest, ':', 2);
    if (parts.size() == 1) return partial && one_of(parts[0], kAreas, true);
    if (!one_of(parts[0], kAreas, false)) return false;
    return parts[1] == "read" || parts[1] == "write" ||
           (partial && (is_prefix_of(parts[1], "read") || is_prefix_of(parts[1], "write")));
  }
  return false;
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

bool builtin_role(std::string_view role) {
  return role == kSuperAdmin || role == kTenantAdmin || role == kUser;
}

bool valid_custom_role(std::string_view role) {
  if (role.empty() || role.size() > 63 || builtin_role(role)) return false;
  if (role[0] < 'a' || role[0] > 'z') return false;
  return std::all_of(role.begin(), role.end(),
                     [](char c) { return lower_alnum(c) || c == '_' || c == '.' || c == '-'; });
}

bool valid_role(std::string_view role) {
  return builtin_role(role) || valid_custom_role(role);
}

bool valid_permission_pattern(std::string_view pattern) {
  if (pattern.empty() || pattern.size() > 256) return false;
  if (pattern == "*") return true;
  const auto star = pattern.find('*');
  if (star == std::string_view::npos) return key_syntax(pattern, false);
  if (star != pattern.size() - 1) return false;  // only one, trailing
  return key_syntax(pattern.substr(0, star), true);
}

bool permission_matches(std::string_view pattern, std::string_view key) {
  if (!pattern.empty() && pattern.back() == '*') {
    return is_prefix_of(pattern.substr(0, pattern.size() - 1), key);
  }
  return pattern == key;
}

bool admits(const std::vector<std::string>& held, const std::vector<std::string>& required) {
  if (required.empty()) return true;
  auto holds = [&](std::string_view r) {
    return std::find(held.begin(), held.end(), r) != held.end();
  };
  if (holds(kSuperAdmin)) return true;
  for (const auto& r : required) {
    if (holds(r)) return true;
    if (r == kUser && holds(kTenantAdmin)) return true;
  }
  return false;
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

ApiKey new_api_key() {
  // 6 random bytes as 12 hex digits: the lookup id.
  const auto raw = auth::base64url_decode(auth::random_token(6));
  static constexpr char kHex[] = "0123456789abcdef";
  std::string prefix;
  for (char ch : raw) {
    const auto c = static_cast<unsigned char>(ch);
    prefix += kHex[c >> 4];
    prefix += kHex[c & 0xF];
  }
  return {prefix, auth::random_token(32)};
}

std::optional<ApiKey> parse_api_key(std::string_view text) {
  // sbk_ + 12 + _ + 43
  if (text.size() != 4 + 12 + 1 + 43 || text.substr(0, 4) != "sbk_" || text[16] != '_') {
    return std::nullopt;
  }
  const auto prefix = text.substr(4, 12);
  const auto secret = text.substr(17);
  if (!std::all_of(prefix.begin(), prefix.end(), hex_digit) ||
      !std::all_of(secret.begin(), secret.end(), b64url)) {
    return std::nullopt;
  }
  return ApiKey{std::string(prefix), std::string(secret)};
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

BrokerPermissions plugin_broker_permissions(std::string_view plugin) {
  if (!name_syntax(plugin, false)) {
    throw std::invalid_argument("invalid plugin name: " + std::string(plugin));
  }
  // Names are [a-z0-9_-]: nothing to escape for a regex.
  const std::string n(plugin);
  const std::string own = "sub\\." + n + "\\..*|rpc\\." + n + "(\\..*)?|amq\\.gen-.*";
  return {
      "^(" + own + ")$",
      "^(sb\\.ingest|sb\\.rpc|sb\\.signals|amq\\.default|" + own + ")$",
      "^(sb\\.events|sb\\.signals|sb\\.rpc|" + own + "|amq\\.rabbitmq\\.reply-to)$",
  };
}

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
