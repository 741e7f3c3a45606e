#include <gtest/gtest.h>

#include "switchboard/shared/redis.hpp"

namespace sb::redis {
namespace {

TEST(RedisUrl, PasswordPortAndDb) {
  auto e = parse_url("redis://:s3cret@127.0.0.1:6380/2");
  EXPECT_EQ(e.host, "127.0.0.1");
  EXPECT_EQ(e.port, 6380);
  EXPECT_EQ(e.username, "");
  EXPECT_EQ(e.password, "s3cret");
  EXPECT_EQ(e.db, 2);
}

TEST(RedisUrl, Defaults) {
  auto e = parse_url("redis://localhost");
  EXPECT_EQ(e.host, "localhost");
  EXPECT_EQ(e.port, 6379);
  EXPECT_EQ(e.password, "");
  EXPECT_EQ(e.db, 0);
  EXPECT_EQ(parse_url("redis://h:1/").db, 0);
}

TEST(RedisUrl, UserPasswordDecodedAndAtSignInPassword) {
  auto e = parse_url("redis://app:p%40ss%2Fw@rd@10.0.0.1:7000/0");
  EXPECT_EQ(e.username, "app");
  EXPECT_EQ(e.password, "p@ss/w@rd");
  EXPECT_EQ(e.host, "10.0.0.1");
  EXPECT_EQ(e.port, 7000);
}

TEST(RedisUrl, PasswordOnlyWithoutColon) {
  EXPECT_EQ(parse_url("redis://secret@h:1").password, "secret");
}

TEST(RedisUrl, Ipv6) {
  auto e = parse_url("redis://[::1]:6390/1");
  EXPECT_EQ(e.host, "::1");
  EXPECT_EQ(e.port, 6390);
  EXPECT_EQ(e.db, 1);
}

TEST(RedisUrl, Malformed) {
  EXPECT_THROW(parse_url("http://h:1"), Error);
  EXPECT_THROW(parse_url("redis://"), Error);
  EXPECT_THROW(parse_url("redis://h:notaport"), Error);
  EXPECT_THROW(parse_url("redis://h:0"), Error);
  EXPECT_THROW(parse_url("redis://h:70000"), Error);
  EXPECT_THROW(parse_url("redis://h:1/x"), Error);
  EXPECT_THROW(parse_url("redis://:%4@h"), Error);
  EXPECT_THROW(parse_url("redis://[::1:5"), Error);
}

TEST(RedisReply, AccessorsCheckTheType) {
  EXPECT_TRUE(Reply().is_nil());
  EXPECT_EQ(Reply::integer(7).as_integer(), 7);
  EXPECT_EQ(Reply::string("v").as_string(), "v");
  EXPECT_EQ(Reply::status("OK").as_string(), "OK");
  EXPECT_THROW(Reply::string("v").as_integer(), Error);
  EXPECT_THROW(Reply().as_string(), Error);
  EXPECT_THROW(Reply::integer(1).elements(), Error);
  auto a = Reply::array({Reply::integer(1), Reply()});
  ASSERT_EQ(a.elements().size(), 2u);
  EXPECT_TRUE(a.elements()[1].is_nil());
}

TEST(RedisReply, ErrorRepliesThrowOnlyWhenAsked) {
  auto e = Reply::error("WRONGTYPE Operation against a key holding the wrong kind of value");
  EXPECT_TRUE(e.is_error());
  EXPECT_THROW(e.throw_if_error(), ReplyError);
  EXPECT_NO_THROW(Reply::status("OK").throw_if_error());
  try {
    e.as_integer();
    FAIL();
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("WRONGTYPE"), std::string::npos);
  }
}

TEST(RedisErrors, TimeoutIsAConnectionError) {
  const ConnectionError& c = TimeoutError("t");
  const Error& root = c;
  EXPECT_STREQ(root.what(), "t");
}

TEST(RedisClient, ConstructingParsesUrlButDoesNotConnect) {
  Client c({"redis://:pw@127.0.0.1:1/3", std::chrono::milliseconds(100),
            std::chrono::milliseconds(100)});
  EXPECT_FALSE(c.is_connected());
  EXPECT_EQ(c.endpoint().db, 3);
  EXPECT_THROW(Client({"nope"}), Error);
}

TEST(RedisClient, UnreachableServerThrowsConnectionError) {
  // Port 1 on loopback: nothing listens there, so the refusal is immediate.
  Client c({"redis://127.0.0.1:1", std::chrono::milliseconds(500), std::chrono::milliseconds(500)});
  EXPECT_THROW(c.ping(), ConnectionError);
  EXPECT_FALSE(c.is_connected());
}

}  // namespace
}  // namespace sb::redis
