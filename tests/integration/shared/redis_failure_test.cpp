// Redis client behaviour when the server restarts or hangs. SERIAL: these
// restart and freeze the shared Redis.
#include <gtest/gtest.h>

#include "switchboard/shared/redis.hpp"
#include "switchboard/testing/servers.hpp"

namespace sb::redis {
namespace {

using namespace std::chrono_literals;

Options options(std::chrono::milliseconds command_timeout) {
  Options o;
  o.url = testing::servers().redis_url;
  o.connect_timeout = command_timeout;
  o.command_timeout = command_timeout;
  return o;
}

// Thaws the server however the test ends, so later tests find it running.
class Frozen {
 public:
  Frozen() { testing::servers().freeze("redis"); }
  ~Frozen() { testing::servers().thaw("redis"); }
  Frozen(const Frozen&) = delete;
  Frozen& operator=(const Frozen&) = delete;
};

bool ping_ok(Client& c) {
  try {
    c.ping();
    return true;
  } catch (const ConnectionError&) {
    return false;
  }
}

TEST(RedisFailure, ReconnectsOnTheNextCommandAfterARestart) {
  Client c(options(2s));
  c.ping();
  ASSERT_TRUE(c.is_connected());
  testing::servers().restart("redis");
  // The old connection is dead: the first command may fail (clearly, not by
  // hanging); a later one reconnects by itself.
  try {
    c.ping();
  } catch (const ConnectionError& e) {
    EXPECT_FALSE(c.is_connected()) << e.what();
  }
  ASSERT_TRUE(testing::wait_until([&] { return ping_ok(c); }, 10s, 50ms));
  const auto key = testing::unique_name("after_restart");
  c.set(key, "ok");
  EXPECT_EQ(c.get(key), "ok");
}

TEST(RedisFailure, CommandAgainstAFrozenServerFailsByItsTimeout) {
  Client c(options(300ms));
  c.ping();
  {
    Frozen frozen;
    const auto start = std::chrono::steady_clock::now();
    EXPECT_THROW(c.ping(), TimeoutError);
    const auto took = std::chrono::steady_clock::now() - start;
    EXPECT_GE(took, 300ms);
    EXPECT_LT(took, 30s) << "the command hung instead of timing out";
    EXPECT_FALSE(c.is_connected());

    // A fresh connection: TCP connects (the kernel accepts), AUTH times out.
    Client fresh(options(300ms));
    EXPECT_THROW(fresh.ping(), TimeoutError);
  }
  // After the thaw the same client works again without being recreated.
  ASSERT_TRUE(testing::wait_until([&] { return ping_ok(c); }, 10s, 50ms));
}

}  // namespace
}  // namespace sb::redis
