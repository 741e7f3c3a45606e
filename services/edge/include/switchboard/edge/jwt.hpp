#pragma once
// Bearer tokens: JWS compact serialization, HS256 only. Verifying costs no
// network call: the keys come from config (the current one and, during a
// rotation, the previous ones). Anything but exactly "HS256" in the header
// is refused — "none", RS256 with an HMAC key, a missing alg — as are
// tokens without `exp`, expired or not yet valid ones, and tokens of another
// issuer or audience when those are configured.

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace sb::edge {

/// Who is calling, as the credential says.
struct Principal {
  std::string subject;  // `sub`
  std::string tenant;   // `tenant`
  std::vector<std::string> roles;
  std::int64_t expires_at = 0;  // `exp`, epoch seconds
  std::string token_id;         // `jti` (may be empty)

  bool has_role(std::string_view role) const;
  bool super_admin() const { return has_role("super_admin"); }
  /// "user:<subject>".
  std::string actor() const { return "user:" + subject; }
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
  /// A token for `principal` signed with the first key (tests, dev tokens).
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

}  // namespace sb::edge
