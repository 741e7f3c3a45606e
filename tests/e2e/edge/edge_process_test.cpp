// The edge as a real process against the harness's real servers: ready only
// when its dependencies answer, metrics exposed, SIGTERM drains and exits 0,
// bad configuration refused with the key named.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>

#include "switchboard/testing/process.hpp"
#include "switchboard/testing/servers.hpp"

using namespace sb::testing;
using namespace std::chrono_literals;

namespace {
std::map<std::string, std::string> edge_env(int port) {
  const auto& s = servers();
  return {{"SB_HTTP_PORT", std::to_string(port)},
          {"SB_POSTGRES_URL", s.postgres_url},
          {"SB_REDIS_URL", s.redis_url},
          {"SB_RABBITMQ_URL", s.rabbitmq_url},
          {"SB_AUTH_JWT_SECRET", "process-test-signing-key-0123456789abcdef"},
          {"SB_CONFIG", ""}};
}
}  // namespace

TEST(EdgeProcess, ReadyWithRealDependenciesThenDrainsOnSigterm) {
  int port = free_port();
  ChildProcess edge(built_binary("services/edge/sb-edge"), {}, edge_env(port));
  ASSERT_TRUE(wait_until([&] { return http_get(port, "/ready").status == 200; }, 15s))
      << edge.output();
  auto ready = http_get(port, "/ready");
  EXPECT_NE(ready.body.find(R"("postgres":{"state":"ok"})"), std::string::npos) << ready.body;
  EXPECT_NE(ready.body.find(R"("redis":{"state":"ok"})"), std::string::npos) << ready.body;
  EXPECT_NE(ready.body.find(R"("rabbitmq":{"state":"ok"})"), std::string::npos) << ready.body;
  EXPECT_EQ(http_get(port, "/health").status, 200);
  // Everything but /health and /ready needs a token.
  EXPECT_EQ(http_get(port, "/metrics").status, 401);

  edge.signal(SIGTERM);
  auto code = edge.wait(15s);
  ASSERT_TRUE(code.has_value()) << "edge did not exit after SIGTERM";
  EXPECT_EQ(*code, 0) << edge.output();
  EXPECT_NE(edge.output().find("stopped cleanly"), std::string::npos);
}

TEST(EdgeProcess, NotReadyWhenADependencyIsDown) {
  int port = free_port();
  auto env = edge_env(port);
  env["SB_REDIS_URL"] = "redis://:x@127.0.0.1:" + std::to_string(free_port()) + "/0";
  ChildProcess edge(built_binary("services/edge/sb-edge"), {}, env);
  ASSERT_TRUE(wait_until([&] { return http_get(port, "/health").status == 200; }, 15s))
      << edge.output();
  auto ready = http_get(port, "/ready");
  EXPECT_EQ(ready.status, 503);
  EXPECT_NE(ready.body.find(R"("redis":{"state":"failed")"), std::string::npos) << ready.body;
  EXPECT_NE(ready.body.find(R"("postgres":{"state":"ok"})"), std::string::npos) << ready.body;
}

TEST(EdgeProcess, RefusesToStartWithoutASigningKey) {
  int port = free_port();
  auto env = edge_env(port);
  env.erase("SB_AUTH_JWT_SECRET");
  ChildProcess edge(built_binary("services/edge/sb-edge"), {}, env);
  auto code = edge.wait(15s);
  ASSERT_TRUE(code.has_value()) << "the edge started without a signing key";
  EXPECT_NE(*code, 0);
  EXPECT_NE(edge.output().find("auth.jwt_secret"), std::string::npos) << edge.output();
  env["SB_AUTH_JWT_SECRET"] = "too-short";
  ChildProcess weak(built_binary("services/edge/sb-edge"), {}, env);
  code = weak.wait(15s);
  ASSERT_TRUE(code.has_value()) << "the edge started with a 9-byte signing key";
  EXPECT_NE(*code, 0);
}

TEST(EdgeProcess, RefusesUnknownConfigKeyNamingIt) {
  std::string file = ::testing::TempDir() + unique_name("edge") + ".json";
  std::ofstream(file) << R"({"http": {"prot": 1}})";
  ChildProcess edge(built_binary("services/edge/sb-edge"), {"--config", file}, {{"SB_CONFIG", ""}});
  auto code = edge.wait(10s);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 2);
  EXPECT_NE(edge.output().find("http.prot"), std::string::npos) << edge.output();
}
