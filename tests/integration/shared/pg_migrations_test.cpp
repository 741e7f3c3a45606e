// Migrations against the harness's PostgreSQL.
#include <gtest/gtest.h>

#include <future>
#include <latch>
#include <thread>

#include "switchboard/shared/pg_migrations.hpp"
#include "switchboard/testing/servers.hpp"

namespace sb::pg {
namespace {

using namespace std::chrono_literals;

ConnectOptions options_for(const std::string& url) {
  ConnectOptions o;
  o.url = url;
  o.application_name = "sb_migration_test";
  return o;
}

MigrationSet store_set() {
  return MigrationSet{
      "store",
      {{1, "create_items", "CREATE TABLE items (id bigint PRIMARY KEY, name text);"},
       {2, "seed_items",
        "INSERT INTO items VALUES (1, 'one');\nINSERT INTO items VALUES (2, 'two');"}}};
}

TEST(PgMigrationsIntegration, MigrateThenQueryAndRerunIsANoOp) {
  const auto url = testing::fresh_database();
  auto first = migrate(options_for(url), store_set());
  EXPECT_EQ(first.applied, (std::vector<std::int64_t>{1, 2}));
  EXPECT_EQ(first.already_applied, 0u);

  Connection c(options_for(url));
  EXPECT_EQ(c.exec("SELECT name FROM items WHERE id = $1", {2}).one()[0].get<std::string>(), "two");
  auto recorded = c.exec(
      "SELECT version, name, checksum, applied_at IS NOT NULL FROM schema_migrations "
      "WHERE component = 'store' ORDER BY version");
  ASSERT_EQ(recorded.size(), 2u);
  EXPECT_EQ(recorded[0][1].get<std::string>(), "create_items");
  EXPECT_EQ(recorded[1][2].get<std::string>(), migration_checksum(store_set().migrations[1].sql));
  EXPECT_TRUE(recorded[1][3].get<bool>());

  auto again = migrate(options_for(url), store_set());
  EXPECT_TRUE(again.applied.empty());
  EXPECT_EQ(again.already_applied, 2u);
  EXPECT_EQ(c.exec("SELECT count(*) FROM items").one()[0].get<int>(), 2);
}

TEST(PgMigrationsIntegration, NewMigrationsAreAppliedIncrementally) {
  const auto url = testing::fresh_database();
  auto set = store_set();
  migrate(options_for(url), set);
  set.migrations.push_back({3, "add_column", "ALTER TABLE items ADD COLUMN price int;"});
  EXPECT_EQ(migrate(options_for(url), set).applied, (std::vector<std::int64_t>{3}));
}

TEST(PgMigrationsIntegration, ModifiedAppliedMigrationIsRejected) {
  const auto url = testing::fresh_database();
  migrate(options_for(url), store_set());
  auto changed = store_set();
  changed.migrations[0].sql = "CREATE TABLE items (id bigint PRIMARY KEY, name text, x int);";
  changed.migrations.push_back({3, "more", "CREATE TABLE more (id int);"});
  EXPECT_THROW(migrate(options_for(url), changed), MigrationError);
  // Nothing after the check ran: migration 3 was not applied.
  Connection c(options_for(url));
  EXPECT_TRUE(c.exec("SELECT to_regclass('more') IS NULL").one()[0].get<bool>());
}

TEST(PgMigrationsIntegration, OutOfOrderMigrationIsRejected) {
  const auto url = testing::fresh_database();
  MigrationSet set{"store",
                   {{1, "a", "CREATE TABLE a (id int);"}, {3, "c", "CREATE TABLE c (id int);"}}};
  migrate(options_for(url), set);
  set.migrations.push_back({2, "b", "CREATE TABLE b (id int);"});
  EXPECT_THROW(migrate(options_for(url), set), MigrationError);
}

TEST(PgMigrationsIntegration, FailingMigrationIsNotRecordedAndEarlierOnesStay) {
  const auto url = testing::fresh_database();
  MigrationSet set{"store",
                   {{1, "ok", "CREATE TABLE ok (id int);"},
                    {2, "broken", "CREATE TABLE half (id int); SELECT * FROM missing_table;"}}};
  EXPECT_THROW(migrate(options_for(url), set), QueryError);
  Connection c(options_for(url));
  EXPECT_EQ(c.exec("SELECT count(*) FROM schema_migrations").one()[0].get<int>(), 1);
  // Migration 2 ran in one transaction with its record: no half-applied table.
  EXPECT_TRUE(c.exec("SELECT to_regclass('half') IS NULL").one()[0].get<bool>());
}

TEST(PgMigrationsIntegration, ComponentsHaveSeparateNamespaces) {
  const auto url = testing::fresh_database();
  migrate(options_for(url), store_set());
  MigrationSet registry{"registry", {{1, "create_services", "CREATE TABLE services (name text);"}}};
  EXPECT_EQ(migrate(options_for(url), registry).applied, (std::vector<std::int64_t>{1}));
  EXPECT_EQ(migrate(options_for(url), store_set()).already_applied, 2u);
  Connection c(options_for(url));
  EXPECT_EQ(c.exec("SELECT count(DISTINCT component) FROM schema_migrations").one()[0].get<int>(),
            2);
}

TEST(PgMigrationsIntegration, ConcurrentMigratorsApplyOnce) {
  const auto url = testing::fresh_database();
  Connection gate(options_for(url));
  gate.exec("CREATE TABLE gate (id int)");
  // Migration 1 blocks on the gate table while the test holds it, so every
  // migrator is provably running at the same time before any finishes.
  MigrationSet set{"store",
                   {{1, "gated", "LOCK TABLE gate IN SHARE MODE; CREATE TABLE once (id int);"},
                    {2, "seed", "INSERT INTO once VALUES (1);"}}};
  auto hold = gate.begin();
  hold.exec("LOCK TABLE gate IN ACCESS EXCLUSIVE MODE");

  constexpr int kMigrators = 4;
  std::vector<std::future<MigrateReport>> runs;
  for (int i = 0; i < kMigrators; ++i) {
    runs.push_back(std::async(std::launch::async, [&] { return migrate(options_for(url), set); }));
  }
  Connection observer(options_for(url));
  const bool all_waiting = testing::wait_until(
      [&] {
        auto r = observer.exec(
            "SELECT count(*) FILTER (WHERE wait_event = 'advisory'), "
            "count(*) FILTER (WHERE wait_event = 'relation') FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'sb_migration_test'");
        return r[0][0].get<int>() == kMigrators - 1 && r[0][1].get<int>() == 1;
      },
      30s);
  hold.commit();
  ASSERT_TRUE(all_waiting) << "migrators never all contended for the lock";

  int applied_by = 0;
  for (auto& f : runs) {
    auto report = f.get();
    if (!report.applied.empty()) {
      ++applied_by;
      EXPECT_EQ(report.applied, (std::vector<std::int64_t>{1, 2}));
    } else {
      EXPECT_EQ(report.already_applied, 2u);
    }
  }
  EXPECT_EQ(applied_by, 1);
  EXPECT_EQ(observer.exec("SELECT count(*) FROM once").one()[0].get<int>(), 1);
}

TEST(PgMigrationsIntegration, LockWaitHasADeadline) {
  const auto url = testing::fresh_database();
  Connection gate(options_for(url));
  gate.exec("CREATE TABLE gate (id int)");
  MigrationSet set{"store", {{1, "gated", "LOCK TABLE gate IN SHARE MODE;"}}};
  auto hold = gate.begin();
  hold.exec("LOCK TABLE gate IN ACCESS EXCLUSIVE MODE");
  auto first = std::async(std::launch::async, [&] { return migrate(options_for(url), set); });
  Connection observer(options_for(url));
  ASSERT_TRUE(testing::wait_until(
      [&] {
        return observer
                   .exec(
                       "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'relation' "
                       "AND datname = current_database()")
                   .one()[0]
                   .get<int>() == 1;
      },
      30s));
  MigrateOptions impatient;
  impatient.lock_timeout = 200ms;
  EXPECT_THROW(migrate(options_for(url), set, impatient), MigrationError);
  hold.commit();
  EXPECT_EQ(first.get().applied.size(), 1u);
}

}  // namespace
}  // namespace sb::pg
