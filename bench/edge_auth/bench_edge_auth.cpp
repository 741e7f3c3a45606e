// The per-request cost of the edge's authentication filter (docs/protocol.md
// 11.5) with a realistic identity view — 10,000 revoked sessions, 10,000
// API keys, 10,000 users with a security version — beside a baseline
// measured in the same run: a bare HMAC-SHA256 of the token's bytes (the
// floor of any HS256 verification). Goal: under 50 µs per request.
//
//   bench_edge_auth [--benchmark_* options]
#include <benchmark/benchmark.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "switchboard/edge/authentication.hpp"
#include "switchboard/edge/identity_view.hpp"
#include "switchboard/edge/rbac.hpp"
#include "switchboard/events/envelope.hpp"
#include "switchboard/events/uuid.hpp"

using namespace sb;

namespace {

const std::string kSecret = "bench-signing-key-0123456789abcdef-0123456789";
constexpr int kEntries = 10000;

std::int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Fixture {
  auth::JwtVerifier verifier{auth::JwtOptions{{kSecret}, "", "", std::chrono::seconds(30), 8192}};
  edge::IdentityView view;
  std::string token;
  std::string api_key;
  std::int64_t position = 0;

  void apply(const std::string& type, const std::string& stream, const std::string& data) {
    events::NewEvent n{.id = events::new_event_id(),
                       .type = events::EventType(type),
                       .data = events::Payload::parse(data),
                       .meta = events::Payload(),
                       .occurred_at = events::now_ms()};
    view.apply(events::record(n, events::StreamId(stream), events::StreamVersion(0),
                              events::Position(++position), events::TenantId("acme"),
                              events::now_ms()));
  }

  static std::string hex12(int i) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%012x", static_cast<unsigned>(i));
    return buf;
  }

  Fixture() {
    const auto exp = now_s() + 3600;
    for (int i = 0; i < kEntries; ++i) {
      const auto n = std::to_string(i);
      apply("identity.session.revoked", "session-s" + n,
            R"({"session_id":"s)" + n +
                R"(","user_id":"u","reason":"logout","access_expires_at":)" + std::to_string(exp) +
                "}");
      apply("identity.user.roles_changed", "user-u" + n,
            R"({"roles":["user"],"security_version":)" + std::to_string(i % 5) + "}");
      const auto key = "sbk_" + hex12(i) + "_" + std::string(43, static_cast<char>('a' + i % 26));
      apply(
          "identity.apikey.issued", "apikey-k" + n,
          R"({"key_id":"k)" + n + R"(","prefix":")" + hex12(i) + R"(","key_hash":")" +
              auth::sha256_hex(key) +
              R"(","name":"b","owner":"u","roles":["user"],"scopes":["route:orders:*"],"expires_at":0})");
      if (i == kEntries / 2) api_key = key;
    }
    auth::Principal p;
    p.subject = "u4";  // a known user, security_version 4
    p.tenant = "acme";
    p.roles = {"user"};
    p.session_id = "live-session";  // not revoked: every check runs to the end
    p.user_version = 4;
    p.token_id = "jti-1";
    p.expires_at = exp;
    token = verifier.sign(p, now_s());
  }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

edge::HttpRequest request(std::vector<edge::Header> headers) {
  edge::HttpRequest r;
  r.method = "GET";
  r.path = "/api/orders/orders/42";
  r.headers = std::move(headers);
  return r;
}

// Baseline: HMAC-SHA256 over the token's signing input.
void BM_Baseline_HmacSha256OfToken(benchmark::State& state) {
  auto& f = fixture();
  const auto signing_input = f.token.substr(0, f.token.rfind('.'));
  for (auto _ : state) benchmark::DoNotOptimize(auth::hmac_sha256(kSecret, signing_input));
}

void BM_JwtVerifyOnly(benchmark::State& state) {
  auto& f = fixture();
  const auto now = now_s();
  for (auto _ : state) benchmark::DoNotOptimize(f.verifier.verify(f.token, now));
}

// The whole filter: header parsing, JWT verification, deny checks.
void BM_AuthenticateJwtWithDenyChecks(benchmark::State& state) {
  auto& f = fixture();
  const auto req = request({{"authorization", "Bearer " + f.token}});
  const auto now = now_s();
  for (auto _ : state) benchmark::DoNotOptimize(edge::authenticate(f.verifier, &f.view, req, now));
}

// The same plus the RBAC check of a routed endpoint (roles [user]).
void BM_AuthenticateAndAuthorizeJwt(benchmark::State& state) {
  auto& f = fixture();
  const auto req = request({{"authorization", "Bearer " + f.token}});
  const auto now = now_s();
  const std::vector<std::string> roles{"user"};
  for (auto _ : state) {
    auto p = edge::authenticate(f.verifier, &f.view, req, now);
    edge::authorize(&f.view, p, roles, edge::route_permission("orders", "GET", "/orders/{id}"));
    benchmark::DoNotOptimize(p);
  }
}

void BM_AuthenticateApiKey(benchmark::State& state) {
  auto& f = fixture();
  const auto req = request({{"x-api-key", f.api_key}});
  const auto now = now_s();
  for (auto _ : state) benchmark::DoNotOptimize(edge::authenticate(f.verifier, &f.view, req, now));
}

}  // namespace

BENCHMARK(BM_Baseline_HmacSha256OfToken);
BENCHMARK(BM_JwtVerifyOnly);
BENCHMARK(BM_AuthenticateJwtWithDenyChecks)->Threads(1)->Threads(2);
BENCHMARK(BM_AuthenticateAndAuthorizeJwt);
BENCHMARK(BM_AuthenticateApiKey)->Threads(1)->Threads(2);

BENCHMARK_MAIN();
