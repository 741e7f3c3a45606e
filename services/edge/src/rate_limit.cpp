#include "switchboard/edge/rate_limit.hpp"

#include <atomic>
#include <chrono>
#include <cmath>

#include "redis_pool.hpp"
#include "switchboard/shared/log.hpp"
#include "switchboard/shared/metrics.hpp"

namespace sb::edge {

namespace {

// KEYS: the buckets; ARGV: per_second, burst for each. Refills each bucket
// by the time passed (Redis' own clock: edges may disagree), then takes one
// token from every bucket only if each has one. Returns {refused bucket
// (1-based; 0: allowed), wait ms, tokens left in each bucket...}.
constexpr const char* kTakeScript = R"(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS
local tokens = {}
local refused = 0
local wait = 0
for i = 1, n do
  local rate = tonumber(ARGV[2 * i - 1]) / 1000
  local burst = tonumber(ARGV[2 * i])
  local v = redis.call('HMGET', KEYS[i], 't', 'ts')
  local tk = tonumber(v[1])
  local ts = tonumber(v[2])
  if tk == nil or ts == nil then
    tk = burst
    ts = now
  end
  if now > ts then tk = math.min(burst, tk + (now - ts) * rate) end
  tokens[i] = tk
  if tk < 1 then
    local w = math.ceil((1 - tk) / rate)
    if w > wait or refused == 0 then
      wait = w
      refused = i
    end
  end
end
local out = {refused, wait}
for i = 1, n do
  local rate = tonumber(ARGV[2 * i - 1]) / 1000
  local burst = tonumber(ARGV[2 * i])
  local tk = tokens[i]
  if refused == 0 then tk = tk - 1 end
  redis.call('HSET', KEYS[i], 't', tostring(tk), 'ts', now)
  redis.call('PEXPIRE', KEYS[i], math.ceil(burst / rate) + 1000)
  out[#out + 1] = math.floor(tk)
end
return out
)";

std::string number(double v) {
  char buf[64];
  const int n = std::snprintf(buf, sizeof buf, "%.17g", v);
  return std::string(buf, static_cast<std::size_t>(n));
}

class RedisRateLimiter final : public RateLimiter {
 public:
  explicit RedisRateLimiter(RedisPoolOptions o) : pool_(std::move(o)) {}

  RateDecision take(const std::vector<RateBucket>& buckets) override {
    std::vector<std::string> keys;
    std::vector<std::string> args;
    keys.reserve(buckets.size());
    args.reserve(buckets.size() * 2);
    for (const auto& b : buckets) {
      keys.push_back(b.key);
      args.push_back(number(b.per_second));
      args.push_back(std::to_string(b.burst));
    }
    auto reply = pool_.with([&](redis::Client& c) { return c.eval(kTakeScript, keys, args); });
    const auto& e = reply.elements();
    if (e.size() != 2 + buckets.size()) throw redis::Error("unexpected rate limit script reply");
    RateDecision d;
    const auto refused = e[0].as_integer();
    if (refused > 0 && static_cast<std::size_t>(refused) <= buckets.size()) {
      d.allowed = false;
      d.limit = buckets[static_cast<std::size_t>(refused - 1)].burst;
      d.remaining = 0;
      d.retry_after_s = std::max<std::int64_t>(1, (e[1].as_integer() + 999) / 1000);
      return d;
    }
    bool first = true;
    for (std::size_t i = 0; i < buckets.size(); ++i) {
      const auto left = std::max<std::int64_t>(0, e[2 + i].as_integer());
      if (first || left < d.remaining) {
        d.remaining = left;
        d.limit = buckets[i].burst;
        first = false;
      }
    }
    return d;
  }

 private:
  RedisPool pool_;
};

std::int64_t capacity(double per_second, std::optional<std::int64_t> burst) {
  if (burst && *burst >= 1) return *burst;
  return std::max<std::int64_t>(1, static_cast<std::int64_t>(std::ceil(per_second)));
}

metrics::Counter& errors() {
  static auto& c = metrics::Registry::global().counter(
      "sb_edge_rate_limit_errors_total",
      "Calls let through because the rate limit store could not be reached");
  return c;
}
metrics::Counter& refusals() {
  static auto& c =
      metrics::Registry::global().counter("sb_edge_rate_limited_total", "Calls refused with 429");
  return c;
}

// At most one log line per 10 s about an unreachable limiter.
void log_failure(const std::exception& e) {
  static std::atomic<std::int64_t> last{0};
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::steady_clock::now().time_since_epoch())
                       .count();
  auto prev = last.load(std::memory_order_relaxed);
  if (now - prev < 10 && prev != 0) return;
  if (!last.compare_exchange_strong(prev, now)) return;
  log::warn("rate limits cannot be checked: letting calls through", {{"error", e.what()}});
}

}  // namespace

std::unique_ptr<RateLimiter> make_redis_rate_limiter(RedisPoolOptions options) {
  return std::make_unique<RedisRateLimiter>(std::move(options));
}

std::string rate_credential(const auth::Principal* p, std::string_view client_addr) {
  if (!p) return "ip:" + std::string(client_addr);
  if (p->kind == auth::Principal::Kind::api_key) return "key:" + p->subject;
  return "user:" + p->tenant + "/" + p->subject;
}

std::vector<RateBucket> rate_buckets(std::string_view endpoint_key,
                                     const std::optional<registry::RateLimit>& endpoint_limit,
                                     const auth::Principal* principal, std::string_view client_addr,
                                     const RateLimitDefaults& defaults) {
  std::vector<RateBucket> out;
  const bool endpoint = endpoint_limit && endpoint_limit->per_second > 0;
  const bool fallback = principal && defaults.per_second > 0;
  if (!endpoint && !fallback) return out;
  const auto credential = rate_credential(principal, client_addr);
  if (endpoint) {
    RateBucket b;
    b.key = "sb:rl:" + std::string(endpoint_key) + "|" + credential;
    b.per_second = endpoint_limit->per_second;
    b.burst = capacity(b.per_second, endpoint_limit->burst);
    out.push_back(std::move(b));
  }
  if (fallback) {
    RateBucket b;
    b.key = "sb:rl:edge|" + credential;
    b.per_second = defaults.per_second;
    b.burst =
        capacity(b.per_second,
                 defaults.burst > 0 ? std::optional<std::int64_t>(defaults.burst) : std::nullopt);
    out.push_back(std::move(b));
  }
  return out;
}

std::optional<HttpResponse> check_rate_limits(RateLimiter* limiter,
                                              const std::vector<RateBucket>& buckets,
                                              std::vector<Header>& headers) {
  if (!limiter || buckets.empty()) return std::nullopt;
  RateDecision d;
  try {
    d = limiter->take(buckets);
  } catch (const std::exception& e) {
    errors().inc();
    log_failure(e);
    return std::nullopt;
  }
  if (d.allowed) {
    headers.push_back({"ratelimit-limit", std::to_string(d.limit)});
    headers.push_back({"ratelimit-remaining", std::to_string(d.remaining)});
    return std::nullopt;
  }
  refusals().inc();
  auto r = error_response(429, "rate_limited", "too many requests; retry later",
                          "{\"retry_after_s\":" + std::to_string(d.retry_after_s) + "}");
  r.set_header("retry-after", std::to_string(d.retry_after_s));
  r.set_header("ratelimit-limit", std::to_string(d.limit));
  r.set_header("ratelimit-remaining", "0");
  return r;
}

}  // namespace sb::edge
