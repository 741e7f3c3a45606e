// The filter chain's units: limits, authentication, tenant, roles,
// timeouts, pass-through headers, and the idempotency record format.
#include <gtest/gtest.h>

#include "switchboard/edge/filters.hpp"
#include "switchboard/edge/idempotency.hpp"

using namespace sb::edge;
using namespace std::chrono_literals;

namespace {

const std::string kKey = "0123456789abcdef0123456789abcdef-key-1";
constexpr std::int64_t kNow = 1'800'000'000;

sb::auth::JwtVerifier verifier() {
  sb::auth::JwtOptions o;
  o.secrets = {kKey};
  return sb::auth::JwtVerifier(o);
}

HttpRequest with(std::vector<Header> headers) {
  HttpRequest r;
  r.method = "POST";
  r.path = "/api/v1/commands/orders/place";
  r.headers = std::move(headers);
  return r;
}

sb::auth::Principal principal(std::string tenant, std::vector<std::string> roles) {
  sb::auth::Principal p;
  p.subject = "u1";
  p.tenant = std::move(tenant);
  p.roles = std::move(roles);
  p.expires_at = kNow + 60;
  return p;
}

int status_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const HttpError& e) {
    return e.status();
  }
  return 0;
}

}  // namespace

TEST(Limits, BodyAndHeadersOverTheLimitAreRefusedWithClearStatuses) {
  Limits l;
  l.max_body_bytes = 100;
  l.max_header_bytes = 200;
  l.max_headers = 3;
  EXPECT_FALSE(check_limits(with({{"content-length", "100"}}), l));
  auto big = check_limits(with({{"content-length", "101"}}), l);
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
  EXPECT_NE(big->body.find("\"code\":\"body_too_large\""), std::string::npos);
  EXPECT_EQ(check_limits(with({{"content-length", "ten"}}), l)->status, 400);
  EXPECT_EQ(check_limits(with({{"a", "1"}, {"b", "1"}, {"c", "1"}, {"d", "1"}}), l)->status, 431);
  EXPECT_EQ(check_limits(with({{"x-big", std::string(300, 'x')}}), l)->status, 431);
}

TEST(Auth, MissingMalformedOrBadCredentialsAre401) {
  auto v = verifier();
  EXPECT_EQ(status_of([&] { authenticate(v, nullptr, with({}), kNow); }), 401);
  EXPECT_EQ(status_of([&] {
              authenticate(v, nullptr, with({{"authorization", "Basic abc"}}), kNow);
            }),
            401);
  EXPECT_EQ(status_of([&] {
              authenticate(v, nullptr, with({{"authorization", "Bearer x.y.z"}}), kNow);
            }),
            401);
  auto token = v.sign(principal("acme", {"user"}), kNow);
  auto p = authenticate(v, nullptr, with({{"authorization", "Bearer " + token}}), kNow);
  EXPECT_EQ(p.subject, "u1");
  EXPECT_EQ(authenticate(v, nullptr, with({{"authorization", "bearer " + token}}), kNow).tenant,
            "acme");
  // Optional: absent is fine, present-but-bad is still 401.
  EXPECT_FALSE(authenticate_optional(v, nullptr, with({}), kNow));
  EXPECT_EQ(status_of([&] {
              authenticate_optional(v, nullptr, with({{"authorization", "Bearer bad"}}), kNow);
            }),
            401);
}

TEST(Tenant, OnlyASuperAdminActsForAnotherTenant) {
  EXPECT_EQ(resolve_tenant(principal("acme", {"user"}), with({})), "acme");
  EXPECT_EQ(resolve_tenant(principal("acme", {"user"}), with({{"x-tenant", "acme"}})), "acme");
  EXPECT_EQ(status_of([] {
              resolve_tenant(principal("acme", {"user"}), with({{"x-tenant", "globex"}}));
            }),
            403);
  EXPECT_EQ(resolve_tenant(principal("acme", {"super_admin"}), with({{"x-tenant", "globex"}})),
            "globex");
  EXPECT_EQ(
      status_of([] {
        resolve_tenant(principal("acme", {"super_admin"}), with({{"x-tenant", "Bad Tenant"}}));
      }),
      400);
  EXPECT_EQ(status_of([] { resolve_tenant(principal("", {"user"}), with({})); }), 403);
}

TEST(Roles, AnyListedRoleOrSuperAdminPasses) {
  EXPECT_EQ(status_of([] { require_roles(principal("a", {}), {}); }), 0);
  EXPECT_EQ(status_of([] { require_roles(principal("a", {"user"}), {"admin"}); }), 403);
  EXPECT_EQ(status_of([] { require_roles(principal("a", {"user", "admin"}), {"admin"}); }), 0);
  EXPECT_EQ(status_of([] { require_roles(principal("a", {"super_admin"}), {"admin"}); }), 0);
}

TEST(Timeouts, HeaderIsCappedAndValidated) {
  EXPECT_EQ(request_timeout(with({}), 10s, 60s), 10s);
  EXPECT_EQ(request_timeout(with({{"x-request-timeout", "1500"}}), 10s, 60s), 1500ms);
  EXPECT_EQ(request_timeout(with({{"x-request-timeout", "999999"}}), 10s, 60s), 60s);
  EXPECT_EQ(status_of([] { request_timeout(with({{"x-request-timeout", "-1"}}), 10s, 60s); }), 400);
  EXPECT_EQ(status_of([] { request_timeout(with({{"x-request-timeout", "1s"}}), 10s, 60s); }), 400);
  EXPECT_EQ(min_position(with({{"x-min-position", "42"}})), 42);
  EXPECT_FALSE(min_position(with({})));
  EXPECT_EQ(status_of([] { min_position(with({{"x-min-position", "x"}})); }), 400);
}

TEST(Passthrough, CredentialsHopByHopAndPlatformHeadersAreNotPassedOn) {
  auto out = passthrough_headers(with({{"authorization", "Bearer t"},
                                       {"x-api-key", "k"},
                                       {"cookie", "c"},
                                       {"connection", "keep-alive"},
                                       {"host", "edge"},
                                       {"x-sb-tenant", "forged"},
                                       {"x-test", "1"},
                                       {"accept", "application/json"}}));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].name, "x-test");
  EXPECT_EQ(out[1].name, "accept");
}

TEST(Idempotency, KeptResponsesRoundTripAndFingerprintsDifferPerBody) {
  HttpResponse r;
  r.status = 201;
  r.content_type = "application/json";
  r.body = R"({"position":7})";
  const auto fp = std::string(64, 'a');
  auto back = decode_kept(encode_kept(fp, r));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->first, fp);
  EXPECT_EQ(back->second.status, 201);
  EXPECT_EQ(back->second.content_type, "application/json");
  EXPECT_EQ(back->second.body, r.body);
  EXPECT_FALSE(decode_kept("Pabc"));
  EXPECT_FALSE(decode_kept("D" + std::string(64, 'a') + "2x1"));
  auto a = with({});
  a.body = "{\"n\":1}";
  auto b = a;
  b.body = "{\"n\":2}";
  EXPECT_EQ(request_fingerprint(a).size(), 64u);
  EXPECT_NE(request_fingerprint(a), request_fingerprint(b));
  EXPECT_TRUE(valid_idempotency_key("order-42-attempt"));
  EXPECT_FALSE(valid_idempotency_key(""));
  EXPECT_FALSE(valid_idempotency_key("has space"));
  EXPECT_FALSE(valid_idempotency_key(std::string(201, 'k')));
  EXPECT_EQ(idempotency_redis_key("acme", "k1"), "sb:idem:acme:k1");
}

TEST(Http, PercentDecodingAndQueryParameters) {
  EXPECT_EQ(percent_decode("a%2Fb%20c"), "a/b c");
  EXPECT_FALSE(percent_decode("bad%2"));
  EXPECT_FALSE(percent_decode("bad%g1"));
  EXPECT_EQ(query_param("a=1&ms=250&b=x+y", "ms"), "250");
  EXPECT_EQ(query_param("a=1&b=x+y", "b"), "x y");
  EXPECT_FALSE(query_param("a=1", "ms"));
  auto e = error_response(409, "wrong_expected_version", "conflict", R"({"current_version":3})");
  EXPECT_EQ(
      e.body,
      R"({"error":{"code":"wrong_expected_version","message":"conflict","details":{"current_version":3}}})");
}

TEST(ClientAddress, ForwardedForIsBelievedOnlyFromATrustedProxy) {
  const std::string xff = "203.0.113.7, 10.1.2.3";
  // No trusted proxies: the socket's peer, whatever the header says.
  EXPECT_EQ(client_address("198.51.100.1", &xff, {}), "198.51.100.1");
  // A peer that is not a trusted proxy: its own address.
  EXPECT_EQ(client_address("198.51.100.1", &xff, {"10.0.0.0/8"}), "198.51.100.1");
  // A trusted proxy: the right-most untrusted hop (the proxy chain is skipped).
  EXPECT_EQ(client_address("10.9.9.9", &xff, {"10.0.0.0/8"}), "203.0.113.7");
  EXPECT_EQ(client_address("127.0.0.1", &xff, {"127.0.0.1"}), "10.1.2.3");
  // A client cannot hide behind a forged left-most entry.
  const std::string forged = "1.1.1.1, 203.0.113.7";
  EXPECT_EQ(client_address("10.0.0.1", &forged, {"10.0.0.0/8"}), "203.0.113.7");
  // All hops trusted: the left-most; no header: the peer.
  const std::string inner = "10.0.0.2,10.0.0.3";
  EXPECT_EQ(client_address("10.0.0.1", &inner, {"10.0.0.0/8"}), "10.0.0.2");
  EXPECT_EQ(client_address("10.0.0.1", nullptr, {"10.0.0.0/8"}), "10.0.0.1");
  // CIDR edges and junk entries.
  EXPECT_EQ(client_address("192.168.1.255", &xff, {"192.168.1.0/24"}), "10.1.2.3");
  EXPECT_EQ(client_address("192.168.2.0", &xff, {"192.168.1.0/24"}), "192.168.2.0");
  EXPECT_EQ(client_address("10.0.0.1", &xff, {"10.0.0.0/33", "nonsense/8", "10.0.0"}), "10.0.0.1");
  // Everything trusted: the left-most hop.
  EXPECT_EQ(client_address("10.0.0.1", &xff, {"0.0.0.0/0"}), "203.0.113.7");
}
