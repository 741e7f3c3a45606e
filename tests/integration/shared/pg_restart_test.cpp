// The pool across a PostgreSQL restart. SERIAL: restarts the shared server.
#include <gtest/gtest.h>

#include "switchboard/shared/pg.hpp"
#include "switchboard/testing/servers.hpp"

namespace sb::pg {
namespace {

using namespace std::chrono_literals;

TEST(PgRestart, PoolRecoversAfterServerRestart) {
  PoolOptions o;
  o.connection.url = testing::fresh_database();
  o.connection.connect_timeout = 2s;
  o.max_size = 2;
  Pool pool(o);
  with_transaction(pool, [](Transaction& tx) {
    tx.exec("CREATE TABLE t (id int)");
    tx.exec("INSERT INTO t VALUES (1)");
  });
  // Hold one connection across the restart: its loss must be visible.
  auto held = pool.acquire();
  held->ping();

  testing::servers().restart("postgres");

  EXPECT_THROW(held->exec("SELECT 1"), ConnectionError);
  { auto drop = std::move(held); }
  // Idle connections died with the server; the pool opens new ones.
  auto count = [&] {
    try {
      return with_transaction(pool, [](Transaction& tx) {
        return tx.exec("SELECT count(*) FROM t").one()[0].get<int>();
      });
    } catch (const ConnectionError&) {
      return -1;  // the server may still be starting
    }
  };
  ASSERT_TRUE(testing::wait_until([&] { return count() == 1; }, 30s, 50ms));
  EXPECT_GE(pool.stats().discarded, 1u);
}

}  // namespace
}  // namespace sb::pg
