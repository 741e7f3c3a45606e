#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "switchboard/shared/config.hpp"

using namespace sb::config;
using namespace std::chrono_literals;

namespace {
Schema schema() {
  Schema s;
  s.required("rabbitmq.url", Type::string, "AMQP URL", true)
      .optional("http.port", Type::integer, "8080", "HTTP port")
      .optional("http.tcp_nodelay", Type::boolean, "true", "Nagle off")
      .optional("rpc.deadline", Type::duration, "5s", "RPC deadline")
      .optional("ratio", Type::number, "0.5", "a ratio");
  return s;
}

std::string write_file(const std::string& text) {
  std::string path = ::testing::TempDir() + "cfg_" +
                     ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".json";
  std::ofstream(path) << text;
  return path;
}
}  // namespace

TEST(Config, DefaultsAndEnvironmentOverride) {
  auto cfg =
      Config::load(schema(), "", {{"SB_RABBITMQ_URL", "amqp://x"}, {"SB_HTTP_PORT", "9000"}});
  EXPECT_EQ(cfg.get_string("rabbitmq.url"), "amqp://x");
  EXPECT_EQ(cfg.get_int("http.port"), 9000);
  EXPECT_TRUE(cfg.get_bool("http.tcp_nodelay"));
  EXPECT_EQ(cfg.get_duration("rpc.deadline"), 5000ms);
  EXPECT_DOUBLE_EQ(cfg.get_number("ratio"), 0.5);
  EXPECT_EQ(cfg.source("http.port"), "env SB_HTTP_PORT");
  EXPECT_EQ(cfg.source("ratio"), "default");
}

TEST(Config, FileNestedAndDottedKeysEnvWins) {
  auto file = write_file(R"({"rabbitmq": {"url": "amqp://file"}, "http.port": 7000,
                             "rpc": {"deadline": "250ms"}})");
  auto cfg = Config::load(schema(), file, {{"SB_HTTP_PORT", "7001"}});
  EXPECT_EQ(cfg.get_string("rabbitmq.url"), "amqp://file");
  EXPECT_EQ(cfg.source("rabbitmq.url"), "file");
  EXPECT_EQ(cfg.get_int("http.port"), 7001);
  EXPECT_EQ(cfg.get_duration("rpc.deadline"), 250ms);
}

TEST(Config, UnknownKeyInFileIsAnErrorNamingTheKey) {
  auto file = write_file(R"({"rabbitmq": {"url": "amqp://x", "ulr": "typo"}})");
  try {
    Config::load(schema(), file, {});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.key(), "rabbitmq.ulr");
  }
}

TEST(Config, MissingRequiredNamesKeyAndVariable) {
  try {
    Config::load(schema(), "", {});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.key(), "rabbitmq.url");
    EXPECT_NE(std::string(e.what()).find("SB_RABBITMQ_URL"), std::string::npos);
  }
}

TEST(Config, WrongTypeIsAnErrorAndSecretsAreNotEchoed) {
  EXPECT_THROW(Config::load(schema(), "", {{"SB_RABBITMQ_URL", "a"}, {"SB_HTTP_PORT", "80x"}}),
               Error);
  EXPECT_THROW(
      Config::load(schema(), "", {{"SB_RABBITMQ_URL", "a"}, {"SB_RPC_DEADLINE", "5 parsecs"}}),
      Error);
  auto cfg = Config::load(schema(), "", {{"SB_RABBITMQ_URL", "amqp://user:hunter2@h/"}});
  EXPECT_EQ(cfg.describe().find("hunter2"), std::string::npos);
  EXPECT_NE(cfg.describe().find("http.port = 8080 (default)"), std::string::npos);
}

TEST(Config, MalformedFileAndBadArguments) {
  auto file = write_file("{ not json");
  EXPECT_THROW(Config::load(schema(), file, {{"SB_RABBITMQ_URL", "a"}}), Error);
  EXPECT_THROW(Config::load(schema(), "/nonexistent/cfg.json", {{"SB_RABBITMQ_URL", "a"}}), Error);
  const char* argv[] = {"prog", "--verbose"};
  EXPECT_THROW(config_file_argument(2, argv), Error);
  const char* argv2[] = {"prog", "--config", "x.json"};
  EXPECT_EQ(config_file_argument(3, argv2).value(), "x.json");
}

TEST(Config, Durations) {
  EXPECT_EQ(parse_duration("1500"), 1500ms);
  EXPECT_EQ(parse_duration("1.5s"), 1500ms);
  EXPECT_EQ(parse_duration("2m"), 120000ms);
  EXPECT_EQ(parse_duration("1h"), 3600000ms);
  EXPECT_THROW(parse_duration("-1s"), std::invalid_argument);
  EXPECT_THROW(parse_duration("s"), std::invalid_argument);
  EXPECT_THROW(parse_duration("3 weeks"), std::invalid_argument);
}

TEST(Config, SchemaRejectsClashingKeys) {
  Schema s;
  s.optional("a.b", Type::string, "", "");
  EXPECT_THROW(s.optional("a.b", Type::string, "", ""), Error);
  EXPECT_THROW(s.optional("a_b", Type::string, "", ""), Error);
}
