// sb::pg against the harness's PostgreSQL: results, errors, retries, the pool.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <future>
#include <string>
#include <thread>

#include "switchboard/shared/pg.hpp"
#include "switchboard/testing/servers.hpp"

namespace sb::pg {
namespace {

using namespace std::chrono_literals;

ConnectOptions options_for(const std::string& url) {
  ConnectOptions o;
  o.url = url;
  o.connect_timeout = 5s;
  o.application_name = "sb_pg_test";
  return o;
}

PoolOptions pool_options(const std::string& url, std::size_t max_size = 4,
                         std::chrono::milliseconds acquire_timeout = 5000ms) {
  PoolOptions o;
  o.connection = options_for(url);
  o.max_size = max_size;
  o.acquire_timeout = acquire_timeout;
  return o;
}

// Terminates a backend from another session and waits until it is gone.
void terminate_backend(const std::string& url, int pid) {
  Connection admin(options_for(url));
  admin.exec("SELECT pg_terminate_backend($1)", {pid});
  ASSERT_TRUE(testing::wait_until(
      [&] { return admin.exec("SELECT 1 FROM pg_stat_activity WHERE pid = $1", {pid}).empty(); },
      10s));
}

TEST(PgIntegration, ResultsConvertTypesAndNulls) {
  Connection c(options_for(testing::fresh_database()));
  auto r = c.exec(
      "SELECT $1::bigint AS big, $2::text AS s, $3::int AS missing, $4::bool AS flag, "
      "$5::float8 AS x, $6::bytea AS raw, 'NaN'::float8 AS nan",
      {std::int64_t{-9007199254740993}, "o'neil", std::nullopt, true, 0.1,
       Param::bytes(std::string("\x00\x01", 2))});
  auto row = r.one();
  EXPECT_EQ(row["big"].get<std::int64_t>(), -9007199254740993);
  EXPECT_EQ(row["s"].get<std::string>(), "o'neil");
  EXPECT_TRUE(row["missing"].is_null());
  EXPECT_EQ(row["missing"].get_optional<int>(), std::nullopt);
  EXPECT_THROW(row["missing"].get<int>(), UsageError);
  EXPECT_TRUE(row["flag"].get<bool>());
  EXPECT_DOUBLE_EQ(row["x"].get<double>(), 0.1);
  EXPECT_EQ(row["raw"].get<std::string>(), "\\x0001");
  EXPECT_EQ(row["raw"].bytes(), std::string("\x00\x01", 2));
  EXPECT_THROW(row["s"].bytes(), UsageError);
  EXPECT_TRUE(std::isnan(row["nan"].get<double>()));
  EXPECT_THROW(row["big"].get<std::int16_t>(), UsageError);
  EXPECT_THROW(row["s"].get<int>(), UsageError);
  EXPECT_THROW(row["nope"], UsageError);
  EXPECT_EQ(r.column_name(1), "s");
}

TEST(PgIntegration, RowsOutliveTheirResultAndConnection) {
  std::optional<Row> kept;
  {
    Connection c(options_for(testing::fresh_database()));
    kept = c.exec("SELECT 'still here' AS v").one();
  }
  EXPECT_EQ((*kept)["v"].get<std::string>(), "still here");
}

TEST(PgIntegration, AffectedRowsAndIteration) {
  Connection c(options_for(testing::fresh_database()));
  c.exec("CREATE TABLE t (id int PRIMARY KEY, v text)");
  auto ins = c.exec("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 5) g");
  EXPECT_EQ(ins.affected_rows(), 5u);
  std::int64_t sum = 0;
  for (const auto& row : c.exec("SELECT id FROM t ORDER BY id")) sum += row[0].get<std::int64_t>();
  EXPECT_EQ(sum, 15);
  EXPECT_EQ(c.exec("UPDATE t SET v = 'x' WHERE id > $1", {3}).affected_rows(), 2u);
}

TEST(PgIntegration, ServerErrorsKeepTheirSqlstate) {
  Connection c(options_for(testing::fresh_database()));
  c.exec("CREATE TABLE t (id int PRIMARY KEY)");
  c.exec("INSERT INTO t VALUES (1)");
  try {
    c.exec("INSERT INTO t VALUES ($1)", {1});
    FAIL() << "duplicate insert succeeded";
  } catch (const UniqueViolation& e) {
    EXPECT_EQ(e.sqlstate(), "23505");
    EXPECT_FALSE(e.is_retryable());
  }
  try {
    c.exec("SELEKT 1");
    FAIL();
  } catch (const QueryError& e) {
    EXPECT_EQ(e.sqlstate(), "42601");
  }
  // The connection stays usable after a statement error.
  EXPECT_EQ(c.exec("SELECT count(*) FROM t").one()[0].get<int>(), 1);
}

TEST(PgIntegration, StatementTimeoutIsEnforcedPerConnection) {
  auto o = options_for(testing::fresh_database());
  o.statement_timeout = 100ms;
  Connection c(o);
  try {
    c.exec("SELECT pg_sleep(30)");
    FAIL() << "statement_timeout did not fire";
  } catch (const QueryError& e) {
    EXPECT_EQ(e.sqlstate(), sqlstate::kQueryCanceled);
  }
}

TEST(PgIntegration, SessionSetupRunsOnEveryConnection) {
  auto o = options_for(testing::fresh_database());
  o.session_setup = {"SET search_path TO custom_schema, public"};
  Connection c(o);
  EXPECT_EQ(c.exec("SHOW search_path").one()[0].get<std::string>(), "custom_schema, public");
  EXPECT_EQ(c.exec("SELECT current_setting('application_name')").one()[0].get<std::string>(),
            "sb_pg_test");
}

TEST(PgIntegration, TransactionCommitsOrRollsBack) {
  Connection c(options_for(testing::fresh_database()));
  c.exec("CREATE TABLE t (id int)");
  {
    auto tx = c.begin();
    tx.exec("INSERT INTO t VALUES (1)");
  }  // destroyed without commit: rolled back
  {
    auto tx = c.begin();
    tx.exec("INSERT INTO t VALUES (2)");
    tx.commit();
  }
  EXPECT_EQ(c.exec("SELECT coalesce(sum(id), 0) FROM t").one()[0].get<int>(), 2);
  auto tx = c.begin();
  EXPECT_THROW(c.begin(), UsageError);
}

TEST(PgIntegration, WithTransactionRetriesARealSerializationFailure) {
  const auto url = testing::fresh_database();
  Pool pool(pool_options(url));
  Connection other(options_for(url));
  other.exec("CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL)");
  other.exec("INSERT INTO counter VALUES (1, 0)");

  int attempts = 0;
  const int result = with_transaction(
      pool,
      [&](Transaction& tx) {
        ++attempts;
        tx.exec("SELECT n FROM counter WHERE id = 1");  // takes the snapshot
        if (attempts == 1) {
          // A concurrent writer commits a change to the row after our snapshot:
          // our update below must fail with 40001.
          other.exec("UPDATE counter SET n = n + 100 WHERE id = 1");
        }
        return tx.exec("UPDATE counter SET n = n + 1 WHERE id = 1 RETURNING n").one()[0].get<int>();
      },
      RetryPolicy{}, TransactionOptions{Isolation::repeatable_read, false});
  EXPECT_EQ(attempts, 2);
  EXPECT_EQ(result, 101);
}

TEST(PgIntegration, WithTransactionGivesUpAfterMaxAttempts) {
  const auto url = testing::fresh_database();
  Pool pool(pool_options(url));
  Connection other(options_for(url));
  other.exec("CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL)");
  other.exec("INSERT INTO counter VALUES (1, 0)");
  int attempts = 0;
  RetryPolicy retry;
  retry.max_attempts = 3;
  EXPECT_THROW(with_transaction(
                   pool,
                   [&](Transaction& tx) {
                     ++attempts;
                     tx.exec("SELECT n FROM counter WHERE id = 1");
                     other.exec("UPDATE counter SET n = n + 1 WHERE id = 1");
                     tx.exec("UPDATE counter SET n = n + 1 WHERE id = 1");
                   },
                   retry, TransactionOptions{Isolation::serializable, false}),
               SerializationFailure);
  EXPECT_EQ(attempts, 3);
}

TEST(PgIntegration, WithTransactionDoesNotRetryOtherErrors) {
  Pool pool(pool_options(testing::fresh_database()));
  int attempts = 0;
  EXPECT_THROW(with_transaction(pool,
                                [&](Transaction& tx) {
                                  ++attempts;
                                  tx.exec("SELECT * FROM no_such_table");
                                }),
               QueryError);
  EXPECT_EQ(attempts, 1);
  attempts = 0;
  EXPECT_THROW(with_transaction(pool,
                                [&](Transaction&) {
                                  ++attempts;
                                  throw std::runtime_error("domain failure");
                                }),
               std::runtime_error);
  EXPECT_EQ(attempts, 1);
}

TEST(PgIntegration, LostConnectionBeforeCommitIsRetriedOnANewOne) {
  const auto url = testing::fresh_database();
  Pool pool(pool_options(url, 1));
  with_transaction(pool, [](Transaction& tx) { tx.exec("CREATE TABLE t (id int)"); });
  int attempts = 0;
  with_transaction(pool, [&](Transaction& tx) {
    ++attempts;
    const int pid = tx.exec("SELECT pg_backend_pid()").one()[0].get<int>();
    if (attempts == 1) terminate_backend(url, pid);
    tx.exec("INSERT INTO t VALUES (1)");
  });
  EXPECT_EQ(attempts, 2);
  EXPECT_EQ(with_transaction(pool,
                             [](Transaction& tx) {
                               return tx.exec("SELECT count(*) FROM t").one()[0].get<int>();
                             }),
            1);
}

TEST(PgIntegration, LostConnectionDuringCommitIsInDoubtAndNotRetried) {
  const auto url = testing::fresh_database();
  Pool pool(pool_options(url, 1));
  int attempts = 0;
  EXPECT_THROW(with_transaction(pool,
                                [&](Transaction& tx) {
                                  ++attempts;
                                  const int pid =
                                      tx.exec("SELECT pg_backend_pid()").one()[0].get<int>();
                                  terminate_backend(url, pid);
                                  // Nothing else is sent before COMMIT, so the
                                  // loss is seen while committing.
                                }),
               InDoubtError);
  EXPECT_EQ(attempts, 1);
  // The pool drops the lost connection and serves a new one.
  EXPECT_NO_THROW(with_transaction(pool, [](Transaction& tx) { tx.exec("SELECT 1"); }));
}

TEST(PgIntegration, PoolExhaustionTimesOutByItsDeadline) {
  Pool pool(pool_options(testing::fresh_database(), 2, 200ms));
  auto a = pool.acquire();
  auto b = pool.acquire();
  EXPECT_EQ(pool.stats().leased, 2u);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(pool.acquire(), PoolTimeout);
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, 200ms);  // it did wait for a connection to come back
  // A waiter gets the connection as soon as one is returned.
  auto waiter = std::async(std::launch::async, [&] { return pool.acquire(30s)->backend_pid(); });
  const int pid_a = a->backend_pid();
  { auto released = std::move(a); }
  EXPECT_EQ(waiter.get(), pid_a);
  EXPECT_EQ(pool.stats().open, 2u);
}

TEST(PgIntegration, PoolReplacesATerminatedIdleConnection) {
  const auto url = testing::fresh_database();
  Pool pool(pool_options(url, 1));
  const int first = pool.acquire()->backend_pid();
  terminate_backend(url, first);
  // The idle connection's death is noticed on checkout, not by a failed query.
  auto lease = pool.acquire();
  EXPECT_NE(lease->backend_pid(), first);
  EXPECT_NO_THROW(lease->ping());
  EXPECT_EQ(pool.stats().discarded, 1u);
}

TEST(PgIntegration, PoolDropsAConnectionLostWhileLeased) {
  const auto url = testing::fresh_database();
  Pool pool(pool_options(url, 1));
  int first = 0;
  {
    auto lease = pool.acquire();
    first = lease->backend_pid();
    terminate_backend(url, first);
    EXPECT_THROW(lease->exec("SELECT 1"), ConnectionError);
    EXPECT_FALSE(lease->is_open());
  }
  EXPECT_EQ(pool.stats().open, 0u);
  EXPECT_EQ(pool.stats().discarded, 1u);
  EXPECT_NE(pool.acquire()->backend_pid(), first);
}

TEST(PgIntegration, ConnectionNeverReconnectsSilently) {
  const auto url = testing::fresh_database();
  Connection c(options_for(url));
  ASSERT_TRUE(c.try_advisory_lock(42));
  terminate_backend(url, c.backend_pid());
  // The advisory lock went with the session: that must be an error the
  // holder sees, every time, not a fresh session that quietly lacks the lock.
  EXPECT_THROW(c.exec("SELECT 1"), ConnectionError);
  EXPECT_THROW(c.exec("SELECT 1"), ConnectionError);
  EXPECT_FALSE(c.is_open());
  Connection other(options_for(url));
  EXPECT_TRUE(other.try_advisory_lock(42));
}

TEST(PgIntegration, ConnectFailureIsAConnectionError) {
  ConnectOptions o = options_for("postgresql://nobody:wrong@127.0.0.1:1/none");
  o.connect_timeout = 2s;
  try {
    Connection c(o);
    FAIL() << "connected to port 1";
  } catch (const ConnectionError& e) {
    EXPECT_EQ(std::string(e.what()).find("wrong"), std::string::npos) << "password leaked";
  }
}

TEST(PgIntegration, ListenReceivesNotifications) {
  const auto url = testing::fresh_database();
  Connection listener(options_for(url));
  listener.listen("sb_events");
  Connection sender(options_for(url));
  sender.exec("SELECT pg_notify('sb_events', $1)", {"hello"});
  std::vector<Notification> got;
  ASSERT_TRUE(testing::wait_until(
      [&] {
        for (auto& n : listener.wait_for_notifications(100ms)) got.push_back(std::move(n));
        return !got.empty();
      },
      10s));
  EXPECT_EQ(got[0].channel, "sb_events");
  EXPECT_EQ(got[0].payload, "hello");
  EXPECT_EQ(got[0].backend_pid, sender.backend_pid());
}

TEST(PgIntegration, ListenerSeesItsConnectionLoss) {
  const auto url = testing::fresh_database();
  Connection listener(options_for(url));
  listener.listen("sb_events");
  terminate_backend(url, listener.backend_pid());
  EXPECT_THROW(
      testing::wait_until([&] { return !listener.wait_for_notifications(100ms).empty(); }, 10s),
      ConnectionError);
}

TEST(PgIntegration, PoolIsSafeUnderConcurrentUse) {
  const auto url = testing::fresh_database();
  Pool pool(pool_options(url, 3));
  with_transaction(pool, [](Transaction& tx) {
    tx.exec("CREATE TABLE c (id int PRIMARY KEY, n int)");
    tx.exec("INSERT INTO c VALUES (1, 0)");
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        with_transaction(pool,
                         [](Transaction& tx) { tx.exec("UPDATE c SET n = n + 1 WHERE id = 1"); });
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(
      with_transaction(
          pool, [](Transaction& tx) { return tx.exec("SELECT n FROM c").one()[0].get<int>(); }),
      120);
  EXPECT_LE(pool.stats().open, 3u);
}

}  // namespace
}  // namespace sb::pg
