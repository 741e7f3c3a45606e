#include "switchboard/edge/filters.hpp"

#include <charconv>

#include "switchboard/shared/json.hpp"

namespace sb::edge {

namespace {

using text::parse_int;

bool valid_tenant(std::string_view t) {
  if (t.empty() || t.size() > 63) return false;
  for (char c : t) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

std::optional<HttpResponse> check_limits(const HttpRequest& request, const Limits& limits) {
  if (request.headers.size() > limits.max_headers) {
    return error_response(431, "headers_too_large", "too many request headers",
                          "{\"max_headers\":" + std::to_string(limits.max_headers) + "}");
  }
  if (request.header_bytes() > limits.max_header_bytes) {
    return error_response(431, "headers_too_large", "request headers too large",
                          "{\"max_header_bytes\":" + std::to_string(limits.max_header_bytes) + "}");
  }
  if (const auto* cl = request.header("content-length")) {
    auto n = parse_int(*cl);
    if (!n || *n < 0) return error_response(400, "invalid_request", "malformed Content-Length");
    if (static_cast<std::uint64_t>(*n) > limits.max_body_bytes) {
      return error_response(413, "body_too_large", "request body too large",
                            "{\"max_body_bytes\":" + std::to_string(limits.max_body_bytes) + "}");
    }
  }
  return std::nullopt;
}

std::string resolve_tenant(const auth::Principal& principal, const HttpRequest& request) {
  const auto* named = request.header("x-tenant");
  if (named && !named->empty() && *named != principal.tenant) {
    if (!principal.super_admin()) {
      throw HttpError(403, "forbidden", "this credential may not act for another tenant");
    }
    if (!valid_tenant(*named)) {
      throw HttpError(400, "invalid_request", "malformed X-Tenant", "{\"header\":\"X-Tenant\"}");
    }
    return *named;
  }
  if (principal.tenant.empty()) {
    if (principal.super_admin()) return "_platform";
    throw HttpError(403, "forbidden", "the credential names no tenant");
  }
  return principal.tenant;
}

void require_roles(const auth::Principal& principal, const std::vector<std::string>& roles) {
  if (roles.empty() || principal.super_admin()) return;
  for (const auto& r : roles) {
    if (principal.has_role(r)) return;
  }
  std::string details = "{\"required_roles\":[";
  for (std::size_t i = 0; i < roles.size(); ++i) {
    if (i) details += ',';
    json::append_quoted(details, roles[i]);
  }
  details += "]}";
  throw HttpError(403, "forbidden", "the caller lacks the role this needs", details);
}

std::chrono::milliseconds request_timeout(const HttpRequest& request,
                                          std::chrono::milliseconds fallback,
                                          std::chrono::milliseconds max) {
  const auto* h = request.header("x-request-timeout");
  if (!h) return std::min(fallback, max);
  auto v = parse_int(*h);
  if (!v || *v < 1) {
    throw HttpError(400, "invalid_request", "X-Request-Timeout must be a positive integer (ms)",
                    "{\"header\":\"X-Request-Timeout\"}");
  }
  return std::min(std::chrono::milliseconds(*v), max);
}

std::optional<std::int64_t> min_position(const HttpRequest& request) {
  const auto* h = request.header("x-min-position");
  if (!h) return std::nullopt;
  auto v = parse_int(*h);
  if (!v || *v < 0) {
    throw HttpError(400, "invalid_request", "X-Min-Position must be a non-negative integer",
                    "{\"header\":\"X-Min-Position\"}");
  }
  return v;
}

std::vector<Header> passthrough_headers(const HttpRequest& request) {
  std::vector<Header> out;
  for (const auto& h : request.headers) {
    const auto& n = h.name;
    // Credentials, the edge's own headers and the ones it sets itself.
    if (hop_by_hop(n) || n == "host" || n == "authorization" || n == "x-api-key" || n == "cookie" ||
        n == "x-tenant" || n.rfind("x-sb-", 0) == 0 || n == "x-min-position" ||
        n == "x-correlation-id" || n == "traceparent" || n == "x-request-timeout" ||
        n == "idempotency-key" || n == "x-service-version") {
      continue;
    }
    out.push_back(h);
  }
  return out;
}

std::string request_fingerprint(const HttpRequest& request) {
  std::string data = request.method;
  data += ' ';
  data += request.path;
  data += '\n';
  data += request.body;
  return auth::sha256_hex(data);
}

}  // namespace sb::edge
