// sb::redis against the harness's Redis.
#include <gtest/gtest.h>

#include <thread>

#include "switchboard/shared/redis.hpp"
#include "switchboard/testing/servers.hpp"

namespace sb::redis {
namespace {

using namespace std::chrono_literals;

Options options() {
  Options o;
  o.url = testing::servers().redis_url;
  o.connect_timeout = 2s;
  o.command_timeout = 2s;
  return o;
}

TEST(RedisIntegration, SetGetDel) {
  Client c(options());
  const auto key = testing::unique_name("k");
  EXPECT_EQ(c.get(key), std::nullopt);
  c.set(key, std::string("bin\0ary", 7));
  EXPECT_EQ(c.get(key), std::string("bin\0ary", 7));
  EXPECT_TRUE(c.is_connected());
  EXPECT_EQ(c.del(key), 1);
  EXPECT_EQ(c.del(key), 0);
  EXPECT_EQ(c.get(key), std::nullopt);
}

TEST(RedisIntegration, TtlIsSetAndExpires) {
  Client c(options());
  const auto key = testing::unique_name("ttl");
  c.set(key, "v", 60s);
  const auto left = c.pttl(key);
  EXPECT_GT(left, 0);
  EXPECT_LE(left, 60000);
  c.set(key, "v");
  EXPECT_EQ(c.pttl(key), -1);
  EXPECT_EQ(c.pttl(testing::unique_name("absent")), -2);
  EXPECT_TRUE(c.expire(key, 1ms));
  EXPECT_TRUE(testing::wait_until([&] { return !c.get(key).has_value(); }, 5s));
  EXPECT_FALSE(c.expire(key, 1s));
}

TEST(RedisIntegration, SetIfAbsent) {
  Client c(options());
  const auto key = testing::unique_name("nx");
  EXPECT_TRUE(c.set_if_absent(key, "first", 60s));
  EXPECT_FALSE(c.set_if_absent(key, "second", 60s));
  EXPECT_EQ(c.get(key), "first");
}

TEST(RedisIntegration, Incr) {
  Client c(options());
  const auto key = testing::unique_name("n");
  EXPECT_EQ(c.incr(key), 1);
  EXPECT_EQ(c.incr(key), 2);
  EXPECT_EQ(c.incr_by(key, 40), 42);
  EXPECT_EQ(c.incr_by(key, -50), -8);
}

TEST(RedisIntegration, ErrorRepliesAreReturnedByCommandAndThrownByHelpers) {
  Client c(options());
  const auto key = testing::unique_name("s");
  c.set(key, "not a number");
  auto r = c.command({"INCR", key});
  EXPECT_TRUE(r.is_error());
  EXPECT_NE(r.as_string().find("not an integer"), std::string::npos);
  EXPECT_THROW(c.incr(key), ReplyError);
  // An error reply leaves the connection usable.
  EXPECT_EQ(c.get(key), "not a number");
}

TEST(RedisIntegration, CommandRepliesOfEveryType) {
  Client c(options());
  const auto key = testing::unique_name("list");
  EXPECT_EQ(c.command({"PING"}).type(), Reply::Type::status);
  EXPECT_EQ(c.command({"RPUSH", key, "a", "b"}).as_integer(), 2);
  auto list = c.command(std::vector<std::string>{"LRANGE", key, "0", "-1"});
  ASSERT_EQ(list.type(), Reply::Type::array);
  ASSERT_EQ(list.elements().size(), 2u);
  EXPECT_EQ(list.elements()[1].as_string(), "b");
  EXPECT_TRUE(c.command({"GET", testing::unique_name("none")}).is_nil());
}

TEST(RedisIntegration, Eval) {
  Client c(options());
  const auto key = testing::unique_name("lua");
  auto r = c.eval("redis.call('SET', KEYS[1], ARGV[1]); return redis.call('STRLEN', KEYS[1])",
                  {key}, {"hello"});
  EXPECT_EQ(r.as_integer(), 5);
  EXPECT_EQ(c.get(key), "hello");
  EXPECT_THROW(c.eval("return redis.call('NOPE')", {}, {}), ReplyError);
  EXPECT_NO_THROW(c.ping());
}

TEST(RedisIntegration, SelectsTheDatabaseFromTheUrl) {
  auto o = options();
  auto endpoint = parse_url(o.url);
  const std::string base = o.url.substr(0, o.url.rfind('/'));
  Client db0(o);
  Options o5 = o;
  o5.url = base + "/5";
  Client db5(o5);
  const auto key = testing::unique_name("db");
  db5.set(key, "five", 60s);
  EXPECT_EQ(db5.get(key), "five");
  EXPECT_EQ(db0.get(key), std::nullopt);
  EXPECT_EQ(endpoint.db, 0);
}

TEST(RedisIntegration, WrongPasswordIsAConnectionError) {
  auto e = parse_url(testing::servers().redis_url);
  Options o = options();
  o.url = "redis://:wrong-password@" + e.host + ":" + std::to_string(e.port) + "/0";
  Client c(o);
  EXPECT_THROW(c.ping(), ConnectionError);
  EXPECT_FALSE(c.is_connected());
}

TEST(RedisIntegration, SharedClientSerialisesThreads) {
  Client c(options());
  const auto key = testing::unique_name("shared");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 250; ++i) c.incr(key);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.get(key), "1000");
}

}  // namespace
}  // namespace sb::redis
