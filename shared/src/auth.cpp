#include "switchboard/shared/auth.hpp"

#include <rapidjson/document.h>
#include <sodium.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <mutex>

#include "switchboard/shared/json.hpp"

namespace sb::auth {

namespace {

void init_sodium() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
  });
}

std::int64_t require_time(const rapidjson::Value& doc, const char* name, bool required,
                          std::int64_t fallback) {
  auto it = doc.FindMember(name);
  if (it == doc.MemberEnd()) {
    if (required) throw JwtError(std::string("token has no `") + name + "` claim");
    return fallback;
  }
  const auto& v = it->value;
  if (v.IsInt64()) return v.GetInt64();
  if (v.IsDouble() && std::isfinite(v.GetDouble()) && std::fabs(v.GetDouble()) < 1e15) {
    return static_cast<std::int64_t>(v.GetDouble());
  }
  throw JwtError(std::string("token claim `") + name + "` is not a number");
}

}  // namespace

bool Principal::has_role(std::string_view role) const {
  return std::find(roles.begin(), roles.end(), role) != roles.end();
}

bool Principal::super_admin() const {
  return has_role(kSuperAdmin);
}

std::string Principal::actor() const {
  return (kind == Kind::api_key ? "key:" : "user:") + subject;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  init_sodium();
  if (a.size() != b.size()) return false;
  return a.empty() || sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string random_token(std::size_t bytes) {
  init_sodium();
  std::string raw(bytes, '\0');
  randombytes_buf(raw.data(), raw.size());
  return base64url_encode(raw);
}

std::string hash_password(std::string_view password, const PasswordCost& cost) {
  init_sodium();
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str_alg(out, password.data(), password.size(), cost.ops, cost.memory_bytes,
                            crypto_pwhash_ALG_ARGON2ID13) != 0) {
    throw std::runtime_error("out of memory hashing a password");
  }
  return out;
}

bool verify_password(std::string_view encoded, std::string_view password) {
  init_sodium();
  if (encoded.size() >= crypto_pwhash_STRBYTES || encoded.rfind("$argon2id$", 0) != 0) return false;
  std::string hash(encoded);  // NUL-terminated copy
  return crypto_pwhash_str_verify(hash.c_str(), password.data(), password.size()) == 0;
}

std::string base64url_encode(std::string_view bytes) {
  init_sodium();
  std::string out(sodium_base64_ENCODED_LEN(bytes.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                  '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.resize(std::char_traits<char>::length(out.c_str()));
  return out;
}

std::string base64url_decode(std::string_view text) {
  init_sodium();
  std::string out(text.size() * 3 / 4 + 3, '\0');
  std::size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(),
                        text.size(), nullptr, &len, &end,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
      end != text.data() + text.size()) {
    throw JwtError("token is not base64url");
  }
  out.resize(len);
  return out;
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  init_sodium();
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, reinterpret_cast<const unsigned char*>(key.data()), key.size());
  crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(data.data()),
                                data.size());
  std::string mac(crypto_auth_hmacsha256_BYTES, '\0');
  crypto_auth_hmacsha256_final(&st, reinterpret_cast<unsigned char*>(mac.data()));
  return mac;
}

std::string sha256_hex(std::string_view data) {
  init_sodium();
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(data.data()), data.size());
  char hex[crypto_hash_sha256_BYTES * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
  return std::string(hex, crypto_hash_sha256_BYTES * 2);
}

JwtVerifier::JwtVerifier(JwtOptions options) : options_(std::move(options)) {
  if (options_.secrets.empty()) throw std::invalid_argument("no JWT signing key configured");
  for (const auto& s : options_.secrets) {
    if (s.size() < 32) throw std::invalid_argument("a JWT signing key must have at least 32 bytes");
  }
}

Principal JwtVerifier::verify(std::string_view token, std::int64_t now) const {
  if (token.empty()) throw JwtError("empty token");
  if (token.size() > options_.max_token_bytes) throw JwtError("token too long");
  const auto d1 = token.find('.');
  const auto d2 = d1 == std::string_view::npos ? d1 : token.find('.', d1 + 1);
  if (d1 == std::string_view::npos || d2 == std::string_view::npos ||
      token.find('.', d2 + 1) != std::string_view::npos) {
    throw JwtError("token is not a JWS compact serialization");
  }
  const auto header_json = base64url_decode(token.substr(0, d1));
  rapidjson::Document header;
  header.Parse(header_json.data(), header_json.size());
  if (header.HasParseError() || !header.IsObject()) throw JwtError("token header is not JSON");
  auto alg = header.FindMember("alg");
  if (alg == header.MemberEnd() || !alg->value.IsString() ||
      std::string_view(alg->value.GetString(), alg->value.GetStringLength()) != "HS256") {
    throw JwtError("token algorithm is not HS256");
  }
  if (header.HasMember("crit")) throw JwtError("token has critical header parameters");

  const auto signature = base64url_decode(token.substr(d2 + 1));
  const auto signed_part = token.substr(0, d2);
  bool valid = false;
  for (const auto& key : options_.secrets) {
    const auto mac = hmac_sha256(key, signed_part);
    if (signature.size() == mac.size() &&
        sodium_memcmp(signature.data(), mac.data(), mac.size()) == 0) {
      valid = true;
      break;
    }
  }
  if (!valid) throw JwtError("token signature is invalid");

  const auto payload_json = base64url_decode(token.substr(d1 + 1, d2 - d1 - 1));
  rapidjson::Document payload;
  payload.Parse(payload_json.data(), payload_json.size());
  if (payload.HasParseError() || !payload.IsObject()) throw JwtError("token payload is not JSON");

  const auto leeway = options_.leeway.count();
  Principal p;
  p.expires_at = require_time(payload, "exp", true, 0);
  if (now >= p.expires_at + leeway) throw JwtError("token expired");
  const auto nbf = require_time(payload, "nbf", false, std::numeric_limits<std::int64_t>::min());
  if (nbf != std::numeric_limits<std::int64_t>::min() && now + leeway < nbf) {
    throw JwtError("token not valid yet");
  }
  auto str = [&](const char* name) -> std::string {
    auto it = payload.FindMember(name);
    if (it == payload.MemberEnd()) return {};
    if (!it->value.IsString())
      throw JwtError(std::string("token claim `") + name + "` is not a string");
    return {it->value.GetString(), it->value.GetStringLength()};
  };
  p.issued_at = require_time(payload, "iat", false, 0);
  p.user_version = require_time(payload, "uv", false, 0);
  p.subject = str("sub");
  if (p.subject.empty()) throw JwtError("token has no subject");
  p.tenant = str("tenant");
  p.token_id = str("jti");
  p.session_id = str("sid");
  if (!options_.issuer.empty() && str("iss") != options_.issuer) {
    throw JwtError("token issuer is not accepted");
  }
  if (!options_.audience.empty()) {
    auto it = payload.FindMember("aud");
    bool ok = false;
    if (it != payload.MemberEnd()) {
      if (it->value.IsString()) {
        ok = options_.audience == it->value.GetString();
      } else if (it->value.IsArray()) {
        for (const auto& a : it->value.GetArray()) {
          if (a.IsString() && options_.audience == a.GetString()) ok = true;
        }
      }
    }
    if (!ok) throw JwtError("token audience is not accepted");
  }
  auto roles = payload.FindMember("roles");
  if (roles != payload.MemberEnd()) {
    if (!roles->value.IsArray()) throw JwtError("token claim `roles` is not an array");
    for (const auto& r : roles->value.GetArray()) {
      if (!r.IsString()) throw JwtError("token claim `roles` holds a non-string");
      p.roles.emplace_back(r.GetString(), r.GetStringLength());
    }
  }
  return p;
}

std::string JwtVerifier::sign(const Principal& principal, std::int64_t issued_at) const {
  std::string payload = "{\"sub\":";
  json::append_quoted(payload, principal.subject);
  if (!principal.tenant.empty()) {
    payload += ",\"tenant\":";
    json::append_quoted(payload, principal.tenant);
  }
  payload += ",\"roles\":[";
  for (std::size_t i = 0; i < principal.roles.size(); ++i) {
    if (i) payload += ',';
    json::append_quoted(payload, principal.roles[i]);
  }
  payload +=
      "],\"iat\":" + std::to_string(issued_at) + ",\"exp\":" + std::to_string(principal.expires_at);
  if (!principal.token_id.empty()) {
    payload += ",\"jti\":";
    json::append_quoted(payload, principal.token_id);
  }
  if (!principal.session_id.empty()) {
    payload += ",\"sid\":";
    json::append_quoted(payload, principal.session_id);
  }
  if (principal.user_version != 0) payload += ",\"uv\":" + std::to_string(principal.user_version);
  if (!options_.issuer.empty()) {
    payload += ",\"iss\":";
    json::append_quoted(payload, options_.issuer);
  }
  if (!options_.audience.empty()) {
    payload += ",\"aud\":";
    json::append_quoted(payload, options_.audience);
  }
  payload += '}';
  std::string token =
      base64url_encode(R"({"alg":"HS256","typ":"JWT"})") + "." + base64url_encode(payload);
  token += "." + base64url_encode(hmac_sha256(options_.secrets.front(), token));
  return token;
}

// ---------------------------------------------------------------- API keys

namespace {

constexpr std::string_view kApiKeyScheme = "sbk_";
constexpr std::size_t kApiKeyPrefixChars = 12;
constexpr std::size_t kApiKeySecretChars = 43;

bool lower_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}
bool base64url_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

}  // namespace

ApiKey new_api_key() {
  init_sodium();
  std::array<unsigned char, kApiKeyPrefixChars / 2> raw{};
  randombytes_buf(raw.data(), raw.size());
  static constexpr char kHex[] = "0123456789abcdef";
  std::string prefix;
  for (unsigned char c : raw) {
    prefix += kHex[c >> 4];
    prefix += kHex[c & 0xF];
  }
  return {std::move(prefix), random_token(32)};
}

std::optional<ApiKey> parse_api_key(std::string_view text) {
  constexpr auto kSize = kApiKeyScheme.size() + kApiKeyPrefixChars + 1 + kApiKeySecretChars;
  if (text.size() != kSize || !text.starts_with(kApiKeyScheme) ||
      text[kApiKeyScheme.size() + kApiKeyPrefixChars] != '_') {
    return std::nullopt;
  }
  const auto prefix = text.substr(kApiKeyScheme.size(), kApiKeyPrefixChars);
  const auto secret = text.substr(kApiKeyScheme.size() + kApiKeyPrefixChars + 1);
  if (!std::all_of(prefix.begin(), prefix.end(), lower_hex) ||
      !std::all_of(secret.begin(), secret.end(), base64url_char)) {
    return std::nullopt;
  }
  return ApiKey{std::string(prefix), std::string(secret)};
}

// ---------------------------------------------------------------- roles and permissions

bool builtin_role(std::string_view role) {
  return role == kSuperAdmin || role == kTenantAdmin || role == kUser;
}

bool role_admits(const std::vector<std::string>& held, std::string_view required) {
  auto holds = [&](std::string_view r) {
    return std::find(held.begin(), held.end(), r) != held.end();
  };
  if (holds(required) || holds(kSuperAdmin)) return true;
  return required == kUser && holds(kTenantAdmin);
}

bool role_check_passes(const std::vector<std::string>& held,
                       const std::vector<std::string>& listed) {
  return listed.empty() || std::any_of(listed.begin(), listed.end(),
                                       [&](const std::string& r) { return role_admits(held, r); });
}

namespace {

// Permission keys, segment by segment. A pattern's last segment may be cut
// short (the part before its trailing '*'): `partial`.

bool lower_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}
bool service_char(char c) {
  return lower_alnum(c) || c == '_' || c == '-';
}
bool catalog_name_char(char c) {
  return service_char(c) || c == '.';
}
bool template_char(char c) {
  return c > 0x20 && c < 0x7f && c != '*' && c != '?' && c != '#' && c != ':';
}
/// `[a-z0-9][a-z0-9_-]{0,62}`.
bool service_name(std::string_view s) {
  return !s.empty() && s.size() <= 63 && lower_alnum(s.front()) &&
         std::all_of(s.begin() + 1, s.end(), service_char);
}

bool is_prefix_of(std::string_view part, std::string_view whole) {
  return whole.starts_with(part);
}

constexpr std::array<std::string_view, 5> kMethods = {"GET", "POST", "PUT", "PATCH", "DELETE"};
constexpr std::array<std::string_view, 7> kAreas = {
    "events", "services", "catalog", "subscriptions", "projections", "replays", "metrics"};

template <std::size_t N>
bool one_of(std::string_view s, const std::array<std::string_view, N>& options, bool partial) {
  return std::any_of(options.begin(), options.end(),
                     [&](std::string_view o) { return partial ? is_prefix_of(s, o) : s == o; });
}

/// Splits at `sep` into at most `max_parts` parts (the last keeps the rest).
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

bool route_syntax(std::string_view rest, bool partial) {
  const auto parts = split(rest, ':', 3);  // service, METHOD, template (may hold no ':')
  if (parts.size() == 1) {
    return partial && std::all_of(parts[0].begin(), parts[0].end(), service_char);
  }
  if (!service_name(parts[0])) return false;
  const bool method_last = parts.size() == 2;
  if (!one_of(parts[1], kMethods, partial && method_last)) return false;
  if (method_last) return partial;
  const auto tpl = parts[2];
  if (tpl.empty()) return partial;
  return tpl.front() == '/' && std::all_of(tpl.begin(), tpl.end(), template_char);
}

bool platform_syntax(std::string_view rest, bool partial) {
  const auto parts = split(rest, ':', 2);  // area, access
  if (parts.size() == 1) return partial && one_of(parts[0], kAreas, true);
  if (!one_of(parts[0], kAreas, false)) return false;
  return parts[1] == "read" || parts[1] == "write" ||
         (partial && (is_prefix_of(parts[1], "read") || is_prefix_of(parts[1], "write")));
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
  if (kind == "route") return route_syntax(rest, partial);
  if (kind == "platform") return platform_syntax(rest, partial);
  return false;
}

}  // namespace

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
    pattern.remove_suffix(1);
    return key.starts_with(pattern);
  }
  return pattern == key;
}

}  // namespace sb::auth
