// The projection runner against a real PostgreSQL and the real single
// writer: generations, views, read-your-writes, effect + checkpoint
// atomicity, park/resume, partitions across two runners, rebuild-and-swap
// (requested, after a schema change, across a restart, behind a lock).
#include <map>
#include <thread>

#include "support.hpp"

namespace sb::projtest {
namespace {

TEST(Projection, CreatesGenerationOneWithViewsAndFoldsEvents) {
  Db db;
  auto writer = start_writer(db.url);
  const auto head = append_deposits(*writer, 30, 5, 4);  // 150 events
  projections::ProjectionRunner runner(ledger("ledger"), runner_options(db));
  runner.start();
  ASSERT_TRUE(runner.wait_for_position(events::Position(head), Clock::now() + 30s));

  EXPECT_TRUE(db.exists("ledger_accounts__g1"));
  EXPECT_TRUE(db.exists("ledger_accounts"));
  EXPECT_EQ(db.scalar("SELECT count(*) FROM ledger_accounts"), 4);
  EXPECT_EQ(db.scalar("SELECT sum(events) FROM ledger_accounts"),
            db.scalar("SELECT count(*) FROM events WHERE type = 'bank.account.deposited'"));
  EXPECT_EQ(
      db.scalar("SELECT serving_generation FROM projection_generations WHERE name = 'ledger'"), 1);
  {
    pg::Connection c(connect(db.url));
    auto tx = c.begin();
    EXPECT_EQ(projections::projection_checkpoint(tx, "ledger"), events::Position(head));
    EXPECT_EQ(projections::serving_generation(tx, "ledger"), 1);
    EXPECT_FALSE(projections::projection_checkpoint(tx, "nope").has_value());
  }
  ASSERT_TRUE(tst::wait_until(
      [&] { return runner.status().state == events::SubscriptionState::running; }, 10s));
  auto st = runner.status();
  EXPECT_EQ(st.name, "ledger");
  EXPECT_EQ(st.generation, 1);
  EXPECT_EQ(st.position, events::Position(head));
  EXPECT_EQ(st.lag_events, 0);
  EXPECT_FALSE(st.rebuild.has_value());
  EXPECT_EQ(st.partitions.size(), 1u);
  EXPECT_EQ(runner.health().state, app::HealthState::ok);

  // Live: read-your-writes on a new append.
  auto more = append_deposits(*writer, 1, 3, 4);
  ASSERT_TRUE(runner.wait_for_position(events::Position(more), Clock::now() + 10s));
  EXPECT_EQ(db.scalar("SELECT max(last_position) FROM ledger_accounts"), more);
  // A position nobody wrote yet: false at the deadline, not before.
  const auto t0 = Clock::now();
  EXPECT_FALSE(runner.wait_for_position(events::Position(more + 1000), Clock::now() + 300ms));
  EXPECT_GE(Clock::now() - t0, 250ms);

  // A restart picks up where it left off: nothing applied twice (the ledger
  // would throw), nothing recreated.
  runner.stop(Clock::now() + 5s);
  projections::ProjectionRunner again(ledger("ledger"), runner_options(db));
  again.start();
  auto last = append_deposits(*writer, 2, 2, 4);
  ASSERT_TRUE(again.wait_for_position(events::Position(last), Clock::now() + 10s));
  EXPECT_EQ(again.status().generation, 1);
  EXPECT_FALSE(again.status().last_error.has_value());
}

TEST(Projection, AFailingPageLeavesNoPartialEffectThenParksAndResumes) {
  Db db;
  auto writer = start_writer(db.url);
  const auto head = append_deposits(*writer, 20, 10, 3);  // 200 events
  const auto nth_deposit = [&](int n) {
    return db.scalar(
        "SELECT position FROM events WHERE type = 'bank.account.deposited' ORDER BY "
        "position OFFSET $1 LIMIT 1",
        {n - 1});
  };
  const auto p100 = nth_deposit(100);  // where the first page (100 events) ends
  const auto p150 = nth_deposit(150);  // in the middle of the second page
  LedgerKnobs knobs;
  knobs.owner = "only";
  knobs.fail_at->store(p150);
  projections::ProjectionRunner runner(ledger("fragile", knobs), runner_options(db));
  runner.start();
  ASSERT_TRUE(tst::wait_until(
      [&] { return runner.status().state == events::SubscriptionState::parked; }, 30s));
  auto st = runner.status();
  ASSERT_TRUE(st.last_error.has_value());
  EXPECT_NE(st.last_error->find("refusing position " + std::to_string(p150)), std::string::npos)
      << *st.last_error;
  EXPECT_EQ(runner.health().state, app::HealthState::degraded);
  // The first page committed with its checkpoint; nothing of the failing
  // page did, although its first 49 events were applied before the throw.
  EXPECT_EQ(st.position, events::Position(p100));
  EXPECT_EQ(db.scalar("SELECT count(*) FROM fragile_applied"), 100);
  EXPECT_EQ(db.scalar("SELECT max(position) FROM fragile_applied"), p100);
  EXPECT_EQ(db.scalar("SELECT sum(events) FROM fragile_accounts"), 100);
  EXPECT_EQ(db.scalar("SELECT n FROM fragile_by_type"), 100);
  EXPECT_EQ(db.scalar("SELECT count(*) FROM subscription_checkpoints WHERE name = "
                      "'projection.fragile.g1' AND state = 'parked' AND failed_position = $1",
                      {p150}),
            1);
  // Parked stays parked.
  EXPECT_FALSE(runner.wait_for_position(events::Position(head), Clock::now() + 300ms));

  knobs.fail_at->store(0);
  runner.resume();
  ASSERT_TRUE(runner.wait_for_position(events::Position(head), Clock::now() + 30s));
  EXPECT_EQ(db.scalar("SELECT count(*) FROM fragile_applied"),
            db.scalar("SELECT count(*) FROM events WHERE type = 'bank.account.deposited'"));
  EXPECT_EQ(db.scalar("SELECT count(DISTINCT position) FROM fragile_applied"),
            db.scalar("SELECT count(*) FROM fragile_applied"));
  EXPECT_FALSE(runner.status().last_error.has_value());
  EXPECT_EQ(runner.health().state, app::HealthState::ok);
}

// Every stream's events applied exactly once and in version order, by two
// runners sharing two partitions; one of them stops half-way and the other
// takes its partition over.
TEST(Projection, TwoRunnersOverTwoPartitionsKeepPerStreamOrder) {
  Db db;
  auto writer = start_writer(db.url);
  append_deposits(*writer, 100, 10, 16);  // 1000 events
  LedgerKnobs a_knobs;
  a_knobs.owner = "a";
  a_knobs.delay = 200us;
  LedgerKnobs b_knobs = a_knobs;
  b_knobs.owner = "b";
  auto oa = runner_options(db, 2);
  oa.owner = "runner-a";
  auto ob = runner_options(db, 2);
  ob.owner = "runner-b";
  auto a = std::make_unique<projections::ProjectionRunner>(ledger("split", a_knobs), oa);
  projections::ProjectionRunner b(ledger("split", b_knobs), ob);
  a->start();
  b.start();
  std::atomic<bool> writing{true};
  std::thread more([&] {
    while (writing) append_deposits(*writer, 5, 4, 16);
  });
  struct Joiner {
    std::atomic<bool>& flag;
    std::thread& thread;
    ~Joiner() {
      flag = false;
      if (thread.joinable()) thread.join();
    }
  } joiner{writing, more};
  // Both own something at some point (or one owns both: order must hold anyway).
  ASSERT_TRUE(
      tst::wait_until([&] { return db.scalar("SELECT count(*) FROM split_applied") > 200; }, 30s));
  a->stop(Clock::now() + 5s);
  a.reset();
  ASSERT_TRUE(tst::wait_until(
      [&] {
        auto st = b.status();
        return st.partitions.size() == 2 && st.partitions[0].owner && st.partitions[1].owner;
      },
      30s))
      << "b takes over a's partition";
  writing = false;
  if (more.joinable()) more.join();
  const auto head = db.scalar("SELECT max(position) FROM events");
  ASSERT_TRUE(b.wait_for_position(events::Position(head), Clock::now() + 60s));
  EXPECT_EQ(b.status().state, events::SubscriptionState::running);
  EXPECT_FALSE(b.status().last_error.has_value());

  EXPECT_EQ(db.scalar("SELECT count(*) FROM split_applied"),
            db.scalar("SELECT count(*) FROM events WHERE type = 'bank.account.deposited'"));
  // Applied order (seq) per stream follows versions strictly.
  EXPECT_EQ(
      db.scalar("SELECT count(*) FROM (SELECT version, lag(version) OVER (PARTITION BY stream "
                "ORDER BY seq) AS prev FROM split_applied) x WHERE prev IS NOT NULL AND "
                "version <= prev"),
      0);
  EXPECT_EQ(db.scalar("SELECT count(*) FROM split_accounts a WHERE a.events <> (SELECT count(*) "
                      "FROM events e WHERE e.stream = a.stream AND e.type = "
                      "'bank.account.deposited')"),
            0);
  EXPECT_GE(db.scalar("SELECT count(DISTINCT owner) FROM split_applied"), 1);
  std::printf(
      "applied by: a=%lld b=%lld\n",
      static_cast<long long>(db.scalar("SELECT count(*) FROM split_applied WHERE owner = 'a'")),
      static_cast<long long>(db.scalar("SELECT count(*) FROM split_applied WHERE owner = 'b'")));
}

TEST(Projection, RequestedRebuildSwapsToIdenticalDataAndDropsTheOldTables) {
  Db db;
  auto writer = start_writer(db.url);
  const auto head = append_deposits(*writer, 40, 10, 8);
  projections::ProjectionRunner runner(ledger("rebuilt"), runner_options(db, 2));
  runner.start();
  ASSERT_TRUE(runner.wait_for_position(events::Position(head), Clock::now() + 30s));
  const auto before = db.dump("rebuilt_accounts");
  runner.start_rebuild();
  runner.start_rebuild();  // no-op while one runs
  ASSERT_TRUE(tst::wait_until([&] { return runner.status().generation == 2; }, 60s));
  EXPECT_FALSE(runner.status().rebuild.has_value());
  EXPECT_EQ(db.dump("rebuilt_accounts"), before);
  ASSERT_TRUE(tst::wait_until([&] { return !db.exists("rebuilt_accounts__g1"); }, 10s));
  EXPECT_TRUE(db.exists("rebuilt_accounts__g2"));
  EXPECT_EQ(db.scalar("SELECT count(*) FROM subscription_checkpoints WHERE name = "
                      "'projection.rebuilt.g1'"),
            0);
  EXPECT_EQ(db.scalar("SELECT count(*) FROM projection_tables WHERE name = 'rebuilt'"), 3);
  // Live on the new generation.
  const auto more = append_deposits(*writer, 3, 3, 8);
  ASSERT_TRUE(runner.wait_for_position(events::Position(more), Clock::now() + 10s));
  EXPECT_EQ(db.scalar("SELECT max(last_position) FROM rebuilt_accounts"), more);
}

TEST(Projection, SchemaChangeRebuildsByItselfAndReplacesTheViewColumns) {
  Db db;
  auto writer = start_writer(db.url);
  const auto head = append_deposits(*writer, 20, 10, 5);
  {
    projections::ProjectionRunner v1(ledger("evolving"), runner_options(db));
    v1.start();
    ASSERT_TRUE(v1.wait_for_position(events::Position(head), Clock::now() + 30s));
  }
  const auto before = db.dump("evolving_accounts");
  LedgerKnobs v2;
  v2.version = 2;
  v2.extra_column = true;
  projections::ProjectionRunner runner(ledger("evolving", v2), runner_options(db));
  runner.start();
  // The old generation answers meanwhile (frozen), then the swap.
  EXPECT_EQ(db.dump("evolving_accounts").size(), before.size());
  ASSERT_TRUE(tst::wait_until([&] { return runner.status().generation == 2; }, 60s));
  EXPECT_EQ(db.dump("evolving_accounts", "stream, balance, events, last_version, last_position"),
            before);
  EXPECT_EQ(db.scalar("SELECT count(*) FROM information_schema.columns WHERE table_name = "
                      "'evolving_accounts' AND column_name = 'note'"),
            1);
  ASSERT_TRUE(runner.wait_for_position(events::Position(head), Clock::now() + 10s));
  EXPECT_EQ(runner.health().state, app::HealthState::ok);
}

TEST(Projection, ARebuildSurvivesARestartAndContinuesFromItsCheckpoint) {
  Db db;
  auto writer = start_writer(db.url);
  const auto head = append_deposits(*writer, 60, 10, 6);  // 600 events
  LedgerKnobs slow;
  slow.delay = 2ms;  // the rebuild takes > 1 s
  auto o = runner_options(db);
  o.page_size = 50;
  std::int64_t reached = 0;
  {
    projections::ProjectionRunner runner(ledger("durable"), o);
    runner.start();
    ASSERT_TRUE(runner.wait_for_position(events::Position(head), Clock::now() + 30s));
    runner.stop(Clock::now() + 5s);
  }
  {
    projections::ProjectionRunner runner(ledger("durable", slow), o);
    runner.start();
    runner.start_rebuild();
    ASSERT_TRUE(tst::wait_until(
        [&] {
          auto st = runner.status();
          return st.rebuild && st.rebuild->position.value() >= 100;
        },
        30s));
    runner.stop(Clock::now() + 5s);
    reached = db.scalar(
        "SELECT min(position) FROM subscription_checkpoints WHERE name = "
        "'projection.durable.g2'");
  }
  ASSERT_GE(reached, 100);
  ASSERT_LT(reached, head) << "stopped mid-rebuild";
  EXPECT_EQ(db.scalar("SELECT building_generation FROM projection_generations WHERE name = "
                      "'durable'"),
            2);
  projections::ProjectionRunner runner(ledger("durable"), o);
  runner.start();
  {
    auto st = runner.status();
    ASSERT_TRUE(st.rebuild.has_value());
    EXPECT_EQ(st.rebuild->generation, 2);
  }
  ASSERT_TRUE(tst::wait_until([&] { return runner.status().generation == 2; }, 60s));
  EXPECT_EQ(db.scalar("SELECT sum(events) FROM durable_accounts"),
            db.scalar("SELECT count(*) FROM events WHERE type = 'bank.account.deposited'"));
  ASSERT_TRUE(tst::wait_until([&] { return !db.exists("durable_accounts__g1"); }, 10s));
}

TEST(Projection, TheSwapWaitsForQueriesHoldingTheOldViewAndRetries) {
  Db db;
  auto writer = start_writer(db.url);
  const auto head = append_deposits(*writer, 10, 10, 3);
  auto o = runner_options(db);
  o.swap_lock_timeout = 100ms;
  projections::ProjectionRunner runner(ledger("locked"), o);
  runner.start();
  ASSERT_TRUE(runner.wait_for_position(events::Position(head), Clock::now() + 30s));
  // A long reader: its transaction holds the view until it ends.
  pg::Connection reader(connect(db.url));
  auto tx = reader.begin();
  EXPECT_EQ(tx.exec("SELECT count(*) FROM locked_accounts").one()[0].get<std::int64_t>(), 3);
  runner.start_rebuild();
  ASSERT_TRUE(tst::wait_until(
      [&] {
        auto st = runner.status();
        return st.rebuild && st.rebuild->swap_attempts >= 2;
      },
      30s));
  EXPECT_EQ(runner.status().generation, 1) << "no swap while the view is in use";
  EXPECT_EQ(tx.exec("SELECT count(*) FROM locked_accounts").one()[0].get<std::int64_t>(), 3);
  tx.commit();
  ASSERT_TRUE(tst::wait_until([&] { return runner.status().generation == 2; }, 30s));
  EXPECT_EQ(db.scalar("SELECT count(*) FROM locked_accounts"), 3);
}

}  // namespace
}  // namespace sb::projtest
