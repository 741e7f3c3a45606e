// Done-when (issue 5): "A projection killed with SIGKILL mid-batch and
// restarted ends with a read model equal to a fresh rebuild."
//
// projection_worker runs the ledger projection (2 partitions, 200-event
// pages, a little work per event so a page stays open for a while) in a
// child process. The test SIGKILLs it at random moments while it catches up,
// several times, restarts it, waits until it has caught up, then rebuilds
// the projection from position 0 into a new generation and compares: the
// read model must be identical, row for row. The ledger throws on any
// duplicate or out-of-order apply, so a page applied twice would park it.
#include <csignal>
#include <random>

#include "support.hpp"
#include "switchboard/testing/process.hpp"

namespace sb::projtest {
namespace {

std::int64_t min_checkpoint(const Db& db, const std::string& sub) {
  return db.scalar(
      "SELECT coalesce(min(position), 0) FROM subscription_checkpoints WHERE name = $1", {sub});
}

TEST(DoneWhen, KilledMidBatchAndRestartedEqualsAFreshRebuild) {
  Db db;
  auto writer = start_writer(db.url);
  const auto head = append_deposits(*writer, 400, 25, 50);  // 10,000 events
  const auto worker = tst::built_binary("tests/integration/projections/projection_worker");
  const std::vector<std::string> args{db.url, "killed", "2", "200", "300"};
  std::mt19937 rng(std::random_device{}());

  // A page transaction that has written something and not committed yet.
  const auto open_pages = [&] {
    return db.scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'projection-worker' AND "
        "datname = current_database() AND backend_xid IS NOT NULL");
  };
  int kills = 0;
  int mid_page = 0;
  std::int64_t last = 0;
  for (int round = 0; round < 5; ++round) {
    tst::ChildProcess child(worker, args, {});
    // Let it get going (past where the previous one was killed), then kill it
    // at a random moment: with ~60 ms of work per page it is nearly always
    // inside a page's transaction.
    ASSERT_TRUE(
        tst::wait_until([&] { return min_checkpoint(db, "projection.killed.g1") > last; }, 60s))
        << child.output();
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::uniform_int_distribution<int>(20, 400)(rng)));
    last = min_checkpoint(db, "projection.killed.g1");
    if (last >= head) break;
    const auto open = open_pages();
    child.signal(SIGKILL);
    ASSERT_TRUE(child.wait(10s).has_value());
    ++kills;
    if (open > 0) ++mid_page;
    std::printf("round %d: SIGKILL at checkpoint %lld of %lld, %lld page(s) open\n", round,
                static_cast<long long>(last), static_cast<long long>(head),
                static_cast<long long>(open));
  }
  EXPECT_GE(kills, 3) << "the worker should have been killed mid-way several times";
  EXPECT_GE(mid_page, 1) << "at least one kill should land inside a page's transaction";

  {
    tst::ChildProcess child(worker, args, {});
    ASSERT_TRUE(
        tst::wait_until([&] { return min_checkpoint(db, "projection.killed.g1") >= head; }, 120s))
        << child.output();
    EXPECT_EQ(db.scalar("SELECT count(*) FROM subscription_checkpoints WHERE name = "
                        "'projection.killed.g1' AND state = 'parked'"),
              0)
        << child.output();
    child.signal(SIGKILL);
    child.wait(10s);
  }
  const auto killed_accounts = db.dump("killed_accounts");
  const auto killed_types = db.dump("killed_by_type");
  ASSERT_EQ(killed_accounts.size(), 50u);
  EXPECT_EQ(db.scalar("SELECT sum(events) FROM killed_accounts"),
            db.scalar("SELECT count(*) FROM events WHERE type = 'bank.account.deposited'"));

  // A fresh rebuild of the same projection, from position 0, in-process.
  projections::ProjectionRunner runner(ledger("killed"), runner_options(db, 2));
  runner.start();
  runner.start_rebuild();
  ASSERT_TRUE(tst::wait_until([&] { return runner.status().generation == 2; }, 120s));
  EXPECT_EQ(db.dump("killed_accounts"), killed_accounts);
  EXPECT_EQ(db.dump("killed_by_type"), killed_types);
  EXPECT_EQ(db.dump("killed_accounts__g2"), killed_accounts);
}

}  // namespace
}  // namespace sb::projtest
