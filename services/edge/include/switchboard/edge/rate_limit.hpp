#pragma once
// Rate limits (docs/protocol.md 11.5): token buckets in Redis, so every
// edge replica draws from the same ones. A call draws one token from each
// bucket that applies, all or none, in one Lua script (atomic):
//
//   the endpoint's `rate_limit` (8.2), per credential (user, API key) or,
//   for an anonymous call, per client address — key
//   `sb:rl:<permission key>|<credential>`;
//   the edge's default `edge.rate_limit.per_second` / `.burst` per
//   credential (0: off, the default) — key `sb:rl:edge|<credential>`.
//
// A refused call is 429 `rate_limited` with Retry-After (seconds, >= 1);
// every limited answer carries RateLimit-Limit (the tightest bucket's
// capacity) and RateLimit-Remaining. When Redis cannot be reached the call
// goes through: sb_edge_rate_limit_errors_total counts it, and the failure is
// logged (at most once per 10 s).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "switchboard/edge/http.hpp"
#include "switchboard/edge/idempotency.hpp"
#include "switchboard/registry/protocol.hpp"
#include "switchboard/shared/auth.hpp"

namespace sb::edge {

struct RateBucket {
  std::string key;  // the Redis key
  double per_second = 0;
  std::int64_t burst = 1;  // capacity
};

struct RateDecision {
  bool allowed = true;
  std::int64_t limit = 0;  // the tightest (or refusing) bucket's capacity
  std::int64_t remaining = 0;
  std::int64_t retry_after_s = 0;  // >= 1 when refused
};

class RateLimiter {
 public:
  virtual ~RateLimiter() = default;
  /// Takes a token from every bucket, or from none when one is empty.
  /// Throws (redis::Error) when the store cannot be reached.
  virtual RateDecision take(const std::vector<RateBucket>& buckets) = 0;
};

std::unique_ptr<RateLimiter> make_redis_rate_limiter(RedisPoolOptions options);

struct RateLimitDefaults {
  double per_second = 0;   // 0: no default bucket
  std::int64_t burst = 0;  // 0: ceil(per_second)
};

/// Who a bucket is kept for: `user:<tenant>/<subject>`, `key:<id>`, or
/// `ip:<client address>` when there is no principal.
std::string rate_credential(const auth::Principal* principal, std::string_view client_addr);

/// The buckets a call draws from (possibly none). `endpoint_key` is the
/// call's permission key (rbac.hpp).
std::vector<RateBucket> rate_buckets(std::string_view endpoint_key,
                                     const std::optional<registry::RateLimit>& endpoint_limit,
                                     const auth::Principal* principal, std::string_view client_addr,
                                     const RateLimitDefaults& defaults);

/// The filter: draws from `buckets` (nothing to do without buckets or
/// limiter). Returns the 429 answer when refused; otherwise adds the
/// RateLimit-* headers to `headers` and returns nullopt. A limiter failure
/// lets the call through (counted, logged).
std::optional<HttpResponse> check_rate_limits(RateLimiter* limiter,
                                              const std::vector<RateBucket>& buckets,
                                              std::vector<Header>& headers);

}  // namespace sb::edge
