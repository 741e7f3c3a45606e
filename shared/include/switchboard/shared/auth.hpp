#pragma once
// Credentials: bearer tokens (JWS compact serialization, HS256 only),
// passwords (Argon2id), random secrets, the API-key format (docs/protocol.md
// 11.2) and the role and permission-pattern rules (11.4). Shared by the edge
// (verifies, authorizes) and the identity service (signs, hashes, issues).
//
// Verifying a token costs no network call: the keys come from config (the
// current one and, during a rotation, the previous ones). Anything but
// exactly "HS256" in the header is refused — "none", RS256 with an HMAC key,
// a missing alg — as are tokens without `exp`, expired or not yet valid ones,
// and tokens of another issuer or audience when those are configured.
// Revocation (a deny list fed by identity events) is the edge's business,
// on top of verify().

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace sb::auth {

/// Who is calling, as the credential says.
struct Principal {
  enum class Kind { user, api_key };
  Kind kind = Kind::user;
  std::string subject;  // `sub`: a user id, or an API key's id
  std::string tenant;   // `tenant`
  std::vector<std::string> roles;
  std::int64_t expires_at = 0;  // `exp`, epoch seconds (API keys without expiry: 0)
  std::int64_t issued_at = 0;   // `iat`, epoch seconds (0: absent)
  std::string token_id;         // `jti` (may be empty)
  std::string session_id;       // `sid`: the refresh-token family (may be empty)
  /// `uv`: the user's security version when the token was issued; a role
  /// change, password change or deactivation raises it, and older tokens
  /// are refused by the edge.
  std::int64_t user_version = 0;
  /// API keys: the permission patterns the key is limited to (docs/protocol.md
  /// 11.4). Empty for users.
  std::vector<std::string> scopes;

  bool has_role(std::string_view role) const;
  bool super_admin() const;
  /// "user:<subject>" or "key:<subject>".
  std::string actor() const;
};

class JwtError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct JwtOptions {
  /// HMAC keys; the first signs, all verify. Each at least 32 bytes.
  std::vector<std::string> secrets;
  std::string issuer;    // empty: not checked
  std::string audience;  // empty: not checked
  std::chrono::seconds leeway{30};
  std::size_t max_token_bytes = 8192;
};

class JwtVerifier {
 public:
  /// Throws std::invalid_argument without a key or with a key under 32 bytes.
  explicit JwtVerifier(JwtOptions options);
  /// Throws JwtError saying what is wrong.
  Principal verify(std::string_view token, std::int64_t now_epoch_s) const;
  /// A token for `principal` signed with the first key; `iat` is
  /// `issued_at_epoch_s`, and `sid`/`uv`/`jti` are written when set.
  std::string sign(const Principal& principal, std::int64_t issued_at_epoch_s) const;

 private:
  JwtOptions options_;
};

/// base64url without padding.
std::string base64url_encode(std::string_view bytes);
/// Throws JwtError for bad input.
std::string base64url_decode(std::string_view text);
/// HMAC-SHA256 of `data` with `key` (32 raw bytes).
std::string hmac_sha256(std::string_view key, std::string_view data);
/// SHA-256 as 64 lower-case hex digits.
std::string sha256_hex(std::string_view data);
/// Compares in time independent of where the inputs differ.
bool constant_time_equal(std::string_view a, std::string_view b);
/// `bytes` bytes from the OS's CSPRNG, base64url without padding.
std::string random_token(std::size_t bytes);

/// An API key `sbk_<prefix>_<secret>` (11.2): `prefix` is the lookup id,
/// 12 lower-case hex digits; `secret` 43 base64url characters (256 random
/// bits). Its `key_hash` is sha256_hex of the whole text.
struct ApiKey {
  std::string prefix;
  std::string secret;
  std::string text() const { return "sbk_" + prefix + "_" + secret; }
};
/// A fresh key: 6 random bytes as the prefix, 32 as the secret.
ApiKey new_api_key();
/// nullopt unless `text` has exactly the format above.
std::optional<ApiKey> parse_api_key(std::string_view text);

/// Argon2id cost. The defaults are OWASP's current minimum for Argon2id
/// (m = 19 MiB, t = 2, p = 1; libsodium always uses p = 1).
struct PasswordCost {
  std::uint64_t ops = 2;
  std::size_t memory_bytes = 19u << 20;
};

/// The password's Argon2id hash in the PHC string format
/// (`$argon2id$v=19$m=19456,t=2,p=1$...`), with a fresh random salt.
/// Throws std::runtime_error when out of memory.
std::string hash_password(std::string_view password, const PasswordCost& cost = {});
/// Whether `password` matches `encoded` (a hash_password result). False for
/// a malformed or non-Argon2id hash.
bool verify_password(std::string_view encoded, std::string_view password);

// Roles and permissions (11.4). Built-in roles: super_admin ⊇ tenant_admin ⊇
// user; any other role name is a tenant's custom role, a set of permission
// patterns. A permission key names a call: `command:<catalog name>`,
// `route:<service>:<METHOD>:<template>` or `platform:<area>:<read|write>`; a
// pattern is a key where one trailing `*` matches any rest.

inline constexpr std::string_view kSuperAdmin = "super_admin";
inline constexpr std::string_view kTenantAdmin = "tenant_admin";
inline constexpr std::string_view kUser = "user";

/// super_admin, tenant_admin or user.
bool builtin_role(std::string_view role);
/// Whether roles `held` pass a check that lists `required`: held directly or
/// through the hierarchy (super_admin passes every role check, tenant_admin
/// passes `user`). Custom roles grant nothing here: they grant permissions.
bool role_admits(const std::vector<std::string>& held, std::string_view required);
/// Whether roles `held` pass a check listing `listed` (role_admits for any of
/// them); an empty list admits anyone.
bool role_check_passes(const std::vector<std::string>& held,
                       const std::vector<std::string>& listed);

/// A permission key or a pattern: a key, or the start of one followed by one
/// trailing `*` (`command:orders.*`, `route:orders:GET:*`, `*`); at most 256
/// bytes.
bool valid_permission_pattern(std::string_view pattern);
/// Whether `pattern` matches the permission key: equal, or for a trailing
/// `*`, the key starts with what precedes it.
bool permission_matches(std::string_view pattern, std::string_view key);

}  // namespace sb::auth
