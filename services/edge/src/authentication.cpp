#include "switchboard/edge/authentication.hpp"

#include "switchboard/edge/identity_view.hpp"
#include "switchboard/shared/json.hpp"

namespace sb::edge {

namespace {

HttpError unauthenticated(std::string_view reason) {
  std::string details = "{\"reason\":";
  json::append_quoted(details, reason);
  details += '}';
  return HttpError(401, "unauthenticated", "authentication required", details);
}

std::string_view bearer_token(const std::string& header) {
  std::string_view v(header);
  constexpr std::string_view kBearer = "bearer ";
  if (v.size() <= kBearer.size() || lower(v.substr(0, kBearer.size())) != kBearer) {
    throw unauthenticated("the Authorization header is not a Bearer token");
  }
  v.remove_prefix(kBearer.size());
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  return v;
}

auth::Principal from_api_key(const IdentityView* view, std::string_view key, std::int64_t now) {
  const auto parsed = auth::parse_api_key(key);
  if (!parsed) throw unauthenticated("malformed API key (sbk_<prefix>_<secret>)");
  auto record = view ? view->api_key(parsed->prefix) : std::nullopt;
  if (!record) throw unauthenticated("unknown API key");
  // The hash first: a guessed prefix learns nothing about the key's state.
  if (!auth::constant_time_equal(auth::sha256_hex(key), record->key_hash)) {
    throw unauthenticated("unknown API key");
  }
  if (record->revoked) throw unauthenticated("the API key was revoked");
  if (record->expires_at != 0 && now >= record->expires_at) {
    throw unauthenticated("the API key expired");
  }
  auth::Principal p;
  p.kind = auth::Principal::Kind::api_key;
  p.subject = std::move(record->key_id);
  p.tenant = std::move(record->tenant);
  p.roles = std::move(record->roles);
  p.scopes = std::move(record->scopes);
  p.expires_at = record->expires_at;
  return p;
}

}  // namespace

std::optional<auth::Principal> authenticate_optional(const auth::JwtVerifier& verifier,
                                                     const IdentityView* view,
                                                     const HttpRequest& request, std::int64_t now) {
  const auto* authorization = request.header("authorization");
  const auto* api_key = request.header("x-api-key");
  if (authorization && api_key) {
    throw HttpError(400, "invalid_request", "send either Authorization or X-API-Key, not both",
                    "{\"header\":\"X-API-Key\"}");
  }
  if (api_key) return from_api_key(view, *api_key, now);
  if (!authorization) return std::nullopt;
  auth::Principal p;
  try {
    p = verifier.verify(bearer_token(*authorization), now);
  } catch (const auth::JwtError& e) {
    throw unauthenticated(e.what());
  }
  if (view) {
    const auto denial = view->check_token(p.subject, p.session_id, p.user_version);
    if (denial != TokenDenial::none) throw unauthenticated(to_string(denial));
  }
  return p;
}

auth::Principal authenticate(const auth::JwtVerifier& verifier, const IdentityView* view,
                             const HttpRequest& request, std::int64_t now) {
  auto p = authenticate_optional(verifier, view, request, now);
  if (!p) throw unauthenticated("no credential");
  return std::move(*p);
}

}  // namespace sb::edge
