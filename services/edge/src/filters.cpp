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

namespace {

std::optional<std::uint32_t> ipv4(std::string_view s) {
  std::uint32_t out = 0;
  for (int part = 0; part < 4; ++part) {
    const auto dot = s.find('.');
    const auto piece = part < 3 ? s.substr(0, dot) : s;
    if (piece.empty() || piece.size() > 3 || (part < 3 && dot == std::string_view::npos)) {
      return std::nullopt;
    }
    auto v = parse_int(piece);
    if (!v || *v < 0 || *v > 255) return std::nullopt;
    out = (out << 8) | static_cast<std::uint32_t>(*v);
    if (part < 3) s.remove_prefix(dot + 1);
  }
  return out;
}

bool trusted(std::string_view address, const std::vector<std::string>& proxies) {
  for (const auto& p : proxies) {
    const std::string_view entry(p);
    const auto slash = entry.find('/');
    if (slash == std::string_view::npos) {
      if (entry == address) return true;
      continue;
    }
    auto net = ipv4(entry.substr(0, slash));
    auto bits = parse_int(entry.substr(slash + 1));
    auto a = ipv4(address);
    if (!net || !bits || *bits < 0 || *bits > 32 || !a) continue;
    const std::uint32_t mask =
        *bits == 0 ? 0 : ~std::uint32_t{0} << (32 - static_cast<std::uint32_t>(*bits));
    if ((*a & mask) == (*net & mask)) return true;
  }
  return false;
}

}  // namespace

std::string client_address(std::string_view peer, const std::string* x_forwarded_for,
                           const std::vector<std::string>& trusted_proxies) {
  if (trusted_proxies.empty() || x_forwarded_for == nullptr || !trusted(peer, trusted_proxies)) {
    return std::string(peer);
  }
  std::string_view rest(*x_forwarded_for);
  std::string_view leftmost;
  while (!rest.empty()) {
    const auto comma = rest.rfind(',');
    const auto hop = text::trim(comma == std::string_view::npos ? rest : rest.substr(comma + 1));
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(0, comma);
    if (hop.empty()) continue;
    leftmost = hop;
    if (!trusted(hop, trusted_proxies)) return std::string(hop.substr(0, 64));
  }
  return leftmost.empty() ? std::string(peer) : std::string(leftmost.substr(0, 64));
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
