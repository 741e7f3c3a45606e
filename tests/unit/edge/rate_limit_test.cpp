// Rate limits: which buckets a call draws from, and the 429 answer.
#include <gtest/gtest.h>

#include "switchboard/edge/rate_limit.hpp"

using namespace sb;
using namespace sb::edge;

namespace {

auth::Principal user() {
  auth::Principal p;
  p.subject = "u1";
  p.tenant = "acme";
  return p;
}

class FakeLimiter : public RateLimiter {
 public:
  RateDecision next;
  bool fail = false;
  std::vector<RateBucket> seen;
  RateDecision take(const std::vector<RateBucket>& buckets) override {
    seen = buckets;
    if (fail) throw std::runtime_error("redis is away");
    return next;
  }
};

}  // namespace

TEST(RateLimit, BucketsPerCredentialOrClientAddress) {
  const auto u = user();
  auth::Principal k;
  k.kind = auth::Principal::Kind::api_key;
  k.subject = "key-1";
  EXPECT_EQ(rate_credential(&u, "10.0.0.1"), "user:acme/u1");
  EXPECT_EQ(rate_credential(&k, "10.0.0.1"), "key:key-1");
  EXPECT_EQ(rate_credential(nullptr, "10.0.0.1"), "ip:10.0.0.1");

  const std::string ep = "route:orders:GET:/orders/{id}";
  EXPECT_TRUE(rate_buckets(ep, std::nullopt, &u, "a", {}).empty()) << "no limits: no Redis call";
  auto b = rate_buckets(ep, registry::RateLimit{2.5, std::nullopt}, &u, "a", {});
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].key, "sb:rl:" + ep + "|user:acme/u1");
  EXPECT_EQ(b[0].burst, 3) << "burst defaults to ceil(per_second)";
  b = rate_buckets(ep, registry::RateLimit{1, 5}, nullptr, "1.2.3.4", {10, 0});
  ASSERT_EQ(b.size(), 1u) << "the edge default is per credential: not for anonymous calls";
  EXPECT_EQ(b[0].key, "sb:rl:" + ep + "|ip:1.2.3.4");
  EXPECT_EQ(b[0].burst, 5);
  b = rate_buckets(ep, registry::RateLimit{1, 5}, &u, "a", {10, 20});
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[1].key, "sb:rl:edge|user:acme/u1");
  EXPECT_EQ(b[1].per_second, 10);
  EXPECT_EQ(b[1].burst, 20);
}

TEST(RateLimit, RefusedIs429WithRetryAfterAndRateLimitHeaders) {
  FakeLimiter l;
  std::vector<Header> headers;
  const std::vector<RateBucket> buckets{{"k", 1, 2}};
  l.next = {true, 2, 1, 0};
  EXPECT_FALSE(check_rate_limits(&l, buckets, headers));
  ASSERT_EQ(headers.size(), 2u);
  EXPECT_EQ(headers[0].name, "ratelimit-limit");
  EXPECT_EQ(headers[0].value, "2");
  EXPECT_EQ(headers[1].value, "1");
  l.next = {false, 2, 0, 3};
  auto r = check_rate_limits(&l, buckets, headers);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 429);
  EXPECT_NE(r->body.find("\"rate_limited\""), std::string::npos);
  EXPECT_EQ(*r->header("retry-after"), "3");
  EXPECT_EQ(*r->header("ratelimit-limit"), "2");
  EXPECT_EQ(*r->header("ratelimit-remaining"), "0");
}

TEST(RateLimit, AnUnreachableStoreLetsTheCallThrough) {
  FakeLimiter l;
  l.fail = true;
  std::vector<Header> headers;
  EXPECT_FALSE(check_rate_limits(&l, {{"k", 1, 1}}, headers));
  EXPECT_TRUE(headers.empty());
  EXPECT_FALSE(check_rate_limits(nullptr, {{"k", 1, 1}}, headers));
}
