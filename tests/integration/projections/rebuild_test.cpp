// Done-when (issue 5): "A rebuild of a projection over 100,000 events runs
// while queries on the old tables keep answering, reports progress, and
// swaps."
#include <thread>

#include "support.hpp"

namespace sb::projtest {
namespace {

/// One row per stream, upserted per event: the simplest projection.
std::shared_ptr<projections::Projection> counts() {
  return projections::ProjectionBuilder("counts")
      .table("streams")
      .schema(
          "CREATE TABLE {streams} (stream text PRIMARY KEY, events bigint NOT NULL, "
          "last_position bigint NOT NULL)")
      .on("bank.account.deposited",
          [](pg::Transaction& tx, const projections::Tables& t, const events::Event& e) {
            tx.exec(t.sql("INSERT INTO {streams} AS s (stream, events, last_position) VALUES ($1, "
                          "1, $2) ON CONFLICT (stream) DO UPDATE SET events = s.events + 1, "
                          "last_position = excluded.last_position"),
                    {e.stream.value(), e.position.value()});
            return events::HandleResult::handled;
          })
      .build();
}

TEST(DoneWhen, RebuildOf100kEventsKeepsQueriesAnsweringReportsProgressAndSwaps) {
  Db db;
  auto writer = start_writer(db.url);
  const auto t_append = Clock::now();
  const auto head = append_deposits(*writer, 1000, 100, 500);  // 100,000 events
  ASSERT_EQ(head, 100000);
  std::printf("appended 100000 events in %.1f s\n",
              std::chrono::duration<double>(Clock::now() - t_append).count());

  auto o = runner_options(db);
  o.page_size = 1000;
  o.poll_interval = 200ms;
  o.swap_lock_timeout = 1000ms;
  projections::ProjectionRunner runner(counts(), o);
  runner.start();
  ASSERT_TRUE(runner.wait_for_position(events::Position(head), Clock::now() + 300s));
  const auto expected = db.dump("counts_streams");
  ASSERT_EQ(expected.size(), 500u);
  const auto total = db.scalar("SELECT sum(events) FROM counts_streams");
  const auto last_position = db.scalar("SELECT max(last_position) FROM counts_streams");

  // Queries on the view, in a loop, for the whole rebuild: every one must
  // answer, with the old generation's data.
  std::atomic<bool> querying{true};
  std::atomic<int> queries{0};
  std::atomic<int> failures{0};
  std::atomic<int> wrong{0};
  std::thread reader([&] {
    pg::Connection c(connect(db.url));
    while (querying) {
      try {
        auto r =
            c.exec("SELECT count(*), sum(events), max(last_position) FROM counts_streams").one();
        if (r[0].get<std::int64_t>() != 500 || r[1].get<std::int64_t>() != total ||
            r[2].get<std::int64_t>() != last_position) {
          ++wrong;
        }
        ++queries;
      } catch (const std::exception& e) {
        ++failures;
        std::printf("query failed: %s\n", e.what());
        if (!c.is_open()) c = pg::Connection(connect(db.url));
      }
    }
  });

  struct Joiner {
    std::atomic<bool>& flag;
    std::thread& thread;
    ~Joiner() {
      flag = false;
      if (thread.joinable()) thread.join();
    }
  } joiner{querying, reader};
  const auto t0 = Clock::now();
  runner.start_rebuild();
  std::vector<double> progress;
  bool saw_eta = false;
  double max_rate = 0;
  int last_print = -1;
  while (runner.status().generation == 1 && Clock::now() - t0 < 300s) {
    auto st = runner.status();
    if (st.rebuild) {
      progress.push_back(st.rebuild->progress);
      if (st.rebuild->eta && st.rebuild->progress < 1.0) saw_eta = true;
      max_rate = std::max(max_rate, st.rebuild->rate);
      const int decile = static_cast<int>(st.rebuild->progress * 10);
      if (decile != last_print) {
        last_print = decile;
        std::printf(
            "rebuild g%d: %5.1f%%  position %lld / %lld  %.0f events/s  eta %s\n",
            st.rebuild->generation, st.rebuild->progress * 100,
            static_cast<long long>(st.rebuild->position.value()),
            static_cast<long long>(st.rebuild->head.value()), st.rebuild->rate,
            st.rebuild->eta ? (std::to_string(st.rebuild->eta->count()) + " s").c_str() : "-");
      }
    }
    std::this_thread::sleep_for(100ms);
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  querying = false;
  if (reader.joinable()) reader.join();

  ASSERT_EQ(runner.status().generation, 2) << "swapped";
  std::printf(
      "rebuild of %lld events swapped after %.1f s: %.0f events/s; %d queries answered "
      "meanwhile, %d failed\n",
      static_cast<long long>(head), secs, static_cast<double>(head) / secs, queries.load(),
      failures.load());
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(queries.load(), 10);
  ASSERT_GE(progress.size(), 3u);
  EXPECT_TRUE(std::is_sorted(progress.begin(), progress.end())) << "progress never goes back";
  EXPECT_LT(progress.front(), 0.5);
  EXPECT_GT(progress.back(), progress.front());
  EXPECT_TRUE(saw_eta);
  EXPECT_GT(max_rate, 0);
  EXPECT_EQ(db.dump("counts_streams"), expected);
  ASSERT_TRUE(tst::wait_until([&] { return !db.exists("counts_streams__g1"); }, 10s))
      << "old tables dropped";
  EXPECT_EQ(db.scalar("SELECT count(*) FROM subscription_checkpoints WHERE name = "
                      "'projection.counts.g1'"),
            0);
}

}  // namespace
}  // namespace sb::projtest
