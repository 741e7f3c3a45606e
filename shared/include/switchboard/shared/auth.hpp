#pragma once
// Credentials: bearer tokens (JWS compact serialization, HS256 only),
// passwords (Argon2id) and random secrets. Shared by the edge (verifies) and
// the identity service (signs, hashes).
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
  bool super_admin() const { return has_role("super_admin"); }
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

}  // namespace sb::auth
