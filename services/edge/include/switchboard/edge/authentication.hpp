#pragma once
// Authentication, the first filter after the route lookup (docs/protocol.md
// 11.2, 11.5). Two credentials, never both (400):
//
//   Authorization: Bearer <JWT>  verified (HS256, exp, nbf, iss/aud), then
//                                the identity view's deny checks: session
//                                revoked, `uv` below the user's
//                                security_version, user deactivated;
//   X-API-Key: sbk_<prefix>_<secret>
//                                parsed (auth::parse_api_key: exactly the
//                                format of 11.2, else "malformed"), looked
//                                up by prefix in the identity view,
//                                SHA-256 hex of the whole key compared in
//                                constant time, then revoked / expired.
//
// Every refusal is 401 `unauthenticated` with the reason in details.reason.

#include <cstdint>
#include <optional>
#include <string_view>

#include "switchboard/edge/http.hpp"
#include "switchboard/shared/auth.hpp"

namespace sb::edge {

class IdentityView;

/// The credential of a request, or nullopt when it carries none (a public
/// endpoint may be called anonymously; a bad credential is still 401).
/// `view` null: JWT only, no deny checks, API keys unknown.
std::optional<auth::Principal> authenticate_optional(const auth::JwtVerifier& verifier,
                                                     const IdentityView* view,
                                                     const HttpRequest& request,
                                                     std::int64_t now_epoch_s);
/// The same, 401 when there is no credential.
auth::Principal authenticate(const auth::JwtVerifier& verifier, const IdentityView* view,
                             const HttpRequest& request, std::int64_t now_epoch_s);

}  // namespace sb::edge
