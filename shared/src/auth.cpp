#include "switchboard/shared/auth.hpp"

#include <rapidjson/document.h>
#include <sodium.h>

#include <algorithm>
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

}  // namespace sb::auth
