// Bearer-token verification: only HS256 with a configured key, and every
// way a token can be wrong is refused with the reason. Passwords, secrets,
// the API-key format (protocol 11.2), the role hierarchy and permission
// patterns (11.4).
#include <gtest/gtest.h>

#include <regex>

#include "switchboard/shared/auth.hpp"

using namespace sb::auth;

namespace {

const std::string kKey = "0123456789abcdef0123456789abcdef-key-1";
const std::string kOther = "fedcba9876543210fedcba9876543210-key-2";
constexpr std::int64_t kNow = 1'800'000'000;

JwtVerifier verifier(std::vector<std::string> keys = {kKey}) {
  JwtOptions o;
  o.secrets = std::move(keys);
  return JwtVerifier(o);
}

Principal alice(std::int64_t exp = kNow + 600) {
  Principal p;
  p.subject = "alice";
  p.tenant = "acme";
  p.roles = {"user", "orders-admin"};
  p.expires_at = exp;
  return p;
}

std::string forge(const std::string& header, const std::string& payload, const std::string& key) {
  auto t = base64url_encode(header) + "." + base64url_encode(payload);
  return t + "." + base64url_encode(hmac_sha256(key, t));
}

std::string reason(const JwtVerifier& v, const std::string& token) {
  try {
    v.verify(token, kNow);
  } catch (const JwtError& e) {
    return e.what();
  }
  return "accepted";
}

}  // namespace

TEST(Jwt, SignedTokenVerifiesWithItsClaims) {
  auto v = verifier();
  auto p = v.verify(v.sign(alice(), kNow), kNow);
  EXPECT_EQ(p.subject, "alice");
  EXPECT_EQ(p.tenant, "acme");
  EXPECT_EQ(p.roles, (std::vector<std::string>{"user", "orders-admin"}));
  EXPECT_EQ(p.expires_at, kNow + 600);
  EXPECT_EQ(p.actor(), "user:alice");
}

TEST(Jwt, TamperedPayloadIsRefused) {
  auto v = verifier();
  auto token = v.sign(alice(), kNow);
  const auto d1 = token.find('.');
  const auto d2 = token.find('.', d1 + 1);
  auto payload = base64url_encode(
      R"({"sub":"alice","tenant":"globex","roles":["super_admin"],"exp":1800000600})");
  auto tampered = token.substr(0, d1 + 1) + payload + token.substr(d2);
  EXPECT_EQ(reason(v, tampered), "token signature is invalid");
  // One flipped signature character.
  auto flipped = token;
  flipped.back() = flipped.back() == 'A' ? 'B' : 'A';
  EXPECT_EQ(reason(v, flipped), "token signature is invalid");
}

TEST(Jwt, AlgNoneAndOtherAlgorithmsAreRefused) {
  auto v = verifier();
  const std::string payload = R"({"sub":"alice","exp":1800000600})";
  auto none = base64url_encode(R"({"alg":"none"})") + "." + base64url_encode(payload) + ".";
  EXPECT_EQ(reason(v, none), "token algorithm is not HS256");
  EXPECT_EQ(reason(v, forge(R"({"alg":"HS512"})", payload, kKey)), "token algorithm is not HS256");
  EXPECT_EQ(reason(v, forge(R"({"typ":"JWT"})", payload, kKey)), "token algorithm is not HS256");
  EXPECT_EQ(reason(v, forge(R"({"alg":"hs256"})", payload, kKey)), "token algorithm is not HS256");
}

TEST(Jwt, WrongKeyIsRefusedAndRotationAcceptsThePreviousKey) {
  auto signer = verifier({kOther});
  auto token = signer.sign(alice(), kNow);
  EXPECT_EQ(reason(verifier({kKey}), token), "token signature is invalid");
  EXPECT_EQ(reason(verifier({kKey, kOther}), token), "accepted");
}

TEST(Jwt, ExpiryAndNotBeforeHonourTheLeeway) {
  auto v = verifier();
  EXPECT_EQ(reason(v, v.sign(alice(kNow - 31), kNow - 600)), "token expired");
  EXPECT_EQ(reason(v, v.sign(alice(kNow - 5), kNow - 600)), "accepted");  // within 30 s leeway
  EXPECT_EQ(reason(v, forge(R"({"alg":"HS256"})", R"({"sub":"a"})", kKey)),
            "token has no `exp` claim");
  EXPECT_EQ(reason(v, forge(R"({"alg":"HS256"})",
                            R"({"sub":"a","exp":1800000600,"nbf":1800000100})", kKey)),
            "token not valid yet");
}

TEST(Jwt, MalformedTokensAreRefusedNotCrashed) {
  auto v = verifier();
  for (const std::string& t : std::vector<std::string>{"", "a", "a.b", "a.b.c.d", "!!!.???.###",
                                                       "e30.e30.", "..", std::string(9000, 'a')}) {
    EXPECT_NE(reason(v, t), "accepted") << t;
  }
  EXPECT_EQ(reason(v, forge(R"({"alg":"HS256"})", R"({"exp":1800000600})", kKey)),
            "token has no subject");
  EXPECT_EQ(reason(v, forge(R"({"alg":"HS256"})", R"({"sub":"a","exp":"soon"})", kKey)),
            "token claim `exp` is not a number");
  EXPECT_EQ(
      reason(v, forge(R"({"alg":"HS256"})", R"({"sub":"a","exp":1800000600,"roles":"x"})", kKey)),
      "token claim `roles` is not an array");
}

TEST(Jwt, IssuerAndAudienceAreCheckedWhenConfigured) {
  JwtOptions o;
  o.secrets = {kKey};
  o.issuer = "switchboard";
  o.audience = "edge";
  JwtVerifier v(o);
  EXPECT_EQ(reason(v, v.sign(alice(), kNow)), "accepted");
  EXPECT_EQ(reason(v, verifier().sign(alice(), kNow)), "token issuer is not accepted");
}

TEST(Jwt, ShortOrMissingKeysAreRefusedAtConstruction) {
  EXPECT_THROW(verifier({}), std::invalid_argument);
  EXPECT_THROW(verifier({"short"}), std::invalid_argument);
}

TEST(Jwt, SessionVersionAndIssuedAtRoundTrip) {
  auto v = verifier();
  auto p = alice();
  p.session_id = "s-1";
  p.user_version = 3;
  p.token_id = "t-1";
  auto back = v.verify(v.sign(p, kNow - 5), kNow);
  EXPECT_EQ(back.session_id, "s-1");
  EXPECT_EQ(back.user_version, 3);
  EXPECT_EQ(back.token_id, "t-1");
  EXPECT_EQ(back.issued_at, kNow - 5);
  EXPECT_EQ(back.actor(), "user:alice");
  EXPECT_EQ(
      reason(v, forge(R"({"alg":"HS256"})", R"({"sub":"a","exp":1800000600,"uv":"x"})", kKey)),
      "token claim `uv` is not a number");
}

TEST(Passwords, Argon2idHashesVerifyOnlyTheirPassword) {
  // Small cost: the parameters are stored in the hash, so verification uses them.
  PasswordCost cheap{1, 1u << 20};
  const auto h = hash_password("correct horse", cheap);
  EXPECT_EQ(h.rfind("$argon2id$v=19$m=1024,t=1,p=1$", 0), 0u) << h;
  EXPECT_TRUE(verify_password(h, "correct horse"));
  EXPECT_FALSE(verify_password(h, "correct horsf"));
  EXPECT_FALSE(verify_password(h, ""));
  EXPECT_NE(hash_password("correct horse", cheap), h);  // a fresh salt each time
  EXPECT_FALSE(verify_password("", "x"));
  EXPECT_FALSE(verify_password("$argon2i$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaA", "x"));
  EXPECT_FALSE(verify_password(std::string(500, '$'), "x"));
}

TEST(Passwords, DefaultCostIsOwaspsArgon2idMinimum) {
  const auto h = hash_password("pw");
  EXPECT_EQ(h.rfind("$argon2id$v=19$m=19456,t=2,p=1$", 0), 0u) << h;
  EXPECT_TRUE(verify_password(h, "pw"));
}

TEST(Secrets, RandomTokensAreDistinctAndConstantTimeCompareIsExact) {
  const auto a = random_token(32), b = random_token(32);
  EXPECT_EQ(a.size(), 43u);
  EXPECT_NE(a, b);
  EXPECT_TRUE(constant_time_equal(a, a));
  EXPECT_FALSE(constant_time_equal(a, b));
  EXPECT_FALSE(constant_time_equal("abc", "abcd"));
  EXPECT_TRUE(constant_time_equal("", ""));
}

TEST(ApiKeys, NewKeysHaveTheFormatAndParseBack) {
  const auto k = new_api_key();
  const auto text = k.text();
  EXPECT_TRUE(std::regex_match(text, std::regex("^sbk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$"))) << text;
  const auto parsed = parse_api_key(text);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->prefix, k.prefix);
  EXPECT_EQ(parsed->secret, k.secret);
  EXPECT_EQ(parsed->text(), text);
  EXPECT_NE(new_api_key().prefix, k.prefix);
}

TEST(ApiKeys, AnythingButExactlyTheFormatIsRefused) {
  const std::string secret(43, 'x');
  EXPECT_TRUE(parse_api_key("sbk_0123456789ab_" + secret));
  EXPECT_FALSE(parse_api_key("sbk_0123456789ab_" + secret.substr(1))) << "short secret";
  EXPECT_FALSE(parse_api_key("sbk_0123456789ab_" + secret + "x")) << "long secret";
  EXPECT_FALSE(parse_api_key("sbk_0123456789ab_s"));
  EXPECT_FALSE(parse_api_key("sbk_0123456789ab_"));
  EXPECT_FALSE(parse_api_key("sbk_0123456789ab_" + std::string(42, 'x') + "="));
  EXPECT_FALSE(parse_api_key("sbk_0123456789AB_" + secret)) << "upper-case prefix";
  EXPECT_FALSE(parse_api_key("sbk_0123456789abc_" + secret.substr(1)));
  EXPECT_FALSE(parse_api_key("sbx_0123456789ab_" + secret));
  EXPECT_FALSE(parse_api_key("sbk_0123456789ab-" + secret));
  EXPECT_FALSE(parse_api_key(""));
}

TEST(Roles, HierarchySuperAdminOverTenantAdminOverUser) {
  EXPECT_TRUE(role_admits({"user"}, "user"));
  EXPECT_TRUE(role_admits({"tenant_admin"}, "user"));
  EXPECT_TRUE(role_admits({"super_admin"}, "user"));
  EXPECT_TRUE(role_admits({"super_admin"}, "tenant_admin"));
  EXPECT_TRUE(role_admits({"super_admin"}, "clerk")) << "super_admin passes every role check";
  EXPECT_FALSE(role_admits({"user"}, "tenant_admin"));
  EXPECT_FALSE(role_admits({"tenant_admin"}, "super_admin"));
  EXPECT_FALSE(role_admits({"tenant_admin"}, "clerk"));
  EXPECT_FALSE(role_admits({"clerk"}, "user")) << "a custom role is not in the hierarchy";
  EXPECT_TRUE(role_admits({"clerk"}, "clerk"));
  EXPECT_FALSE(role_admits({}, "user"));

  EXPECT_TRUE(role_check_passes({}, {})) << "nothing listed: anyone";
  EXPECT_TRUE(role_check_passes({"user"}, {}));
  EXPECT_TRUE(role_check_passes({"tenant_admin"}, {"clerk", "user"}));
  EXPECT_FALSE(role_check_passes({"user"}, {"tenant_admin", "clerk"}));
  EXPECT_FALSE(role_check_passes({}, {"user"}));

  EXPECT_TRUE(builtin_role("super_admin"));
  EXPECT_TRUE(builtin_role("tenant_admin"));
  EXPECT_TRUE(builtin_role("user"));
  EXPECT_FALSE(builtin_role("clerk"));
  EXPECT_FALSE(builtin_role("User"));

  Principal p;
  EXPECT_FALSE(p.super_admin());
  p.roles = {"user", "super_admin"};
  EXPECT_TRUE(p.super_admin());
}

TEST(Permissions, PatternSyntax) {
  for (const char* ok : {"*", "command:orders.place", "command:orders.*", "command:*",
                         "route:orders:GET:/orders/{id}", "route:orders:GET:*", "route:orders:*",
                         "route:*", "route:ord*", "route:orders:GE*", "route:orders:GET:/ord*",
                         "platform:events:read", "platform:events:*", "platform:*", "platform:rep*",
                         "platform:events:wr*", "platform:replays:write", "comm*"}) {
    EXPECT_TRUE(valid_permission_pattern(ok)) << ok;
  }
  for (const char* bad :
       {"", "**", "*:x", "command", "command:", "command:Orders", "command:a*b", "command:.x",
        "route:orders", "route:orders:FETCH:/x", "route:orders:GET:x", "route:Bad:GET:/x",
        "route:orders:GET:/a?b", "platform:events", "platform:bogus:read", "platform:events:delete",
        "unknown:x", "command:a b"}) {
    EXPECT_FALSE(valid_permission_pattern(bad)) << bad;
  }
  EXPECT_TRUE(valid_permission_pattern("command:" + std::string(248, 'a')));
  EXPECT_FALSE(valid_permission_pattern("command:" + std::string(249, 'a'))) << "over 256 bytes";
}

TEST(Permissions, PatternsMatchExactlyOrByTrailingStar) {
  EXPECT_TRUE(permission_matches("*", "command:orders.place"));
  EXPECT_TRUE(permission_matches("*", "platform:events:read"));
  EXPECT_TRUE(permission_matches("command:orders.*", "command:orders.place"));
  EXPECT_FALSE(permission_matches("command:orders.*", "command:payments.refund"));
  EXPECT_TRUE(permission_matches("command:orders.place", "command:orders.place"));
  EXPECT_FALSE(permission_matches("command:orders.place", "command:orders.placed"));
  EXPECT_TRUE(permission_matches("route:orders:GET:*", "route:orders:GET:/orders/{id}"));
  EXPECT_TRUE(permission_matches("route:orders:GET:/orders/{id}", "route:orders:GET:/orders/{id}"));
  EXPECT_FALSE(permission_matches("", "command:orders.place"));
  EXPECT_FALSE(permission_matches("command:orders.place*x", "command:orders.place"));
}

TEST(Permissions, EveryPlatformAreaOfTheProtocolIsAValidPattern) {
  for (const char* area :
       {"events", "services", "catalog", "subscriptions", "projections", "replays", "metrics"}) {
    EXPECT_TRUE(valid_permission_pattern(std::string("platform:") + area + ":read")) << area;
  }
  EXPECT_FALSE(valid_permission_pattern("platform:nonsense:read"));
}
