#pragma once
// The edge's filter chain, one function per concern, each unit-tested on its
// own (tests/unit/edge). The order in gateway.cpp:
//
//   limits (413/431)
//   -> route lookup (to learn whether the endpoint is public)
//   -> authentication (authentication.hpp: JWT + deny checks, or X-API-Key; 401)
//   -> tenant (resolve_tenant below; tenant_check.hpp: suspended, 403)
//   -> services enabled for the tenant (service_policy.hpp, 403)
//   -> roles and scopes (rbac.hpp, 403)
//   -> rate limits (rate_limit.hpp, 429)
//   -> idempotency -> schema validation -> forward.
//
// Reads of events (events API, streams, correlations, SSE) pass their
// bodies through redaction.hpp (`*_hash` members).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "switchboard/edge/authentication.hpp"
#include "switchboard/edge/http.hpp"
#include "switchboard/shared/auth.hpp"

namespace sb::edge {

struct Limits {
  std::size_t max_body_bytes = 1 << 20;
  std::size_t max_header_bytes = 16 << 10;
  std::size_t max_headers = 100;
};

/// 431 for too many or too large headers, 413 for a declared body over the
/// limit, 400 for a malformed Content-Length; nullopt when within limits.
std::optional<HttpResponse> check_limits(const HttpRequest& request, const Limits& limits);

/// The tenant a call acts for: the credential's; a super admin may name
/// another with `X-Tenant`. Throws HttpError 403 when anyone else names a
/// tenant not their own, 400 for a malformed tenant, 403 when a non-admin
/// credential carries no tenant.
std::string resolve_tenant(const auth::Principal& principal, const HttpRequest& request);

/// Throws HttpError 403 `forbidden` unless the principal holds one of
/// `roles` (empty: any authenticated caller; super_admin passes always).
void require_roles(const auth::Principal& principal, const std::vector<std::string>& roles);

/// The call's timeout: `X-Request-Timeout` (ms, 1 .. max) or `fallback`.
/// Throws HttpError 400 for a malformed value.
std::chrono::milliseconds request_timeout(const HttpRequest& request,
                                          std::chrono::milliseconds fallback,
                                          std::chrono::milliseconds max);

/// `X-Min-Position`: nullopt when absent; throws HttpError 400 when malformed.
std::optional<std::int64_t> min_position(const HttpRequest& request);

/// The headers passed on to a service (docs/protocol.md 9.4): the
/// request's minus hop-by-hop ones, Host, Authorization, X-API-Key, Cookie,
/// Content-Length, and any X-SB-* a caller tried to set itself.
std::vector<Header> passthrough_headers(const HttpRequest& request);

/// The caller's address: `peer` (the socket's), unless `peer` is one of
/// `trusted_proxies` — then the right-most `X-Forwarded-For` entry that is
/// not a trusted proxy (the left-most when all are). Entries of
/// `trusted_proxies` are addresses or IPv4 CIDR blocks ("10.0.0.0/8").
/// Without trusted proxies X-Forwarded-For is ignored: any client can set it.
std::string client_address(std::string_view peer, const std::string* x_forwarded_for,
                           const std::vector<std::string>& trusted_proxies);

/// Fingerprint of a command request for idempotency: method, path, body.
std::string request_fingerprint(const HttpRequest& request);

}  // namespace sb::edge
