// Authentication with the identity view's deny checks, and API keys.
#include <gtest/gtest.h>

#include "identity_events.hpp"
#include "switchboard/edge/authentication.hpp"
#include "switchboard/edge/identity_view.hpp"
#include "switchboard/shared/json.hpp"

using namespace sb;
using namespace sb::edge;
using sb::edgetest::IdentityEvents;

namespace {

const std::string kKey = "0123456789abcdef0123456789abcdef-key-1";
constexpr std::int64_t kNow = 1'800'000'000;
const std::string kApiKey = "sbk_0123456789ab_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3J";

auth::JwtVerifier verifier() {
  auth::JwtOptions o;
  o.secrets = {kKey};
  return auth::JwtVerifier(o);
}

std::string token(const std::string& sub, const std::string& sid, std::int64_t uv) {
  auth::Principal p;
  p.subject = sub;
  p.tenant = "acme";
  p.roles = {"user"};
  p.expires_at = kNow + 900;
  p.session_id = sid;
  p.user_version = uv;
  return verifier().sign(p, kNow);
}

HttpRequest with(std::vector<Header> headers) {
  HttpRequest r;
  r.method = "GET";
  r.path = "/api/orders/x";
  r.headers = std::move(headers);
  return r;
}

HttpRequest bearer(const std::string& t) {
  return with({{"authorization", "Bearer " + t}});
}

// The reason of a 401 (or "" when the call passed); other errors rethrown.
std::string refusal(const IdentityView& view, const HttpRequest& req, std::int64_t now = kNow) {
  try {
    authenticate(verifier(), &view, req, now);
    return "";
  } catch (const HttpError& e) {
    EXPECT_EQ(e.status(), 401);
    EXPECT_EQ(e.code(), "unauthenticated");
    auto d = json::parse(e.details());
    return d["reason"].GetString();
  }
}

}  // namespace

TEST(Authentication, RevokedSessionIsRefused) {
  IdentityView v;
  IdentityEvents ev(v);
  EXPECT_EQ(refusal(v, bearer(token("u1", "s1", 0))), "");
  ev.revoke_session("acme", "s1", kNow + 900);
  EXPECT_EQ(refusal(v, bearer(token("u1", "s1", 0))), "the session was revoked");
  EXPECT_EQ(refusal(v, bearer(token("u1", "s2", 0))), "") << "another session of the user";
}

TEST(Authentication, TokenOlderThanTheUsersSecurityVersionIsRefused) {
  IdentityView v;
  IdentityEvents ev(v);
  ev.user_event("password_changed", "acme", "u1", 4);
  EXPECT_NE(refusal(v, bearer(token("u1", "s1", 3))).find("predates"), std::string::npos);
  EXPECT_EQ(refusal(v, bearer(token("u1", "s1", 4))), "");
}

TEST(Authentication, DeactivatedUserIsRefused) {
  IdentityView v;
  IdentityEvents ev(v);
  ev.user_event("deactivated", "acme", "u1", 1);
  EXPECT_EQ(refusal(v, bearer(token("u1", "s1", 1))), "the user is deactivated");
}

TEST(Authentication, TokensOfUsersTheViewDoesNotKnowPass) {
  IdentityView v;
  auto p = authenticate(verifier(), &v, bearer(token("dev", "", 0)), kNow);
  EXPECT_EQ(p.subject, "dev");
  EXPECT_EQ(p.actor(), "user:dev");
}

TEST(Authentication, ApiKeyGoodHashGivesTheKeysPrincipal) {
  IdentityView v;
  IdentityEvents ev(v);
  ev.api_key("acme", "k1", "0123456789ab", auth::sha256_hex(kApiKey), R"(["user"])",
             R"(["command:orders.*"])");
  auto p = authenticate(verifier(), &v, with({{"x-api-key", kApiKey}}), kNow);
  EXPECT_EQ(p.kind, auth::Principal::Kind::api_key);
  EXPECT_EQ(p.subject, "k1");
  EXPECT_EQ(p.tenant, "acme");
  EXPECT_EQ(p.roles, std::vector<std::string>{"user"});
  EXPECT_EQ(p.scopes, std::vector<std::string>{"command:orders.*"});
  EXPECT_EQ(p.actor(), "key:k1");
}

TEST(Authentication, ApiKeyBadHashUnknownPrefixMalformedRevokedExpiredAreRefused) {
  IdentityView v;
  IdentityEvents ev(v);
  ev.api_key("acme", "k1", "0123456789ab", auth::sha256_hex(kApiKey), "[]", R"(["*"])");
  auto wrong = kApiKey;
  wrong.back() = wrong.back() == 'A' ? 'B' : 'A';
  EXPECT_EQ(refusal(v, with({{"x-api-key", wrong}})), "unknown API key") << "bad hash";
  EXPECT_EQ(refusal(v, with({{"x-api-key", "sbk_ffffffffffff_" + std::string(43, 's')}})),
            "unknown API key");
  const std::vector<std::string> malformed_keys = {"sbk_XYZ_secret", "sbk_0123456789ab_secret",
                                                   "sbk_0123456789AB_" + std::string(43, 's')};
  for (const auto& malformed : malformed_keys) {
    EXPECT_NE(refusal(v, with({{"x-api-key", malformed}})).find("malformed"), std::string::npos)
        << malformed;
  }
  EXPECT_NE(refusal(v, with({{"x-api-key", "Bearer whatever"}})).find("malformed"),
            std::string::npos);
  // Expired.
  const std::string expiring = "sbk_aaaaaaaaaaaa_" + std::string(43, 'x');
  ev.api_key("acme", "k2", "aaaaaaaaaaaa", auth::sha256_hex(expiring), "[]", R"(["*"])", kNow);
  EXPECT_EQ(refusal(v, with({{"x-api-key", expiring}}), kNow - 1), "");
  EXPECT_EQ(refusal(v, with({{"x-api-key", expiring}}), kNow), "the API key expired");
  // Revoked.
  ev.apply("identity.apikey.revoked", "apikey-k1", "acme",
           R"({"key_id":"k1","prefix":"0123456789ab"})");
  EXPECT_EQ(refusal(v, with({{"x-api-key", kApiKey}})), "the API key was revoked");
}

TEST(Authentication, BothCredentialsAre400NoneIsAnonymous) {
  IdentityView v;
  try {
    authenticate_optional(
        verifier(), &v,
        with({{"authorization", "Bearer " + token("u1", "", 0)}, {"x-api-key", kApiKey}}), kNow);
    FAIL();
  } catch (const HttpError& e) {
    EXPECT_EQ(e.status(), 400);
  }
  EXPECT_FALSE(authenticate_optional(verifier(), &v, with({}), kNow));
  EXPECT_EQ(refusal(v, with({})), "no credential");
}
